"""smpsim bench --cluster ADDRESS: a sweep of single-CPU points run one after another here,
against the same sweep on a Dask cluster (smpsim/experiment/cluster.py), wall time of each.

The sweep: POINTS points of threadtest on a 1-CPU machine (each CPU allocates and frees batches
that fit its magazines), OPS operations each, every point booting its own machine and checking
it afterwards, exactly as `smpsim sweep` runs them. "here" is runner.run_points; "cluster" is
connect() + cluster.run_points + close, so the time a LocalCluster takes to start and stop
counts, as it does for a user of `smpsim sweep --cluster local:N`; the points-only time is
given beside it. The two alternate for ROUNDS rounds (here, cluster, here, ...), and the
speed-up is the median of the per-round ratios (here / cluster), so that a host whose load
changes during the benchmark tilts both sides alike. "Cores used" (the points' CPU time over
their wall time) says how much parallelism the host gave each side: on a host busy with other
work it stays below N and bounds the speed-up. On N idle cores and `local:N` the points run N
at a time; the target for local:2 is a speed-up of at least 1.5.
"""

import os
import statistics
import tempfile
import time

__all__ = ["run", "markdown", "SCENARIO", "CONFIGS"]

SCENARIO = """
name = "cluster-bench"
description = "single-CPU threadtest points, for smpsim bench --cluster"
[machine]
cpus = 1
memory = "16M"
[[caches]]
name = "obj"
size = 64
[workload]
name = "threadtest"
cache = "obj"
batch = 4
ops = {ops}
[run]
interval = 0.25
"""

CONFIGS = {"full": {"points": 8, "ops": 5_000_000, "rounds": 3},
           "quick": {"points": 4, "ops": 2_000, "rounds": 1}}


def _local(scn, points, out):
    from smpsim.experiment import runner
    t0 = time.perf_counter()
    results, _ = runner.run_points(scn, points, out)
    return time.perf_counter() - t0, results


def _cluster(scn, points, out, address):
    from smpsim.experiment import cluster
    t0 = time.perf_counter()
    with cluster.connect(address, echo=None) as conn:
        t1 = time.perf_counter()
        results, _, failures = cluster.run_points(conn.client, scn, points, out, progress=False)
        t2 = time.perf_counter()
    if failures:
        raise RuntimeError(f"bench: {len(failures)} point(s) failed on {address}: "
                           f"{failures[0].error}")
    return time.perf_counter() - t0, t2 - t1, results


def _cpu_s(results):
    """CPU seconds (user + system) the CPU processes of `results` used."""
    return sum((c["user"] or 0.0) + (c["system"] or 0.0) for r in results for c in r["cpus"])


def run(address, cfg, progress=None):
    """Runs the comparison on `address` ("local:N" or a scheduler); returns a dict."""
    from smpsim.experiment import scenario
    say = progress or (lambda msg: None)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="smpsim-clusterbench-") as tmp:
        path = os.path.join(tmp, "cluster-bench.toml")
        with open(path, "w") as f:
            f.write(SCENARIO.format(ops=cfg["ops"]))
        scn = scenario.load(path)
        points = scn.points([1], cfg["points"])
        for i in range(cfg["rounds"]):
            say(f"round {i + 1}/{cfg['rounds']}: {len(points)} points here")
            here, hres = _local(scn, points, os.path.join(tmp, f"here-{i}"))
            say(f"round {i + 1}/{cfg['rounds']}: {len(points)} points on {address}")
            total, pts, cres = _cluster(scn, points, os.path.join(tmp, f"cluster-{i}"), address)
            bad = [r["point"]["id"] for r in hres + cres if r["error"] or r["check"] != "ok"]
            if bad:
                raise RuntimeError(f"bench: runs failed: {', '.join(bad)}")
            rounds.append({"here_s": here, "cluster_s": total, "cluster_points_s": pts,
                           "speedup": here / total, "speedup_points": here / pts,
                           "here_cores": _cpu_s(hres) / here,
                           "cluster_cores": _cpu_s(cres) / pts,
                           "hosts": sorted({r["host"]["worker"] for r in cres})})
    return {"address": address, "points": cfg["points"], "ops": cfg["ops"],
            "cores": os.cpu_count(), "loadavg": list(os.getloadavg()), "rounds": rounds,
            "speedup": statistics.median(r["speedup"] for r in rounds),
            "speedup_points": statistics.median(r["speedup_points"] for r in rounds)}


def markdown(res):
    """The result of run() as a Markdown section."""
    L = [f"## Sweep on a cluster: {res['points']} single-CPU points of {res['ops']:,} "
         f"operations, here vs `{res['address']}`", "",
         f"{res['cores']} cores here, load average {res['loadavg'][0]:.2f} at the end.", "",
         "| round | here, one after another (s) | cluster, start-up included (s) | "
         "cluster, points only (s) | speed-up | speed-up, points only | workers | "
         "cores used here | cores used on the cluster |",
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, r in enumerate(res["rounds"]):
        L.append(f"| {i + 1} | {r['here_s']:.2f} | {r['cluster_s']:.2f} | "
                 f"{r['cluster_points_s']:.2f} | {r['speedup']:.2f} | "
                 f"{r['speedup_points']:.2f} | {len(r['hosts'])} | {r['here_cores']:.2f} | "
                 f"{r['cluster_cores']:.2f} |")
    L += ["", f"Speed-up (median of the rounds): **{res['speedup']:.2f}** with the cluster's "
          f"start-up, {res['speedup_points']:.2f} for the points alone. Cores used: CPU time "
          f"of the points' CPU processes over the wall time of the points, the parallelism "
          f"the host actually gave (1 and N on N idle cores)."]
    return "\n".join(L) + "\n"
