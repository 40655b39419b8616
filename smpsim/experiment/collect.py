"""A run's result out of what the machine counted: differences of counters taken around the run,
per CPU and in total, the locks (with hold and wait times when the engine measures them), the
magazines, reclaim, frames, the merged latency histograms of the workload's sampled operations,
and what the CPU processes and the host did meanwhile.

Every number is a difference of counters read before and after Machine.run, so the boot and the
workload's preparation do not count.

Time. In host time, throughput is operations over the host seconds from the CPUs' start gate to
the last CPU finishing (Machine.last_run's elapsed). In simulated time it is operations over the
run's simulated span: from the common start clock (the start gate sets every CPU's clock to the
latest clock of the machine, the largest of stats()["time"]["cycles"] before the run) to the
latest CPU clock at its end, in cycles over the cost model's hz. A simulated-time run also
reports, per operation: the cycles its CPUs' clocks advanced (cycles_per_op, summed over the
CPUs: the simulated CPU time an operation costs), the lines taken from another CPU's cache
(transfers_per_op), and the lock cycles waited and held (lock_totals' wait_cycles_per_op and
hold_cycles_per_op). The host's numbers stay beside them: `elapsed` (host seconds) and
`host_throughput` (operations per host second). result["time"] says which time `throughput` is
in ({"mode", "hz", "quantum", "cost", "start", "end"}), and `throughput_unit` says it in words.
"""

import time

from smpsim.workloads.latency import Histogram

__all__ = ["annotate", "collect", "merge_latency", "option_numbers", "time_of",
           "throughput_unit", "LOCK_TIMES", "UNITS"]

# Lock time counters the engine may keep per lock: host nanoseconds, and in simulated time
# cycles. Each is reported when present, per operation and per acquisition.
LOCK_TIMES = ("wait_ns", "hold_ns", "wait_cycles", "hold_cycles")
_LOCK_COUNTS = ("acquisitions", "contended", "spins")
# What a throughput is in, by time: every table, plot and the live view says it this way.
UNITS = {"simulated": "ops / simulated s", "host": "ops / s (host)"}
# Keys of a workload's result dict that every table has already; the others are its own.
_COMMON_KEYS = {"workload", "cpu", "ops", "allocs", "frees", "failed", "remote_frees", "corrupt",
                "bytes", "seconds", "latency", "role"}


def annotate(stats):
    """The caches of a stats() dict, each with `has_magazines` (per-CPU magazines: not
    NOMAGAZINE) and `shared` (full magazines on its shared list) added."""
    locks, top = stats.get("locks", {}), stats.get("magazines", {})
    out = {}
    for name, c in stats["caches"].items():
        flags = c.get("flags")
        has = not flags & 1 if flags is not None else f"{name}.cpu0" in locks
        shared = c.get("magazines")
        if not isinstance(shared, int):
            shared = top.get(name, {}).get("shared", 0)
        out[name] = dict(c, has_magazines=has, shared=shared)
    return out


def time_of(result):
    """"host" or "simulated": the time a run result's throughput is in (results written before
    smpsim measured simulated time are host time)."""
    return (result.get("time") or {}).get("mode", "host")


def throughput_unit(time):
    """The unit of a throughput in `time` ("host" or "simulated"), as the tables say it."""
    return UNITS[time]


def _delta(after, before):
    return {k: after[k] - before.get(k, 0) for k in after
            if isinstance(after[k], (int, float)) and not isinstance(after[k], bool)}


def merge_latency(dicts):
    """{"kind/path": Histogram} merged from latency dicts ({"kind/path": Histogram.as_dict()})."""
    out = {}
    for d in dicts:
        for key, h in (d or {}).items():
            h = Histogram.from_dict(h)
            if key in out:
                out[key].merge(h)
            else:
                out[key] = h
    return dict(sorted(out.items()))


