"""Running scenarios: one Machine per point (a variant at a CPU count, one repetition), the
workload on every CPU, what the machine counted turned into a result, and the result folder.
A point's machine runs in the scenario's time (machine.time, quantum and [cost] are passed on as
Machine's time, quantum and cost): in simulated time its throughput is per simulated second
(collect.py).

A point's life: boot a Machine with the scenario's options; on CPU 0 in this process create the
scenario's caches and let the workload prepare its shared structures; read the counters; run the
workload on every CPU, sampling the machine from the monitor callback (progress bar, live view,
time series); read the counters again; let the workload free its structures, destroy the caches,
and walk the shared state with Machine.check(). Every number in a result is a difference of
counters taken around the run, so the boot and the preparation do not count.

Before the first run, check_setup() boots a machine for every distinct configuration of the
points, creates its caches and lets the workload prepare and finish: a sweep whose last point
cannot be set up fails before the first one runs, and before its result folder is touched.
run_point() is the work of one point: it takes a Point and returns the run's result, a plain
dict (JSON-ready, picklable), so that another executor can call it anywhere.

Result folder (claimed through folder.py, so that it never holds two runs' data):

    OUT/scenario.toml           the scenario as run (overrides noted at the top)
    OUT/summary.json|csv        one row per run; `partial` true when interrupted
    OUT/sweep.csv|md            one row per (variant, CPU count): means over repetitions with
                                their variation; sweep.md also the latency table
    OUT/latency.csv             latency percentiles per (variant, CPU count, kind, path)
    OUT/plots/*.png             sweep plots (plot.py)
    OUT/run.log                 the log, every CPU's records tagged with the CPU
    OUT/runs/ID/result.json     everything about one run; cpus.csv, locks.csv, latency.csv,
                                timeseries.csv, slabinfo.txt beside it

Interruption (KeyboardInterrupt) stops the current run; its counters so far are written as a
run with error "interrupted", the summary is marked partial, and the KeyboardInterrupt goes on
to the caller.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from typing import Any, Callable, Sequence

import smpsim
from smpsim import workloads
from smpsim.workloads.common import DEFAULT_OPS
from smpsim.experiment import folder, host, report, tables
from smpsim.experiment.collect import annotate, collect
from smpsim.experiment.scenario import FLAG_NAMES, Point, Scenario, ScenarioError

__all__ = ["run_point", "run_points", "check_setup", "write_run", "write_summary",
           "scenario_text", "result_dir", "Sampler", "Interrupted"]

log = logging.getLogger("smpsim.experiment.runner")

result_dir = folder.result_dir


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (or SIGTERM: `how` is then the interrupt's own "terminated");
    `result` holds what it had done (error "interrupted")."""

    def __init__(self, result, how="interrupted"):
        super().__init__(how)
        self.result = result


def _expected_ops(workload, cpus):
    """Total operations the run will do, for the progress bar; None when not known."""
    ops, secs = workload.get("ops"), workload.get("seconds")
    name = workload["name"]
    if secs or name not in workloads.WORKLOADS or name in ("pressure", "floor"):
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

    def __init__(self, label, baseline_ops, bar=None, view=None, clock=None):
        self.label, self.base_ops, self.bar, self.view = label, baseline_ops, bar, view
        self.start = time.perf_counter()
        self.series, self.peak, self.peak_key, self.peak_frames = [], None, None, 0
        self.clock = clock      # simulated time: (the common start clock, hz); None in host time

    def sim_seconds(self, stats):
        """Simulated seconds from the run's start to the latest CPU clock in `stats` (None in
        host time)."""
        if self.clock is None:
            return None
        start, hz = self.clock
        return max(0, max(stats["time"]["cycles"]) - start) / hz

    def __call__(self, m, draw=True):
        stats = m.stats()
        cpu = stats.get("cpus") or m.cpu_stats()
        t = time.perf_counter() - self.start
        sim = self.sim_seconds(stats)
        ops = sum(c["ops"] for c in cpu) - self.base_ops
        caches = stats["caches"]
        used = stats["frames"]["total"] - stats["frames"]["free"]
        self.series.append({
            "t": round(t, 4), **({"sim_t": sim} if sim is not None else {}),
            "ops": ops, "frames_used": used,
            "slabs": sum(c["slabs"] for c in caches.values()),
            "allocated": sum(c["allocated"] for c in caches.values()),
            "cached": sum(c["cached"] for c in caches.values()),
            "hits": sum(c["hits"] for c in cpu), "misses": sum(c["misses"] for c in cpu),
            "reclaim_calls": stats.get("reclaim", {}).get("calls", 0),
        })
        self.peak_frames = max(self.peak_frames, used)
        key = (self.series[-1]["slabs"], self.series[-1]["allocated"])
        if self.peak_key is None or key > self.peak_key:
            self.peak_key, self.peak = key, annotate(stats)
        if self.bar is not None:
            self.bar.update(max(0, ops - self.bar.n))
        if self.view is not None and draw:
            self.view.draw(stats, cpu, t, ops, self.label, sim_seconds=sim)


