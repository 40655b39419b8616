"""Running scenarios: one Machine per point (a variant at a CPU count, one repetition), the
workload on every CPU, what the machine counted turned into a result, and the result folder.

A point's life: boot a Machine with the scenario's options; on CPU 0 in this process create the
scenario's caches and let the workload prepare its shared structures; read the counters; run the
workload on every CPU, sampling the machine from the monitor callback (progress bar, live view,
time series); read the counters again; let the workload free its structures, destroy the caches,
and walk the shared state with Machine.check(). Every number in a result is a difference of
counters taken around the run, so the boot and the preparation do not count.

Result folder:

    OUT/scenario.toml           the scenario as run
    OUT/summary.json|csv        one row per run; `partial` true when interrupted
    OUT/sweep.csv|md            one row per (variant, CPU count), means over repetitions
    OUT/plots/*.png             sweep plots (plot.py)
    OUT/run.log                 the log, every CPU's records tagged with the CPU
    OUT/runs/ID/result.json     everything about one run; cpus.csv, locks.csv, timeseries.csv,
                                slabinfo.txt beside it

Interruption (KeyboardInterrupt) stops the current run; its counters so far are written as a
run with error "interrupted", the summary is marked partial, and the KeyboardInterrupt goes on
to the caller.
"""

import datetime
import json
import logging
import os
import sys
import time

import smpsim
from smpsim import workloads
from smpsim.workloads.common import DEFAULT_OPS
from smpsim.experiment import report
from smpsim.experiment.scenario import FLAG_NAMES, ScenarioError

__all__ = ["run_point", "run_points", "write_summary", "result_dir", "Sampler", "Interrupted"]

log = logging.getLogger("smpsim.experiment.runner")


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C; `result` holds what it had done (error "interrupted")."""

    def __init__(self, result):
        super().__init__("interrupted")
        self.result = result


def result_dir(name, base="results"):
    """A new folder results/NAME-YYYYmmdd-HHMMSS (with a suffix if taken)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(base, f"{name}-{stamp}")
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(base, f"{name}-{stamp}-{n}")
    return path


def _expected_ops(workload, cpus):
    """Total operations the run will do, for the progress bar; None when not known."""
    ops, secs = workload.get("ops"), workload.get("seconds")
    name = workload["name"]
    if secs or name in ("pressure", "floor"):
        return None
    ops = ops or DEFAULT_OPS
    if name == "xmalloc":
        prod = workload.get("producers") or max(1, cpus // 2)
        return 2 * ops * prod if cpus > 1 else 2 * ops
    return ops * cpus


class Sampler:
    """The monitor callback of Machine.run: samples the machine every interval into a time
    series, keeps the caches at their fullest (most slabs, then most allocated objects), and
    drives the progress bar or the live view."""

    def __init__(self, label, baseline_ops, bar=None, view=None):
        self.label, self.base_ops, self.bar, self.view = label, baseline_ops, bar, view
        self.start = time.perf_counter()
        self.series, self.peak, self.peak_key, self.peak_frames = [], None, None, 0

    def __call__(self, m, final=False):
        stats = m.stats()
        cpu = stats.get("cpus") or m.cpu_stats()
        t = time.perf_counter() - self.start
        ops = sum(c["ops"] for c in cpu) - self.base_ops
        caches = stats["caches"]
        used = stats["frames"]["total"] - stats["frames"]["free"]
        self.series.append({
            "t": round(t, 4), "ops": ops, "frames_used": used,
            "slabs": sum(c["slabs"] for c in caches.values()),
            "allocated": sum(c["allocated"] for c in caches.values()),
            "cached": sum(c["cached"] for c in caches.values()),
            "hits": sum(c["hits"] for c in cpu), "misses": sum(c["misses"] for c in cpu),
            "reclaim_calls": stats.get("reclaim", {}).get("calls", 0),
        })
        self.peak_frames = max(self.peak_frames, used)
        key = (self.series[-1]["slabs"], self.series[-1]["allocated"])
        if self.peak_key is None or key > self.peak_key:
            self.peak_key, self.peak = key, _annotate(stats)
        if self.bar is not None:
            self.bar.update(max(0, ops - self.bar.n))
        if self.view is not None:
            self.view.draw(stats, cpu, t, ops, self.label, force=final)


def _annotate(stats):
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


def _delta(after, before):
    return {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], (int, float))}


