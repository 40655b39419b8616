"""The options beyond the seed, each off and on, in simulated time: the same workloads as the
option scenarios (constructors.toml, resize.toml, reap.toml, empty_magazines.toml,
cpu_magazine_cache.toml, slab_locks.toml, counters.toml), with a fixed number of operations per
CPU instead of host seconds, on machines in simulated time (Machine(time="simulated")), so that
throughput is operations per simulated second and lock contention is the cycles CPUs spent
waiting, whatever else the host is doing. Colouring is left out: what it changes is measured by
the walk workload's own model of a hardware cache (colour.toml), the same in either time.

Covers, for each option: simulated throughput, lock wait cycles and contended acquisitions per
operation, frames held when the run ends, constructor calls per allocation, the magazine size
reached, the frames reaps freed. Every option runs twice, with the seed's shared counters and
with per-CPU counters: in simulated time every operation's two atomic updates of the cache
descriptor's shared counter line, which each CPU must take from the last one to write it, bound
the throughput of every CPU together, so that what the magazine layer's options change shows
in full only with per-CPU counters. Writes OUT/options_simulated.csv and
OUT/options_simulated.md.

    smpsim run scenarios/options_simulated.py        (or: python scenarios/options_simulated.py)
"""

import os
import sys

import smpsim

CPUS = 8
MEMORY = "64M"
OPS = 4000                  # per CPU
CTOR = dict(ctor="smpsim.workloads.objects:construct", dtor="smpsim.workloads.objects:destruct")
MIX = [[16, 30], [32, 20], [64, 20], [128, 10], [256, 8], [512, 5], [1024, 3]]

# (option, workload, parameters, [(variant, machine options, caches: (name, size, flags, extra))])
EXPERIMENTS = [
    ("constructors", "threadtest", {"cache": "obj", "batch": 16, "ops": OPS}, [
        ("no magazines", {}, [("obj", 128, smpsim.SLAB_CACHE_NOMAGAZINE, CTOR)]),
        ("magazines", {}, [("obj", 128, 0, CTOR)])]),
    ("resize_magazines", "threadtest", {"cache": "obj", "batch": 32, "ops": OPS}, [
        ("fixed", {}, [("obj", 128, 0, {})]),
        ("resizing", {"resize_magazines": True}, [("obj", 128, 0, {})])]),
    ("reap_every", "burst", {"cache": "obj", "burst": 2000, "batch": 16, "ops": OPS}, [
        ("no reaping", {}, [("obj", 256, 0, {})]),
        ("reap every 0.2 ms", {"reap_every": 0.0002}, [("obj", 256, 0, {})])]),
    ("empty_magazines", "kalloc_mix", {"sizes": MIX, "live": 64, "ops": OPS}, [
        ("seed", {}, []), ("empty list", {"empty_magazines": True}, [])]),
    ("cpu_magazine_cache", "kalloc_mix", {"sizes": MIX, "live": 64, "ops": OPS}, [
        ("seed", {}, []), ("per-CPU magazine cache", {"cpu_magazine_cache": True}, [])]),
    ("slab_locks", "threadtest", {"cache": "obj", "batch": 64, "order": "random", "ops": OPS}, [
        ("cache slablock", {}, [("obj", 100, smpsim.SLAB_CACHE_NOMAGAZINE, {})]),
        ("slab locks", {"slab_locks": True}, [("obj", 100, smpsim.SLAB_CACHE_NOMAGAZINE, {})])]),
    ("counters", "threadtest", {"cache": "obj", "batch": 4, "ops": OPS}, [
        ("shared", {}, [("obj", 128, 0, {})]),
        ("percpu", {"counters": "percpu"}, [("obj", 128, 0, {})])]),
]


def measure(workload, params, machine, caches, cpus=CPUS):
    """One run in simulated time; the numbers of the README's table."""
    with smpsim.Machine(cpus, MEMORY, time="simulated", **machine) as m:
        k = m.cpu(0)
        made = [k.slab_cache_create(n, s, 0, f, **extra) for n, s, f, extra in caches]
        before = m.stats()
        results = m.run(f"smpsim.workloads.{workload}:run", params, timeout=1200)
        after = m.stats()
        row = _numbers(before, after, results, [c[0] for c in caches])
        for c in made:
            k.slab_cache_destroy(c)
        m.check()
    return row


def _numbers(before, after, results, names):
    ops = sum(r["ops"] for r in results)
    allocs = sum(r["allocs"] for r in results)
    cycles = max(after["time"]["cycles"]) - max(before["time"]["cycles"])
    seconds = cycles / after["time"]["hz"]

    def total(key):
        return sum(v.get(key, 0) - before["locks"].get(n, {}).get(key, 0)
                   for n, v in after["locks"].items())

    def cache(name, key):
        return after["caches"][name][key] - before["caches"].get(name, {}).get(key, 0)
    constructed = sum(cache(n, "constructed") for n in after["caches"])
    return {"ops": ops, "simulated_ms": seconds * 1e3,
            "throughput": ops / seconds if seconds else 0.0,
            "wait_cycles_per_op": total("wait_cycles") / ops,
            "contended_per_op": total("contended") / ops,
            "frames_held": after["frames"]["total"] - after["frames"]["free"],
            "ctor_per_alloc": constructed / allocs if allocs else 0.0,
            "magazine_size": max([after["caches"][n]["magazine_size"] for n in names] or [0]),
            "reap_frames": after["reap"]["frames"] - before["reap"]["frames"]}


def run(out=None):
    """Every experiment, off and on; the table (and files under `out` when given)."""
    rows = []
    for option, workload, params, variants in EXPERIMENTS:
        for counters in (("shared",) if option == "counters" else ("shared", "percpu")):
            for label, machine, caches in variants:
                machine = dict(machine, counters=machine.get("counters", counters))
                rows.append({"option": option, "variant": label,
                             "counters": machine["counters"],
                             **measure(workload, params, machine, caches)})
    if out:
        from smpsim.experiment import report
        os.makedirs(out, exist_ok=True)
        report.write_csv(os.path.join(out, "options_simulated.csv"), rows)
        with open(os.path.join(out, "options_simulated.md"), "w") as f:
            f.write(table(rows))
    return {"cpus": CPUS, "ops_per_cpu": OPS, "rows": rows}


COLUMNS = [("option", "option"), ("variant", "variant"), ("counters", "counters"),
           ("throughput", "ops per simulated s"),
           ("wait_cycles_per_op", "lock wait cycles/op"), ("contended_per_op", "contended/op"),
           ("frames_held", "frames held"), ("ctor_per_alloc", "ctor calls/alloc"),
           ("magazine_size", "magazine size"), ("reap_frames", "frames reaped")]


def table(rows):
    from smpsim.experiment import tables
    return tables.markdown_table(rows, COLUMNS)


if __name__ == "__main__":
    print(table(run(sys.argv[1] if len(sys.argv) > 1 else None)["rows"]))