def _latency(outcome):
    """The run's latency section: per "kind/path" the summary and the histogram; "all" merges
    every kind and path. The histograms are taken out of the workers' results."""
    merged = merge_latency([w.pop("latency", None) for w in outcome if isinstance(w, dict)])
    out = {key: dict(h.summary(), histogram=h.as_dict()) for key, h in merged.items()}
    if merged:
        everything = None
        for h in merged.values():
            everything = Histogram(h.unit) if everything is None else everything
            everything.merge(h)
        out["all"] = dict(everything.summary(), histogram=everything.as_dict())
    return out


def _locks(before, after, ops):
    """Per lock its counters' differences (locks not touched left out), and their totals with
    per-operation and per-acquisition figures for the time counters present."""
    locks = {}
    for name, a in after.get("locks", {}).items():
        d = _delta(a, before.get("locks", {}).get(name, {}))
        if any(d.values()):
            for key in LOCK_TIMES:
                if key in d:
                    d[f"{key}_per_acq"] = d[key] / d["acquisitions"] if d.get(
                        "acquisitions") else 0.0
            locks[name] = d
    present = [k for k in LOCK_TIMES if any(k in d for d in locks.values())]
    totals = {key: sum(d.get(key, 0) for d in locks.values()) for key in _LOCK_COUNTS + tuple(
        present)}
    acq = totals["acquisitions"]
    for key in present:
        totals[f"{key}_per_op"] = totals[key] / ops if ops else 0.0
        totals[f"{key}_per_acq"] = totals[key] / acq if acq else 0.0
    return locks, totals


def _extra_columns(workload_columns, outcome):
    """The workload's own columns: its COLUMNS (None: it declares none), else every number its
    results carry beyond the common keys (summed over the CPUs)."""
    if workload_columns is not None:
        return [list(c) for c in workload_columns]
    keys = []
    for w in outcome:
        for key, v in (w or {}).items():
            if (key not in _COMMON_KEYS and key not in keys and isinstance(v, (int, float))
                    and not isinstance(v, bool)):
                keys.append(key)
    return [[k, k.replace("_", " ")] for k in keys]


def _clock(before, after):
    """The run's time: mode, hz, quantum and the cost model in use, and in simulated time its
    start (the common start clock) and end (the latest CPU clock after it), in cycles."""
    tb, ta = before.get("time") or {}, after.get("time") or {}
    clock = {"mode": ta.get("mode", "host"), "hz": ta.get("hz"), "quantum": ta.get("quantum")}
    if clock["mode"] == "simulated":
        clock["start"] = max(tb.get("cycles") or [0])
        clock["end"] = max([clock["start"]] + list(ta.get("cycles") or []))
    return clock


