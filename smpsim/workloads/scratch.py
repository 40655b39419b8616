"""cache-scratch and cache-thrash (Hoard's false-sharing tests): each CPU allocates a small
object, writes it `writes` times, frees it, and again. The simulated memory is real host memory
shared by the CPU processes, so two CPUs writing objects on one 64-byte line share a host cache
line for real, and the allocator decides whether they do.

`handoff` true (cache-scratch, passive false sharing): prepare() allocates one object per CPU in
the parent, consecutively, so that they share lines; each CPU starts by freeing its object, which
then sits in that CPU's magazine and comes back on its next allocation. `handoff` false
(cache-thrash, active false sharing): each CPU allocates from scratch.

Besides the counts, each CPU reports `shared_line_allocs`: allocations whose lines also hold an
object handed to another CPU, the false sharing the allocator let through.
"""

from smpsim.workloads.common import (COMMON, LENGTH, Budget, Heap, Param, SharedBlock, cpu_rng,
                            resolve)

__all__ = ["PARAMS", "COLUMNS", "prepare", "run", "finish"]

# Shown in the result tables beside the common columns (totals over the CPUs).
COLUMNS = [("shared_line_allocs", "shared-line allocs"), ("remote_frees", "remote frees")]

PARAMS = {
    **COMMON, **LENGTH,
    "size": Param("int", 8, lo=1, hi=131072, doc="object size (kalloc)"),
    "writes": Param("int", 10, lo=0, hi=10**6, doc="writes of the whole object per allocation"),
    "handoff": Param("bool", True, doc="hand each CPU a parent-allocated object first"),
}

LINE = 64


def prepare(k, params, cpus):
    """With handoff: allocates one object per CPU, records their addresses in a block."""
    p = resolve(PARAMS, params)
    if not p["handoff"]:
        return p
    block = SharedBlock(k, 8 * cpus, "scratch")
    heap = Heap(k, p["cache"], 0)
    for i in range(cpus):
        a = heap.alloc(p["size"])
        k.memory[a:a + 8] = bytes(8)          # tag 0: allocated by the parent
        k.atomic_store(block.addr + 8 * i, a)
    return {**p, "_block": block.describe()}


def finish(k, params):
    if "_block" in params:
        SharedBlock.free_described(k, params["_block"])


def _lines(a, size):
    return range(a // LINE, (a + size - 1) // LINE + 1)


def run(k, params=None, **overrides):
    """Frees the handed object (if any), then allocate-write-free until the length is reached."""
    p = resolve(PARAMS, params, overrides)
    rng = cpu_rng(p, k)
    heap = Heap(k, p["cache"], p["sample_every"])
    size = heap.cache.size if heap.cache is not None else p["size"]
    others = set()
    if p["handoff"]:
        base = p["_block"][0]
        handed = [k.atomic_load(base + 8 * i) for i in range(k.cpus)]
        for i, a in enumerate(handed):
            if i != k.cpu_id:
                others.update(_lines(a, size))
        heap.free(handed[k.cpu_id])
    pattern = bytes([rng.randrange(256)]) * size
    budget = Budget(k, p)
    mem, writes, shared, nwrites = k.memory, p["writes"], 0, 0
    while budget.more(heap.ops):
        a = heap.alloc(size)
        if not a:
            break                             # out of memory: nothing here frees any
        if others and any(line in others for line in _lines(a, size)):
            shared += 1
        for _ in range(writes):
            mem[a + 8:a + size] = pattern[8:]
        nwrites += writes
        heap.free(a)
    return heap.result("scratch", budget.elapsed(), writes=nwrites,
                       shared_line_allocs=shared)
