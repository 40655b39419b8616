"""contend: a small, busy program that makes every path of the allocator meet another CPU's, for
`smpsim explore` (and plain runs). Each CPU keeps a working set of up to `live` objects of one
cache (or kalloc sizes), and at every step allocates or frees one; a freed object goes, with
probability `handoff`, to the next CPU through a mailbox word (that CPU frees it: a remote
free); every `reclaim_every` operations the CPU reclaims, and every `reclaim_all`-th of those
reclaims with SLAB_RECLAIM_ALL, which empties every CPU's magazines under their locks while
those CPUs use them. With small magazines (the machine's magazine_size) objects travel through
the shared magazine list and the slab layer all the time; with a NOMAGAZINE cache every
operation takes the slab lock.

At the end every CPU waits at a barrier (no more handoffs), frees what its mailbox holds and
its working set, so Machine.check() passes after a correct run. Mailboxes are single words
written with compare-and-swap (atomic, sequentially consistent): an object is handed only
into an empty mailbox, and taken out by its owner with compare-and-swap back to 0.
"""

import smpsim
from smpsim.workloads.common import (COMMON, LENGTH, Budget, Heap, Param, SharedBlock, cpu_rng,
                                     resolve)

__all__ = ["PARAMS", "COLUMNS", "prepare", "run", "finish"]

COLUMNS = [("remote_frees", "remote frees"), ("reclaims", "reclaims")]

PARAMS = {
    **COMMON, **LENGTH,
    "size": Param("int", 64, lo=1, hi=131072, doc="object size (kalloc, without a cache)"),
    "live": Param("int", 8, lo=1, hi=100000, doc="most objects a CPU holds"),
    "handoff": Param("float", 0.3, lo=0, hi=1, doc="share of frees handed to the next CPU"),
    "reclaim_every": Param("int", 20, lo=0, hi=10**9,
                           doc="operations between reclaims; 0: none"),
    "reclaim_all": Param("int", 2, lo=0, hi=10**9,
                         doc="every n-th reclaim is SLAB_RECLAIM_ALL; 0: never"),
}


def prepare(k, params, cpus):
    """One mailbox word per CPU, zeroed; the parameters with their description."""
    p = resolve(PARAMS, params)
    block = SharedBlock(k, 8 * cpus, "contend")
    return {**p, "_block": block.describe()}


def finish(k, params):
    SharedBlock.free_described(k, params["_block"])


def _take(k, heap, box):
    """Free the object in mailbox `box`, if one is there."""
    a = k.atomic_load(box)
    if a and k.atomic_cas(box, a, 0):
        heap.free(a)


def run(k, params=None, **overrides):
    """Allocate or free at random until the length is reached; hand frees on, reclaim."""
    p = resolve(PARAMS, params, overrides)
    if "_block" not in p:
        raise ValueError("contend.run: no mailboxes; call contend.prepare in the parent first")
    rng = cpu_rng(p, k)
    heap = Heap(k, p["cache"], p["sample_every"])
    budget = Budget(k, p)
    base, n = p["_block"][0], k.cpus
    mine, nxt = base + 8 * k.cpu_id, base + 8 * ((k.cpu_id + 1) % n)
    objs, reclaims, handed, steps = [], 0, 0, 0
    every = p["reclaim_every"]
    while budget.more(heap.ops):
        steps += 1
        if objs and (len(objs) >= p["live"] or rng.random() < 0.5):
            a = objs.pop(rng.randrange(len(objs)))
            if n > 1 and rng.random() < p["handoff"] and k.atomic_cas(nxt, 0, a):
                handed += 1
            else:
                heap.free(a)
        else:
            a = heap.alloc(p["size"])
            if a:
                objs.append(a)
        _take(k, heap, mine)
        if every and steps % every == 0:
            reclaims += 1
            full = p["reclaim_all"] and reclaims % p["reclaim_all"] == 0
            k.slab_reclaim(smpsim.SLAB_RECLAIM_ALL if full else 0)
    k.barrier()
    _take(k, heap, mine)
    for a in objs:
        heap.free(a)
    return heap.result("contend", budget.elapsed(), handed=handed, reclaims=reclaims)
