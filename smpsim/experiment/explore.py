"""Searching schedules: a scenario's small configuration run under many controlled schedules,
the first failing one shrunk to a few preemptions.

A controlled run (Machine(schedule="random"|"pct"|Schedule)) lets exactly one CPU run between
scheduling points: every spinlock acquire and release, every atomic, and every access the
allocator's code makes to the machine's state. The strategy picks which CPU passes each point,
so a run is a pure function of (configuration, strategy, seed), repeats exactly, and its
recorded Schedule replays exactly.

One schedule (run_schedule): a fresh Machine with the scenario's machine, caches and workload
at `cpus` CPUs, the workload's run on every CPU (through its prepare and finish, as a plain run
does), then in this order, the first that fails naming the failure's kind:

    CPUError            the run failed: kind "deadlock", "died", "timeout", "exception:Type"
                        (a CPU's program raised), "schedule" (a replay that does not match);
                        a run that made more decisions than max_steps is "unfinished" (a CPU
                        spinning forever, which PCT's fixed priorities can cause), not a failure
    m.check()           an invariant violated: kind "check"
    finish(k, params)   the workload's own assertions: kind "finish:Type"
    cache destroy       the scenario's caches destroyed: kind "clean-up:Type"

run_schedule is a picklable function of its arguments (a Point pickles), so a cluster map can
run seeds in parallel (search's `map_runs`): each result is the same wherever it runs.

The search (search) runs N schedules of each configuration (a variant of the scenario at each
CPU count) with seeds seed, seed + 1, ...; the first run (seed `seed`) measures the run's
length: every later run may make at most STEPS_FACTOR times its decisions (MIN_MAX_STEPS at
least; the first, FIRST_MAX_STEPS) before it counts as unfinished, and PCT's later runs are
given its scheduling points as PCT's k (the engine otherwise takes k from the Machine's
previous controlled run, and each schedule here has a new Machine; the first PCT run has the
engine's default k).

Shrinking (shrink) works on what ran, with lenient replay: Machine(replay="lenient") follows a
schedule where it can, goes on without preemption where it cannot, and records what actually
ran, which replays exactly. In rounds, while they make the schedule smaller: the shortest
prefix of the decisions that still fails the same way (binary search: after the prefix, no CPU
is preempted), then delta debugging over the places where the schedule switches CPUs (ddmin:
drop a set of switches, the CPU before each running on; a set is tried twice, as switches
anchored to each CPU's own count of decisions, so that dropping one leaves the others where
they were in their CPUs' programs, and by position in the decision list). A candidate is kept
only when it fails with the same kind and is smaller (fewer preemptions, then fewer
decisions). The result is the last failing run's own schedule, checked once more by exact
replay. The work is bounded (max_runs runs).
"""

import functools
import re
import time

import smpsim
from smpsim import workloads
from smpsim.engine.sched import Schedule
from smpsim.experiment import runner
from smpsim.experiment.scenario import Point, ScenarioError

__all__ = ["Outcome", "Coverage", "configure", "workload_of", "run_schedule", "search", "shrink",
           "Shrunk", "headline", "STRATEGIES", "DEFAULT_SCHEDULES", "DEFAULT_OPS",
           "bench_schedules"]

STRATEGIES = ("random", "pct")
DEFAULT_SCHEDULES = 100
DEFAULT_OPS = 100           # operations per CPU of an explored run
MIN_MAX_STEPS = 100_000     # decisions a run may make before it counts as unfinished ...
STEPS_FACTOR = 50           # ... or this many times the measured run's, whichever is more
FIRST_MAX_STEPS = 1_000_000  # ... and the first run, which measures
SHRINK_RUNS = 300           # runs shrinking may spend


class Outcome:
    """What one controlled run did. `kind` is None when it passed, "unfinished" when it made
    more than max_steps decisions, else the failure's kind (module docstring); `message` says
    what failed, `violations` lists what m.check() found (also after a failed run), `error`
    holds a CPUError's fields (cpu, reason, inside, locks, others). `schedule` is the run's
    Schedule (None when the machine could not run it)."""

    __slots__ = ("strategy", "seed", "kind", "message", "violations", "error", "schedule",
                 "steps", "decisions", "preemptions", "elapsed")

    def __init__(self, strategy, seed):
        self.strategy, self.seed = strategy, seed
        self.kind, self.message, self.violations, self.error = None, "", [], None
        self.schedule, self.steps, self.decisions, self.preemptions = None, 0, 0, 0
        self.elapsed = 0.0

    @property
    def failed(self):
        return self.kind not in (None, "unfinished")

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        for k in self.__slots__:
            setattr(self, k, state.get(k))

    def __repr__(self):
        what = self.kind or "passed"
        return (f"<Outcome {self.strategy} seed {self.seed}: {what}, {self.steps} steps, "
                f"{self.preemptions} preemptions>")


