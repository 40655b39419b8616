"""Simulated time and controlled schedules: the Machine's side of the scheduling points.

The mechanism lives in C (smpsim/engine/_sim.h, shared by both extensions): every spinlock
acquire and release, every atomic on shared memory, a barrier, a program's start and end (and, in
a controlled run, every access the allocator's code makes to the machine's state) is a
scheduling point, and every access the seed's code makes to the machine's state is charged to
the CPU's clock by the cost model. This module holds what Python needs of it:

- the modes and the constants _sim.h shares with Python (tests/test_sched.py checks they agree);
- the cost model's defaults and their sources (COST), validated for Machine(cost={...});
- Schedule, a recorded controlled run: the CPU chosen at every decision, picklable, savable;
- setup_run and finish_run, which prepare the scheduler's shared state before a run opens its
  start gate and read it back after (the Machine's decisions when no CPU holds the token are
  made by Arena.decide, the same C code the CPUs run).

Modes (the header's sched_mode), fixed when the Machine is made:

    time="host", schedule=None        SCHED_FREE: the host schedules the CPU processes
    time="simulated", quantum=Q > 0   SCHED_LAX: bounded skew, no CPU more than Q cycles ahead
                                      of the slowest running one
    time="simulated", quantum=0       SCHED_TOKEN with STRATEGY_CLOCK: the CPU with the lowest
                                      clock (ties: the lowest id) passes the next point
    schedule="random"|"pct"|Schedule  SCHED_TOKEN with STRATEGY_RANDOM, _PCT or _REPLAY: exactly
                                      one CPU runs between points, the strategy picks which
"""

from __future__ import annotations

import os
import pickle
import random
from typing import Any, Iterable, TypeVar

from .layout import PCT_MAX

__all__ = ["Schedule", "COST", "CLOCK_MAX", "DEFAULT_QUANTUM", "SCHED_FREE", "SCHED_LAX", "SCHED_TOKEN",
           "STRATEGY_CLOCK", "STRATEGY_RANDOM", "STRATEGY_PCT", "STRATEGY_REPLAY", "CPU_IDLE",
           "CPU_RUNNABLE", "CPU_BLOCKED", "CPU_BARRIER", "CPU_DONE", "FAIL_NONE",
           "FAIL_DEADLOCK", "FAIL_MISMATCH", "FAIL_LOG_FULL", "LOCK_KERNEL", "LOCK_USER",
           "STRATEGIES", "DEFAULT_LOG_CAP", "PCT_FIRST_STEPS", "check_cost", "resolve_modes", "setup_run",
           "finish_run"]

# The constants of smpsim/engine/_sim.h.
SCHED_FREE, SCHED_LAX, SCHED_TOKEN = 0, 1, 2
STRATEGY_CLOCK, STRATEGY_RANDOM, STRATEGY_PCT, STRATEGY_REPLAY = 0, 1, 2, 3
CPU_IDLE, CPU_RUNNABLE, CPU_BLOCKED, CPU_BARRIER, CPU_DONE = 0, 1, 2, 3, 4
FAIL_NONE, FAIL_DEADLOCK, FAIL_MISMATCH, FAIL_LOG_FULL = 0, 1, 2, 3
LOCK_KERNEL, LOCK_USER = 1, 2
STRATEGIES = {"random": STRATEGY_RANDOM, "pct": STRATEGY_PCT}

_S = TypeVar("_S", bound="Schedule")

# The cost model's defaults, in cycles of the simulated machine's clock, from published
# measurements of one real SMP: an Intel Xeon E7-8867L (Westmere-EX, 2.13 GHz), as measured by
# David, Guerraoui and Trigonakis, "Everything You Always Wanted to Know About Synchronization
# but Were Afraid to Ask" (SOSP 2013), with their ccbench tool:
#   hit       a load or store of a line in the core's own L1 cache: about 5 cycles;
#   transfer  a load of a line another core of the same socket holds modified: about 110
#             cycles (the cache-to-cache transfer any access by another CPU pays here);
#   atomic    a locked read-modify-write (lock cmpxchg / lock xadd) of a line the core already
#             holds: about 20 cycles on cores of that generation (Agner Fog's instruction
#             tables for Nehalem/Westmere), on top of the transfer when it does not;
#   hz        that machine's clock rate, turning cycles into simulated seconds.
COST = {"hit": 5, "transfer": 110, "atomic": 20, "hz": 2_130_000_000}

