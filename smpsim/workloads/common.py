"""What every workload shares: parameter declarations, per-CPU seeding, the length of a run (in
the machine's time: host seconds, or simulated seconds in simulated time), and a Heap that
allocates, tags and frees objects while counting what it saw.

Objects are tagged: the first 8 bytes of every object a Heap allocates hold the allocating CPU's
id plus one (0 for objects the parent allocated in `prepare`). A free reads the tag first, so a
free by another CPU is counted as remote and an overwritten tag as corrupt, without any
bookkeeping shared between CPUs. Every object is at least 8 bytes (the seed's geometry aligns sizes
to 8 at least), so the tag always fits.

Allocations use FRAME_ATOMIC: running out of memory is counted as a failed allocation, not
raised, and the workload goes on (the pressure workload depends on it).

Latency: one in `sample_every` allocations and frees a Heap makes is timed (host nanoseconds
around the Kernel call, or the CPU's simulated cycles: latency.clock) and counted in a histogram
of its kind (the call: slab_alloc, slab_free, kalloc, kfree) and of the path it took
(k.last_path: hit, depot, slab, frames). The gaps between timed operations are drawn at random
(uniform in 1 .. 2 * sample_every - 1, seeded by the CPU id), not fixed: a workload that repeats
a pattern, as a batch of 2 allocations and 2 frees does, would otherwise always be timed at the
same point of it (every 16th operation of that batch is a free). Failed allocations are not
timed. The histograms come
back in the workload's result under "latency" ({"kind/path": Histogram.as_dict()}).
"""

import logging
import os
import random
import time

import smpsim
from smpsim.workloads.latency import Histogram, clock

__all__ = ["Param", "COMMON", "LENGTH", "DEFAULT_OPS", "resolve", "cpu_rng", "now", "Budget",
           "Heap", "SharedBlock", "malloc_cache_name", "MALLOC_MAX", "spin_wait", "SAMPLE_EVERY"]

log = logging.getLogger("smpsim.workloads")

DEFAULT_OPS = 10000
SAMPLE_EVERY = 64            # a Heap times one operation in 64 by default (about 3 % slower
                             # on the magazine hit path, the fastest; 16: about 19 %)
MALLOC_MAX = 131072          # the largest kalloc size (malloc-128K)
TAG = 8                      # bytes of the allocating-CPU tag at the start of every object
_NAMES = ["8", "16", "32", "64", "128", "256", "512", "1K", "2K", "4K", "8K", "16K", "32K",
          "64K", "128K"]


class Param:
    """One workload parameter: its kind ("int", "float", "bool", "str", "sizes"), default and
    range. `expect` is the phrase error messages use ("an integer 1..1000000")."""

    def __init__(self, kind, default, *, lo=None, hi=None, choices=None, doc=""):
        self.kind, self.default, self.lo, self.hi = kind, default, lo, hi
        self.choices, self.doc = choices, doc

    @property
    def expect(self):
        if self.kind == "sizes":
            return f"a list of [size, weight] pairs, sizes 1..{MALLOC_MAX}, weights > 0"
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        noun = {"int": "an integer", "float": "a number", "bool": "true or false",
                "str": "a string"}[self.kind]
        fmt = "d" if self.kind == "int" else "g"
        if self.lo is not None and self.hi is not None:
            return f"{noun} {self.lo:{fmt}}..{self.hi:{fmt}}"
        if self.lo is not None:
            return f"{noun} >= {self.lo:{fmt}}"
        return noun

    def check(self, value):
        """The value converted to its kind; ValueError(self.expect) when it is not one."""
        k = self.kind
        ok = ((k == "int" and isinstance(value, int) and not isinstance(value, bool))
              or (k == "float" and isinstance(value, (int, float)) and not isinstance(value, bool))
              or (k == "bool" and isinstance(value, bool))
              or (k == "str" and isinstance(value, str))
              or (k == "sizes" and _is_sizes(value)))
        if ok and k in ("int", "float"):
            ok = (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)
        if ok and self.choices:
            ok = value in self.choices
        if not ok:
            raise ValueError(self.expect)
        if k == "float":
            return float(value)
        if k == "sizes":
            return [[int(s), float(w)] for s, w in value]
        return value


def _is_sizes(value):
    if not isinstance(value, list) or not value:
        return False
    for pair in value:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            return False
        s, w = pair
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MALLOC_MAX:
            return False
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
            return False
    return True


