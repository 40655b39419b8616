"""The lock order of the simulated kernel: which lock guards what, and in which order they nest.

Locks are spinlocks in shared memory (SPINLOCK in smpsim/engine/layout.py, acquired in C by
smpsim/engine/_atomics.c). A CPU may take a lock only when its rank is above the rank of every lock it
already holds; Machine(debug=True) checks that on every acquisition (LockOrderError).

 1. slab_cache_lock            the cache list, the cache-id table and `next_gen`. Held by
                               slab_reclaim over its whole walk, so it comes first.
 2. <cache>.cpu<N>             CPU N's magazine pair in a cache (current, last). Taken by CPU N
                               on every magazine operation, and by full reclaim for every N.
 3. <cache>.maglock            the cache's shared list of full magazines, magazine_counter.
 4. <cache>.slablock           the cache's full and partial slab lists and its slabs' fields
                               (available, nextavail, the free list in the free objects).
    Ranks 2-4 repeat for the slab layer's own caches, which a client cache's operations reach
    while holding its locks:
 5-7. slab_extern.cpu<N>, .maglock, .slablock
                               slab descriptors of "Out" caches: a client slablock is held
                               when an emptied slab's descriptor is freed (slab_obj_destroy).
 8-10. slab_magazine.slablock, slab_cache.slablock
                               (no magazines): a new magazine is allocated while a CPU magazine
                               lock is held (make_empty_current_mag), and an old one freed.
 20. frames                    the buddy free lists and frame states.

Never held across a call that may reclaim: frame_alloc calls slab_reclaim, which takes
slab_cache_lock and every CPU magazine lock, so an allocation made under a lock carries
FRAME_NO_RECLAIM (the seed's rule for magazines), and slab_obj_create drops its slablock before
it allocates a new slab's frames (as the seed does).

Exempt from locks: the atomic counters (allocated_objs, cached_objs, allocated_slabs,
magazine_counter, the reclaim counters), updated with fetch-and-add; a lock's own counters,
written only by its holder; the object table, each entry written by the CPU that owns the
object at that moment (compare-and-swap on free, so two racing frees of one object cannot both
win); a CPU's control line, written only by that CPU.
"""

__all__ = ["RANK_CACHE_LIST", "RANK_FRAMES", "cache_lock_rank", "TIER_CLIENT", "TIER_EXTERN",
           "TIER_INTERNAL"]

RANK_CACHE_LIST = 1
RANK_FRAMES = 20

TIER_CLIENT = 0      # caches made with slab_cache_create, malloc-*
TIER_EXTERN = 1      # slab_extern
TIER_INTERNAL = 2    # slab_magazine, slab_cache (no magazines)

_KIND = {"cpu": 0, "maglock": 1, "slablock": 2}


def cache_lock_rank(tier, kind):
    """The rank of a cache's lock of `kind` ("cpu", "maglock" or "slablock")."""
    return 2 + 3 * tier + _KIND[kind]