def _machine(point):
    """The point's Machine: every [machine] key passed on as a keyword argument."""
    kw = {k: v for k, v in point.machine.items() if k != "cpus"}
    return smpsim.Machine(point.cpus, **kw)


def _set_up(point, m, wl, params):
    """Creates the point's caches on CPU 0 of `m` and lets the workload prepare; returns (the
    caches, the parameters prepare returned). ScenarioError when the machine cannot hold them."""
    k = m.cpu(0)
    try:
        caches = [k.slab_cache_create(c["name"], c["size"], c["align"],
                                      sum(FLAG_NAMES[f] for f in c["flags"]),
                                      ctor=c.get("ctor"), dtor=c.get("dtor"))
                  for c in point.caches]
        return caches, wl.prepare(k, params, point.cpus)
    except (ValueError, smpsim.OutOfMemory) as e:
        raise ScenarioError(point.scenario.path, "", f"cannot be set up on {point.cpus} "
                            f"CPUs: {e}") from None


def _boot(point):
    try:
        return _machine(point)
    except (ValueError, OSError) as e:
        raise ScenarioError(point.scenario.path, "", f"its machine cannot boot: {e}") from None


def _workload(point):
    """(the Workload, its parameters) of a point."""
    wl = workloads.find(point.workload["name"])
    return wl, {k: v for k, v in point.workload.items() if k != "name"}