def _machine(point):
    mc = point.machine
    kw = {"magazine_size": mc["magazine_size"]}
    if mc["debug"]:
        kw["debug"] = True
    if mc["counters"] != "shared":
        kw["counters"] = mc["counters"]
    if mc["lock_timeout"]:
        kw["lock_timeout"] = mc["lock_timeout"]
    return smpsim.Machine(point.cpus, mc["memory"], **kw)


def run_point(point, *, pin=False, interval=0.25, timeout=600.0, bar_factory=None, view=None):
    """Runs one point; returns its result dict (with `error` set when the run failed). Ctrl-C
    during the run raises Interrupted carrying the result so far, after the machine is torn
    down; a machine that cannot boot or a workload that cannot be set up on it (memory too
    large or too small) raises ScenarioError."""
    mod = workloads.module(point.workload["name"])
    params = {k: v for k, v in point.workload.items() if k != "name"}
    result = {"scenario": point.scenario.name, "point": point.as_dict(), "error": None,
              "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "host": {"cores": os.cpu_count(), "python": sys.version.split()[0],
                       "loadavg": list(os.getloadavg())}}
    try:
        m = _machine(point)
    except (ValueError, OSError) as e:
        raise ScenarioError(point.scenario.path, "", f"its machine cannot boot: {e}") from None
    with m:
        k = m.cpu(0)
        try:
            caches = [k.slab_cache_create(c["name"], c["size"], c["align"],
                                          sum(FLAG_NAMES[f] for f in c["flags"]))
                      for c in point.caches]
            if hasattr(mod, "prepare"):
                params = mod.prepare(k, params, point.cpus)
        except (ValueError, smpsim.OutOfMemory) as e:
            raise ScenarioError(point.scenario.path, "", f"cannot be set up on {point.cpus} "
                                f"CPUs: {e}") from None
        before, cpu_before = m.stats(), m.cpu_stats()
        total = _expected_ops(point.workload, point.cpus)
        bar = bar_factory(total, point.id) if bar_factory else None
        sampler = Sampler(point.id, sum(c["ops"] for c in cpu_before), bar, view)
        sampler(m)
        outcome, interrupted = None, False
        try:
            outcome = m.run(f"{mod.__name__}:run", params, timeout=timeout, monitor=sampler,
                            interval=interval, pin=pin)
        except KeyboardInterrupt:
            interrupted = True
            result["error"] = "interrupted"
        except smpsim.CPUError as e:
            result["error"] = str(e)
            result["error_detail"] = {"cpu": e.cpu, "reason": e.reason, "inside": e.inside,
                                      "locks": e.locks, "traceback": e.traceback}
            log.error("%s: %s", point.id, e)
        finally:
            if bar is not None:
                bar.update(max(0, sum(c["ops"] for c in m.cpu_stats()) - sampler.base_ops
                               - bar.n))
                bar.close()
                sampler.bar = None
        sampler(m, final=True)
        after, cpu_after = m.stats(), m.cpu_stats()
        result["caches_end"] = _annotate(after)
        result["seed_table"] = report.seed_table(result["caches_end"])
        _collect(result, point, outcome, before, after, cpu_before, cpu_after,
                 getattr(m, "last_run", None) or {}, sampler)
        result["check"] = _clean_up(m, k, mod, params, caches, result["error"])
    if interrupted:
        raise Interrupted(result)
    return result