# --- configurations ---------------------------------------------------------------------------

def workload_of(point):
    """(the Workload, its parameters) of a point (smpsim.workloads.find)."""
    wl = workloads.find(point.workload["name"])
    return wl, {k: v for k, v in point.workload.items() if k != "name"}


def configure(scn, cpus=None, ops=DEFAULT_OPS, memory=None):
    """The points to explore: every variant of scenario `scn` at each CPU count of `cpus`
    (default: the scenario's machine's), with the workload's length set to `ops` per CPU (its
    `ops`; for a workload without one, its `limit`; nothing for a workload that declares no
    PARAMS), its time limit removed (a run must be a function of its schedule) and, when
    given, the machine's memory replaced by `memory` (bytes). ScenarioError when ops does not
    fit the workload."""
    points = []
    for n in cpus or [scn.machine["cpus"]]:
        for label, machine, caches, workload in scn.variants:
            w = dict(workload)
            spec = workloads.find(w["name"]).params or {}
            key = "ops" if "ops" in spec else "limit" if "limit" in spec else None
            if key and ops is not None:
                try:
                    w[key] = spec[key].check(ops)
                except ValueError:
                    raise ScenarioError(scn.path, f"workload.{key}", spec[key].expect,
                                        ops) from None
            if "seconds" in spec:
                w["seconds"] = 0.0
            m = dict(machine)
            if memory is not None:
                m["memory"] = memory
            points.append(Point(scn, label, n, 0, m, caches, w))
    return points


def _machine(point, **sched):
    """The point's Machine (every [machine] key passed on, as a plain run does) with the
    controlled schedule's arguments `sched`."""
    kw = {k: v for k, v in point.machine.items() if k != "cpus"}
    try:
        return smpsim.Machine(point.cpus, **kw, **sched)
    except (ValueError, OSError) as e:
        raise ScenarioError(point.scenario.path, "", f"its machine cannot boot: {e}") from None


# --- one schedule -------------------------------------------------------------------------

def _kind_of(e):
    """The failure kind of a CPUError."""
    if e.reason == "exception":
        last = (e.traceback or "").strip().splitlines()[-1:] or [""]
        name = re.match(r"([\w.]+)(:|$)", last[0])
        return f"exception:{name.group(1).rsplit('.', 1)[-1] if name else 'Exception'}"
    return e.reason


def _log_full(m):
    """Whether the controlled run ended because it filled its schedule log (made
    more than max_steps decisions). Read from the scheduler's header word (bookkeeping)."""
    from smpsim.engine import sched
    from smpsim.engine.layout import HEADER
    k = m._observer()
    return k.peek(k.regions.header + HEADER.failure) == sched.FAIL_LOG_FULL


def run_schedule(point, strategy, seed=0, *, depth=3, pct_steps=None, max_steps=None,
                 replay="exact", kill=None, trace=None, timeout=None):
    """Run `point` once under a controlled schedule; its Outcome. `strategy`: "random" or
    "pct" (with `seed`, `depth` and PCT's k `pct_steps`), or a Schedule to replay (`replay`
    "exact" or "lenient"). `kill=(cpu, step)` kills that CPU at that scheduling point; `trace`
    a file the run appends its trace to; `max_steps` the decisions after which the run counts
    as unfinished; `timeout` seconds of wall time (default the scenario's run timeout).
    ScenarioError when the machine or the workload cannot be set up; KeyboardInterrupt goes on
    to the caller once the machine is torn down."""
    label = strategy if isinstance(strategy, str) else "replay"
    out = Outcome(label, seed)
    wl, params = workload_of(point)
    sched = {"schedule": strategy, "seed": seed, "depth": depth, "kill": kill, "trace": trace,
             "max_steps": max_steps, "replay": replay if isinstance(strategy, Schedule)
             else "exact"}
    if timeout is None:
        timeout = point.scenario.run["timeout"] if point.scenario is not None else 600.0
    t0 = time.perf_counter()
    with _machine(point, **sched) as m:
        if pct_steps:
            # The engine takes PCT's k (the steps a run takes) from the Machine's previous
            # controlled run; this Machine has had none, so it is given the measured one.
            m._pct_steps = pct_steps
        k = m.cpu(0)
        caches, params = runner._set_up(point, m, wl, params)  # as a plain run of the point
        try:
            m.run(wl.program, params, timeout=timeout)
        except smpsim.CPUError as e:
            if _log_full(m):
                out.kind = "unfinished"
            else:
                out.kind = _kind_of(e)
            out.message = str(e)
            out.error = {"cpu": e.cpu, "reason": e.reason, "inside": e.inside,
                         "locks": list(e.locks), "traceback": e.traceback,
                         "others": [str(o) for o in e.others]}
        s = m.last_schedule
        if s is not None:
            out.schedule, out.steps = s, s.steps
            out.decisions, out.preemptions = len(s), s.preemptions
        try:
            m.check()
        except smpsim.InvariantError as e:
            out.violations = list(e.violations)
            if out.kind is None:
                out.kind = "check"
                out.message = str(e)
        if out.kind is None:
            out.kind, out.message = _finish(wl, k, params, caches)
    out.elapsed = time.perf_counter() - t0
    return out


