"""kalloc_mix: a working set of kalloc objects whose sizes follow a distribution spanning the
malloc caches, like a kernel's mix of small descriptors and occasional buffers.

Each CPU allocates with probability 1 - live/(2 * target) and otherwise frees a random live
object, so its working set hovers around `live` objects; at the end it frees the rest. `sizes`
lists [size, weight] pairs; each allocation picks a pair by weight and a size uniformly between
the previous pair's size + 1 and this one's (so [[64, 1]] alone means 1..64). The result counts
allocations per malloc cache in `by_cache`.
"""

import bisect
import itertools

from smpsim.workloads.common import (COMMON, LENGTH, Budget, Heap, Param, cpu_rng, malloc_cache_name,
                            resolve)

__all__ = ["PARAMS", "COLUMNS", "run", "DEFAULT_SIZES"]

# Shown in the result tables beside the common columns (totals over the CPUs).
COLUMNS = [("failed", "failed allocs")]

DEFAULT_SIZES = [[16, 30], [32, 20], [64, 20], [128, 10], [256, 8], [512, 5], [1024, 3],
                 [4096, 2], [16384, 1], [65536, 1]]

PARAMS = {
    "seed": COMMON["seed"], "sample_every": COMMON["sample_every"], **LENGTH,
    "sizes": Param("sizes", DEFAULT_SIZES, doc="[size, weight] pairs"),
    "live": Param("int", 256, lo=1, hi=10**6, doc="working set per CPU"),
}


def run(k, params=None, **overrides):
    """Random allocations and frees around a working set of `live` objects."""
    p = resolve(PARAMS, params, overrides)
    rng = cpu_rng(p, k)
    heap = Heap(k, "", p["sample_every"])
    budget = Budget(k, p)
    pairs = sorted(p["sizes"])
    bounds = [lo + 1 for lo in [0] + [s for s, _ in pairs[:-1]]]
    cum = list(itertools.accumulate(w for _, w in pairs))
    target, live, by_cache = p["live"], [], {}
    while budget.more(heap.ops):
        if not live or rng.random() < 1 - len(live) / (2 * target):
            i = bisect.bisect_left(cum, rng.random() * cum[-1])
            size = rng.randint(bounds[i], pairs[i][0])
            a = heap.alloc(size)
            if a:
                live.append(a)
                name = malloc_cache_name(size)
                by_cache[name] = by_cache.get(name, 0) + 1
            elif not live:
                break                          # out of memory with nothing to free
        else:
            j = rng.randrange(len(live))
            live[j], live[-1] = live[-1], live[j]
            heap.free(live.pop())
    peak = len(live)
    for a in live:
        heap.free(a)
    return heap.result("kalloc_mix", budget.elapsed(), by_cache=by_cache, live_at_end=peak)
