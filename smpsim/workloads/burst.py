"""burst: a burst of allocations, all freed again, then a long steady phase with a small working
set. The burst leaves the caches' shared lists full of magazines that the steady phase never
needs again: what working-set reaping (Machine(reap_every=...)) exists to give back, and what
the seed keeps until memory runs short.

Parameters (besides seed, cache, ops, seconds): `burst` objects each CPU allocates and frees at
the start; then rounds of `batch` allocations and frees, for `ops` operations or `seconds`
(the steady phase's length); `size` bytes (ignored with a cache). A batch larger than a CPU's
two magazines keeps magazines moving through the shared list, so the steady phase has a working
set there. Every CPU waits at a barrier between the phases.
"""

from smpsim.workloads.common import COMMON, LENGTH, Budget, Heap, Param, resolve

__all__ = ["PARAMS", "run"]

PARAMS = {
    **COMMON, **LENGTH,
    "burst": Param("int", 5000, lo=0, hi=10**7, doc="objects allocated and freed at the start"),
    "batch": Param("int", 16, lo=1, hi=100000, doc="objects per round of the steady phase"),
    "size": Param("int", 256, lo=1, hi=131072, doc="object size (kalloc)"),
}


def run(k, params=None, **overrides):
    """The burst, a barrier, then steady rounds until the length is reached."""
    p = resolve(PARAMS, params, overrides)
    heap = Heap(k, p["cache"])
    size = p["size"]
    objs = [heap.alloc(size) for _ in range(p["burst"])]
    for a in reversed([a for a in objs if a]):
        heap.free(a)
    burst_ops = heap.ops
    k.barrier()
    budget = Budget(k, p)
    rounds = 0
    while budget.more(heap.ops - burst_ops):
        n = p["batch"]
        if budget.ops:
            n = max(1, min(n, (budget.ops - heap.ops + burst_ops) // 2))
        batch = [a for a in (heap.alloc(size) for _ in range(n)) if a]
        for a in reversed(batch):
            heap.free(a)
        rounds += 1
    return heap.result("burst", budget.elapsed(), rounds=rounds, burst_ops=burst_ops)