def _finish(wl, k, params, caches):
    """The workload's finish() and the caches' destruction after a clean run; (kind, message)
    of the first that raised, or (None, "")."""
    try:
        wl.finish(k, params)
    except Exception as e:              # noqa: BLE001 - the workload's own assertions
        return f"finish:{type(e).__name__}", f"the workload's finish() raised " \
                                             f"{type(e).__name__}: {e}"
    try:
        for c in reversed(caches):
            k.slab_cache_destroy(c)
    except Exception as e:              # noqa: BLE001 - a corrupt cache may raise anything
        return f"clean-up:{type(e).__name__}", f"destroying the scenario's caches raised " \
                                               f"{type(e).__name__}: {e}"
    return None, ""


def max_steps_for(outcome):
    """The decisions a run may make before it counts as unfinished, from a measured run."""
    return max(MIN_MAX_STEPS, STEPS_FACTOR * max(outcome.decisions, 1))


# --- the search -----------------------------------------------------------------------------

class Coverage:
    """What a search ran of one point: schedules, scheduling points, decisions, preemptions,
    unfinished runs, wall time, and the failing Outcome if one was found."""

    def __init__(self, point):
        self.point = point
        self.schedules = self.steps = self.decisions = self.preemptions = 0
        self.unfinished = 0
        self.elapsed = 0.0
        self.pct_steps = None
        self.max_steps = None
        self.found = None

    def add(self, o):
        self.schedules += 1
        self.steps += o.steps
        self.decisions += o.decisions
        self.preemptions += o.preemptions
        self.unfinished += o.kind == "unfinished"
        self.elapsed += o.elapsed

    def as_dict(self):
        return {"variant": self.point.label, "cpus": self.point.cpus,
                "schedules": self.schedules, "steps": self.steps, "decisions": self.decisions,
                "preemptions": self.preemptions, "unfinished": self.unfinished,
                "seconds": round(self.elapsed, 3), "pct_steps": self.pct_steps,
                "max_steps": self.max_steps,
                "found": None if self.found is None else {
                    "kind": self.found.kind, "strategy": self.found.strategy,
                    "seed": self.found.seed}}


def search(points, *, schedules=DEFAULT_SCHEDULES, seed=0, strategy="pct", depth=3,
           progress=None, map_runs=map, batch=1):
    """Run `schedules` schedules of each point in turn (seeds seed .. seed + schedules - 1),
    stopping at the first failure. Returns the list of Coverage, one per point searched; the
    last one's `found` is the failing Outcome, if any. `progress(coverage, outcome)` is called
    after every run. KeyboardInterrupt goes on to the caller (the coverage so far is lost
    with it: the caller reports what it saw through `progress`).

    After each point's first run, the others go `batch` seeds at a time through
    `map_runs(function, seeds)`, which must return their Outcomes in the order of the seeds:
    the builtin map by default (one after another, in this process); a cluster's map runs a
    batch in parallel (`function` is a functools.partial of run_schedule and pickles). The
    failure reported is the first in seed order, whatever the batch."""
    if strategy not in STRATEGIES:
        raise ValueError(f"search: 'strategy' must be one of {', '.join(STRATEGIES)}, "
                         f"got {strategy!r}")
    done = []
    for point in points:
        cov = Coverage(point)
        done.append(cov)
        # The first run measures the run's length: the bound of the others and PCT's k.
        first = run_schedule(point, strategy, seed, depth=depth, max_steps=FIRST_MAX_STEPS)
        cov.max_steps = FIRST_MAX_STEPS if first.kind == "unfinished" else max_steps_for(first)
        cov.pct_steps = max(1, first.steps) if strategy == "pct" else None
        if _note(cov, first, progress):
            return done
        one = functools.partial(_seed_run, point, strategy, depth, cov.pct_steps, cov.max_steps)
        seeds = range(seed + 1, seed + schedules)
        for i in range(0, len(seeds), batch):
            for o in map_runs(one, seeds[i:i + batch]):
                if _note(cov, o, progress):
                    return done
    return done


