"""The slab layer's options beyond the seed: object construction, cache colouring, slab locks.

A mixin of SlabAllocator (smpsim/engine/slab.py), which calls into it only where a cache has a
constructor or destructor, or the machine has the option on; smpsim/engine/options.py lists the
options and docs/options.md tells where each follows Bonwick and where it departs.

Object construction (Bonwick 1994, section 3; Bonwick & Adams 2001, section 3): a cache made
with slab_cache_create(..., ctor="module:function", dtor=...) calls f(k, addr) on the CPU doing
the work, k its Kernel. The constructor runs when an object is taken from its slab (the seed's
slab_obj_create, after slablock is released, as later HelenOS does), the destructor when an
object goes back to its slab (slab_obj_destroy, before slablock is taken): a free that finds no
magazine, magazines destroyed by reclaim, reaping or cache destruction. Objects that pass
through magazines stay constructed; that is the point of caching objects. A constructor that
raises or returns a non-zero int fails the allocation: the object goes straight back to its
slab (without its destructor: it was never constructed, where HelenOS would call it) and the
Kernel reports the lack of memory, naming the constructor. A destructor cannot fail an
operation (it may run in a reclaim made on behalf of another cache): an exception it raises is
logged and counted ("dtor_errors") and the object goes back to its slab all the same. Neither
may call back into the allocator. The names live in the cache's CACHE_EXT (bookkeeping, so that
every CPU process can see them); each process imports the callables once.

Colouring (Bonwick 1994, section 4): a slab's objects fill `objects * size` bytes of its space,
leaving some slack. With Machine(colour=True) successive slabs of a cache start their first
object at 0, 64, 128, ... bytes into the slab (the cache's alignment instead of 64 when that is
larger), wrapping when the next offset would pass the slack, so that the same object of
different slabs falls on different cache lines. The offset is the slab's `start` minus the
first address of its frames; `start` is where the seed puts the first object, so everything
else (object indexes, the free list) is unchanged. The colour comes from an atomic count of the
cache's slabs (CACHE_EXT.colour_next).

Slab locks (the seed's last TODO): with Machine(slab_locks=True) every slab has a lock of its own
(one SPINLOCK per frame, outside simulated memory, used by the slab whose space starts at that
frame). slablock keeps guarding which slab is on which list; the slab's lock guards its fields.
Allocation holds slablock, try-locks the partial slabs' locks in list order, and waits for the
first slab's lock only when every try failed; it moves the slab to the full list (under both
locks) when it takes the slab's last object, then releases slablock and takes the object under
the slab's lock alone. A free takes only the slab's lock when the slab stays partial; when it
changes lists (full to partial, or all free) it releases it, takes slablock, takes it again and
decides afresh. Lock order: slablock before a slab lock (smpsim/engine/locks.py).
"""

import logging

from .layout import (CACHE, CACHE_EXT, CACHE_STATS, CPU_CTL, FN_MAX, LINK, LOCKSTAT, LOCKTAB_SIZE,
                     PAGE_SIZE, PAGE_WIDTH, SLAB, SPINLOCK)
from .options import COLOUR_STEP, STAGE_CTOR, STAGE_DTOR, resolve

__all__ = ["SlabLayerOptions", "colour_range"]

log = logging.getLogger("smpsim.engine.slab")


def colour_range(size, order, objects, inside, align):
    """(step, largest offset) of colouring for a cache of this geometry: its slack (the bytes of
    a slab its objects and an inside descriptor leave) in steps of 64 bytes or `align`."""
    space = PAGE_SIZE << order
    if inside:
        space -= SLAB.sizeof
    step = max(COLOUR_STEP, align)
    slack = space - objects * size
    return step, slack - slack % step


