"""A failing schedule on disk, and its replay: what `smpsim explore` writes when it finds a
failure, and what `smpsim replay` reads.

    OUT/schedule.pkl     the shrunk schedule (Schedule.save), replayed exactly
    OUT/scenario.toml    the scenario as explored
    OUT/explore.json     the exact configuration (variant, cpus, ops, memory, time, strategy, seed,
                         depth, PCT's k, the step bound), the failure, what shrinking did and
                         what the search covered
    OUT/failure.txt      the failure in words: the message, the checker's violations, the
                         remote traceback, how to replay
    OUT/trace.tsv        the replay's trace, a line per scheduling point (Machine(trace=...))
    OUT/trace.txt        the same in aligned columns, preemptions marked and listed first

Everything needed to rerun the failure is in the folder: `smpsim replay OUT` (or OUT/schedule.pkl)
loads the scenario copy, rebuilds the configuration and replays the schedule exactly.
"""

import datetime
import json
import os
import tempfile

from smpsim.engine.sched import Schedule
from smpsim.experiment import explore, folder, scenario

__all__ = ["FindingError", "write", "load", "replay", "format_trace", "parse_trace", "trace_of",
           "CONFIG", "SCHEDULE"]

CONFIG, SCHEDULE, SCENARIO = "explore.json", "schedule.pkl", "scenario.toml"


class FindingError(ValueError):
    """A path that holds no failing schedule (or one that no longer fits its scenario): the
    message names it and says why."""


# --- the trace ----------------------------------------------------------------------------

def parse_trace(tsv):
    """The trace's lines as (step, cpu, function, what, next) tuples (header skipped)."""
    rows = []
    for line in tsv.splitlines():
        parts = line.split("\t")
        if len(parts) != 5 or parts[0] == "step":
            continue
        rows.append((int(parts[0]), int(parts[1]), parts[2], parts[3], parts[4]))
    return rows


def format_trace(tsv, title=()):
    """The trace text of a run (trace.tsv's content) in aligned columns: every preemption
    marked ">>" (the token left a CPU that could have gone on) and listed before the trace,
    other moves of the token marked "->". `title`: lines put first, as comments."""
    rows = parse_trace(tsv)
    fw = min(28, max([len("function")] + [len(r[2]) for r in rows]))
    ww = min(56, max([len("what")] + [len(r[3]) for r in rows]))
    out = [f"# {t}" for t in title]
    pre = [r for r in rows if "(preempted)" in r[4]]
    out.append(f"# {len(rows)} scheduling points. A line is a point a CPU reached, before its "
               f"action ('what'); 'next' is where")
    out.append("# the token went from there: >> a preemption (the CPU could have gone on), "
               "-> any other move.")
    out.append(f"# {len(pre)} preemption(s):")
    for r in pre:
        out.append(f"#   step {r[0]}: CPU {r[1]} in {r[2]}, before {r[3]}, "
                   f"{r[4].replace(' (preempted)', '')}")
    out.append("")
    out.append(f"{'step':>7}  {'cpu':>3}  {'function':<{fw}}  {'what':<{ww}}  next")
    for step, cpu, fn, what, nxt in rows:
        mark = ">>" if "(preempted)" in nxt else "->" if nxt else "  "
        moved = nxt.replace("-> ", "").replace(" (preempted)", "")
        out.append(f"{step:>7}  {cpu:>3}  {fn[:fw]:<{fw}}  {what[:ww]:<{ww}}  "
                   f"{mark} {moved}".rstrip())
    return "\n".join(out) + "\n"


def trace_of(point, schedule, seed=0):
    """Replay `schedule` of `point` exactly with a trace; (Outcome, trace.tsv's text)."""
    with tempfile.TemporaryDirectory(prefix="smpsim-trace-") as d:
        path = os.path.join(d, "trace.tsv")
        o = explore.run_schedule(point, schedule, seed, trace=path)
        try:
            with open(path) as f:
                return o, f.read()
        except FileNotFoundError:         # the machine never started the run
            return o, ""


# --- writing ------------------------------------------------------------------------------

def _failure_text(o, replay_cmd):
    lines = [f"kind: {o.kind}", "", o.message, ""]
    if o.violations:
        lines += ["m.check() found:"] + [f"  - {v}" for v in o.violations] + [""]
    if o.error and o.error.get("traceback"):
        lines += ["the CPU's traceback:", o.error["traceback"].rstrip(), ""]
    lines += [f"replay: {replay_cmd}", ""]
    return "\n".join(lines)


