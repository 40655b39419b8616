"""smpsim's errors. Every error of smpsim's own derives from SmpsimError; a caller's bad argument
is a ValueError (BadArgument derives from both), as docs/api.md says."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

__all__ = ["SmpsimError", "BadArgument", "OutOfMemory", "InvalidFree", "InvalidCache",
           "CacheNotEmpty", "InvariantError", "CPUError", "LockTimeout", "LockOrderError",
           "DebugError"]


class SmpsimError(Exception):
    """Base of every error smpsim raises of its own."""


class BadArgument(SmpsimError, ValueError):
    """An argument out of its range; the message names the function and the argument."""


class OutOfMemory(SmpsimError):
    """No frames left, even after reclaim (and the request did not carry FRAME_ATOMIC)."""


class InvalidFree(SmpsimError):
    """An address that is not a live object of the cache given (or of a malloc cache, for kfree):
    freed twice, inside an object, of another cache, outside memory. Nothing was changed."""


class InvalidCache(SmpsimError):
    """A handle of a cache that was destroyed."""


class CacheNotEmpty(SmpsimError):
    """slab_cache_destroy of a cache that still has allocated objects. Nothing was changed."""


class InvariantError(SmpsimError):
    """Machine.check found violations; the message lists every one, `violations` holds them."""

    violations: list[str]

    def __init__(self, violations: Iterable[str]) -> None:
        self.violations = list(violations)
        super().__init__(f"{len(self.violations)} invariant violation(s):\n"
                         + "\n".join(f"  - {v}" for v in self.violations))

    def __reduce__(self) -> tuple[Any, ...]:
        return (InvariantError, (self.violations,))


class LockTimeout(SmpsimError):
    """The lock watchdog: a lock was held longer than Machine(lock_timeout=...) seconds, or its
    holder is a CPU whose process died (`dead` true: it will never be released), or the CPU
    waiting is its holder (a CPU process of a run and a Kernel of the caller used one CPU id)."""

    lock: str
    holder: int | None
    seconds: float
    why: str
    dead: bool

    def __init__(self, lock: str, holder: int | None, seconds: float, why: str = "") -> None:
        self.lock, self.holder, self.seconds, self.why = lock, holder, seconds, why
        self.dead = "died" in why
        who = "nobody (it was released as we gave up)" if holder is None else f"CPU {holder}"
        super().__init__(f"lock {lock} not acquired within {seconds:g} s: held by {who}"
                         + (f", {why}" if why else ""))

    def __reduce__(self) -> tuple[Any, ...]:
        return (LockTimeout, (self.lock, self.holder, self.seconds, self.why))


class LockOrderError(SmpsimError):
    """Debugging mode: a lock taken against the lock order (see smpsim/engine/locks.py)."""


class DebugError(SmpsimError):
    """Debugging mode found corruption: a write after free or a red zone overrun (`kind`).
    `obj` is the object's address, `cache` its cache's name, `offset` the first byte found
    wrong, `cpu` the CPU that freed it last (write after free) or allocated it (overrun)."""

    kind: str | None
    obj: int | None
    cache: str | None
    cpu: int | None
    offset: int | None

    def __init__(self, message: str, *, kind: str | None = None, obj: int | None = None,
                 cache: str | None = None, cpu: int | None = None,
                 offset: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.obj, self.cache, self.cpu, self.offset = kind, obj, cache, cpu, offset

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_debug_error, (self.args[0], self.kind, self.obj, self.cache, self.cpu,
                                       self.offset))


def _rebuild_debug_error(message, kind, obj, cache, cpu, offset):
    return DebugError(message, kind=kind, obj=obj, cache=cache, cpu=cpu, offset=offset)


class CPUError(SmpsimError):
    """A CPU of Machine.run failed: it raised (`reason` "exception"), died ("died") or the run ran
    out of time ("timeout"); in a controlled run, no CPU could go on ("deadlock": the message
    names each stuck CPU, the locks it holds and the lock it waits for) or a replayed schedule
    did not match the program ("schedule"). `inside` tells whether it was inside allocator
    code, `locks` names the locks it held (from the holder ids in the lock words), `traceback`
    is the remote traceback text when it raised."""

    cpu: int
    reason: str
    traceback: str | None
    inside: bool
    locks: list[str]
    others: Sequence[CPUError] = ()

    def __init__(self, cpu: int, reason: str, detail: str = "", *, traceback: str | None = None,
                 inside: bool = False, locks: Iterable[str] = ()) -> None:
        self.cpu, self.reason, self.traceback = cpu, reason, traceback
        self.inside, self.locks = bool(inside), list(locks)
        self.others = []
        msg = f"CPU {cpu} {_REASONS.get(reason, reason)}"
        if detail:
            msg += f": {detail}"
        if inside:
            msg += "; it was inside allocator code"
            msg += f", holding {', '.join(self.locks)}" if self.locks else ", holding no lock"
            msg += " (m.check() reports what its unfinished operation left)"
        super().__init__(msg)

    def add_other(self, cpu: int, detail: str, *, inside: bool, locks: Iterable[str]) -> None:
        """Record another CPU that the stop left inside allocator code: it could not finish
        its operation (e.g. it waited for a lock the failed CPU held) and was ended there.
        `others` holds one CPUError ("died") per such CPU; the message names each."""
        other = CPUError(cpu, "died", detail, inside=inside, locks=locks)
        self.others.append(other)
        held = f"holding {', '.join(other.locks)}" if other.locks else "holding no lock"
        self.args = (f"{self.args[0]}; the stop left CPU {cpu} inside allocator code, {held} "
                     f"({detail})",)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_cpu_error, (self.cpu, self.reason, self.args[0], self.traceback,
                                     self.inside, self.locks, self.others))


_REASONS = {"exception": "raised an exception", "died": "died", "timeout": "timed out",
            "deadlock": "is deadlocked", "schedule": "could not follow the schedule"}


def _rebuild_cpu_error(cpu, reason, message, traceback, inside, locks, others=()):
    e = CPUError.__new__(CPUError)
    e.cpu, e.reason, e.traceback, e.inside, e.locks = cpu, reason, traceback, inside, locks
    e.others = list(others)
    Exception.__init__(e, message)
    return e