def _seed_run(point, strategy, depth, pct_steps, max_steps, seed):
    """run_schedule with the seed last (for map)."""
    return run_schedule(point, strategy, seed, depth=depth, pct_steps=pct_steps,
                        max_steps=max_steps)


def _note(cov, outcome, progress):
    """Count outcome in cov; True (and cov.found set) when it failed."""
    cov.add(outcome)
    if progress:
        progress(cov, outcome)
    if outcome.failed:
        cov.found = outcome
    return outcome.failed


# --- shrinking ------------------------------------------------------------------------------

class Shrunk:
    """The result of shrinking. `schedule` is the smallest failing schedule found and
    `outcome` its exact replay's Outcome, when that replay failed the same way (`verified`);
    otherwise both are the `original` Outcome's. `runs` counts the runs spent (the check
    included), `complete` whether the last round ended 1-minimal: no single switch could go."""

    def __init__(self, original):
        self.original = original
        self.schedule, self.outcome = original.schedule, original
        self.runs = 0
        self.verified = False
        self.complete = False

    def as_dict(self):
        return {"runs": self.runs, "verified": self.verified, "complete": self.complete,
                "preemptions": {"found": self.original.preemptions,
                                "shrunk": self.schedule.preemptions},
                "decisions": {"found": len(self.original.schedule),
                              "shrunk": len(self.schedule)}}


def _events(decisions, cpus):
    """A schedule as switch events anchored to each CPU's own progress: (first CPU, events,
    totals), where event (cpu, count, to) says that `cpu`, after `count` decisions of its own,
    gave way to CPU `to`, and totals[c] is how many decisions chose CPU c. Dropping an early
    event then leaves the later ones where they were in each CPU's program, which positions
    in the decision list would not."""
    counts, events = [0] * cpus, []
    for i, c in enumerate(decisions):
        if i and c != decisions[i - 1]:
            prev = decisions[i - 1]
            events.append((prev, counts[prev], c))
        counts[c] += 1
    return (decisions[0] if decisions else 0), events, counts


def _rebuild(first, events, totals):
    """The decision list that starts with CPU `first`, switches at `events` (each when its CPU
    has made its count of decisions; an event whose target has nothing left is skipped) and
    gives every CPU its total: a CPU that has made all of its decisions gives way to the lowest
    CPU with some left. Lenient replay mends what no longer fits the program."""
    queues = [[] for _ in totals]
    for cpu, count, to in events:
        queues[cpu].append((count, to))
    for q in queues:
        q.reverse()                          # pop() from the end: the earliest first
    counts, out, cur, left = [0] * len(totals), bytearray(), first, sum(totals)
    while len(out) < left:
        q = queues[cur]
        if q and q[-1][0] <= counts[cur]:
            _, to = q.pop()
            if counts[to] < totals[to]:
                cur = to
            continue
        if counts[cur] >= totals[cur]:
            cur = min(c for c in range(len(totals)) if counts[c] < totals[c])
            continue
        out.append(cur)
        counts[cur] += 1
    return bytes(out)


def _drop(decisions, drop):
    """`decisions` with the switches at the decision indexes in `drop` removed, by position:
    from each, the CPU before goes on for as long as the dropped stretch lasted."""
    out = bytearray(decisions)
    follow = False
    for i in range(1, len(out)):
        if decisions[i] != decisions[i - 1]:
            follow = i in drop
        if follow:
            out[i] = out[i - 1]
    return bytes(out)


def _size(schedule):
    return (schedule.preemptions, len(schedule))