# Parameters every workload takes. `ops` is per CPU (allocations plus frees); with `seconds` too,
# the run ends at whichever comes first. `ops` 0 means DEFAULT_OPS without `seconds`, and no
# limit but the time with it.
COMMON = {
    "seed": Param("int", 1, lo=0, doc="seed; each CPU derives its own from (seed, cpu id)"),
    "cache": Param("str", "", doc="a cache to allocate from; empty: the malloc caches (kalloc)"),
    "sample_every": Param("int", SAMPLE_EVERY, lo=0, hi=10**6,
                          doc="time one in N allocations and frees (latency); 0: none"),
}
LENGTH = {
    "ops": Param("int", 0, lo=0, hi=10**9,
                 doc="operations per CPU (allocations + frees); 0: 10000, or only `seconds`"),
    "seconds": Param("float", 0.0, lo=0, hi=86400,
                     doc="time limit per CPU (simulated seconds in simulated time); 0: none"),
}


def resolve(spec, params=None, overrides=None):
    """`params` (a dict, or None) with `overrides` applied and defaults filled in from `spec`.
    Unknown names and bad values raise ValueError naming the parameter."""
    given = dict(params or {})
    given.update(overrides or {})
    out = {}
    for name, value in given.items():
        if name.startswith("_"):          # addresses and roles set by prepare()
            out[name] = value
            continue
        if name not in spec:
            raise ValueError(f"unknown parameter {name!r}; known: {', '.join(sorted(spec))}")
        try:
            out[name] = spec[name].check(value)
        except ValueError as e:
            raise ValueError(f"parameter {name!r}: expected {e}, got {value!r}") from None
    for name, p in spec.items():
        out.setdefault(name, p.default)
    return out


def cpu_rng(params, k):
    """This CPU's generator: the same (seed, cpu id) always gives the same sequence."""
    return random.Random(f"smpsim:{params['seed']}:{k.cpu_id}")


def malloc_cache_name(size):
    """The malloc cache kalloc(size) uses (the seed's index computation)."""
    idx = (max(size, 8) - 1).bit_length() - 3
    return "malloc-" + _NAMES[idx]


def now(k):
    """The time now in seconds in CPU `k`'s machine's time: host seconds (perf_counter), or in
    simulated time the CPU's simulated clock (k.cycles / k.hz). Only differences mean anything."""
    if k.time == "simulated":
        return k.cycles / k.hz
    return time.perf_counter()


class Budget:
    """The length of a run on CPU `k`: `ops` operations, or `seconds`, whichever ends first.
    `seconds` are in the machine's time: host seconds, or in simulated time simulated seconds
    (cycles of this CPU's clock over k.hz, counted from when the Budget was made)."""

    def __init__(self, k, params=None):
        if isinstance(k, dict) or params is None:
            raise TypeError(f"Budget: expected the CPU's Kernel and the parameters, "
                            f"Budget(k, params), got Budget({type(k).__name__}"
                            f"{'' if params is None else ', ...'})")
        self.seconds = params.get("seconds", 0.0) or 0.0
        self.ops = params.get("ops", 0) or (0 if self.seconds else DEFAULT_OPS)
        self.simulated = k.time == "simulated"
        if self.simulated:
            self.k, self.hz = k, k.hz
            self.start = k.cycles
            self.limit = round(self.seconds * self.hz)        # cycles
        else:
            self.start = time.perf_counter()

    def more(self, ops_done):
        """True while the run should go on after `ops_done` operations."""
        if self.ops and ops_done >= self.ops:
            return False
        if not self.seconds:
            return True
        if self.simulated:
            return self.k.cycles - self.start < self.limit
        return time.perf_counter() - self.start < self.seconds

    def elapsed(self):
        """Seconds since the Budget was made, in the machine's time."""
        if self.simulated:
            return (self.k.cycles - self.start) / self.hz
        return time.perf_counter() - self.start


