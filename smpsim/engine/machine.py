"""The Machine: the shared-memory segment, boot, per-CPU kernels, runs, checks and statistics.

Lifecycle (like multiprocessing.shared_memory.SharedMemory): the constructor creates the segment
(named smpsim_<pid>_<random>, so a segment whose creator died can be told apart and swept at the
next start) and boots the allocator, cleaning up if any step fails; close() stops nothing that
is not already stopped (Machine.run always stops its CPUs before it returns or raises), drops
every view, closes and unlinks the segment, and is safe to repeat. A finalizer unlinks the
segment if the Machine is dropped without close().
"""

from __future__ import annotations

import os
import re
import secrets
import weakref
from multiprocessing import resource_tracker, shared_memory
from typing import Any, Callable, Iterable, Literal, TypeVar, overload

from . import cpu as _cpu
from .check import check_machine
from .errors import BadArgument, InvariantError, SmpsimError
from .fastpath import ACCEL_CHOICES
from .frames import boot_frames
from .kernel import Kernel, boot
from .layout import (CACHE, CACHE_EXT, CACHE_STATS, CPU_CTL, HEADER, KERNEL, LOCKSTAT, OPTIONS,
                     PAGE_SIZE, SPINLOCK, Regions)
from .options import RESIZE_PERIOD, RESIZE_THRESHOLD, Options, clock_ns
from .sched import PCT_FIRST_STEPS, Schedule, resolve_modes
from .slab import SLAB_CACHE_SLINSIDE, SlabAllocator

__all__ = ["Machine", "parse_memory", "sweep_stale_segments"]

SHM_PREFIX = "smpsim_"
SHM_DIR = "/dev/shm"
MAGIC = 0x534D5053494D3031      # "SMPSIM01"
OPT_DEBUG, OPT_PERCPU = 1, 2
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_T = TypeVar("_T")
_M = TypeVar("_M", bound="Machine")


def parse_memory(memory: int | str) -> int:
    """Bytes from an int or a string with a K/M/G suffix (binary units): "64M" -> 67108864."""
    if isinstance(memory, str):
        m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", memory, re.IGNORECASE)
        if not m:
            raise BadArgument(f"Machine: 'memory' must be an int or a string like '64M', "
                              f"got {memory!r}")
        memory = int(m.group(1)) * _UNITS[m.group(2).upper()]
    if type(memory) is not int:
        raise BadArgument(f"Machine: 'memory' must be an int or a string like '64M', got {memory!r}")
    if memory < 1 << 20 or memory % PAGE_SIZE:
        raise BadArgument(f"Machine: 'memory' must be a multiple of {PAGE_SIZE} bytes and at "
                          f"least 1M, got {memory}")
    return memory


def sweep_stale_segments() -> list[str]:
    """Unlink smpsim segments whose creating process no longer exists; returns their names."""
    swept = []
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return swept
    for name in names:
        m = re.fullmatch(SHM_PREFIX + r"(\d+)_[0-9a-f]+", name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(SHM_DIR, name))
                swept.append(name)
            except OSError:
                pass
        except PermissionError:
            pass
    return swept


def _shm_room():
    """Bytes free in SHM_DIR (None when it cannot be told)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _teardown(name, shm, kernels):
    """Release the kernels' views, close the segment and unlink it (Machine.close)."""
    for k in kernels.values():
        k._release()
    kernels.clear()
    try:
        shm.close()
    except BufferError:
        pass                     # a caller still holds a view of its own; the mapping goes with it
    _unlink_segment(name)


def _unlink_segment(name):
    try:
        os.unlink(os.path.join(SHM_DIR, name))
    except OSError:
        pass


