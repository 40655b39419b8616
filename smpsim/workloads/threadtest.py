"""threadtest (Hoard's benchmark): each CPU allocates a batch of objects and frees it again, its
own objects only, so every free is local and a magazine allocator should scale linearly.

Parameters (besides seed, cache, ops, seconds): `batch` objects per round, `size` bytes (ignored
with a cache), `order` in which a batch is freed ("lifo", "fifo" or "random"). A batch larger than
two magazines sends objects through the shared magazine list and the slab layer.
"""

from smpsim.workloads.common import COMMON, LENGTH, Budget, Heap, Param, cpu_rng, resolve

__all__ = ["PARAMS", "COLUMNS", "run"]

COLUMNS = []          # nothing beyond the common columns of the result tables

PARAMS = {
    **COMMON, **LENGTH,
    "batch": Param("int", 100, lo=1, hi=100000, doc="objects allocated per round"),
    "size": Param("int", 64, lo=1, hi=131072, doc="object size (kalloc)"),
    "order": Param("str", "lifo", choices=("lifo", "fifo", "random"),
                   doc="order in which a batch is freed"),
}


def run(k, params=None, **overrides):
    """Rounds of `batch` allocations then `batch` frees until the length is reached."""
    p = resolve(PARAMS, params, overrides)
    rng = cpu_rng(p, k)
    heap = Heap(k, p["cache"], p["sample_every"])
    budget = Budget(k, p)
    size, order, rounds = p["size"], p["order"], 0
    while budget.more(heap.ops):
        n = p["batch"]
        if budget.ops:
            n = max(1, min(n, (budget.ops - heap.ops) // 2))
        objs = [heap.alloc(size) for _ in range(n)]
        objs = [a for a in objs if a]
        if order == "lifo":
            objs.reverse()
        elif order == "random":
            rng.shuffle(objs)
        for a in objs:
            heap.free(a)
        rounds += 1
    return heap.result("threadtest", budget.elapsed(), rounds=rounds)