class Heap:
    """Allocates from one cache (slab_alloc) or the malloc caches (kalloc), tags and frees objects,
    counting allocations, frees, failed allocations, remote frees and corrupt tags, and timing
    one in `sample_every` operations (0: none) into `latency` histograms by kind and path."""

    def __init__(self, k, cache="", sample_every=SAMPLE_EVERY):
        self.k, self.mem, self.cpu = k, k.memory, k.cpu_id
        self.cache = k.cache(cache) if cache else None
        self.tag = (self.cpu + 1).to_bytes(TAG, "little")
        self.allocs = self.frees = self.failed = self.remote = self.corrupt = 0
        self.bytes = 0
        self.every, self.gaps = sample_every, random.Random(f"smpsim-latency:{self.cpu}")
        self.countdown = self._gap()
        self.clock, self.unit = clock(k)
        self.latency = {}                     # "kind/path" -> Histogram
        self.kinds = ("slab_alloc", "slab_free") if self.cache is not None else ("kalloc", "kfree")

    @property
    def ops(self):
        return self.allocs + self.frees

    def _gap(self):
        """Operations until the next timed one: 1 .. 2 * every - 1, every on average; 0 when
        nothing is timed (the countdown then goes negative and never reaches 0)."""
        return 1 + int(self.gaps.random() * (2 * self.every - 1)) if self.every else 0

    def _record(self, kind, t):
        key = f"{kind}/{self.k.last_path}"
        h = self.latency.get(key)
        if h is None:
            h = self.latency[key] = Histogram(self.unit)
        h.record(max(0, t))

    def _alloc_timed(self, size):
        self.countdown = self._gap()
        clock = self.clock
        t0 = clock()
        if self.cache is not None:
            a = self.k.slab_alloc(self.cache, smpsim.FRAME_ATOMIC)
        else:
            a = self.k.kalloc(size, smpsim.FRAME_ATOMIC)
        t = clock() - t0
        if a:
            self._record(self.kinds[0], t)
        return a

    def alloc(self, size=8):
        """A tagged object of `size` bytes (the cache's size with a cache), or None when memory
        ran out."""
        self.countdown -= 1                   # the countdown to a timed operation, inline: the
        if not self.countdown:                # untimed path must stay as short as it was
            a = self._alloc_timed(size)
        elif self.cache is not None:
            a = self.k.slab_alloc(self.cache, smpsim.FRAME_ATOMIC)
        else:
            a = self.k.kalloc(size, smpsim.FRAME_ATOMIC)
        if not a:
            self.failed += 1
            return None
        self.allocs += 1
        self.bytes += size
        self.mem[a:a + TAG] = self.tag
        return a

    def owner(self, a):
        """The CPU whose tag object `a` carries (-1: allocated by the parent)."""
        return int.from_bytes(self.mem[a:a + TAG], "little") - 1

    def _free_timed(self, a):
        self.countdown = self._gap()
        clock = self.clock
        t0 = clock()
        if self.cache is not None:
            self.k.slab_free(self.cache, a)
        else:
            self.k.kfree(a)
        self._record(self.kinds[1], clock() - t0)

    def free(self, a):
        """Frees object `a`, counting it remote when another CPU allocated it."""
        owner = self.owner(a)
        if owner != self.cpu:
            self.remote += 1
            if not -1 <= owner < self.k.cpus:
                self.corrupt += 1
        self.countdown -= 1
        if not self.countdown:
            self._free_timed(a)
        elif self.cache is not None:
            self.k.slab_free(self.cache, a)
        else:
            self.k.kfree(a)
        self.frees += 1

    def absorb(self, other):
        """Adds another Heap's counts and latency histograms of this CPU to this one's."""
        for key in ("allocs", "frees", "failed", "remote", "corrupt", "bytes"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        for key, h in other.latency.items():
            if key in self.latency:
                self.latency[key].merge(h)
            else:
                self.latency[key] = h

    def result(self, name, seconds, **extra):
        """The dict every workload returns."""
        r = {"workload": name, "cpu": self.cpu, "ops": self.ops, "allocs": self.allocs,
             "frees": self.frees, "failed": self.failed, "remote_frees": self.remote,
             "corrupt": self.corrupt, "bytes": self.bytes, "seconds": seconds,
             "latency": {key: h.as_dict() for key, h in sorted(self.latency.items())}}
        r.update(extra)
        log.info("%s done: %d ops in %.3f s, %d failed, %d remote frees", name, self.ops,
                 seconds, self.failed, self.remote)
        return r


class SharedBlock:
    """A zeroed block of simulated memory for structures the CPUs share (a queue, an exchange
    area), allocated in the parent: kalloc up to 128K, else a private cache of that size."""

    def __init__(self, k, nbytes, name="xchg"):
        self.nbytes = nbytes + (-nbytes % 64)
        self.cache = None
        if self.nbytes <= MALLOC_MAX:
            self.addr = k.kalloc(self.nbytes)
        else:
            self.cache = k.slab_cache_create(f"wl-{name}", self.nbytes, 64)
            self.addr = k.slab_alloc(self.cache)
        k.memory[self.addr:self.addr + self.nbytes] = bytes(self.nbytes)

    def describe(self):
        """What run() needs to find the block: (address, cache name or None)."""
        return [self.addr, self.nbytes, self.cache.name if self.cache else None]

    @classmethod
    def free_described(cls, k, desc):
        """Frees a block given what describe() returned (in finish())."""
        addr, _nbytes, cache = desc
        if cache is None:
            k.kfree(addr)
        else:
            c = k.cache(cache)
            k.slab_free(c, addr)
            k.slab_cache_destroy(c)


def spin_wait(spins):
    """Back-off for a CPU waiting on another: yields the host core every 8th spin so that runs
    with more CPUs than cores make progress. Returns spins + 1."""
    if spins & 7 == 7:
        os.sched_yield()
    return spins + 1