# A clock's largest value: the coherence tags keep times in 55 bits (TIME_MASK in _sim.h).
CLOCK_MAX = (1 << 55) - 1

# The default largest skew between running CPUs' clocks, in cycles: about ten magazine hits
# (docs/time.md: what it costs in accuracy and in host time).
DEFAULT_QUANTUM = 1000

# Decisions a controlled run's schedule log holds unless Machine(max_steps=...) says otherwise.
DEFAULT_LOG_CAP = 1 << 22
PCT_DEPTH_MAX = 65      # PCT's depth d: d - 1 change points, at most PCT_MAX
PCT_FIRST_STEPS = 1000  # PCT's k (steps of a run) before a controlled run has measured it


def check_cost(cost):
    """The cost model with `cost`'s entries over the defaults; BadArgument naming what is
    wrong (an unknown entry, or a value that is not a positive int)."""
    from .errors import BadArgument
    if cost is None:
        return dict(COST)
    if not isinstance(cost, dict):
        raise BadArgument(f"Machine: 'cost' must be a dict of {', '.join(COST)}, got {cost!r}")
    out = dict(COST)
    for key, value in cost.items():
        if key not in COST:
            raise BadArgument(f"Machine: 'cost' has no entry {key!r}; the entries are "
                              f"{', '.join(COST)}")
        if type(value) is not int or value < (1 if key in ("hz", "atomic", "transfer") else 0):
            raise BadArgument(f"Machine: 'cost' entry {key!r} must be a positive int of "
                              f"{'cycles per second' if key == 'hz' else 'cycles'}, "
                              f"got {value!r}")
        limit = 2 ** 64 - 1 if key == "hz" else CLOCK_MAX
        if value > limit:
            raise BadArgument(f"Machine: 'cost' entry {key!r} is {value}, past {limit}, the "
                              f"most the model holds")
        out[key] = value
    return out


def resolve_modes(cpus, time, quantum, cost, schedule, seed, depth, kill, max_steps,
                  replay_mode="exact"):
    """Machine's arguments for simulated time and controlled schedules, checked (BadArgument
    naming the argument), as a dict: time, quantum, cost, schedule (None, "random", "pct" or
    the Schedule replayed), seed, depth, kill, sched_mode, strategy, log_cap."""
    from .errors import BadArgument
    if time not in ("host", "simulated"):
        raise BadArgument(f"Machine: 'time' must be 'host' or 'simulated', got {time!r}")
    if quantum is not None and (type(quantum) is not int or quantum < 0):
        raise BadArgument(f"Machine: 'quantum' must be an int of cycles >= 0 or None, "
                          f"got {quantum!r}")
    if quantum is not None and quantum > CLOCK_MAX:
        raise BadArgument(f"Machine: 'quantum' is {quantum} cycles, past {CLOCK_MAX}, the most "
                          f"the model holds")
    cost = check_cost(cost)
    if type(seed) is not int or seed < 0:
        raise BadArgument(f"Machine: 'seed' must be an int >= 0, got {seed!r}")
    if type(depth) is not int or not 1 <= depth <= PCT_DEPTH_MAX:
        raise BadArgument(f"Machine: 'depth' must be an int from 1 to {PCT_DEPTH_MAX}, "
                          f"got {depth!r}")
    replay = None
    if isinstance(schedule, Schedule):
        if schedule.cpus != cpus:
            raise BadArgument(f"Machine: 'schedule' was recorded on {schedule.cpus} CPUs, "
                              f"this machine has {cpus}")
        replay, strategy = schedule, STRATEGY_REPLAY
    elif schedule is None:
        strategy = STRATEGY_CLOCK
    elif schedule in STRATEGIES:
        strategy = STRATEGIES[schedule]
    else:
        raise BadArgument(f"Machine: 'schedule' must be None, 'random', 'pct' or a "
                          f"smpsim.Schedule, got {schedule!r}")
    if kill is not None:
        if schedule is None:
            raise BadArgument("Machine: 'kill' needs a controlled run (schedule='random', "
                              "'pct' or a Schedule)")
        if (not isinstance(kill, (tuple, list)) or len(kill) != 2
                or any(type(x) is not int for x in kill) or not 0 <= kill[0] < cpus
                or kill[1] < 1):
            raise BadArgument(f"Machine: 'kill' must be (cpu, step) with a CPU id from 0 to "
                              f"{cpus - 1} and a step >= 1, got {kill!r}")
        kill = tuple(kill)
    if replay_mode not in ("exact", "lenient"):
        raise BadArgument(f"Machine: 'replay' must be 'exact' or 'lenient', got "
                          f"{replay_mode!r}")
    if max_steps is not None and (type(max_steps) is not int or max_steps < 1):
        raise BadArgument(f"Machine: 'max_steps' must be an int >= 1 or None, got {max_steps!r}")
    if schedule is not None:
        mode = SCHED_TOKEN
        log_cap = max(max_steps or DEFAULT_LOG_CAP, len(replay) if replay else 0)
    elif time == "simulated":
        quantum = DEFAULT_QUANTUM if quantum is None else quantum
        mode = SCHED_LAX if quantum else SCHED_TOKEN
        log_cap = 0
    else:
        mode, log_cap = SCHED_FREE, 0
    if time == "simulated" and quantum is None:
        quantum = DEFAULT_QUANTUM
    return {"time": time, "quantum": quantum if time == "simulated" else None, "cost": cost,
            "schedule": schedule, "replay": replay, "seed": seed, "depth": depth, "kill": kill,
            "sched_mode": mode, "strategy": strategy, "log_cap": log_cap,
            "lenient": replay_mode == "lenient"}