def check_setup(points):
    """Boots a machine for every distinct configuration among `points`, creates the caches, lets
    the workload prepare and finish, and destroys the caches: ScenarioError (from the first that
    fails) when a point could not be set up. Nothing else changes. (The invariant checker is
    left to the runs: it would cost as much as a short run.)"""
    seen = set()
    for point in points:
        key = json.dumps([point.cpus, point.machine, point.caches, point.workload],
                         sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        wl, params = _workload(point)
        with _boot(point) as m:
            k = m.cpu(0)
            caches, params = _set_up(point, m, wl, params)
            try:
                wl.finish(k, params)
                for c in reversed(caches):
                    k.slab_cache_destroy(c)
            except smpsim.SmpsimError as e:
                raise ScenarioError(point.scenario.path, "", f"cannot be set up on "
                                    f"{point.cpus} CPUs: its clean-up failed: {e}") from None


def run_point(point: Point, *, pin: bool = False, interval: float = 0.25,
              timeout: float = 600.0, bar_factory: Callable[[int | None, str], Any] | None = None,
              view: Any = None) -> dict[str, Any]:
    """Runs one point; returns its result dict (with `error` set when the run failed). Ctrl-C
    during the run raises Interrupted carrying the result so far, after the machine is torn
    down; a machine that cannot boot or a workload that cannot be set up on it (memory too
    large or too small) raises ScenarioError."""
    wl, params = _workload(point)
    spec = wl.params or {}
    result = {"scenario": point.scenario.name, "point": point.as_dict(), "error": None,
              "workload": {"ref": wl.ref, "name": wl.name, "kind": wl.kind},
              "seed": params.get("seed", spec["seed"].default if "seed" in spec else None),
              "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "host": host.describe()}
    with _boot(point) as m:
        k = m.cpu(0)
        caches, params = _set_up(point, m, wl, params)
        before, cpu_before = m.stats(), m.cpu_stats()
        total = _expected_ops(point.workload, point.cpus)
        bar = bar_factory(total, point.id) if bar_factory else None
        sim = before.get("time", {}).get("mode") == "simulated"
        sampler = Sampler(point.id, sum(c["ops"] for c in cpu_before), bar, view,
                          (max(before["time"]["cycles"]), before["time"]["hz"]) if sim else None)
        sampler(m, draw=False)
        outcome, interrupted = None, False
        interference = host.Interference()
        try:
            outcome = m.run(wl.program, params, timeout=timeout, monitor=sampler,
                            interval=interval, pin=pin)
        except KeyboardInterrupt as e:
            interrupted = e.args[0] if e.args else "interrupted"
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
        if outcome is not None and result["error"] is None:
            bad = _bad_outcome(outcome)
            if bad:
                result["error"] = f"workload {wl.ref}: {bad}"
                log.error("%s: %s", point.id, result["error"])
                outcome = None
        last = getattr(m, "last_run", None) or {}
        result["host"]["interference"] = interference.stop(
            sum((c.get("user") or 0) + (c.get("system") or 0) for c in last.get("cpus", [])))
        sampler(m, draw=False)
        after, cpu_after = m.stats(), m.cpu_stats()
        result["caches_end"] = annotate(after)
        result["seed_table"] = report.seed_table(result["caches_end"])
        collect(result, point, outcome, before, after, cpu_before, cpu_after, last, sampler,
                wl.columns)
        if sim:
            result["time"]["cost"] = dict(m.cost)
        if view is not None:                 # the last frame: the run's own numbers
            view.draw(after, cpu_after, result["elapsed"], result["ops"], point.id, force=True,
                      sim_seconds=result.get("sim_seconds"))
        result["check"] = _clean_up(m, k, wl, params, caches, result["error"])
    if interrupted:
        raise Interrupted(result, interrupted)
    return result


def _bad_outcome(outcome):
    """What is wrong with the values a workload's run() returned on the CPUs (a dict with at
    least the numbers `ops` and `seconds` each), or None."""
    for cpu, w in enumerate(outcome):
        if not isinstance(w, dict):
            return (f"run() returned {type(w).__name__} on CPU {cpu}; expected a dict with at "
                    f"least 'ops' and 'seconds' (numbers)")
        for key in ("ops", "seconds"):
            v = w.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return (f"run() returned a dict without a number under {key!r} on CPU {cpu} "
                        f"(got {v!r}); expected at least 'ops' and 'seconds'")
    return None


def _clean_up(m, k, wl, params, caches, error):
    """Frees what the workload prepared, destroys the scenario's caches and checks the machine.
    Returns "ok" or the list of violations (and of clean-up failures)."""
    problems = []
    try:
        wl.finish(k, params)
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


def write_run(out, result):
    """Writes one run's folder: result.json and its CSVs and slabinfo."""
    d = os.path.join(out, "runs", result["point"]["id"])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    report.write_csv(os.path.join(d, "cpus.csv"), result["cpus"])
    report.write_csv(os.path.join(d, "locks.csv"),
                     [{"lock": n, **v} for n, v in sorted(result["locks"].items())],
                     tables.lock_columns(result["locks"]))
    report.write_csv(os.path.join(d, "latency.csv"), tables.latency_rows(result),
                     tables.LATENCY_CSV)
    report.write_csv(os.path.join(d, "timeseries.csv"), result["timeseries"])
    with open(os.path.join(d, "slabinfo.txt"), "w") as f:
        f.write(report.slabinfo(result["caches_peak"], result["point"]["machine"]["magazine_size"]))
    return d


def write_summary(out, scenario, results, *, partial, command=""):
    """Writes summary.json|csv, sweep.csv|md and latency.csv for the runs so far; returns the
    sweep rows."""
    rows = [tables.summary_row(r) for r in results]
    sweep = tables.aggregate(rows)
    latency = tables.latency_table(results)
    meta = {"scenario": scenario.name, "file": scenario.path, "command": command,
            "overrides": scenario.overrides,
            "written": datetime.datetime.now().isoformat(timespec="seconds"),
            "partial": partial, "runs": rows, "sweep": sweep, "latency": latency}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(meta, f, indent=1)
    report.write_csv(os.path.join(out, "summary.csv"), rows, tables.summary_columns(rows))
    report.write_csv(os.path.join(out, "sweep.csv"), sweep, tables.sweep_csv_columns(sweep))
    report.write_csv(os.path.join(out, "latency.csv"), latency, tables.LATENCY_TABLE_CSV)
    with open(os.path.join(out, "sweep.md"), "w") as f:
        title = (f"{scenario.name}, {scenario.time} time"
                 + (" (partial: interrupted)" if partial else ""))
        f.write(f"# {title}\n\n{tables.sweep_markdown(sweep)}")
        if latency:
            f.write(f"\n{tables.latency_markdown(latency)}")
    return sweep


def scenario_text(scenario):
    """The scenario file's text as run: its overrides, if any, noted in a comment at the top."""
    if not scenario.overrides:
        return scenario.text
    return f"# run with: {' '.join(scenario.overrides)}\n{scenario.text}"


def run_points(scenario: Scenario, points: Sequence[Point], out: str, *, pin: bool = False,
               bar_factory: Callable[[int | None, str], Any] | None = None, view: Any = None,
               command: str = "", on_result: Callable[[dict[str, Any]], object] | None = None,
               claimed: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Runs `points` one after another, writing each run's folder and the summary after every
    run. Returns (results, sweep rows). Unless `claimed` (the caller has claimed `out` with
    folder.claim), every point's setup is checked first and `out` claimed: a folder with content
    raises folder.FolderError, changing nothing. On KeyboardInterrupt the summary is written
    marked partial and the interrupt re-raised."""
    if not claimed:
        folder.check(out)
        check_setup(points)
        folder.claim(out, scenario_text(scenario))
    results = []
    try:
        for point in points:
            log.info("run %s: %d CPUs, %s", point.id, point.cpus, point.workload["name"])
            r = run_point(point, pin=pin, interval=scenario.run["interval"],
                          timeout=scenario.run["timeout"], bar_factory=bar_factory, view=view)
            results.append(r)
            write_run(out, r)
            write_summary(out, scenario, results, partial=True, command=command)
            log.info("run %s: %.0f %s, hit rate %.3f, check %s", point.id, r["throughput"],
                     r["throughput_unit"], r["magazines"]["hit_rate"],
                     r["check"] if r["check"] == "ok" else "FAILED")
            if on_result:
                on_result(r)
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted):
            results.append(e.result)
            write_run(out, e.result)
        write_summary(out, scenario, results, partial=True, command=command)
        raise
    sweep = write_summary(out, scenario, results, partial=False, command=command)
    return results, sweep