def collect(result, point, outcome, before, after, cpu_before, cpu_after, last, sampler,
            workload_columns=None):
    """Fills `result` with the numbers of one run (differences of counters around it)."""
    rusage = {c["cpu"]: c for c in last.get("cpus", [])}
    outcome = outcome or [{} for _ in cpu_after]
    clock = _clock(before, after)
    result["latency"] = _latency(outcome)
    cpus = []
    for cb, ca, w in zip(cpu_before, cpu_after, outcome):
        d = _delta(ca, cb)
        hm = d.get("hits", 0) + d.get("misses", 0)
        secs = w.get("seconds") or 0.0
        ops = d.get("ops", 0) or w.get("ops", 0)      # the floor workload counts its own
        row = {"cpu": ca["cpu"], "ops": ops, "seconds": secs,
               "throughput": ops / secs if secs else 0.0,
               "allocs": d.get("allocs", 0), "frees": d.get("frees", 0),
               "hits": d.get("hits", 0), "misses": d.get("misses", 0),
               "hit_rate": d.get("hits", 0) / hm if hm else 0.0,
               "depot": d.get("depot", 0), "slab": d.get("slab", 0), "frames": d.get("frames", 0)}
        if clock["mode"] == "simulated":          # the clock jumped to the start at the gate
            row["cycles"] = max(0, ca.get("cycles", 0) - clock["start"])
            row["transfers"] = d.get("transfers", 0)
        for key, v in w.items():
            if key not in row and key not in ("cpu", "workload") and not isinstance(v, dict):
                row[key] = v
        for key in ("pid", "user", "system", "voluntary", "involuntary"):
            row[key] = rusage.get(ca["cpu"], {}).get(key)
        cpus.append(row)
    result["cpus"] = cpus
    result["workers"] = outcome
    result["columns"] = _extra_columns(workload_columns, outcome)
    ops = sum(c["ops"] for c in cpus)
    host_cpus = None if clock["mode"] == "simulated" else cpus
    elapsed = (last.get("elapsed") or max((c["seconds"] for c in host_cpus or []), default=0.0)
               or time.perf_counter() - sampler.start)
    host_tp = ops / elapsed if elapsed else 0.0
    result.update(ops=ops, elapsed=elapsed, host_throughput=host_tp, time=clock,
                  throughput_unit=UNITS[clock["mode"]])
    if clock["mode"] == "simulated":
        span = clock["end"] - clock["start"]
        sim = span / clock["hz"]
        result.update(sim_seconds=sim, cycles=span, throughput=ops / sim if sim else 0.0,
                      cycles_per_op=sum(c["cycles"] for c in cpus) / ops if ops else 0.0,
                      transfers_per_op=sum(c["transfers"] for c in cpus) / ops if ops else 0.0)
    else:
        result.update(throughput=host_tp)
    result["locks"], totals = _locks(before, after, ops)
    result["lock_totals"] = totals
    result["contended_per_op"] = totals["contended"] / ops if ops else 0.0
    result["spins_per_op"] = totals["spins"] / ops if ops else 0.0
    hits, misses = sum(c["hits"] for c in cpus), sum(c["misses"] for c in cpus)
    maglocks = {n[:-len(".maglock")]: d.get("acquisitions", 0) for n, d in result["locks"].items()
                if n.endswith(".maglock")}
    result["magazines"] = {"hits": hits, "misses": misses,
                           "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
                           "misses_by_path": {p: sum(c[p] for c in cpus)
                                              for p in ("depot", "slab", "frames")},
                           "shared_list_ops": sum(maglocks.values()),
                           "shared_list_by_cache": maglocks}
    rb, ra = before.get("reclaim", {}), after.get("reclaim", {})
    result["reclaim"] = {"calls": ra.get("calls", 0) - rb.get("calls", 0),
                         "frames": ra.get("frames", 0) - rb.get("frames", 0)}
    fb, fa = before["frames"], after["frames"]
    result["frames"] = {"total": fa["total"], "used_before": fb["total"] - fb["free"],
                        "used_after": fa["total"] - fa["free"],
                        "peak_used": max(sampler.peak_frames, fa["total"] - fa["free"])}
    result["timeseries"] = sampler.series
    result["caches_peak"] = sampler.peak or result["caches_end"]
    result["options"] = option_numbers(point, before, after, cpus)


def option_numbers(point, before, after, cpus):
    """What the options beyond the seed did in a run: constructor and destructor calls (and
    constructor calls per allocation, when a cache has a constructor), magazine resizes, reaps,
    and the magazine size each of the scenario's caches ended with."""
    cb, ca = before["caches"], after["caches"]
    caches = getattr(point, "caches", None) or []
    made = {c["name"] for c in caches}
    count = {key: sum(c.get(key, 0) - cb.get(n, {}).get(key, 0) for n, c in ca.items())
             for key in ("constructed", "destructed", "resizes")}
    allocs = sum(c["allocs"] for c in cpus)
    with_ctor = any(c.get("ctor") for c in caches)
    rb, ra = before.get("reap", {}), after.get("reap", {})
    return {**count,
            "ctor_per_alloc": count["constructed"] / allocs if with_ctor and allocs else None,
            "reap_calls": ra.get("calls", 0) - rb.get("calls", 0),
            "reap_frames": ra.get("frames", 0) - rb.get("frames", 0),
            "reap_magazines": ra.get("magazines", 0) - rb.get("magazines", 0),
            "magazine_sizes": {n: ca[n].get("magazine_size") for n in made if n in ca}}
