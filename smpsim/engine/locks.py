"""The lock order of the simulated kernel: which lock guards what, and in which order they nest.

Locks are spinlocks in shared memory (SPINLOCK in smpsim/engine/layout.py, acquired in C by
smpsim/engine/_atomics.c). A CPU may take a lock only when its rank is above the rank of every lock it
already holds; Machine(debug=True) checks that on every acquisition, try-locks included
(LockOrderError).

 1. slab_cache_lock            the cache list, the cache-id table and `next_gen`. Held by
                               slab_reclaim and slab_reap over their whole walk, so it comes first.
 Then, for the caches of the callers (slab_cache_create, malloc-*), five ranks:
 2. <cache>.cpu<N>             CPU N's magazine pair in a cache (current, last). Taken by CPU N
                               on every magazine operation, and by full reclaim for every N.
 3. <cache>.maglock            the cache's shared list of full magazines, magazine_counter; with
                               the options also the depot state in its CACHE_EXT (contention
                               count and period for resizing, the low-water mark for reaping)
                               and CACHE.magazine_size, which resizing changes under it.
 4. <cache>.slablock           the cache's full and partial slab lists and, without slab locks,
                               its slabs' fields (available, nextavail, the free list in the free
                               objects); with slab locks, which slab is on which list.
 5. <cache>.slab@<addr>        Machine(slab_locks=True): one slab's fields. Allocation holds
                               slablock and try-locks the partial slabs' locks (waiting for the
                               first one only when every try failed); free takes the slab's lock
                               alone unless the slab changes lists, and then drops it, takes
                               slablock, and takes it again.
 6. <cache>.emptylock          Machine(empty_magazines=True): the cache's list of empty
                               magazines and its count. Taken with at most the CPU's magazine
                               lock held, and nothing is taken under it; last of the five so
                               that the seed's three keep their ranks.
 The same five ranks repeat, higher, for the slab layer's own caches, which a caller cache's
 operations reach while holding its locks:
 7-11. slab_extern             slab descriptors of "Out" caches: a client slablock is held
                               when an emptied slab's descriptor is freed (slab_obj_destroy).
 12-16. magazine caches with per-CPU magazines: slab_magazine_cpu (Machine(cpu_magazine_cache))
                               and, with resizing as well, slab_magazine_<M>: a new magazine is
                               allocated, an old one freed, while a CPU magazine lock of the
                               cache using it is held.
 17-21. slab_magazine, slab_cache, and slab_magazine_<M> without per-CPU magazines (no
                               magazines: only their slablock, and slab locks, are used).
 30. frames                    the buddy free lists and frame states.

Never held across a call that may reclaim: frame_alloc calls slab_reclaim, which takes
slab_cache_lock and every CPU magazine lock, so an allocation made under a lock carries
FRAME_NO_RECLAIM (the seed's rule for magazines), and slab_obj_create drops its slablock before
it allocates a new slab's frames (as the seed does). A constructor runs with no allocator lock
held; a destructor may run under a CPU magazine lock (magazines destroyed by reclaim), and
neither may call back into the allocator.

Exempt from locks: the atomic counters (allocated_objs, cached_objs, allocated_slabs,
magazine_counter, the reclaim counters, a cache's colour count), updated with fetch-and-add; a
lock's own counters, written only by its holder; the object table, each entry written by the CPU
that owns the object at that moment (compare-and-swap on free, so two racing frees of one object
cannot both win); a CPU's control line, written only by that CPU; the options' statistics and
the periodic reap's due time (compare-and-swap: one CPU wins each period).
"""

__all__ = ["RANK_CACHE_LIST", "RANK_FRAMES", "cache_lock_rank", "TIER_CLIENT", "TIER_EXTERN",
           "TIER_MAGAZINES", "TIER_INTERNAL", "KINDS"]

RANK_CACHE_LIST = 1
RANK_FRAMES = 30

TIER_CLIENT = 0      # caches made with slab_cache_create, malloc-*
TIER_EXTERN = 1      # slab_extern
TIER_MAGAZINES = 2   # magazine caches with per-CPU magazines (the options' slab_magazine_cpu, ...)
TIER_INTERNAL = 3    # slab_magazine, slab_cache, magazine caches without per-CPU magazines

# The kinds of lock a cache has, in the order they nest.
KINDS = ("cpu", "maglock", "slablock", "slab", "emptylock")
_KIND = {kind: i for i, kind in enumerate(KINDS)}


def cache_lock_rank(tier, kind):
    """The rank of a cache's lock of `kind` (one of KINDS) in a cache of `tier`."""
    return 2 + len(KINDS) * tier + _KIND[kind]