class Schedule:
    """A controlled run as it happened: which CPU passed at every scheduling point where two or
    more could have (its decisions), for replay with Machine(schedule=this).

    `len(s)` is its number of decisions, `s.preemptions` how many of them switched away from a
    CPU that could have gone on, `s.steps` the scheduling points the run passed, `s.cpus` the
    machine's CPU count and `s.strategy` how it was made ("random", "pct", or "replay" of
    another). Picklable; s.save(path) and Schedule.load(path) write and read it.
    """

    __slots__ = ("decisions", "preemptions", "steps", "cpus", "strategy", "seed", "depth",
                 "meta")
    decisions: bytes
    preemptions: int
    steps: int
    cpus: int
    strategy: str
    seed: int | None
    depth: int | None
    meta: dict[str, Any]

    def __init__(self, decisions: Iterable[int], *, preemptions: int = 0, steps: int = 0,
                 cpus: int = 0, strategy: str = "", seed: int | None = None,
                 depth: int | None = None, meta: dict[str, Any] | None = None) -> None:
        self.decisions = bytes(decisions)
        self.preemptions, self.steps, self.cpus = preemptions, steps, cpus
        self.strategy, self.seed, self.depth = strategy, seed, depth
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.decisions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.decisions == other.decisions

    def __hash__(self) -> int:
        return hash(self.decisions)

    def __repr__(self) -> str:
        return (f"<Schedule {len(self)} decisions, {self.preemptions} preemptions, "
                f"{self.steps} steps, {self.cpus} CPUs, {self.strategy}>")

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k in self.__slots__:
            setattr(self, k, state.get(k))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this schedule to the file `path` (a pickle of it)."""
        with open(os.fspath(path), "wb") as f:
            pickle.dump(self, f, protocol=4)

    @classmethod
    def load(cls: type[_S], path: str | os.PathLike[str]) -> _S:
        """The schedule saved in `path`; BadArgument naming the file when it holds none."""
        from .errors import BadArgument
        file = os.fspath(path)
        try:
            with open(file, "rb") as f:
                obj = pickle.load(f)
        except OSError as e:
            raise BadArgument(f"Schedule.load: cannot read {file}: {e.strerror or e}") from None
        except Exception as e:  # noqa: BLE001 - anything unpickling raises: not a schedule
            raise BadArgument(f"Schedule.load: {file} is not a saved schedule ({e})") from None
        if not isinstance(obj, cls):
            raise BadArgument(f"Schedule.load: {file} is not a saved schedule")
        return obj


def setup_run(m, sa, ids):
    """Prepare the scheduler's shared state for a run of CPUs `ids` on Machine m (through
    allocator sa, with bookkeeping writes only): every clock at the latest one, the CPUs of the
    run runnable and the others idle, and for a controlled run the strategy's state (the
    generator, PCT's priorities and change points, the log to replay) and the first decision.
    Returns nothing; the run's CPUs wait at their start point for the token."""
    from .layout import CPU_CTL, HEADER, WORD
    r, pk, po = sa.regions, sa.peek, sa.poke
    h = r.header
    clocks = [pk(r.cpu(i) + CPU_CTL.clock) for i in range(m.cpus)]
    start = max(clocks)
    for i in range(m.cpus):
        ctl = r.cpu(i)
        po(ctl + CPU_CTL.clock, start)
        po(ctl + CPU_CTL.state, CPU_RUNNABLE if i in ids else CPU_IDLE)
        po(ctl + CPU_CTL.wants, 0)
        po(ctl + CPU_CTL.go, 0)
        po(ctl + CPU_CTL.wake_at, (1 << 64) - 1)
        po(ctl + CPU_CTL.wake_epoch, (1 << 64) - 1)
    po(h + HEADER.run_start, start)
    po(h + HEADER.barrier_clock, 0)
    po(h + HEADER.failure, FAIL_NONE)
    po(h + HEADER.failure_step, 0)
    if m._sched_mode != SCHED_TOKEN:
        po(h + HEADER.run_active, 1)
        return
    po(h + HEADER.step, 0)
    po(h + HEADER.decisions, 0)
    po(h + HEADER.preemptions, 0)
    strategy = m._strategy
    if strategy != STRATEGY_CLOCK:
        if m._replay is None:
            po(h + HEADER.log_len, 0)
        else:
            log = m._replay.decisions
            sa.segment[r.log:r.log + len(log)] = log
            po(h + HEADER.log_len, len(log))
        po(h + HEADER.replay_lenient, int(m._lenient))
    kill = m._kill_pending
    po(h + HEADER.kill_cpu, kill[0] + 1 if kill else 0)
    po(h + HEADER.kill_step, kill[1] if kill else 0)
    m._kill_pending = None
    if strategy == STRATEGY_PCT:
        # PCT (Burckhardt et al., ASPLOS 2010): distinct random priorities depth .. depth+n-1
        # for the n CPUs of the run, and depth - 1 change points among the first k steps; at
        # the i-th change point the running CPU drops to priority depth - i.
        rng = random.Random(pk(h + HEADER.rng) ^ 0x5C4ED)
        prios = list(range(m.depth, m.depth + len(ids)))
        rng.shuffle(prios)
        for cpu, prio in zip(ids, prios):
            po(r.cpu(cpu) + CPU_CTL.prio, prio)
        k = max(1, m._pct_steps)
        changes = sorted(rng.randint(1, k) for _ in range(min(m.depth - 1, PCT_MAX)))
        for i, step in enumerate(changes):
            po(h + HEADER.pct_change + i * WORD, step)
        po(h + HEADER.pct_count, len(changes))
        po(h + HEADER.pct_next, 0)
        po(h + HEADER.pct_demotions, 0)
        po(h + HEADER.rng, rng.getrandbits(64))
    po(h + HEADER.run_active, 1)
    sa.arena.decide()


def finish_run(m, sa):
    """After a run: no run is active; for a controlled run, the Schedule it followed (with the
    decisions recorded, or the replayed one's), and the steps it took."""
    from .layout import HEADER
    r, pk, po = sa.regions, sa.peek, sa.poke
    h = r.header
    po(h + HEADER.run_active, 0)
    if m._sched_mode != SCHED_TOKEN or m._strategy == STRATEGY_CLOCK:
        return None
    steps = pk(h + HEADER.step)
    m._pct_steps = max(m._pct_steps, steps)
    # Recorded, or replayed leniently: the decisions actually made; replayed exactly: the log.
    exact = m._strategy == STRATEGY_REPLAY and not m._lenient
    n = pk(h + (HEADER.log_len if exact else HEADER.decisions))
    name = {STRATEGY_RANDOM: "random", STRATEGY_PCT: "pct",
            STRATEGY_REPLAY: "replay"}[m._strategy]
    return Schedule(bytes(sa.segment[r.log:r.log + n]), preemptions=pk(h + HEADER.preemptions),
                    steps=steps, cpus=m.cpus, strategy=name, seed=m.seed,
                    depth=m.depth if m._strategy == STRATEGY_PCT else None)