class SlabLayerOptions:
    """Constructors, destructors, colouring and slab locks, for SlabAllocator."""

    ctor_failure = None       # (cache name, constructor, why) of the last failed construction
    in_function = False       # a constructor or destructor is running (the Kernel refuses calls)

    # --- helpers ------------------------------------------------------------------------------

    def _ext(self, cache):
        """The CACHE_EXT of cache, the options' model state (a machine with an option on; its id
        is the simulator's: a bookkeeping read)."""
        return self.regions.ext(self.peek(cache + CACHE.id))

    def _stats(self, cache):
        """The CACHE_STATS of cache: the options' statistics and function names (bookkeeping)."""
        return self.regions.stats(self.peek(cache + CACHE.id))

    def _stage(self, stage, cache=0, obj=0):
        """Note in this CPU's control line that it is (stage > 0) or no longer is (0) inside an
        option's window (bookkeeping, for the checker's explanations); returns the window it
        was in before, for _stage(*previous) to go back to it."""
        ctl = self.ctl
        previous = (self.peek(ctl + CPU_CTL.stage), self.peek(ctl + CPU_CTL.stage_cache),
                    self.peek(ctl + CPU_CTL.stage_obj))
        self.poke(ctl + CPU_CTL.stage_cache, cache)
        self.poke(ctl + CPU_CTL.stage_obj, obj)
        self.poke(ctl + CPU_CTL.stage, stage)
        return previous

    def functions(self, cache):
        """(constructor, destructor) names of cache, each None when it has none. Bookkeeping:
        read once per cache generation and remembered in this process (the names of a cache
        being destroyed, whose generation is 0, stay in its CACHE_EXT until its id is given
        back, after it is emptied)."""
        gen = self.peek(cache + CACHE.gen)
        names = self._function_names.get(gen)
        if names is None:
            at = self._stats(cache)
            names = (self._fn_name(at + CACHE_STATS.ctor), self._fn_name(at + CACHE_STATS.dtor))
            if gen:                  # 0: a cache being destroyed (read afresh, never kept)
                self._function_names[gen] = names
        return names

    def _fn_name(self, at):
        if not self.peek(at):
            return None
        return bytes(self.segment[at:at + FN_MAX]).rstrip(b"\0").decode()

    def _set_fn_name(self, at, name):
        """Store a function name (or none) in a CACHE_EXT slot (bookkeeping)."""
        if name is None:
            self.poke(at, 0)
        else:
            raw = name.encode()
            self.segment[at:at + FN_MAX] = raw + bytes(FN_MAX - len(raw))

    def _callable(self, name):
        f = self._callables.get(name)
        if f is None:
            f = self._callables[name] = resolve(name)
        return f

    # --- constructors and destructors ---------------------------------------------------------

    def _construct(self, cache, obj, ctor):
        """Run constructor `ctor` on obj, just taken from its slab. Returns obj, or 0 when the
        constructor raised or returned a non-zero int: then obj is back in its slab and
        ctor_failure says why (the Kernel turns it into None or OutOfMemory)."""
        stats = self._stats(cache)
        previous = self._stage(STAGE_CTOR, cache, obj)
        self.in_function = True
        try:
            result = self._callable(ctor)(self._kernel, obj)
        except Exception as e:                 # noqa: BLE001 - a failed construction, reported
            why = f"raised {type(e).__name__}: {e}"
        else:
            why = f"returned {result!r}" if isinstance(result, int) and result else None
        finally:
            self.in_function = False
        self._stage(*previous)
        if why is None:
            self.arena.fetch_add(stats + CACHE_STATS.constructed, 1)
            return obj
        self.arena.fetch_add(stats + CACHE_STATS.ctor_failures, 1)
        self.ctor_failure = (self.cache_name(cache), ctor, why)
        self._slab_obj_destroy(cache, obj, 0, constructed=False)
        return 0

    def _destruct(self, cache, obj, dtor):
        """Run destructor `dtor` on obj, on its way back to its slab. An exception it raises is
        logged and counted (CACHE_STATS.dtor_errors); the object goes back all the same."""
        stats = self._stats(cache)
        previous = self._stage(STAGE_DTOR, cache, obj)
        self.in_function = True
        try:
            self._callable(dtor)(self._kernel, obj)
        except Exception as e:                 # noqa: BLE001 - logged and counted
            self.arena.fetch_add(stats + CACHE_STATS.dtor_errors, 1)
            log.error("CPU %d: destructor %s of cache %s raised on %#x: %s: %s", self.cpu_id,
                      dtor, self.cache_name(cache), obj, type(e).__name__, e)
        finally:
            self.in_function = False
        self._stage(*previous)
        self.arena.fetch_add(stats + CACHE_STATS.destructed, 1)

    # --- colouring ----------------------------------------------------------------------------

    def _colour_offset(self, cache):
        """The offset of a new slab's first object: the cache's next colour (an atomic count of
        its slabs, CACHE_EXT.colour_next, picks it)."""
        ext = self._ext(cache)
        step, largest = self.ld(ext + CACHE_EXT.colour_step), self.ld(ext + CACHE_EXT.colour_max)
        n = self.fetch_add(ext + CACHE_EXT.colour_next, 1)
        return n % (largest // step + 1) * step

    def _slab_base(self, cache, start):
        """The first address of the frames of the slab whose first object is at `start`."""
        return start & ~((PAGE_SIZE << self.ld(cache + CACHE.order)) - 1)

    # --- slab locks ---------------------------------------------------------------------------

    def _slab_lock_of(self, cache, slab):
        """The lock of slab (Machine(slab_locks=True)): the SPINLOCK of its first frame."""
        return self.regions.slab_lock(self._slab_base(cache, self.ld(slab + SLAB.start))
                                      >> PAGE_WIDTH)

    def _slab_push(self, cache, slab, obj):
        """Put obj on its slab's free list; returns the slab's new `available`. The slab's lock
        (or, without slab locks, slablock) must be held."""
        start, nextavail = self.ld(slab + SLAB.start), self.ld(slab + SLAB.nextavail)
        self.st32(obj, nextavail)
        self.st(slab + SLAB.nextavail, (obj - start) // self.ld(cache + CACHE.size))
        available = self.ld(slab + SLAB.available) + 1
        self.st(slab + SLAB.available, available)
        return available

    def _slab_pop(self, cache, slab):
        """Take the first object of slab's free list; the caller owns the slab (its lock, or it
        is on no list yet)."""
        obj = self.ld(slab + SLAB.start) + self.ld(slab + SLAB.nextavail) * \
            self.ld(cache + CACHE.size)
        self.st(slab + SLAB.nextavail, self.ld32(obj))
        self.st(slab + SLAB.available, self.ld(slab + SLAB.available) - 1)
        return obj

    def _slab_obj_take_locked(self, cache, flags):
        """slab_obj_create with slab locks: an object from a partial slab whose lock was free
        (or, when every try failed, the first one's), else from a new slab; 0 out of memory."""
        lock = cache + CACHE.slablock
        head = cache + CACHE.partial_slabs
        self.lock(lock)
        slab = 0
        for link in self.list_links(head):
            if self.trylock(self._slab_lock_of(cache, link - SLAB.link)):
                slab = link - SLAB.link
                break
        if not slab and not self.list_empty(head):
            slab = self.ld(head + LINK.next) - SLAB.link    # every try failed: wait for one
            self.lock(self._slab_lock_of(cache, slab))
        if not slab:
            # No partial slab: a new one, with slablock dropped as the seed drops it; nobody
            # else can reach the new slab until it is on a list.
            self.unlock(lock)
            slab = self._slab_space_alloc(cache, flags)
            if not slab:
                return 0
            obj = self._slab_pop(cache, slab)
            self.lock(lock)
            self.list_prepend(slab + SLAB.link, cache + (
                CACHE.partial_slabs if self.ld(slab + SLAB.available) else CACHE.full_slabs))
            self.unlock(lock)
            return obj
        slab_lock = self._slab_lock_of(cache, slab)
        if self.ld(slab + SLAB.available) == 1:             # its last object: to the full list
            self.list_remove(slab + SLAB.link)
            self.list_prepend(slab + SLAB.link, cache + CACHE.full_slabs)
        self.unlock(lock)
        obj = self._slab_pop(cache, slab)
        self.unlock(slab_lock)
        return obj

    def _slab_obj_put_locked(self, cache, obj, slab):
        """slab_obj_destroy with slab locks; returns the frames freed."""
        slab_lock = self._slab_lock_of(cache, slab)
        objects = self.ld(cache + CACHE.objects)
        self.lock(slab_lock)
        available = self.ld(slab + SLAB.available)
        if 0 < available < objects - 1:                     # stays partial
            self._slab_push(cache, slab, obj)
            self.unlock(slab_lock)
            return 0
        # It changes lists: slablock comes first in the lock order, so let go and start again.
        self.unlock(slab_lock)
        lock = cache + CACHE.slablock
        self.lock(lock)
        self.lock(slab_lock)
        available = self._slab_push(cache, slab, obj)
        frames = 0
        if available == objects:                            # empty: free it now
            self.list_remove(slab + SLAB.link)
            self.unlock(slab_lock)
            self._retire_slab_lock(cache, slab_lock)
            frames = self._slab_space_free(cache, slab)
        else:
            if available == 1:                              # it was full: to partial
                self.list_remove(slab + SLAB.link)
                self.list_prepend(slab + SLAB.link, cache + CACHE.partial_slabs)
            self.unlock(slab_lock)
        self.unlock(lock)
        return frames

    def _retire_slab_lock(self, cache, slab_lock):
        """A slab is being freed: add its lock's counters to the cache's (bookkeeping, so that
        statistics keep them: CACHE_STATS) and clear them for the next slab at that frame; in
        simulated time also the cycles the lock table keeps for it."""
        stats = self._stats(cache)
        for f in ("acquisitions", "contended", "spins"):
            at = slab_lock + getattr(SPINLOCK, f)
            self.arena.fetch_add(stats + getattr(CACHE_STATS, f"slab_{f}"), self.peek(at))
            self.poke(at, 0)
        entry = self._lock_entry(slab_lock) if self.timed else 0
        if entry:
            for f in ("wait_cycles", "hold_cycles"):
                at = entry + getattr(LOCKSTAT, f)
                self.arena.fetch_add(stats + getattr(CACHE_STATS, f"slab_{f}"), self.peek(at))
                self.poke(at, 0)

    def _lock_entry(self, lock):
        """The lock table's entry of the lock word `lock`, or 0: the probe sequence of
        smpsim/engine/_sim.h's lockstat() (bookkeeping reads)."""
        h = ((lock >> 3) * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
        mask = LOCKTAB_SIZE - 1
        for i in range(LOCKTAB_SIZE):
            e = self.regions.locktab + ((h + i) & mask) * LOCKSTAT.sizeof
            addr = self.peek(e + LOCKSTAT.addr)
            if addr == lock:
                return e
            if not addr:
                return 0
        return 0
