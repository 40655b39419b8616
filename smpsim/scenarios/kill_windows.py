"""Kill windows: what the invariant checker reports after a CPU dies at each scheduling point of
a small 2-CPU run (docs/kill-windows.md shows the table and explains the seed's windows).

    smpsim run scenarios/kill_windows.py [--out DIR]

The run: threadtest on a 128-byte cache with magazines of 2 and a batch of 5 allocations and 5
frees per CPU, so that objects come from a new slab and go back through the CPU's magazines (new
magazines allocated, a full one put on the shared list), under the random schedule of seed
SEED. It runs once with a trace, then once
for every scheduling point the victim CPU passes (but its program's end), with
Machine(kill=(VICTIM, step)): the victim
dies there, before that point's action, and the run is the same up to it (the same schedule,
deterministic). After each, Machine.check() says what the death left.

Writes OUT/kill_windows.csv (a row per step: step, function, what, inside allocator code, locks
held, the violations and their count), OUT/kill_windows.md (the distinct windows: the function,
the locks held and the kinds of damage a death there leaves, with the steps where it does; then
every run of consecutive steps of the victim that leave the same), the scenario
as OUT/kill_windows.toml and the trace of the run as OUT/trace.tsv. Returns the counts.
"""

import os
import re

SEED = 3            # the schedule (random strategy)
VICTIM = 1          # the CPU that dies
OPS = 10            # operations per CPU (one batch of 5 allocations, 5 frees)
SCENARIO = """\
# The run kill_windows.py kills a CPU in, at every step.
name = "kill_windows"

[machine]
cpus = 2
memory = "4M"
magazine_size = 2

[[caches]]
name = "obj"
size = 128

[workload]
name = "threadtest"
cache = "obj"
batch = 5
seed = 1
"""


def _shape(v):
    """A violation with its numbers and addresses left out (what kind of damage it is)."""
    return re.sub(r"0x[0-9a-f]+|\d+", "#", v)


def _damage(violations):
    """The kinds of damage beyond the two a death inside allocator code always leaves (the
    CPU inside, its locks held), in order."""
    out = []
    for v in violations:
        if " is inside allocator code" in v or " is held by CPU " in v:
            continue
        s = _shape(v)
        if s not in out:
            out.append(s)
    return out


def _windows(rows):
    """Consecutive steps of the victim with the same (inside, locks, damage) as windows."""
    wins = []
    for r in rows:
        key = (r["inside"], r["locks"], r["damage"])
        if wins and wins[-1]["key"] == key:
            wins[-1]["rows"].append(r)
        else:
            wins.append({"key": key, "rows": [r]})
    return wins


def _functions(rows):
    seen = []
    for r in rows:
        if r["function"] not in seen:
            seen.append(r["function"])
    return ", ".join(seen)


def _distinct(rows):
    """The rows grouped by (function, locks, damage), in order of first appearance."""
    groups = {}
    for r in rows:
        groups.setdefault((r["function"], r["locks"], r["damage"]), []).append(r["step"])
    return groups


def _steps(steps, limit=6):
    text = ", ".join(map(str, steps[:limit]))
    return text + (f", ... ({len(steps)})" if len(steps) > limit else "")


def _markdown(rows, wins, base):
    lines = [f"# Kill windows: CPU {VICTIM} killed at each of its {len(rows)} scheduling points",
             "",
             f"threadtest on a 128-byte cache, magazines of 2, a batch of 5, {OPS} operations "
             f"per CPU, 2 CPUs, random schedule seed {SEED} ({base.steps} scheduling points). "
             f"The CPU dies at the point, before its action. 'damage' lists the kinds of "
             f"violation m.check() reports besides the two every death inside allocator code "
             f"leaves (the CPU inside, its locks held); numbers are left out as #.",
             "", "## Distinct windows", "",
             "| function | locks held | damage | points | steps |",
             "| --- | --- | --- | ---: | --- |"]
    for (function, locks, damage), steps in _distinct(rows).items():
        lines.append(f"| {function} | {locks or '-'} | {'; '.join(damage) or '-'} | "
                     f"{len(steps)} | {_steps(steps)} |")
    lines += ["", "## Step by step", "",
              "Consecutive steps of the CPU whose death leaves the same state.", "",
              "| steps | points | functions | inside | locks held | damage |",
              "| --- | ---: | --- | --- | --- | --- |"]
    for w in wins:
        rs = w["rows"]
        inside, locks, damage = w["key"]
        steps = f"{rs[0]['step']}" if len(rs) == 1 else f"{rs[0]['step']}-{rs[-1]['step']}"
        lines.append(f"| {steps} | {len(rs)} | {_functions(rs)} | {'yes' if inside else 'no'} "
                     f"| {locks or '-'} | {'; '.join(damage) or '-'} |")
    return "\n".join(lines) + "\n"


def run(out_dir):
    """The table (module docstring); returns its counts."""
    from smpsim.experiment import explore, finding, report, scenario
    toml = os.path.join(out_dir, "kill_windows.toml")
    with open(toml, "w") as f:
        f.write(SCENARIO)
    point = explore.configure(scenario.load(toml), [2], OPS)[0]
    trace = os.path.join(out_dir, "trace.tsv")
    if os.path.exists(trace):
        os.unlink(trace)
    base = explore.run_schedule(point, "random", SEED, trace=trace)
    if base.kind is not None:
        return {"error": f"the run without a kill failed: {base.message}"}
    with open(trace) as f:
        # Every point of the victim but its program's end (a CPU that has ended cannot die).
        points = [p for p in finding.parse_trace(f.read()) if p[1] == VICTIM and p[3] != "end"]
    rows = []
    for step, _cpu, function, what, _next in points:
        o = explore.run_schedule(point, "random", SEED, kill=(VICTIM, step))
        err = o.error or {}
        if o.kind != "died" or err.get("cpu") != VICTIM:
            return {"error": f"step {step}: the kill did not end the run as a death of CPU "
                             f"{VICTIM}: {o.kind}: {o.message}"}
        rows.append({"step": step, "function": function, "what": what,
                     "inside": bool(err.get("inside")), "locks": ", ".join(err.get("locks", [])),
                     "violations": len(o.violations), "damage": tuple(_damage(o.violations)),
                     "example": "; ".join(o.violations[:4])})
    report.write_csv(os.path.join(out_dir, "kill_windows.csv"),
                     [dict(r, damage="; ".join(r["damage"])) for r in rows],
                     ["step", "function", "what", "inside", "locks", "violations", "damage",
                      "example"])
    wins = _windows(rows)
    with open(os.path.join(out_dir, "kill_windows.md"), "w") as f:
        f.write(_markdown(rows, wins, base))
    return {"steps": base.steps, "victim_points": len(rows), "windows": len(wins),
            "distinct": len(_distinct(rows)),
            "inside": sum(r["inside"] for r in rows),
            "damaged": sum(bool(r["damage"]) for r in rows),
            "clean": sum(r["violations"] == 0 for r in rows)}
