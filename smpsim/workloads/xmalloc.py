"""xmalloc-test: producer CPUs allocate objects and pass them to consumer CPUs, which free them;
every free is remote. Objects travel through one bounded multi-producer multi-consumer queue in
simulated shared memory (Dmitry Vyukov's bounded MPMC queue), built on the kernel's atomics.

Queue layout (allocated by prepare(), each counter on its own 64-byte line):

    +0    enqueue_pos     next ticket for producers (atomic_cas)
    +64   dequeue_pos     next ticket for consumers (atomic_cas)
    +128  done            producers that have finished (atomic_add)
    +256  cells[capacity] 16 bytes each: seq, data

A cell's `seq` tells whose turn it is: seq == pos means free for the producer holding ticket pos,
seq == pos + 1 means filled for the consumer holding ticket pos. A producer claims its ticket by
CAS on enqueue_pos, stores data, then publishes with an atomic store of seq = pos + 1; a consumer
claims by CAS on dequeue_pos, loads data, then releases the cell with seq = pos + capacity. The
kernel atomics are sequentially consistent, so data is visible before the seq that publishes it.

Roles: CPUs 0 .. producers-1 produce, the rest consume (`producers` 0 means half of the CPUs, at
least one). With one CPU, it does both: it produces until the queue is full, then consumes one.
A producer's `ops` counts its allocations; a consumer stops once every producer is done and the
queue is empty, so consumers do as many frees as the producers did allocations between them.
"""

from smpsim.workloads.common import (COMMON, LENGTH, Budget, Heap, Param, SharedBlock, cpu_rng,
                            resolve, spin_wait)

__all__ = ["PARAMS", "COLUMNS", "prepare", "run", "finish", "Queue"]

# Shown in the result tables beside the common columns (totals over the CPUs).
COLUMNS = [("remote_frees", "remote frees"), ("waits", "queue waits")]

PARAMS = {
    **COMMON, **LENGTH,
    "producers": Param("int", 0, lo=0, hi=256, doc="producer CPUs; 0: half of them"),
    "capacity": Param("int", 64, lo=2, hi=4096, doc="queue cells (rounded up to a power of 2)"),
    "min_size": Param("int", 8, lo=1, hi=131072, doc="smallest object (kalloc)"),
    "max_size": Param("int", 128, lo=1, hi=131072, doc="largest object (kalloc)"),
}

_ENQ, _DEQ, _DONE, _CELLS, _CELL = 0, 64, 128, 256, 16


class Queue:
    """A view of the queue at `base` with `capacity` cells, for one CPU's Kernel."""

    def __init__(self, k, base, capacity):
        self.k, self.base, self.cap, self.mask = k, base, capacity, capacity - 1

    def init(self):
        """Sets every cell's seq to its index (in the parent, before the run)."""
        for i in range(self.cap):
            self.k.atomic_store(self.base + _CELLS + i * _CELL, i)

    def put(self, value):
        """Enqueues `value`; False when the queue is full."""
        k, enq = self.k, self.base + _ENQ
        pos = k.atomic_load(enq)
        while True:
            cell = self.base + _CELLS + (pos & self.mask) * _CELL
            dif = k.atomic_load(cell) - pos
            if dif == 0:
                if k.atomic_cas(enq, pos, pos + 1):
                    break
                pos = k.atomic_load(enq)
            elif dif < 0:
                return False
            else:
                pos = k.atomic_load(enq)
        k.atomic_store(cell + 8, value)
        k.atomic_store(cell, pos + 1)
        return True

    def get(self):
        """Dequeues a value; None when the queue is empty."""
        k, deq = self.k, self.base + _DEQ
        pos = k.atomic_load(deq)
        while True:
            cell = self.base + _CELLS + (pos & self.mask) * _CELL
            dif = k.atomic_load(cell) - (pos + 1)
            if dif == 0:
                if k.atomic_cas(deq, pos, pos + 1):
                    break
                pos = k.atomic_load(deq)
            elif dif < 0:
                return None
            else:
                pos = k.atomic_load(deq)
        value = k.atomic_load(cell + 8)
        k.atomic_store(cell, pos + self.mask + 1)
        return value


def _capacity(n):
    return 1 << (n - 1).bit_length()


def prepare(k, params, cpus):
    """Allocates and initialises the queue; returns the parameters with its description and the
    number of producers."""
    p = resolve(PARAMS, params)
    if p["min_size"] > p["max_size"]:
        raise ValueError(f"xmalloc: min_size {p['min_size']} exceeds max_size {p['max_size']}")
    if p["producers"] >= cpus and cpus > 1:
        raise ValueError(f"xmalloc: producers {p['producers']} leaves no consumer among "
                         f"{cpus} CPUs")
    cap = _capacity(p["capacity"])
    block = SharedBlock(k, _CELLS + cap * _CELL, "xmalloc")
    Queue(k, block.addr, cap).init()
    producers = p["producers"] or max(1, cpus // 2)
    return {**p, "capacity": cap, "producers": producers, "_block": block.describe()}


def finish(k, params):
    SharedBlock.free_described(k, params["_block"])


def run(k, params=None, **overrides):
    """Produces (allocates and enqueues) or consumes (dequeues and frees) by CPU id."""
    p = resolve(PARAMS, params, overrides)
    if "_block" not in p:
        raise ValueError("xmalloc.run: no queue; call xmalloc.prepare in the parent first")
    rng = cpu_rng(p, k)
    heap = Heap(k, p["cache"], p["sample_every"])
    budget = Budget(k, p)
    base = p["_block"][0]
    q = Queue(k, base, p["capacity"])
    lo, hi, nprod = p["min_size"], p["max_size"], p["producers"]
    waits = 0
    if k.cpus == 1:
        role = "both"
        while budget.more(heap.ops):
            a = heap.alloc(rng.randint(lo, hi))
            if a and not q.put(a):
                heap.free(q.get())
                q.put(a)
        while (a := q.get()) is not None:
            heap.free(a)
    elif k.cpu_id < nprod:
        role = "producer"
        while budget.more(heap.allocs):
            a = heap.alloc(rng.randint(lo, hi))
            while a and not q.put(a):
                waits = spin_wait(waits)
        k.atomic_add(base + _DONE, 1)
    else:
        role = "consumer"
        while True:
            a = q.get()
            if a is not None:
                heap.free(a)
                continue
            if k.atomic_load(base + _DONE) == nprod:
                while (a := q.get()) is not None:
                    heap.free(a)
                break
            waits = spin_wait(waits)
    return heap.result("xmalloc", budget.elapsed(), role=role, waits=waits)