def shrink(point, found, *, max_runs=SHRINK_RUNS, progress=None, run=run_schedule):
    """Shrink the failing Outcome `found` of `point` (module docstring); a Shrunk. Every
    candidate is a lenient replay; a candidate is kept when it fails with found's kind and
    its run is smaller. `progress(shrunk)` is called after every run. KeyboardInterrupt goes
    on to the caller; `shrunk` (from progress) then holds the best so far."""
    result = Shrunk(found)
    best, kind = found, found.kind
    cpus = found.schedule.cpus
    bound = max_steps_for(found)             # a candidate that loops ends as unfinished

    def attempt(decisions):
        """Run the candidate; True when it fails with found's kind (kept when smaller)."""
        nonlocal best
        result.runs += 1
        o = run(point, Schedule(decisions, cpus=cpus), found.seed, replay="lenient",
                max_steps=bound)
        fails = o.kind == kind and o.schedule is not None
        if fails and _size(o.schedule) < _size(best.schedule):
            best = o
            result.schedule, result.outcome = o.schedule, o
        if progress:
            progress(result)
        return fails

    def prefix():
        """1. The shortest prefix of the best decisions that still fails (binary search):
        no preemption after it."""
        base = best.schedule.decisions
        lo, hi = 0, len(base)
        while lo < hi and result.runs < max_runs:
            mid = (lo + hi) // 2
            if attempt(base[:mid]):
                hi = mid
            else:
                lo = mid + 1

    def ddmin():
        """2. ddmin over the switches of the best schedule (re-read after each success):
        each set of switches is tried as events anchored to the CPUs' own decisions, then by
        position. True when it ends 1-minimal (no single switch can go) within the budget."""
        n = 2
        while result.runs < max_runs:
            first, events, totals = _events(best.schedule.decisions, cpus)
            if not events:
                return True
            n = min(n, len(events))
            chunk = -(-len(events) // n)
            parts = [range(i, min(i + chunk, len(events)))
                     for i in range(0, len(events), chunk)]
            progressed = False
            for part in parts:
                before = _size(best.schedule)
                cuts = [i for i in range(1, len(best.schedule))
                        if best.schedule.decisions[i] != best.schedule.decisions[i - 1]]
                decisions = best.schedule.decisions
                for candidate in (lambda: _rebuild(first, [e for i, e in enumerate(events)
                                                           if i not in part], totals),
                                  lambda: _drop(decisions, {cuts[i] for i in part})):
                    if result.runs < max_runs and _size(best.schedule) >= before:
                        attempt(candidate())
                if _size(best.schedule) < before:
                    progressed = True
                    n = max(n - 1, 2)
                    break
            if not progressed:
                if n >= len(events):
                    return True
                n = min(2 * n, len(events))
        return False

    # Rounds of both while they make the schedule smaller and the budget lasts.
    while result.runs < max_runs:
        before = _size(best.schedule)
        prefix()
        result.complete = ddmin()
        if _size(best.schedule) >= before:
            break
    # The result replays exactly and fails the same way.
    check = run(point, best.schedule, found.seed, replay="exact")
    result.runs += 1
    result.verified = check.kind == kind
    if result.verified:
        result.outcome = check
    elif best is not found:
        result.schedule, result.outcome = found.schedule, found
    return result


# --- reporting helpers -------------------------------------------------------------------

def headline(outcome, limit=3):
    """One line saying how `outcome` failed: the message's first line, or for violations of
    invariants how many there were and one example of each of the first `limit` kinds (kinds
    told apart with numbers and addresses left out)."""
    if outcome.kind != "check" or not outcome.violations:
        return outcome.message.splitlines()[0] if outcome.message else ""
    shapes = {}
    for v in outcome.violations:
        shapes.setdefault(re.sub(r"0x[0-9a-f]+|\d+", "#", v), v)
    parts = list(shapes.values())[:limit]
    more = len(shapes) - len(parts)
    return (f"{len(outcome.violations)} invariant violation(s): " + "; ".join(parts)
            + (f"; and {more} more kind(s)" if more > 0 else ""))


# --- benchmark ----------------------------------------------------------------------------

def bench_schedules(count=1000, ops=200, cpus=2, memory="4M", seed=0, strategy="random"):
    """The cost of controlled runs on this host: `count` schedules (`strategy`) of a `cpus`-CPU
    threadtest run of `ops` operations per CPU on a 128-byte cache with magazines of 4, each
    on a fresh Machine and checked. Returns a dict: schedules, seconds, schedules per second,
    scheduling points in all, and microseconds of wall time per scheduling point inside the
    runs (Machine.run's elapsed time over the steps) and overall."""
    from smpsim.workloads import threadtest
    points = run_us = 0.0
    t0 = time.perf_counter()
    for i in range(count):
        with smpsim.Machine(cpus, memory, schedule=strategy, seed=seed + i) as m:
            c = m.cpu(0).slab_cache_create("bench", 128)
            m.run(f"{threadtest.__name__}:run", {"cache": c.name, "ops": ops, "batch": 10})
            m.check()
            points += m.last_schedule.steps
            run_us += m.last_run["elapsed"] * 1e6
    total = time.perf_counter() - t0
    return {"strategy": strategy, "schedules": count, "ops_per_cpu": ops, "cpus": cpus,
            "seconds": round(total, 3),
            "schedules_per_second": round(count / total, 1), "points": int(points),
            "us_per_point_in_run": round(run_us / points, 2),
            "us_per_point_overall": round(total * 1e6 / points, 2)}
