"""larson (Larson and Krishnan's server benchmark): each CPU keeps `slots` objects of random
sizes and repeatedly frees a random one and allocates a replacement. Between rounds the CPUs hand
their objects on: CPU i adopts the objects of CPU i+1, so the frees of the next round are remote.

The handover goes through an exchange area in simulated memory that prepare() allocates: a
control line (word 0: the stop flag) followed by one row of `slots` addresses per CPU. A round:

    work -> publish my objects in my row -> CPU 0 sets stop if the length is reached
    -> barrier A -> read stop, adopt the next CPU's row -> barrier B -> stop? then free all

Barrier B keeps a row from being overwritten before its adopter has read it, and keeps CPU 0 from
setting stop for the next round before every CPU has read it for this one, so all CPUs run the
same number of rounds. The stop flag is written with an atomic store and read with an atomic load
after the barrier (the barrier orders them).
"""

from array import array

from smpsim.workloads.common import (COMMON, LENGTH, Budget, Heap, Param, SharedBlock, cpu_rng,
                            resolve)

__all__ = ["PARAMS", "COLUMNS", "prepare", "run", "finish"]

# Shown in the result tables beside the common columns (totals over the CPUs).
COLUMNS = [("remote_frees", "remote frees"), ("rounds", "rounds")]

PARAMS = {
    **COMMON, **LENGTH,
    "slots": Param("int", 200, lo=1, hi=100000, doc="objects each CPU keeps"),
    "min_size": Param("int", 8, lo=1, hi=131072, doc="smallest object (kalloc)"),
    "max_size": Param("int", 1000, lo=1, hi=131072, doc="largest object (kalloc)"),
    "round_ops": Param("int", 1000, lo=2, hi=10**9, doc="operations between handovers"),
}

_ROWS = 64           # byte offset of the first row; word 0 is the stop flag


def prepare(k, params, cpus):
    """Allocates the exchange area; returns the parameters with its description."""
    p = resolve(PARAMS, params)
    if p["min_size"] > p["max_size"]:
        raise ValueError(f"larson: min_size {p['min_size']} exceeds max_size {p['max_size']}")
    block = SharedBlock(k, _ROWS + 8 * p["slots"] * cpus, "larson")
    return {**p, "_block": block.describe()}


def finish(k, params):
    SharedBlock.free_described(k, params["_block"])


def run(k, params=None, **overrides):
    """Rounds of replace-a-random-object, handing objects on between rounds."""
    p = resolve(PARAMS, params, overrides)
    if "_block" not in p:
        raise ValueError("larson.run: no exchange area; call larson.prepare in the parent first")
    rng = cpu_rng(p, k)
    heap = Heap(k, p["cache"], p["sample_every"])
    budget = Budget(k, p)
    base, slots, n = p["_block"][0], p["slots"], k.cpus
    lo, hi = p["min_size"], p["max_size"]
    mem = k.memory
    objs = [heap.alloc(rng.randint(lo, hi)) for _ in range(slots)]
    rounds = 0
    while True:
        for _ in range(p["round_ops"] // 2):
            i = rng.randrange(slots)
            if objs[i]:
                heap.free(objs[i])
            objs[i] = heap.alloc(rng.randint(lo, hi))
        rounds += 1
        row = base + _ROWS + 8 * slots * k.cpu_id
        mem[row:row + 8 * slots] = array("Q", [a or 0 for a in objs]).tobytes()
        if k.cpu_id == 0 and not budget.more(heap.ops):
            k.atomic_store(base, 1)
        k.barrier()
        stop = k.atomic_load(base)
        row = base + _ROWS + 8 * slots * ((k.cpu_id + 1) % n)
        adopted = array("Q")
        adopted.frombytes(mem[row:row + 8 * slots])
        objs = list(adopted)
        k.barrier()
        if stop:
            break
    for a in objs:
        if a:
            heap.free(a)
    return heap.result("larson", budget.elapsed(), rounds=rounds)
