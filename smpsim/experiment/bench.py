"""smpsim bench: the engine's own costs, next to what the host itself can do, in one run.

Sections (each number that depends on the host is taken beside its own reference, measured in
the same run, so that the ratio means something on a busy or a different host):

1. hot path    time per slab_alloc + slab_free pair that hits the CPU's magazines, against a
               Python list.append + list.pop pair (the floor); the pair that misses to the slab
               layer, the NOMAGAZINE pair, kalloc + kfree; the hit pair through the Python
               twin of the accelerator, through no accelerator, and in debugging mode.
2. scaling     throughput of threadtest (each CPU allocates and frees its own batch of objects,
               a batch that fits the two magazines) and xmalloc (CPU pairs: a producer allocates,
               a consumer frees, through a ring in simulated memory) at 1, 2, 4, 8, 16 CPUs, with
               magazines and with SLAB_CACHE_NOMAGAZINE. 2-CPU efficiency = (threadtest speed-up
               from 1 to 2 CPUs) / (speed-up of a plain Python loop in 2 CPU processes), each
               measured in interleaved rounds, the median of the rounds; both counter kinds
               (Machine(counters="shared"), the seed's, and "percpu"). 64 CPUs vs 2 CPUs.
3. locks       acquisitions, contended acquisitions and spins per operation per lock kind for
               every scaling run; the shared magazine list's traffic with batches larger than two
               magazines against Bonwick's 1/M bound.
4. start       boot time of 64 MiB, 1 GiB and 4 GiB machines; time until 1, 16 and 64 CPU
               processes all run the program (Machine.run of a trivial program).
5, 6.          the cost of simulated time and of controlled schedules (bench_sim.py).

Every CPU process runs for a fixed time (not a fixed count) from the start gate; a run's
throughput is its operations over the window from the first CPU's start to the last one's end.
Writes bench.json and bench.md to --out and prints the Markdown. `--quick` runs every section
with tiny sizes (for tests: the numbers are there, not meaningful).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

from smpsim.experiment import bench_sim

__all__ = ["main", "run_bench", "markdown", "CONFIGS"]

# Sections 5 and 6: (label, CPUs, NOMAGAZINE, counters) of the runs timed in both times.
SIM_RUNS = [("magazines, per-CPU counters", 1, False, "percpu"),
            ("magazines, per-CPU counters", 2, False, "percpu"),
            ("magazines, per-CPU counters", 8, False, "percpu"),
            ("magazines, the seed's shared counters", 2, False, "shared"),
            ("NOMAGAZINE", 2, True, "shared")]
SIM_FULL = {"sim_pairs": 100_000, "sim_rounds": 3, "sim_runs": SIM_RUNS, "schedules": 100,
            "schedule_ops": 300}
SIM_QUICK = {"sim_pairs": 400, "sim_rounds": 1, "sim_runs": SIM_RUNS[:2], "schedules": 3,
             "schedule_ops": 40}

CONFIGS = {
    "full": {"pairs": 200_000, "slow_pairs": 3_000, "rounds": 5, "seconds": 0.5,
             "cpus": [1, 2, 4, 8, 16], "oversubscribed": 64, "eff_rounds": 7, "over_rounds": 3,
             "boot": ["64M", "1G", "4G"], "start": [1, 16, 64], "start_repeat": 3,
             "batch_depot": 16, **SIM_FULL},
    "quick": {"pairs": 2_000, "slow_pairs": 50, "rounds": 1, "seconds": 0.05,
              "cpus": [1, 2, 4, 8, 16], "oversubscribed": 64, "eff_rounds": 1, "over_rounds": 1,
              "boot": ["64M", "1G", "4G"], "start": [1, 16, 64], "start_repeat": 1,
              "batch_depot": 16, **SIM_QUICK},
}
MEMORY = "256M"
RING_SLOTS = 1024              # producer/consumer ring, in words (a power of two)
RING_BATCH = 8
_HEAD, _TAIL, _DONE, _SLOTS = 0, 64, 128, 256


# --- programs the CPU processes run ------------------------------------------------------

def _window(k, clock, seconds):
    """(start, end) of this run's measured window, the same for every CPU: the first CPU to
    arrive writes the start (perf_counter_ns: CLOCK_MONOTONIC, one clock for every process)
    with a compare-and-swap; every CPU counts the operations it finished by start + seconds.
    Work finished after the end is done (objects must be freed) but not counted, so a CPU that
    the host deschedules across the end does not stretch the window."""
    from time import perf_counter_ns
    k.atomic_cas(clock, 0, perf_counter_ns())
    t0 = k.atomic_load(clock) / 1e9
    return t0, t0 + seconds


def _threadtest(k, clock, cache, batch, seconds):
    """Rounds of `batch` slab_allocs then `batch` slab_frees (LIFO). Returns (operations
    finished in the window, window start, window end, all operations done)."""
    from time import perf_counter
    sa, sf = k.slab_alloc, k.slab_free
    objs = [0] * batch
    back = range(batch - 1, -1, -1)
    fwd = range(batch)
    ops = 0
    t0, end = _window(k, clock, seconds)
    while True:
        for _ in range(8):
            for i in fwd:
                objs[i] = sa(cache)
            for i in back:
                sf(cache, objs[i])
        if perf_counter() > end:
            return ops, t0, end, ops + 16 * batch
        ops += 16 * batch


def _xmalloc(k, clock, cache, rings, seconds):
    """CPU 2p produces into ring p, CPU 2p+1 consumes from it; a lone CPU does both. Returns
    what _threadtest returns."""
    from time import perf_counter
    me = k.cpu_id
    if me >= 2 * len(rings):                # an odd CPU out: local rounds
        return _threadtest(k, clock, cache, RING_BATCH, seconds)
    ring = rings[me // 2]
    # The ring's loads and stores go straight to the CPU's arena (the engine's atomics without
    # the public calls' argument checks), so that the ring costs as little as it can beside the
    # allocations it carries.
    ar, sa, sf, mask = k._sa.arena, k.slab_alloc, k.slab_free, RING_SLOTS - 1
    head, tail, done, slots = ring + _HEAD, ring + _TAIL, ring + _DONE, ring + _SLOTS
    ops = 0
    t0, end = _window(k, clock, seconds)
    if ar.load(done) == 2:
        # A single CPU is producer and consumer: it fills the ring, then empties it.
        while True:
            for i in range(RING_SLOTS):
                ar.store(slots + i * 8, sa(cache))
            for i in range(RING_SLOTS):
                sf(cache, ar.load(slots + i * 8))
            if perf_counter() > end:
                return ops, t0, end, ops + 2 * RING_SLOTS
            ops += 2 * RING_SLOTS
    if me % 2 == 0:                         # producer: RELEASE store of head publishes slots
        h = 0
        while True:
            if RING_SLOTS - (h - ar.load(tail)) >= RING_BATCH:
                for i in range(h, h + RING_BATCH):
                    ar.store(slots + (i & mask) * 8, sa(cache))
                h += RING_BATCH
                ar.store(head, h)
                if perf_counter() > end:
                    break
                ops += RING_BATCH
            else:
                os.sched_yield()
        ar.store(done, 1)
        return ops, t0, end, h
    t = 0                                   # consumer: ACQUIRE load of head, then the slots
    while True:
        h = ar.load(head)
        if h == t:
            if ar.load(done) and ar.load(head) == t:
                return ops, t0, end, t
            os.sched_yield()
            continue
        for i in range(t, h):
            sf(cache, ar.load(slots + (i & mask) * 8))
        if perf_counter() <= end:
            ops += h - t
        t = h
        ar.store(tail, t)


def _pyloop(k, clock, seconds):
    """The host's ceiling: a plain Python loop (list.append + list.pop pairs), counted as
    _threadtest counts."""
    from time import perf_counter
    lst = []
    app, pop = lst.append, lst.pop
    ops = 0
    t0, end = _window(k, clock, seconds)
    while True:
        for _ in range(1000):
            app(1)
            pop()
        if perf_counter() > end:
            return ops, t0, end, ops + 1000
        ops += 1000


def _entered(k):
    return time.perf_counter()


# --- helpers ---------------------------------------------------------------------------------

def host_info():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "loadavg_at_start": list(os.getloadavg())}


# Section 1 runs in one process: it times with this process's CPU time, so that time the host
# gives to other processes (a busy machine) is not counted against either side of a ratio.
_cpu_clock = time.process_time


def _floor(n):
    lst = []
    app, pop = lst.append, lst.pop
    t = _cpu_clock()
    for _ in range(n):
        app(1)
        pop()
    return (_cpu_clock() - t) / n


def _lock_kind(name):
    if name == "slab_cache_lock":
        return "cache_list"
    if name == "frames":
        return "frames"
    tail = name.rsplit(".", 1)[-1]
    return tail if tail in ("slablock", "maglock") else "cpu_magazine"


LOCK_KINDS = ["cache_list", "slablock", "maglock", "cpu_magazine", "frames"]
SHARED_KINDS = ["cache_list", "slablock", "maglock", "frames"]


def _locks_by_kind(m, only=None):
    out = {kind: {"acquisitions": 0, "contended": 0, "spins": 0} for kind in LOCK_KINDS}
    for name, c in m.stats()["locks"].items():
        if only and not any(name.startswith(p) for p in only):
            continue
        row = out[_lock_kind(name)]
        for f in row:
            row[f] += c[f]
    return out


def _per_op(before, after, ops):
    return {kind: {f: (after[kind][f] - before[kind][f]) / max(ops, 1) for f in after[kind]}
            for kind in after}


def _run_rate(m, program, args, ncpus, all_ops=False):
    """Run program(k, clock, *args) on CPUs 0..ncpus-1; (operations in the window, window
    seconds, operations per second), and with all_ops the operations done in all (the window's
    and those that finished after it) last. `clock` is a word of simulated memory (_window)."""
    k = m.cpu(0)
    clock = k.kalloc(8)
    k.atomic_store(clock, 0)
    try:
        res = m.run(program, clock, *args, cpus=list(range(ncpus)))
    finally:
        k.kfree(clock)
    ops = sum(r[0] for r in res)
    window = max(r[2] for r in res) - min(r[1] for r in res)
    out = (ops, window, ops / window)
    return out + (sum(r[3] for r in res),) if all_ops else out


# --- 1. the hot path -------------------------------------------------------------------------

def _pair_time(fn, n):
    t = _cpu_clock()
    fn(n)
    return (_cpu_clock() - t) / n


def hot_path(cfg):
    """Pair costs in ns and as ratios to the list floor measured just before each (medians
    over the rounds), in this process's CPU time."""
    from smpsim import SLAB_CACHE_NOMAGAZINE, SLAB_RECLAIM_ALL, Machine
    n, slow_n, rounds = cfg["pairs"], cfg["slow_pairs"], cfg["rounds"]
    out = {}

    def measure(label, fn, count):
        times, ratios = [], []
        for _ in range(rounds):
            fl = _floor(max(count, 20_000))
            t = _pair_time(fn, count)
            times.append(t)
            ratios.append(t / fl)
            out.setdefault("floor_ns_rounds", []).append(fl * 1e9)
        out[label] = {"ns": statistics.median(times) * 1e9, "ratio": statistics.median(ratios)}

    with Machine(cpus=1, memory="64M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("bench", 64)
        nomag = k.slab_cache_create("bench-nomag", 64, 0, SLAB_CACHE_NOMAGAZINE)
        sa, sf, ka, kf = k.slab_alloc, k.slab_free, k.kalloc, k.kfree

        def hit(count):
            for _ in range(count):
                sf(c, sa(c))

        def kpair(count):
            for _ in range(count):
                kf(ka(64))

        pin = sa(nomag)                     # keeps the NOMAGAZINE slab partial, not freed

        def nomag_pair(count):
            for _ in range(count):
                sf(nomag, sa(nomag))

        miss_batch = 64 * m.magazine_size

        def miss(count):
            # Batches of 64 magazines' worth: allocations past the magazines come from the slab
            # layer, frees fill magazines and push them to the shared list; reclaim (untimed)
            # returns everything to the slabs before the next batch.
            spent = 0.0
            done = 0
            while done < count:
                t = _cpu_clock()
                objs = [sa(c) for _ in range(miss_batch)]
                for a in objs:
                    sf(c, a)
                spent += _cpu_clock() - t
                done += miss_batch
                k.slab_reclaim(SLAB_RECLAIM_ALL)
            return spent / done

        hit(1000)
        measure("hit_pair", hit, n)
        measure("kalloc_kfree_pair", kpair, n)
        measure("nomagazine_pair", nomag_pair, slow_n)
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        times, ratios = [], []
        for _ in range(rounds):
            fl = _floor(20_000)
            t = miss(max(slow_n, miss_batch))
            times.append(t)
            ratios.append(t / fl)
        out["miss_to_slab_pair"] = {"ns": statistics.median(times) * 1e9,
                                    "ratio": statistics.median(ratios),
                                    "batch": miss_batch}
        before = m.cpu_stats()[0]
        miss(miss_batch)
        after = m.cpu_stats()[0]
        out["miss_to_slab_pair"]["hit_fraction"] = \
            (after["hits"] - before["hits"]) / max(after["ops"] - before["ops"], 1)
        sf(nomag, pin)
        m.check()
    # The same hit pair through the Python paths: the twin, no accelerator, debugging mode.
    for label, options in (("hit_pair_python_twin", {"accel": "python"}),
                           ("hit_pair_no_accel", {"accel": "off"}),
                           ("hit_pair_debug", {"debug": True})):
        with Machine(cpus=1, memory="16M", **options) as m:
            k = m.cpu(0)
            c = k.slab_cache_create("bench", 64)
            sa, sf = k.slab_alloc, k.slab_free

            def hit(count):
                for _ in range(count):
                    sf(c, sa(c))
            hit(100)
            measure(label, hit, slow_n)
    return _done(out)


def _done(out):
    out["floor_ns"] = statistics.median(out.pop("floor_ns_rounds"))
    return out


# --- 2 and 3. scaling and lock traffic -------------------------------------------------------

def _workload_run(m, workload, cache, ncpus, seconds):
    """One run of a workload on CPUs 0..ncpus-1 of m: rate and lock traffic per operation."""
    k = m.cpu(0)
    rings = []
    if workload == "xmalloc":
        for _ in range(max(1, ncpus // 2)):
            nbytes = _SLOTS + RING_SLOTS * 8
            r = k.kalloc(nbytes)
            k.memory[r:r + nbytes] = bytes(nbytes)
            if ncpus == 1:
                k.atomic_store(r + _DONE, 2)        # the lone CPU produces and consumes
            rings.append(r)
        args = (cache, rings, seconds)
        program = _xmalloc
    else:
        args = (cache, m.magazine_size, seconds)
        program = _threadtest
    before = _locks_by_kind(m)
    try:
        ops, window, rate, done = _run_rate(m, program, args, ncpus, all_ops=True)
    finally:
        for r in rings:
            k.kfree(r)
    after = _locks_by_kind(m)
    return {"ops": ops, "seconds": window, "ops_per_s": rate, "ops_all": done,
            "locks_per_op": _per_op(before, after, done)}


def scaling(cfg):
    from smpsim import SLAB_CACHE_NOMAGAZINE, Machine
    secs = cfg["seconds"]
    out = {"threadtest": {"magazines": {}, "nomagazine": {}},
           "xmalloc": {"magazines": {}, "nomagazine": {}}}
    with Machine(cpus=max(cfg["cpus"] + [cfg["oversubscribed"]]), memory=MEMORY) as m:
        k = m.cpu(0)
        caches = {"magazines": k.slab_cache_create("bench", 64),
                  "nomagazine": k.slab_cache_create("bench-nomag", 64, 0, SLAB_CACHE_NOMAGAZINE)}
        for workload in ("threadtest", "xmalloc"):
            for variant, cache in caches.items():
                for n in cfg["cpus"]:
                    out[workload][variant][str(n)] = _workload_run(m, workload, cache, n, secs)
        out["oversubscribed"] = oversubscribed(m, caches["magazines"], cfg)
        m.check()
    for workload in ("threadtest", "xmalloc"):
        for variant in ("magazines", "nomagazine"):
            runs = out[workload][variant]
            base = runs["1"]["ops_per_s"]
            for r in runs.values():
                r["speedup"] = r["ops_per_s"] / base if base else 0.0   # (--quick only)
                r["shared_locks_per_op"] = sum(r["locks_per_op"][kind]["acquisitions"]
                                               for kind in SHARED_KINDS)
    out["efficiency_2cpu"] = efficiency(cfg)
    return out


def oversubscribed(m, cache, cfg):
    """threadtest (magazines) at `oversubscribed` CPUs against 2, beside the plain Python loop's
    same ratio (what the host itself keeps when 64 processes share its cores), in interleaved
    rounds; medians."""
    big, secs = cfg["oversubscribed"], cfg["seconds"]
    rounds = []
    for _ in range(cfg["over_rounds"]):
        row = {}
        for n in (2, big):
            row[f"threadtest_{n}"] = _run_rate(m, _threadtest, (cache, m.magazine_size, secs), n)[2]
            row[f"python_{n}"] = _run_rate(m, _pyloop, (secs,), n)[2]
        rounds.append(row)
    med = statistics.median
    tt = [r[f"threadtest_{big}"] / r["threadtest_2"] for r in rounds]
    py = [r[f"python_{big}"] / r["python_2"] for r in rounds]
    return {"cpus": big, "rounds": rounds,
            "ops_per_s_2": med(r["threadtest_2"] for r in rounds),
            f"ops_per_s_{big}": med(r[f"threadtest_{big}"] for r in rounds),
            "ratio_to_2": med(tt), "python_ratio_to_2": med(py),
            "ratio_to_python_ratio": med(t / p for t, p in zip(tt, py))}


def efficiency(cfg):
    """2-CPU efficiency of threadtest (magazines, a batch that fits them) with shared and with
    per-CPU counters, against the plain Python loop's 2-process speed-up, in interleaved rounds."""
    from smpsim import Machine
    secs = max(cfg["seconds"], 0.02)
    rows = {"python_speedup": [], "python_cpu": [], "shared": [], "percpu": []}
    with Machine(cpus=2, memory="64M") as shared, \
            Machine(cpus=2, memory="64M", counters="percpu") as percpu:
        machines = {"shared": shared, "percpu": percpu}
        caches = {name: mm.cpu(0).slab_cache_create("bench", 64) for name, mm in machines.items()}
        for _ in range(cfg["eff_rounds"]):
            py = [_rate_and_cpu(shared, _pyloop, (secs,), n) for n in (1, 2)]
            rows["python_speedup"].append(py[1][0] / py[0][0])
            rows["python_cpu"].append(py[1][1] / py[0][1])
            for name, mm in machines.items():
                tt = [_rate_and_cpu(mm, _threadtest, (caches[name], mm.magazine_size, secs), n)
                      for n in (1, 2)]
                rows[name].append({"rate_1": tt[0][0], "rate_2": tt[1][0],
                                   "speedup": tt[1][0] / tt[0][0],
                                   "cpu_ns_1": tt[0][1], "cpu_ns_2": tt[1][1]})
        shared.check()
        percpu.check()
    med = statistics.median
    out = {"rounds": cfg["eff_rounds"],
           "python_speedup_median": med(rows["python_speedup"]),
           "python_speedup_rounds": rows["python_speedup"],
           "python_cpu_growth_median": med(rows["python_cpu"])}
    for name in ("shared", "percpu"):
        rs = rows[name]
        effs = [r["speedup"] / p for r, p in zip(rs, rows["python_speedup"])]
        out[name] = {"efficiency_median": med(effs), "efficiency_rounds": effs,
                     "speedup_median": med(r["speedup"] for r in rs),
                     "rate_1_median": med(r["rate_1"] for r in rs),
                     "rate_2_median": med(r["rate_2"] for r in rs),
                     "cpu_ns_per_op_1_median": med(r["cpu_ns_1"] for r in rs),
                     "cpu_ns_per_op_2_median": med(r["cpu_ns_2"] for r in rs),
                     "cpu_growth_median": med(r["cpu_ns_2"] / r["cpu_ns_1"] for r in rs)}
    return out


def _rate_and_cpu(m, program, args, n):
    """(operations per second, CPU nanoseconds per operation summed over the run's CPU
    processes). CPU time does not count the time a busy host gives to others: when two CPUs
    share a cache line (the seed's counters), each operation costs more CPU time, however many
    cores the host has free."""
    _, _, rate, done = _run_rate(m, program, args, n, all_ops=True)
    cpu = sum(c["user"] + c["system"] for c in m.last_run["cpus"])
    return rate, cpu / max(done, 1) * 1e9


def depot(cfg):
    """The shared magazine list's traffic with batches larger than two magazines."""
    from smpsim import Machine
    out = {}
    with Machine(cpus=2, memory="64M") as m:
        c = m.cpu(0).slab_cache_create("bench", 64)
        batch = cfg["batch_depot"]
        for n in (1, 2):
            before = _locks_by_kind(m, only=["bench."])
            before_mag = _locks_by_kind(m, only=["slab_magazine."])
            _, _, rate, ops = _run_rate(m, _threadtest, (c, batch, cfg["seconds"]), n,
                                        all_ops=True)
            after = _locks_by_kind(m, only=["bench."])
            after_mag = _locks_by_kind(m, only=["slab_magazine."])
            out[str(n)] = {
                "ops": ops, "ops_per_s": rate, "batch": batch,
                "magazine_size": m.magazine_size,
                "bonwick_bound_per_op": 1 / m.magazine_size,
                "maglock_per_op": (after["maglock"]["acquisitions"]
                                   - before["maglock"]["acquisitions"]) / ops,
                "slablock_per_op": (after["slablock"]["acquisitions"]
                                    - before["slablock"]["acquisitions"]) / ops,
                "magazine_cache_slablock_per_op": (after_mag["slablock"]["acquisitions"]
                                                   - before_mag["slablock"]["acquisitions"]) / ops}
        m.check()
    return out


# --- 4. boot and start ---------------------------------------------------------------------

def start(cfg):
    from smpsim import Machine
    out = {"boot_s": {}, "start_s": {}}
    for size in cfg["boot"]:
        best = None
        for _ in range(cfg["start_repeat"]):
            t = time.perf_counter()
            with Machine(cpus=1, memory=size):
                booted = time.perf_counter() - t
            best = booted if best is None else min(best, booted)
        out["boot_s"][size] = best
    with Machine(cpus=max(cfg["start"]), memory="64M") as m:
        for n in cfg["start"]:
            best = None
            for _ in range(cfg["start_repeat"]):
                t = time.perf_counter()
                entered = m.run(_entered, cpus=list(range(n)))
                took = max(entered) - t
                best = took if best is None else min(best, took)
            out["start_s"][str(n)] = best
        m.check()
    return out


# --- the whole run, targets, report ------------------------------------------------------

def targets(res):
    hp, sc, st = res["hot_path"], res["scaling"], res["start"]
    tt2 = sc["threadtest"]["magazines"]["2"]
    nm2 = sc["threadtest"]["nomagazine"]["2"]
    eff = sc["efficiency_2cpu"]

    def row(what, value, bar, goal, better="low", note=""):
        ok = (lambda v, b: v <= b) if better == "low" else (lambda v, b: v >= b)
        return {"what": what, "value": value, "bar": bar, "goal": goal, "note": note,
                "met": ok(value, bar), "goal_met": goal is not None and ok(value, goal)}
    # The efficiency says little when the host itself gave the second process no core.
    busy = ("inconclusive: the plain Python loop sped up only "
            f"{eff['python_speedup_median']:.2f}x in 2 processes (a busy host)"
            if eff["python_speedup_median"] < 1.3 else "")
    return [
        row("hot path: magazine hit pair / list floor", hp["hit_pair"]["ratio"], 10, 3),
        row("2-CPU efficiency, magazines (seed's shared counters)",
            eff["shared"]["efficiency_median"], 0.75, 0.9, "high", busy),
        row("2-CPU efficiency, magazines (per-CPU counters)",
            eff["percpu"]["efficiency_median"], 0.75, 0.9, "high", busy),
        row("shared-lock acquisitions per op, threadtest 2 CPUs, magazines",
            tt2["shared_locks_per_op"], 0.05, None),
        row("shared-lock acquisitions per op, threadtest 2 CPUs, NOMAGAZINE (about 1)",
            nm2["shared_locks_per_op"], 1.5, None),
        row(f"{sc['oversubscribed']['cpus']} CPUs vs 2 CPUs throughput",
            sc["oversubscribed"]["ratio_to_2"], 0.8, None, "high"),
        row("boot 1 GiB (s)", st["boot_s"].get("1G", float("nan")), 1.0, 0.1),
        row("start 16 CPU processes (s)", st["start_s"].get("16", float("nan")), 0.2, 0.05),
    ] + bench_sim.targets(res, row)


def run_bench(cfg, progress=None):
    say = progress or (lambda msg: None)
    res = {"host": host_info(), "config": cfg}
    say("hot path")
    res["hot_path"] = hot_path(cfg)
    say("scaling and lock traffic")
    res["scaling"] = scaling(cfg)
    say("shared magazine list traffic")
    res["depot"] = depot(cfg)
    say("boot and start")
    res["start"] = start(cfg)
    say("simulated time")
    res["simulated"] = bench_sim.simulated_time(cfg)
    say("controlled runs")
    res["controlled"] = bench_sim.controlled_runs(cfg)
    res["host"]["loadavg_at_end"] = list(os.getloadavg())
    res["targets"] = targets(res)
    return res


def _f(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def markdown(res):
    h, hp, sc, st, dp = res["host"], res["hot_path"], res["scaling"], res["start"], res["depot"]
    L = [f"Host: {h['nproc']} CPUs, {h['cpu_model'] or 'unknown CPU'}, {h['implementation']} "
         f"{h['python']}, load average at start {h['loadavg_at_start'][0]:.2f}, at end "
         f"{h.get('loadavg_at_end', [float('nan')])[0]:.2f}.", "",
         "### Targets", "", "| target | value | bar | goal | met |", "|---|---:|---:|---:|---|"]
    for t in res["targets"]:
        met = ("goal met" if t["goal_met"] else "met") if t["met"] else "missed"
        if t.get("note"):
            met += f" ({t['note']})"
        L.append(f"| {t['what']} | {_f(t['value'], 3)} | {_f(t['bar'])} | {_f(t['goal'])} | "
                 f"{met} |")
    L += ["", f"### 1. Hot path (floor: list.append + list.pop pair = {hp['floor_ns']:.0f} ns)",
          "", "| pair | ns | x floor |", "|---|---:|---:|"]
    for key, label in (("hit_pair", "slab_alloc + slab_free, magazine hit (C accelerator)"),
                       ("kalloc_kfree_pair", "kalloc(64) + kfree, magazine hit"),
                       ("miss_to_slab_pair", "slab_alloc + slab_free, batches past the "
                                             "magazines (slab layer, shared list)"),
                       ("nomagazine_pair", "slab_alloc + slab_free, SLAB_CACHE_NOMAGAZINE"),
                       ("hit_pair_python_twin", "magazine hit, Python twin (accel='python')"),
                       ("hit_pair_no_accel", "magazine hit, no accelerator (accel='off')"),
                       ("hit_pair_debug", "magazine hit, debug=True")):
        v = hp.get(key)
        L.append(f"| {label} | {_f(v['ns'], 0) if v else 'n/a'} | "
                 f"{_f(v['ratio'], 1) if v else 'n/a'} |")
    L += ["", "### 2. Scaling (operations per second; speed-up over 1 CPU)", "",
          "| workload | cache | " + " | ".join(f"{n} CPU" for n in res["config"]["cpus"]) + " |",
          "|---|---|" + "---:|" * len(res["config"]["cpus"])]
    for workload in ("threadtest", "xmalloc"):
        for variant in ("magazines", "nomagazine"):
            runs = sc[workload][variant]
            cells = [f"{_f(runs[str(n)]['ops_per_s'])} ({runs[str(n)]['speedup']:.2f}x)"
                     for n in res["config"]["cpus"]]
            L.append(f"| {workload} | {variant} | " + " | ".join(cells) + " |")
    eff = sc["efficiency_2cpu"]
    ov = sc["oversubscribed"]
    L += ["", f"2-CPU efficiency (median of {eff['rounds']} interleaved rounds; plain Python loop "
              f"speed-up {eff['python_speedup_median']:.2f}):", "",
          "| counters | 1 CPU ops/s | 2 CPU ops/s | speed-up | efficiency | CPU ns/op at 1 CPU "
          "| at 2 CPUs | growth |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("shared", "percpu"):
        e = eff[name]
        L.append(f"| {name} | {_f(e['rate_1_median'])} | {_f(e['rate_2_median'])} | "
                 f"{e['speedup_median']:.2f} | {e['efficiency_median']:.2f} | "
                 f"{e['cpu_ns_per_op_1_median']:.0f} | {e['cpu_ns_per_op_2_median']:.0f} | "
                 f"{e['cpu_growth_median']:.2f} |")
    L += ["", f"(CPU time per operation of the plain Python loop grows "
              f"{eff['python_cpu_growth_median']:.2f}x from 1 to 2 processes on this host.)"]
    L += ["", f"Oversubscription (medians of {len(ov['rounds'])} interleaved rounds): threadtest "
              f"at {ov['cpus']} CPUs {_f(ov['ops_per_s_' + str(ov['cpus'])])} ops/s vs 2 CPUs "
              f"{_f(ov['ops_per_s_2'])} ops/s: ratio {ov['ratio_to_2']:.2f}; the plain Python "
              f"loop's same ratio {ov['python_ratio_to_2']:.2f}; threadtest's ratio over the "
              f"Python loop's {ov['ratio_to_python_ratio']:.2f}.",
          "", "### 3. Lock traffic per operation (acquisitions / contended / spins)", "",
          "| workload | cache | CPUs | " + " | ".join(LOCK_KINDS) + " |",
          "|---|---|---:|" + "---|" * len(LOCK_KINDS)]
    for workload in ("threadtest", "xmalloc"):
        for variant in ("magazines", "nomagazine"):
            for n in res["config"]["cpus"]:
                lp = sc[workload][variant][str(n)]["locks_per_op"]
                cells = [f"{lp[kd]['acquisitions']:.3f} / {lp[kd]['contended']:.4f} / "
                         f"{lp[kd]['spins']:.3f}" for kd in LOCK_KINDS]
                L.append(f"| {workload} | {variant} | {n} | " + " | ".join(cells) + " |")
    L += ["", "Shared magazine list with batches larger than two magazines (threadtest):", "",
          "| CPUs | batch | M | maglock/op | Bonwick 1/M | cache slablock/op | "
          "slab_magazine slablock/op |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for n, d in dp.items():
        L.append(f"| {n} | {d['batch']} | {d['magazine_size']} | {d['maglock_per_op']:.3f} | "
                 f"{d['bonwick_bound_per_op']:.3f} | {d['slablock_per_op']:.3f} | "
                 f"{d['magazine_cache_slablock_per_op']:.3f} |")
    L += ["", "### 4. Boot and start", "", "| what | seconds |", "|---|---:|"]
    for size, s in st["boot_s"].items():
        L.append(f"| boot {size} machine | {s:.4f} |")
    for n, s in st["start_s"].items():
        L.append(f"| start {n} CPU processes (Machine.run until all run the program) | {s:.4f} |")
    sim, cr = res["simulated"], res["controlled"]
    L += ["", "### 5. Simulated time", "", "| hit pair (slab_alloc + slab_free) | ns | x floor |",
          "|---|---:|---:|"]
    for mode in ("host", "simulated"):
        v = sim["hit_pair"][mode]
        L.append(f"| {mode} time | {v['ns']:.0f} | {v['ratio']:.2f} |")
    L += ["", f"The same operations ({sim['runs'][0]['pairs_per_cpu']:,} threadtest pairs per "
              f"CPU, batches of 4) in both times, wall seconds of Machine.run (best of "
              f"{res['config']['sim_rounds']}):", "",
          "| configuration | CPUs | host s | simulated s | simulated / host |",
          "|---|---:|---:|---:|---:|"]
    for r in sim["runs"]:
        L.append(f"| {r['label']} | {r['cpus']} | {r['host_s']:.3f} | {r['simulated_s']:.3f} | "
                 f"{r['ratio']:.2f} |")
    L += ["", "### 6. Controlled runs", "",
          f"{cr['schedules']} controlled 2-CPU runs (random schedules, a new machine each) of "
          f"{cr['ops_per_cpu']} operations per CPU: {cr['points_per_schedule']:,.0f} scheduling "
          f"points each, {cr['us_per_point']:.1f} us of wall time per point, "
          f"{cr['schedule_s'] * 1000:.0f} ms per run with its machine; a thousand take "
          f"{cr['thousand_schedules_s']:.0f} s."]
    return "\n".join(L) + "\n"


def main(argv=None):
    """`smpsim bench [--quick] [--out DIR] [--cluster ADDRESS]`: run, write DIR/bench.json and
    DIR/bench.md (bench-cluster.* with --cluster), print the Markdown. Returns the exit
    status."""
    p = argparse.ArgumentParser(prog="smpsim bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, for tests)")
    p.add_argument("--out", default=os.path.join("results", "bench"), metavar="DIR",
                   help="where bench.json and bench.md go (default: results/bench)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="only this: a sweep of single-CPU points here vs on a Dask cluster "
                        "(local:N or a scheduler's address; smpsim.experiment.clusterbench), "
                        "written to DIR/bench-cluster.json|md")
    args = p.parse_args(argv)
    progress = None if args.quiet else (lambda msg: print(f"bench: {msg}", file=sys.stderr))
    name, render = "bench", markdown
    if args.cluster:
        from smpsim.experiment import cluster, clusterbench
        name, render = "bench-cluster", clusterbench.markdown
        try:
            res = clusterbench.run(args.cluster, clusterbench.CONFIGS[
                "quick" if args.quick else "full"], progress)
        except cluster.ClusterError as e:
            print(f"smpsim bench: --cluster: {e}", file=sys.stderr)
            return 2
    else:
        cfg = dict(CONFIGS["quick" if args.quick else "full"])
        res = run_bench(cfg, progress)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = render(res)
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write(md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
