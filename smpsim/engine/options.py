"""The options beyond the seed: what the seed's TODO list and Bonwick's papers add, each one off by
default, so that a machine with every option off runs the seed's allocator unchanged.

    Machine keyword           bit         what it adds (docs/options.md has the whole story)
    resize_magazines=False    OPT_RESIZE  a cache's magazine size steps up through Solaris's sizes
                                          (MAGAZINE_SIZES) when its shared list's lock sees more
                                          than `resize_threshold` contended acquisitions in one
                                          `resize_period` (Bonwick & Adams 2001, section 3.6)
    colour=False              OPT_COLOUR  successive slabs of a cache start their first object at
                                          successive 64-byte offsets within the slab's slack
                                          (Bonwick 1994, section 4)
    empty_magazines=False     OPT_EMPTY   a per-cache list of empty magazines, in front of the
                                          magazine cache (the seed's TODO)
    cpu_magazine_cache=False  OPT_FRONT   magazines come from "slab_magazine_cpu", a cache with
                                          per-CPU magazines of its own, in front of slab_magazine
                                          (the seed's TODO)
    slab_locks=False          OPT_SLABLOCKS  each slab has its own lock; allocation try-locks across
                                          the partial slabs before it waits (the seed's TODO)
    reap_every=None           OPT_REAP    working-set reaping of the shared lists (2001, 3.7):
                                          k.slab_reap(), and every `reap_every` seconds on its own

Object construction is not a machine option but a cache's: slab_cache_create(..., ctor=, dtor=)
names "module:function" callables (check_function, resolve below). The per-CPU counters
(Machine(counters="percpu")) predate these and have their own bit (OPT_PERCPU in machine.py).

The options' code lives beside the seed's: smpsim/engine/depot.py (the magazine layer's options:
resizing, the empty list, the per-CPU magazine cache, reaping) and smpsim/engine/slabopts.py (the
slab layer's: constructors and destructors, colouring, slab locks). smpsim/engine/slab.py calls
into them only where an option is on.

Time: resizing counts contention per period and reaping runs every `reap_every` seconds, both
read from clock_ns(), the one place that says what a second is: simulated seconds on a machine
in simulated time (Machine(time="simulated")), else host time.
"""

from __future__ import annotations

import importlib
import math
import re
import time
from typing import Any, ClassVar

from .errors import BadArgument
from .layout import FN_MAX, HEADER, MAGAZINE_SIZES

__all__ = ["Options", "OPT_RESIZE", "OPT_COLOUR", "OPT_EMPTY", "OPT_FRONT", "OPT_SLABLOCKS",
           "OPT_REAP", "MAGAZINE_SIZES", "COLOUR_STEP", "RESIZE_THRESHOLD", "RESIZE_PERIOD",
           "STAGES", "STAGE_CTOR", "STAGE_DTOR", "STAGE_REAP", "clock_ns",
           "check_function", "resolve", "SLAB_CACHE_MAGCACHE"]

# Bits of HEADER.options (1 and 2 are machine.py's OPT_DEBUG and OPT_PERCPU).
OPT_RESIZE = 4
OPT_COLOUR = 8
OPT_EMPTY = 16
OPT_FRONT = 32
OPT_SLABLOCKS = 64
OPT_REAP = 128

# A cache flag of the allocator's own (never a caller's): the cache's objects are magazines. Set
# only on the magazine caches the options add at boot (slab_magazine_cpu, slab_magazine_<M>).
SLAB_CACHE_MAGCACHE = 4

# Colouring: bytes between successive colours, a cache line (or the cache's alignment if larger).
COLOUR_STEP = 64
# Resizing: more than RESIZE_THRESHOLD contended acquisitions of a cache's maglock within one
# period of RESIZE_PERIOD seconds grow its magazines one step. Bonwick & Adams use 3 per 15 s
# (kmem_depot_contention, kmem_update_interval); a simulator run lasts seconds, so the period
# here is one second and the threshold theirs.
RESIZE_THRESHOLD = 3
RESIZE_PERIOD = 1.0
# The longest period between periodic reaps (its nanoseconds go into a 64-bit timer word).
REAP_EVERY_MAX = 1e9

# What a CPU is doing inside an option's window (CPU_CTL.stage), for the checker's explanation
# of what a CPU that died there left behind; index 0 is "no window".
STAGES = [None, "constructor", "destructor", "reap"]
STAGE_CTOR, STAGE_DTOR, STAGE_REAP = 1, 2, 3

_FUNCTION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def clock_ns(sa=None):
    """Now, in nanoseconds, for the options' periods (resizing, periodic reaping), as CPU `sa`
    (its allocator) sees it: on a machine in simulated time, its clock (cycles at the cost
    model's rate); else host time, the monotonic clock shared by every CPU process."""
    if sa is not None and sa.timed:
        return sa.arena.clock() * 1_000_000_000 // sa.peek(sa.regions.header + HEADER.hz)
    return time.monotonic_ns()


