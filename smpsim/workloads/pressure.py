"""pressure: drives the machine out of memory so that reclaim runs. Each round, on every CPU:

    1. fill: allocate `size_a` objects until an allocation fails (or `limit` objects)
    2. barrier; free `free_fraction` of them, the oldest first (`free_order` "fifo", so that
       whole slabs empty) or at random ("random": partial slabs, few frames come free): the
       objects go to magazines while magazines can be had, else straight back to their slabs
    3. barrier; allocate `size_b` objects (another malloc cache) until one fails (or `limit`):
       the frame allocator must reclaim magazines to find frames
    4. barrier; free everything; barrier

Failed allocations are the expected outcome here and are reported in `failed`; the frames that
reclaim freed show in the run's statistics (`reclaim`). Allocations carry FRAME_ATOMIC, so the
frame allocator reclaims before it gives up. Use a small machine (a few MiB): a fill touches all
of memory. With `cache_b` the second phase allocates from that cache instead of kalloc(size_b).
Its `seconds` are the run's length in the machine's time (simulated seconds in simulated time).
"""

from smpsim.workloads.common import COMMON, Heap, Param, cpu_rng, now, resolve

__all__ = ["PARAMS", "COLUMNS", "run"]

# Shown in the result tables beside the common columns (totals over the CPUs; reclaim from the
# machine's counters).
COLUMNS = [("failed", "failed allocs"), ("filled", "filled"), ("refilled", "refilled"),
           ("reclaim_calls", "reclaim calls"), ("reclaim_frames", "frames reclaimed")]

PARAMS = {
    **COMMON,
    "rounds": Param("int", 2, lo=1, hi=1000, doc="fill / free / refill rounds"),
    "size_a": Param("int", 256, lo=1, hi=131072, doc="object size of the fill (kalloc)"),
    "size_b": Param("int", 2048, lo=1, hi=131072, doc="object size of the refill (kalloc)"),
    "cache_b": Param("str", "", doc="a cache for the refill instead of kalloc(size_b)"),
    "free_fraction": Param("float", 0.5, lo=0, hi=1, doc="share of the fill freed in step 2"),
    "free_order": Param("str", "fifo", choices=("fifo", "random"),
                        doc="which objects step 2 frees: the oldest, or random ones"),
    "limit": Param("int", 0, lo=0, hi=10**8, doc="most objects per phase per CPU; 0: no limit"),
}


def _fill(heap, size, limit):
    objs = []
    while not limit or len(objs) < limit:
        a = heap.alloc(size)
        if not a:
            break
        objs.append(a)
    return objs


def run(k, params=None, **overrides):
    """`rounds` of fill, partial free and refill; every phase ends at a barrier."""
    p = resolve(PARAMS, params, overrides)
    rng = cpu_rng(p, k)
    heap_a = Heap(k, p["cache"], p["sample_every"])
    heap_b = Heap(k, p["cache_b"], p["sample_every"])
    start = now(k)
    filled = refilled = 0
    for _ in range(p["rounds"]):
        a_objs = _fill(heap_a, p["size_a"], p["limit"])
        filled += len(a_objs)
        k.barrier()
        if p["free_order"] == "random":
            rng.shuffle(a_objs)
        cut = int(len(a_objs) * p["free_fraction"])
        for a in a_objs[:cut]:
            heap_a.free(a)
        a_objs = a_objs[cut:]
        k.barrier()
        b_objs = _fill(heap_b, p["size_b"], p["limit"])
        refilled += len(b_objs)
        k.barrier()
        for a in a_objs:
            heap_a.free(a)
        for b in b_objs:
            heap_b.free(b)
        k.barrier()
    heap_a.absorb(heap_b)
    return heap_a.result("pressure", now(k) - start, filled=filled,
                         refilled=refilled)