def write(out, point, config, found, shrunk, coverage, command=""):
    """Write the folder `out` (made if missing, claimed by writing its scenario.toml first:
    FolderError when another run claimed it; the caller has checked that it may) for the
    failing Outcome `found` of `point`, shrunk to `shrunk` (a Shrunk, or None when shrinking
    was not done), with the search's `config` (a dict: ops, memory, strategy, seed, depth) and
    `coverage` (Coverage list). Returns the path of the explore.json written."""
    folder.claim(out, point.scenario.text, SCENARIO)      # FolderError when another run has
    schedule = shrunk.schedule if shrunk else found.schedule
    failing = shrunk.outcome if shrunk else found
    schedule.save(os.path.join(out, SCHEDULE))
    cov = next((c for c in coverage if c.found is found), None)
    doc = {
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "scenario": {"name": point.scenario.name, "file": point.scenario.path,
                     "copy": SCENARIO},
        "variant": point.label, "cpus": point.cpus, "ops": config.get("ops"),
        "memory": point.machine["memory"], "time": point.machine["time"],
        "strategy": found.strategy, "seed": found.seed,
        "base_seed": config.get("seed"), "depth": config.get("depth"),
        "pct_steps": cov.pct_steps if cov else None,
        "max_steps": cov.max_steps if cov else None,
        "schedule": {"file": SCHEDULE, "decisions": len(schedule),
                     "preemptions": schedule.preemptions, "steps": schedule.steps},
        "failure": {"kind": failing.kind, "message": failing.message,
                    "violations": failing.violations, "error": failing.error},
        "found": {"schedules": cov.schedules if cov else None, "decisions": found.decisions,
                  "preemptions": found.preemptions, "steps": found.steps},
        "shrink": shrunk.as_dict() if shrunk else None,
        "coverage": [c.as_dict() for c in coverage],
    }
    path = os.path.join(out, CONFIG)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    with open(os.path.join(out, "failure.txt"), "w") as f:
        f.write(_failure_text(failing, f"smpsim replay {out}"))
    traced, tsv = trace_of(point, schedule, found.seed)
    with open(os.path.join(out, "trace.tsv"), "w") as f:
        f.write(tsv)
    title = [f"{point.scenario.name}, variant {point.label}, {point.cpus} CPUs, "
             f"{config.get('ops')} operations per CPU: {len(schedule)} decisions, "
             f"{schedule.preemptions} preemption(s)",
             f"failure ({traced.kind}): {explore.headline(traced)}"]
    with open(os.path.join(out, "trace.txt"), "w") as f:
        f.write(format_trace(tsv, title))
    return path


# --- reading and replaying --------------------------------------------------------------------

def load(path, sets=()):
    """(folder, explore.json's dict, Schedule, Point) of a folder `explore` wrote, or of the
    schedule file inside it; FindingError naming the path and what is missing. The point runs
    in the time explore ran in (explore.json's "time"), unless `sets` (scenario.load's
    overrides, e.g. "machine.time=host") say otherwise; the dict's "time" is the point's."""
    p = os.fspath(path)
    if os.path.isdir(p):
        folder = p
    elif os.path.isfile(p):
        folder = os.path.dirname(os.path.abspath(p))
    else:
        raise FindingError(f"{p}: no such folder or schedule file")
    cfg_path = os.path.join(folder, CONFIG)
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise FindingError(f"{p}: no {CONFIG} there (not a folder smpsim explore "
                           f"wrote)") from None
    except (OSError, ValueError) as e:
        raise FindingError(f"{cfg_path}: cannot be read ({e})") from None
    sched_file = p if os.path.isfile(p) else os.path.join(folder, SCHEDULE)
    try:
        schedule = Schedule.load(sched_file)
        keys = ("variant", "cpus", "ops", "memory", "seed")
        missing = [k for k in keys if k not in cfg]
        if missing:
            raise FindingError(f"{cfg_path}: missing {', '.join(missing)}")
        explored = [f"machine.time={cfg['time']}"] if cfg.get("time") else []
        scn = scenario.load(os.path.join(folder, cfg.get("scenario", {}).get("copy",
                                                                            SCENARIO)),
                            sets=explored + list(sets))
        points = [pt for pt in explore.configure(scn, [cfg["cpus"]], cfg["ops"], cfg["memory"])
                  if pt.label == cfg["variant"]]
    except ValueError as e:              # BadArgument, ScenarioError
        raise FindingError(str(e)) from None
    if not points:
        raise FindingError(f"{cfg_path}: the scenario has no variant {cfg['variant']!r}")
    if schedule.cpus != cfg["cpus"]:
        raise FindingError(f"{sched_file}: recorded on {schedule.cpus} CPUs, the configuration "
                           f"has {cfg['cpus']}")
    return folder, dict(cfg, time=points[0].machine["time"]), schedule, points[0]


def replay(path, *, trace=False, sets=()):
    """Replay the failing schedule at `path` (a folder explore wrote, or its schedule file)
    exactly; (Outcome, explore.json's dict, trace text or None). `sets` as for load().
    FindingError when the path holds none, or when its schedule no longer matches the
    program."""
    folder, cfg, schedule, point = load(path, sets)
    if trace:
        o, tsv = trace_of(point, schedule, cfg["seed"])
        text = format_trace(tsv, [f"replay of {folder}"])
    else:
        o, text = explore.run_schedule(point, schedule, cfg["seed"]), None
    if o.kind == "schedule" and cfg.get("failure", {}).get("kind") != "schedule":
        raise FindingError(f"{path}: the schedule does not match the program any more "
                           f"({o.message})")
    return o, cfg, text