class Machine:
    """A simulated SMP machine running the seed's slab allocator (docs/api.md, "Machine")."""

    _shm = None
    _kernels = None
    _running = False
    last_run: dict[str, Any] | None = None
    last_schedule: Schedule | None = None
    cpus: int
    memory: int
    magazine_size: int
    debug: bool
    counters: Literal["shared", "percpu"]
    lock_timeout: float | None
    accel: Literal["c", "python", "off"]
    time: Literal["host", "simulated"]
    quantum: int | None
    cost: dict[str, int]
    schedule: Literal["random", "pct"] | Schedule | None
    seed: int
    depth: int
    trace: str | None
    options: Options
    regions: Regions
    name: str

    def __init__(self, cpus: int, memory: int | str = "64M", *, magazine_size: int = 4,
                 debug: bool = False, counters: Literal["shared", "percpu"] = "shared",
                 lock_timeout: float | None = None,
                 accel: Literal["c", "python", "off"] | bool = "c",
                 time: Literal["host", "simulated"] = "host", quantum: int | None = None,
                 cost: dict[str, int] | None = None,
                 schedule: Literal["random", "pct"] | Schedule | None = None, seed: int = 0,
                 depth: int = 3, kill: tuple[int, int] | None = None,
                 max_steps: int | None = None, replay: Literal["exact", "lenient"] = "exact",
                 trace: str | os.PathLike[str] | None = None, resize_magazines: bool = False,
                 colour: bool = False, empty_magazines: bool = False,
                 cpu_magazine_cache: bool = False, slab_locks: bool = False,
                 reap_every: float | None = None, resize_threshold: int = RESIZE_THRESHOLD,
                 resize_period: float = RESIZE_PERIOD) -> None:
        if type(cpus) is not int or not 1 <= cpus <= 256:
            raise BadArgument(f"Machine: 'cpus' must be an int from 1 to 256, got {cpus!r}")
        memory = parse_memory(memory)
        if type(magazine_size) is not int or not 1 <= magazine_size <= 1024:
            raise BadArgument(f"Machine: 'magazine_size' must be an int from 1 to 1024, "
                              f"got {magazine_size!r}")
        if counters not in ("shared", "percpu"):
            raise BadArgument(f"Machine: 'counters' must be 'shared' or 'percpu', got {counters!r}")
        if lock_timeout is not None and (not isinstance(lock_timeout, (int, float))
                                         or not lock_timeout > 0):
            raise BadArgument(f"Machine: 'lock_timeout' must be a positive number of seconds "
                              f"or None, got {lock_timeout!r}")
        if accel is True or accel is False:
            accel = "c" if accel else "python"
        if accel not in ACCEL_CHOICES:
            raise BadArgument(f"Machine: 'accel' must be one of {', '.join(ACCEL_CHOICES)} (or "
                              f"True / False for 'c' / 'python'), got {accel!r}")
        modes = resolve_modes(cpus, time, quantum, cost, schedule, seed, depth, kill, max_steps,
                              replay)
        # The options beyond the seed (smpsim/engine/options.py); each checks its own keyword.
        self.options = Options(resize_magazines=resize_magazines, colour=colour,
                               empty_magazines=empty_magazines,
                               cpu_magazine_cache=cpu_magazine_cache, slab_locks=slab_locks,
                               reap_every=reap_every, resize_threshold=resize_threshold,
                               resize_period=resize_period, magazine_size=magazine_size)
        self.accel = accel
        self.cpus, self.memory, self.magazine_size = cpus, memory, magazine_size
        self.debug, self.counters, self.lock_timeout = bool(debug), counters, lock_timeout
        self.time, self.quantum, self.cost = modes["time"], modes["quantum"], modes["cost"]
        self.schedule, self.seed, self.depth = modes["schedule"], seed, depth
        self._sched_mode, self._strategy = modes["sched_mode"], modes["strategy"]
        self._replay, self._kill_pending = modes["replay"], modes["kill"]
        self._lenient = modes["lenient"]
        if trace is not None and (schedule is None or not isinstance(trace, (str, os.PathLike))):
            raise BadArgument(f"Machine: 'trace' must be a file path, with a controlled run "
                              f"(schedule='random', 'pct' or a Schedule), got {trace!r}")
        self.trace = None if trace is None else os.fspath(trace)
        self._pct_steps = PCT_FIRST_STEPS
        self.regions = Regions(memory, cpus, timed=self.time == "simulated",
                               log_cap=modes["log_cap"], options=self.options.any)
        room = _shm_room()
        if room is not None and self.regions.size > room:
            raise BadArgument(f"Machine: 'memory' {memory} needs a segment of "
                              f"{self.regions.size} bytes, more than {SHM_DIR} has free "
                              f"({room} bytes)")
        sweep_stale_segments()
        self.name = f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(6)}"
        self._shm = shared_memory.SharedMemory(name=self.name, create=True,
                                               size=self.regions.size)
        # smpsim removes its segments itself (close(), the finalizer, and the sweep of segments
        # whose creator died), so the resource tracker is told to leave this one alone: with
        # CPU processes forking from this one it warned of leaks that were not there.
        resource_tracker.unregister(self._shm._name, "shared_memory")
        self._kernels = {}
        # close(), or the garbage collector / interpreter exit for a Machine never closed.
        self._finalizer = weakref.finalize(self, _teardown, self.name, self._shm, self._kernels)
        try:
            self._boot()
        except BaseException:
            self.close()
            raise

    def _boot(self) -> None:
        # The header first: every CPU's views are made after it (they read its modes).
        words = self._shm.buf.cast("Q")
        try:
            h = self.regions.header >> 3
            for field, value in (("magic", MAGIC), ("memory", self.memory),
                                 ("nframes", self.regions.nframes), ("cpus", self.cpus),
                                 ("magazine_size", self.magazine_size),
                                 ("options", (OPT_DEBUG if self.debug else 0)
                                  | (OPT_PERCPU if self.counters == "percpu" else 0)
                                  | self.options.bits),
                                 ("creator_pid", os.getpid()),
                                 ("time_mode", self.time == "simulated"),
                                 ("sched_mode", self._sched_mode), ("strategy", self._strategy),
                                 ("hz", self.cost["hz"]), ("quantum", self.quantum or 0),
                                 ("cost_hit", self.cost["hit"]),
                                 ("cost_transfer", self.cost["transfer"]),
                                 ("cost_atomic", self.cost["atomic"]),
                                 ("log_cap", self.regions.log_cap),
                                 ("rng", (self.seed * 0x9E3779B97F4A7C15 + 1) % (1 << 64))):
                words[h + (getattr(HEADER, field) >> 3)] = int(value)
        finally:
            words.release()
        k = self.cpu(0)
        sa = k._sa
        if self.options.reap_period_ns is not None:      # the first periodic reap
            sa.poke(self.regions.options_line + OPTIONS.reap_due,
                    clock_ns(sa) + self.options.reap_period_ns)
        boot_frames(sa)
        boot(k, self.magazine_size)

    # --- kernels ----------------------------------------------------------------------------

    def _allocator(self, i):
        """A new SlabAllocator of CPU i on this machine's segment (the engine's internals)."""
        return SlabAllocator(self._shm.buf, self.regions, i, self.cpus, debug=self.debug,
                             lock_timeout=self.lock_timeout,
                             percpu_counters=self.counters == "percpu", options=self.options)

    def _new_kernel(self, i):
        return Kernel(self._allocator(i), accel=self.accel)

    def _observer(self):
        """The allocator through which the machine reads its own state (statistics, the
        checker, lock names): CPU 0's, reading with bookkeeping accesses only."""
        return self.cpu(0)._sa

    def cpu(self, i: int) -> Kernel:
        """A Kernel for CPU i, usable in the calling process."""
        self._check_open()
        if type(i) is not int or not 0 <= i < self.cpus:
            raise BadArgument(f"Machine.cpu: CPU id must be an int from 0 to {self.cpus - 1}, "
                              f"got {i!r}")
        k = self._kernels.get(i)
        if k is None:
            k = self._kernels[i] = self._new_kernel(i)
        return k

    def _check_open(self):
        if self._shm is None:
            raise SmpsimError("Machine is closed")

    # --- runs, checks, statistics -----------------------------------------------------------

    @overload
    def run(self, program: Callable[..., _T], *args: Any, cpus: Iterable[int] | None = None,
            timeout: float | None = None, monitor: Callable[[Machine], object] | None = None,
            interval: float = 0.25, pin: bool = False) -> list[_T]: ...

    @overload
    def run(self, program: str, *args: Any, cpus: Iterable[int] | None = None,
            timeout: float | None = None, monitor: Callable[[Machine], object] | None = None,
            interval: float = 0.25, pin: bool = False) -> list[Any]: ...

    def run(self, program: Callable[..., Any] | str, *args: Any,
            cpus: Iterable[int] | None = None, timeout: float | None = None,
            monitor: Callable[[Machine], object] | None = None, interval: float = 0.25,
            pin: bool = False) -> list[Any]:
        """Run program(kernel, *args) on CPUs as processes; their return values, in order."""
        self._check_open()
        if self._running:
            raise SmpsimError("Machine.run: a run is already in progress on this machine")
        self._running = True
        try:
            return _cpu.run(self, program, args, cpus=cpus, timeout=timeout, monitor=monitor,
                            interval=interval, pin=pin)
        finally:
            self._running = False

    def check(self) -> None:
        """Walk all shared state; raise InvariantError listing every violation."""
        self._check_open()
        if self._running and not _cpu.all_stopped(self):
            raise SmpsimError("Machine.check: CPUs are running; check after Machine.run returns")
        violations = check_machine(self._observer())
        if violations:
            raise InvariantError(violations)

    def stats(self) -> dict[str, Any]:
        """Counters of frames, caches and locks (docs/api.md); racy while CPUs run."""
        self._check_open()
        k = self._observer()
        caches, locks = {}, {}
        for c in k.caches():
            ld = k.peek
            name = k.cache_name(c)
            caches[name] = {
                "size": ld(c + CACHE.size), "pages": 1 << ld(c + CACHE.order),
                "objects": ld(c + CACHE.objects), "slabs": k.signed(c + CACHE.allocated_slabs),
                "cached": k.counter(c, "cached"), "allocated": k.counter(c, "allocated"),
                "inside": bool(ld(c + CACHE.flags) & SLAB_CACHE_SLINSIDE),
                "flags": ld(c + CACHE.flags), "order": ld(c + CACHE.order),
                "magazines": ld(c + CACHE.magazine_counter),
                "magazine_size": ld(c + CACHE.magazine_size),
            }
            stats = k._stats(c)              # the options' statistics (always there)
            for key in ("constructed", "destructed", "resizes", "ctor_failures", "dtor_errors"):
                caches[name][key] = ld(stats + getattr(CACHE_STATS, key))
            caches[name]["empty_magazines"] = (ld(k._ext(c) + CACHE_EXT.empty_counter)
                                               if self.options.empty_magazines else 0)
        table = {lock: entry for entry, lock in k.lock_entries()}
        timed = self.time == "simulated"
        for name, lock in k.all_locks():
            entry = table.get(lock)
            if name.startswith("user@"):        # a bare word: its counters are in the table
                counts = entry + LOCKSTAT.acquisitions - SPINLOCK.acquisitions
            else:
                counts = lock
            row = locks[name] = {"acquisitions": k.peek(counts + SPINLOCK.acquisitions),
                                 "contended": k.peek(counts + SPINLOCK.contended),
                                 "spins": k.peek(counts + SPINLOCK.spins)}
            if timed:
                row["wait_cycles"] = k.peek(entry + LOCKSTAT.wait_cycles) if entry else 0
                row["hold_cycles"] = k.peek(entry + LOCKSTAT.hold_cycles) if entry else 0
        locks = k.fold_slab_locks(locks)       # slab locks: one row per cache
        line = self.regions.options_line
        return {"frames": {"total": self.regions.nframes, "free": k.free_frames()},
                "caches": caches, "locks": locks,
                "reclaim": {"calls": k.peek(KERNEL.reclaim_calls),
                            "frames": k.peek(KERNEL.reclaim_frames)},
                "reap": {"calls": k.peek(line + OPTIONS.reap_calls),
                         "frames": k.peek(line + OPTIONS.reap_frames),
                         "magazines": k.peek(line + OPTIONS.reap_magazines)},
                "cpus": self.cpu_stats(),
                "time": {"mode": self.time, "hz": self.cost["hz"], "quantum": self.quantum,
                         "cycles": [k.peek(self.regions.cpu(i) + CPU_CTL.clock) if timed else 0
                                    for i in range(self.cpus)]}}

    def cpu_stats(self) -> list[dict[str, int]]:
        """Per CPU: operations, allocations, frees, magazine hits and misses since boot, and the
        misses by the deepest layer they reached (depot, slab, frames); in simulated time also
        its clock ("cycles") and the lines it took from other CPUs' caches ("transfers")."""
        self._check_open()
        k = self._observer()
        out = []
        for i in range(self.cpus):
            ctl = self.regions.cpu(i)
            row = {"cpu": i}
            for f in ("ops", "allocs", "frees", "hits", "misses", "depot", "slab", "frames"):
                row[f] = k.peek(ctl + getattr(CPU_CTL, f))
            if self.time == "simulated":
                row["cycles"] = k.peek(ctl + CPU_CTL.clock)
                row["transfers"] = k.peek(ctl + CPU_CTL.transfers)
            out.append(row)
        return out

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Drop every view, close and unlink the segment. Safe to call twice."""
        if self._shm is None:
            return
        self._shm = None
        self._finalizer()        # runs _teardown once

    def __enter__(self: _M) -> _M:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._shm is None else self.name
        return f"<Machine cpus={self.cpus} memory={self.memory} {state}>"