def _collect(result, point, outcome, before, after, cpu_before, cpu_after, last, sampler):
    """Fills `result` with the numbers of one run (differences of counters around it)."""
    rusage = {c["cpu"]: c for c in last.get("cpus", [])}
    outcome = outcome or [{} for _ in cpu_after]
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
               "hit_rate": d.get("hits", 0) / hm if hm else 0.0}
        for key, v in w.items():
            if key not in row and key not in ("cpu", "workload") and not isinstance(v, dict):
                row[key] = v
        for key in ("pid", "user", "system", "voluntary", "involuntary"):
            row[key] = rusage.get(ca["cpu"], {}).get(key)
        cpus.append(row)
    result["cpus"] = cpus
    result["workers"] = outcome
    ops = sum(c["ops"] for c in cpus)
    elapsed = (last.get("elapsed") or max((c["seconds"] for c in cpus), default=0.0)
               or time.perf_counter() - sampler.start)
    result.update(ops=ops, elapsed=elapsed, throughput=ops / elapsed if elapsed else 0.0)
    locks = {}
    for name, a in after.get("locks", {}).items():
        d = _delta(a, before.get("locks", {}).get(name, {}))
        if any(d.values()):
            locks[name] = d
    result["locks"] = locks
    totals = {key: sum(d.get(key, 0) for d in locks.values())
              for key in ("acquisitions", "contended", "spins")}
    result["lock_totals"] = totals
    result["contended_per_op"] = totals["contended"] / ops if ops else 0.0
    result["spins_per_op"] = totals["spins"] / ops if ops else 0.0
    hits, misses = sum(c["hits"] for c in cpus), sum(c["misses"] for c in cpus)
    maglocks = {n[:-len(".maglock")]: d.get("acquisitions", 0) for n, d in locks.items()
                if n.endswith(".maglock")}
    result["magazines"] = {"hits": hits, "misses": misses,
                           "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
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


def _clean_up(m, k, mod, params, caches, error):
    """Frees what the workload prepared, destroys the scenario's caches and checks the machine.
    Returns "ok" or the list of violations (and of clean-up failures)."""
    problems = []
    try:
        if hasattr(mod, "finish"):
            mod.finish(k, params)
        for c in reversed(caches):
            k.slab_cache_destroy(c)
    except smpsim.SmpsimError as e:
        problems.append(f"clean-up after the run failed: {e}")
        if error is None:
            log.error("clean-up failed: %s", e)
    except AssertionError as e:         # the workload's own check of what the run did
        problems.append(f"the workload's finish() found: {e}")
        log.error("the workload's finish() found: %s", e)
    try:
        m.check()
    except smpsim.InvariantError as e:
        problems.extend(e.violations)
        log.error("check found %d violation(s)", len(e.violations))
    return problems or "ok"


def _write_run(out, result):
    """Writes one run's folder: result.json and its CSVs and slabinfo."""
    d = os.path.join(out, "runs", result["point"]["id"])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    report.write_csv(os.path.join(d, "cpus.csv"), result["cpus"])
    report.write_csv(os.path.join(d, "locks.csv"),
                     [{"lock": n, **v} for n, v in sorted(result["locks"].items())],
                     ["lock", "acquisitions", "contended", "spins"])
    report.write_csv(os.path.join(d, "timeseries.csv"), result["timeseries"])
    with open(os.path.join(d, "slabinfo.txt"), "w") as f:
        f.write(report.slabinfo(result["caches_peak"], result["point"]["machine"]["magazine_size"]))
    return d


def write_summary(out, scenario, results, *, partial, command=""):
    """Writes summary.json|csv and sweep.csv|md for the runs so far; returns the sweep rows."""
    rows = [report.summary_row(r) for r in results]
    sweep = report.aggregate(rows)
    meta = {"scenario": scenario.name, "file": scenario.path, "command": command,
            "written": datetime.datetime.now().isoformat(timespec="seconds"),
            "partial": partial, "runs": rows, "sweep": sweep}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(meta, f, indent=1)
    report.write_csv(os.path.join(out, "summary.csv"), rows, report.SUMMARY_COLUMNS)
    report.write_csv(os.path.join(out, "sweep.csv"), sweep,
                     [k for k, _ in report.SWEEP_COLUMNS] + ["workload", "spins_per_op"])
    with open(os.path.join(out, "sweep.md"), "w") as f:
        title = f"{scenario.name}" + (" (partial: interrupted)" if partial else "")
        f.write(f"# {title}\n\n{report.markdown_table(sweep, report.SWEEP_COLUMNS)}")
    return sweep


def run_points(scenario, points, out, *, pin=False, bar_factory=None, view=None, command="",
               on_result=None):
    """Runs `points` one after another, writing each run's folder and the summary after every
    run. Returns (results, sweep rows). On KeyboardInterrupt the summary is written marked
    partial and the interrupt re-raised."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "scenario.toml"), "w") as f:
        f.write(scenario.text)
    results = []
    try:
        for point in points:
            log.info("run %s: %d CPUs, %s", point.id, point.cpus, point.workload["name"])
            r = run_point(point, pin=pin, interval=scenario.run["interval"],
                          timeout=scenario.run["timeout"], bar_factory=bar_factory, view=view)
            results.append(r)
            _write_run(out, r)
            write_summary(out, scenario, results, partial=True, command=command)
            log.info("run %s: %.0f ops/s, hit rate %.3f, check %s", point.id, r["throughput"],
                     r["magazines"]["hit_rate"], r["check"] if r["check"] == "ok" else "FAILED")
            if on_result:
                on_result(r)
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted):
            results.append(e.result)
            _write_run(out, e.result)
        write_summary(out, scenario, results, partial=True, command=command)
        raise
    sweep = write_summary(out, scenario, results, partial=False, command=command)
    return results, sweep
