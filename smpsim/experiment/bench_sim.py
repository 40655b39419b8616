"""smpsim bench, the cost of simulated time and of controlled schedules (sections 5 and 6).

5. simulated time   the magazine hit pair in simulated time against the list floor, in this
                    process's CPU time (as section 1 measures it in host time); the wall time of
                    the same operations (each CPU a fixed count of threadtest pairs) in host time
                    and in simulated time at the default quantum, the ratio per configuration.
6. controlled runs  the wall time per scheduling point of controlled 2-CPU runs of a few
                    hundred operations (a random schedule each, a new machine each, as a search
                    runs them), and what a thousand such schedules take.

Every ratio is of numbers measured in this run, one beside the other.
"""

import statistics
import time

__all__ = ["simulated_time", "controlled_runs", "targets"]


def _pairs(k, cache, n):
    """n hit pairs (slab_alloc + slab_free of one object) on cache; process CPU seconds."""
    sa, sf = k.slab_alloc, k.slab_free
    t = time.process_time()
    for _ in range(n):
        sf(cache, sa(cache))
    return time.process_time() - t


def _floor(n):
    lst = []
    app, pop = lst.append, lst.pop
    t = time.process_time()
    for _ in range(n):
        app(1)
        pop()
    return time.process_time() - t


def _threadtest(k, name, pairs, batch):
    """pairs allocation + free pairs on cache `name`, in batches (each CPU the same count)."""
    c = k.cache(name)
    sa, sf = k.slab_alloc, k.slab_free
    objs = [0] * batch
    for _ in range(pairs // batch):
        for i in range(batch):
            objs[i] = sa(c)
        for i in range(batch - 1, -1, -1):
            sf(c, objs[i])
    return k.cycles


def simulated_time(cfg):
    """Section 5: the hit pair in both times against the floor; host and simulated wall time
    of the same threadtest operations at each configuration."""
    from smpsim import SLAB_CACHE_NOMAGAZINE, Machine
    n, rounds = cfg["pairs"], cfg["rounds"]
    out = {"hit_pair": {}, "runs": []}
    for mode in ("host", "simulated"):
        ratios, times = [], []
        with Machine(1, "64M", time=mode) as m:
            k = m.cpu(0)
            c = k.slab_cache_create("hot", 64)
            k.slab_free(c, k.slab_alloc(c))
            for _ in range(rounds):
                floor = _floor(n) / n
                pair = _pairs(k, c, n) / n
                ratios.append(pair / floor)
                times.append(pair)
            m.check()
        out["hit_pair"][mode] = {"ns": statistics.median(times) * 1e9,
                                 "ratio": statistics.median(ratios)}
    pairs = cfg["sim_pairs"]
    for label, cpus, flags, counters in cfg["sim_runs"]:
        walls = {}
        for mode in ("host", "simulated"):
            best = None
            for _ in range(cfg["sim_rounds"]):
                with Machine(cpus, "64M", time=mode, counters=counters) as m:
                    m.cpu(0).slab_cache_create("obj", 128, 0,
                                               SLAB_CACHE_NOMAGAZINE if flags else 0)
                    m.run(_threadtest, "obj", pairs, 4, timeout=600)
                    wall = m.last_run["elapsed"]
                    m.check()
                best = wall if best is None else min(best, wall)
            walls[mode] = best
        out["runs"].append({"label": label, "cpus": cpus, "pairs_per_cpu": pairs,
                            "host_s": walls["host"], "simulated_s": walls["simulated"],
                            "ratio": walls["simulated"] / walls["host"]})
    return out


def _small_run(k, name, ops):
    """A few hundred operations on one CPU: allocations and frees in small batches."""
    c = k.cache(name)
    held = []
    for i in range(ops // 2):
        held.append(k.slab_alloc(c))
        if len(held) > 3 or i % 5 == 4:
            k.slab_free(c, held.pop(0))
    for a in held:
        k.slab_free(c, a)
    return ops


def controlled_runs(cfg):
    """Section 6: wall seconds per scheduling point of controlled 2-CPU runs, each a new
    machine and a random schedule, and the time of cfg["schedules"] of them."""
    from smpsim import Machine
    points, walls = 0, []
    t0 = time.perf_counter()
    for seed in range(cfg["schedules"]):
        with Machine(2, "4M", schedule="random", seed=seed) as m:
            m.cpu(0).slab_cache_create("obj", 100)
            t = time.perf_counter()
            m.run(_small_run, "obj", cfg["schedule_ops"], timeout=600)
            walls.append(time.perf_counter() - t)
            points += m.last_schedule.steps
            m.check()
    total = time.perf_counter() - t0
    run_s = sum(walls)
    return {"schedules": cfg["schedules"], "ops_per_cpu": cfg["schedule_ops"],
            "points": points, "points_per_schedule": points / cfg["schedules"],
            "us_per_point": run_s / points * 1e6,
            "schedule_s": total / cfg["schedules"],
            "thousand_schedules_s": total / cfg["schedules"] * 1000}


def targets(res, row):
    """The rows of section 5 and 6 for the targets table (row(what, value, bar, goal))."""
    st, cr = res["simulated"], res["controlled"]
    rows = [row("hot path in simulated time: hit pair / list floor",
                st["hit_pair"]["simulated"]["ratio"], 5, None)]
    for r in st["runs"]:
        rows.append(row(f"simulated / host wall time, {r['label']}, {r['cpus']} CPUs",
                        r["ratio"], 3, None))
    rows.append(row("controlled 2-CPU run: wall time per scheduling point (us)",
                    cr["us_per_point"], 20, None))
    rows.append(row(f"a thousand controlled 2-CPU runs of {cr['ops_per_cpu']} operations "
                    f"per CPU (s)", cr["thousand_schedules_s"], 60, None))
    return rows