class Options:
    """A machine's options beyond the seed, checked (BadArgument naming the keyword) and
    turned into the bits of HEADER.options. `magazine_size` is the machine's (the seed's
    SLAB_MAG_SIZE), the size every magazine cache starts from."""

    __slots__ = ("resize_magazines", "colour", "empty_magazines", "cpu_magazine_cache",
                 "slab_locks", "reap_every", "resize_threshold", "resize_period", "magazine_size")

    FLAGS: ClassVar[tuple[str, ...]] = ("resize_magazines", "colour", "empty_magazines",
                                        "cpu_magazine_cache", "slab_locks")
    resize_magazines: bool
    colour: bool
    empty_magazines: bool
    cpu_magazine_cache: bool
    slab_locks: bool
    reap_every: float | None
    resize_threshold: int
    resize_period: float
    magazine_size: int

    def __init__(self, *, resize_magazines: bool = False, colour: bool = False,
                 empty_magazines: bool = False, cpu_magazine_cache: bool = False,
                 slab_locks: bool = False, reap_every: float | None = None,
                 resize_threshold: int = RESIZE_THRESHOLD, resize_period: float = RESIZE_PERIOD,
                 magazine_size: int = 4) -> None:
        given = dict(resize_magazines=resize_magazines, colour=colour,
                     empty_magazines=empty_magazines, cpu_magazine_cache=cpu_magazine_cache,
                     slab_locks=slab_locks)
        for name, value in given.items():
            if value is not True and value is not False:
                raise BadArgument(f"Machine: '{name}' must be True or False, got {value!r}")
            setattr(self, name, value)
        if reap_every is not None and not _positive(reap_every):
            raise BadArgument(f"Machine: 'reap_every' must be a positive number of seconds "
                              f"(math.inf: only k.slab_reap()) or None, got {reap_every!r}")
        if reap_every is not None and REAP_EVERY_MAX < reap_every < math.inf:
            raise BadArgument(f"Machine: 'reap_every' is {reap_every!r} seconds, past "
                              f"{REAP_EVERY_MAX:g}, the longest period the timer holds "
                              f"(math.inf: only k.slab_reap())")
        if type(resize_threshold) is not int or resize_threshold < 0:
            raise BadArgument(f"Machine: 'resize_threshold' must be an int of at least 0, "
                              f"got {resize_threshold!r}")
        if not _positive(resize_period) or math.isinf(resize_period):
            raise BadArgument(f"Machine: 'resize_period' must be a positive number of seconds, "
                              f"got {resize_period!r}")
        self.reap_every = reap_every
        self.resize_threshold, self.resize_period = resize_threshold, resize_period
        self.magazine_size = magazine_size

    @property
    def bits(self) -> int:
        """The options as HEADER.options bits (without debug and per-CPU counters)."""
        return ((OPT_RESIZE if self.resize_magazines else 0) | (OPT_COLOUR if self.colour else 0)
                | (OPT_EMPTY if self.empty_magazines else 0)
                | (OPT_FRONT if self.cpu_magazine_cache else 0)
                | (OPT_SLABLOCKS if self.slab_locks else 0)
                | (OPT_REAP if self.reap_every is not None else 0))

    @property
    def any(self) -> bool:
        """True when some option is on (False: the seed's allocator, exactly)."""
        return bool(self.bits)

    @property
    def reap_period_ns(self) -> int | None:
        """Nanoseconds between periodic reaps, or None (no periodic reaps)."""
        if self.reap_every is None or math.isinf(self.reap_every):
            return None
        return max(1, int(self.reap_every * 1e9))

    @property
    def sized_magazines(self) -> tuple[int, ...]:
        """The magazine sizes resizing may step to: Solaris's, above the machine's own."""
        if not self.resize_magazines:
            return ()
        return tuple(s for s in MAGAZINE_SIZES if s > self.magazine_size)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        on = [n for n in self.FLAGS if getattr(self, n)]
        if self.reap_every is not None:
            on.append(f"reap_every={self.reap_every}")
        return f"<Options {' '.join(on) or 'seed'}>"


def _positive(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 and x == x


def check_function(value, fn, arg):
    """Check a constructor or destructor argument: None, or a "module:function" string naming a
    callable that can be imported here. BadArgument naming `fn` and `arg` otherwise."""
    if value is None:
        return None
    if not isinstance(value, str) or not _FUNCTION.fullmatch(value) or \
            len(value.encode()) > FN_MAX:
        raise BadArgument(f"{fn}: '{arg}' must be None or a 'module:function' string of at most "
                          f"{FN_MAX} characters, got {value!r}")
    try:
        resolve(value)
    except Exception as e:                     # noqa: BLE001 - any import failure is the caller's
        raise BadArgument(f"{fn}: '{arg}' {value!r} cannot be used: {e}") from None
    return value


def resolve(name):
    """The callable "module:function" names (ImportError / AttributeError / TypeError when it
    cannot be had)."""
    mod, _, attr = name.partition(":")
    f = getattr(importlib.import_module(mod), attr)
    if not callable(f):
        raise TypeError(f"{name} is not callable")
    return f
