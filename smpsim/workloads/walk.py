"""walk: what cache colouring is for (Bonwick 1994, section 4). Each CPU allocates `count`
objects of a cache, then reads the first word of every one `passes` times, through a model of
its own hardware data cache: `sets` sets of `ways` lines of `line` bytes, least recently used
out, indexed by the address (as a physically indexed cache is). It reports the line accesses
and misses (`line_misses` / `line_accesses`: the sweep's "line misses/access").

Without colouring the first objects of every slab lie at the same offsets in their pages, so
they fall in the same few sets and evict each other however large the cache; with
Machine(colour=True) successive slabs shift their objects by a line, spreading them over more
sets. The simulator has no hardware cache of its own: this model, in the workload, is where the
effect shows in numbers. Parameters besides seed and cache: count, passes, sets, ways, line.
Its `seconds` are the walks' time in the machine's time; in simulated time the walks' reads of
simulated memory are not charged (only the allocator's accesses are), so they take none.
"""

from collections import OrderedDict

from smpsim.workloads.common import COMMON, Heap, Param, now, resolve

__all__ = ["PARAMS", "COLUMNS", "run", "LineCache"]

# The result tables show the miss rate (line_misses / line_accesses) as "line misses/access".
COLUMNS = []

PARAMS = {
    **COMMON,
    "count": Param("int", 150, lo=1, hi=10**6, doc="objects each CPU allocates and walks"),
    "passes": Param("int", 20, lo=1, hi=10**6, doc="walks over them"),
    "sets": Param("int", 64, lo=1, hi=1 << 20, doc="sets of the modelled data cache"),
    "ways": Param("int", 8, lo=1, hi=1024, doc="lines per set"),
    "line": Param("int", 64, lo=8, hi=4096, doc="bytes per line (a power of two)"),
}


class LineCache:
    """A set-associative cache of `sets` x `ways` lines of `line` bytes, LRU within a set."""

    def __init__(self, sets, ways, line):
        self.sets, self.ways, self.line = sets, ways, line
        self.lines = [OrderedDict() for _ in range(sets)]
        self.accesses = self.misses = 0

    def read(self, addr):
        """One access to addr; True on a hit."""
        tag = addr // self.line
        s = self.lines[tag % self.sets]
        self.accesses += 1
        if tag in s:
            s.move_to_end(tag)
            return True
        self.misses += 1
        s[tag] = True
        if len(s) > self.ways:
            s.popitem(last=False)
        return False


def run(k, params=None, **overrides):
    """Allocate, walk `passes` times through the modelled cache, free."""
    p = resolve(PARAMS, params, overrides)
    if p["line"] & (p["line"] - 1):
        raise ValueError(f"walk: 'line' must be a power of two, got {p['line']}")
    heap = Heap(k, p["cache"])
    objs = [a for a in (heap.alloc(64) for _ in range(p["count"])) if a]
    cache = LineCache(p["sets"], p["ways"], p["line"])
    mem = k.memory
    t0 = now(k)
    for _ in range(p["passes"]):
        for a in objs:
            cache.read(a)
            mem[a]                         # the read itself, of simulated memory
    seconds = now(k) - t0               # the walks, in the machine's time
    for a in objs:
        heap.free(a)
    return heap.result("walk", seconds, line_accesses=cache.accesses, line_misses=cache.misses)
