"""The magazine layer's options beyond the seed: magazine resizing, the empty-magazine list, the
per-CPU magazine cache, and working-set reaping of the shared lists.

A mixin of SlabAllocator (smpsim/engine/slab.py), which calls into it only where the machine has
the option on; smpsim/engine/options.py lists the options, docs/options.md tells where each
follows Bonwick & Adams (USENIX 2001) and where it departs. Bonwick's "depot" is the seed's
shared magazine list (CACHE.magazines, guarded by maglock).

Where magazines come from. The seed allocates every magazine from `slab_magazine`, a cache
without magazines, and frees it there. The options add magazine caches at boot, after the
seed's caches (so that those keep their addresses), flagged SLAB_CACHE_MAGCACHE:

- Machine(cpu_magazine_cache=True): "slab_magazine_cpu", a cache of magazines of the machine's
  size *with* per-CPU magazines of its own (which it takes from slab_magazine): a per-CPU buffer
  of magazines in front of slab_magazine, as the seed's TODO proposes.
- Machine(resize_magazines=True): "slab_magazine_<M>" for every Solaris size M above the
  machine's magazine_size (one cache per size, as Solaris's kmem_magtype has). With the per-CPU
  magazine cache too, they have per-CPU magazines as well.

A magazine goes back to the cache its slab belongs to (the seed's obj2slab), so magazines of
every size can share a list. The magazine caches' own magazines always come from slab_magazine.

Resizing (2001, section 3.6). With resizing on, the shared list's lock is first tried, and a
failed try is a contended acquisition (Solaris's cache_depot_contention), counted in the cache's
CACHE_EXT under maglock. More than Machine(resize_threshold) of them within one
Machine(resize_period) step CACHE.magazine_size up to the next Solaris size, and a new period
begins. Only new magazines get the new size: magazines already in use keep theirs until they are
destroyed (Solaris purges every magazine of the cache at once instead).

The empty-magazine list (the seed's TODO; Solaris's depot keeps one). With
Machine(empty_magazines=True) the empty magazine that the seed destroys when a CPU imports a full
one goes to its cache's empty list (CACHE_EXT.empty, under its own emptylock), and a CPU that
needs an empty magazine takes one from there before it allocates. A magazine of an old size
(after a resize) is freed instead of reused. Reclaim frees the whole list, light or full.

Working-set reaping (2001, section 3.7). With Machine(reap_every=...) every take from a shared
list lowers the cache's low-water mark (CACHE_EXT.depot_low, under maglock) to what the list
still holds: the fewest full magazines it held since the previous reap. The magazines below
that mark sat unused the whole time, beyond the working set: slab_reap destroys that many from
the list's tail (the least recently put) and starts a new interval at the list's length. The
periodic reap: a due time in the options' line (OPTIONS.reap_due, bookkeeping), which the first
CPU to enter the allocator's Python code after it passes claims with a compare-and-swap; that
CPU runs slab_reap before its own operation. (A CPU whose operations are all served by the C
hit path does not enter it; such a CPU does not touch the shared lists either.)
"""

from .frames import FRAME_ATOMIC, FRAME_NO_RECLAIM
from .layout import (CACHE, CACHE_EXT, CACHE_STATS, KERNEL, LINK, MAGAZINE, MAGAZINE_SIZES,
                     OPTIONS, SLAB, SPINLOCK, WORD)
from .options import STAGE_REAP, SLAB_CACHE_MAGCACHE, clock_ns

__all__ = ["DepotOptions"]


class DepotOptions:
    """Resizing, the empty list, the per-CPU magazine cache and reaping, for SlabAllocator."""

    # --- where magazines come from and go back to -----------------------------------------

    def _mag_source(self, cache, size):
        """The magazine cache to allocate a magazine of `size` objects from, for cache."""
        if self.ld(cache + CACHE.flags) & SLAB_CACHE_MAGCACHE:
            return self.mag_cache                 # a magazine cache's own magazines
        if size == self.opts.magazine_size:
            return self.ld(KERNEL.mag_front) if self._front else self.mag_cache
        return self.ld(KERNEL.mag_sized + MAGAZINE_SIZES.index(size) * WORD)

    def _magazine_free(self, mag):
        """Free an empty magazine to the cache it came from (its slab's cache)."""
        owner = self.mag_cache
        if self._magopts:
            owner = self.ld(self.frame_parent(mag) + SLAB.cache)
        self._free_internal(owner, mag)

    def magazine_caches(self):
        """Descriptors of every cache whose objects are magazines: slab_magazine and those the
        options added at boot (bookkeeping reads)."""
        out = [self.mag_cache]
        for at in [KERNEL.mag_front] + [KERNEL.mag_sized + i * WORD
                                        for i in range(len(MAGAZINE_SIZES))]:
            if self.peek(at):
                out.append(self.peek(at))
        return out

    # --- resizing ---------------------------------------------------------------------------

    def _depot_lock(self, cache):
        """Take cache's maglock. With resizing on, a failed first try is a contended
        acquisition: counted, and more than resize_threshold of them in one period grow the
        cache's magazines (_grow_magazines)."""
        lock = cache + CACHE.maglock
        if not self._resize:
            self.lock(lock)
            return
        if self.trylock(lock):
            return
        self.lock(lock)
        if self.ld(cache + CACHE.flags) & SLAB_CACHE_MAGCACHE:
            return                                # magazine caches keep the machine's size
        ext = self._ext(cache)
        now = clock_ns(self)
        if now - self.ld(ext + CACHE_EXT.period_start) >= self._resize_period_ns:
            self.st(ext + CACHE_EXT.period_start, now)
            self.st(ext + CACHE_EXT.depot_contention, 0)
        n = self.ld(ext + CACHE_EXT.depot_contention) + 1
        if n > self.opts.resize_threshold and self._grow_magazines(cache):
            n = 0
            self.st(ext + CACHE_EXT.period_start, now)
        self.st(ext + CACHE_EXT.depot_contention, n)

    def _grow_magazines(self, cache):
        """Step cache's magazine size up to the next Solaris size; False at the largest. The
        cache's maglock must be held."""
        assert self.holds(cache + CACHE.maglock)
        size = self.ld(cache + CACHE.magazine_size)
        bigger = [s for s in self.opts.sized_magazines if s > size]
        if not bigger:
            return False
        self.st(cache + CACHE.magazine_size, bigger[0])
        self.arena.fetch_add(self._stats(cache) + CACHE_STATS.resizes, 1)     # a statistic
        return True

    # --- the empty-magazine list ------------------------------------------------------------

    def _empty_put(self, cache, mag):
        """Keep an empty magazine on cache's empty list."""
        ext = self._ext(cache)
        lock = ext + CACHE_EXT.emptylock
        self.lock(lock)
        self.list_prepend(mag + MAGAZINE.link, ext + CACHE_EXT.empty)
        self.st(ext + CACHE_EXT.empty_counter, self.ld(ext + CACHE_EXT.empty_counter) + 1)
        self.unlock(lock)

    def _empty_take(self, cache, end):
        """Take a magazine off cache's empty list under its lock, from the head (`end` LINK.next)
        or the tail (LINK.prev), or 0 when the list is empty."""
        ext = self._ext(cache)
        lock, head = ext + CACHE_EXT.emptylock, ext + CACHE_EXT.empty
        self.lock(lock)
        mag = 0
        if not self.list_empty(head):
            mag = self.ld(head + end) - MAGAZINE.link
            self.list_remove(mag + MAGAZINE.link)
            self.st(ext + CACHE_EXT.empty_counter, self.ld(ext + CACHE_EXT.empty_counter) - 1)
        self.unlock(lock)
        return mag

    def _empty_get(self, cache, size):
        """An empty magazine of `size` objects from cache's empty list, or 0. One of another
        size (left from before a resize) is freed instead, and the next one tried."""
        while True:
            mag = self._empty_take(cache, LINK.next)
            if not mag or self.ld(mag + MAGAZINE.size) == size:
                return mag
            self._magazine_free(mag)

    def _empty_drain(self, cache):
        """Free every magazine on cache's empty list (reclaim)."""
        while mag := self._empty_take(cache, LINK.prev):
            self._magazine_free(mag)

    # --- new magazines and retired ones (the seed's magazine allocation, with the options) --

    def _magazine_new(self, cache):
        """An empty magazine of cache's current size for cache's CPU layer, or 0: from its
        empty list, else from the magazine cache of that size (without sleeping or reclaim, as
        the seed allocates it)."""
        size = self.ld(cache + CACHE.magazine_size)
        mag = self._empty_get(cache, size) if self._empty else 0
        if not mag:
            mag = self._alloc_internal(self._mag_source(cache, size),
                                       FRAME_ATOMIC | FRAME_NO_RECLAIM)
            if not mag:
                return 0
            self.st(mag + MAGAZINE.size, size)
            self.st(mag + MAGAZINE.busy, 0)
        return mag

    def _magazine_retire(self, cache, mag):
        """The empty `last` magazine a CPU gives up for a full one from the shared list: kept
        on the empty list, or destroyed as the seed does."""
        if self._empty and not self.ld(mag + MAGAZINE.busy):
            self._empty_put(cache, mag)
        else:
            self._magazine_destroy(cache, mag)

    # --- working-set reaping ----------------------------------------------------------------

    def _depot_took(self, cache, left):
        """A full magazine left cache's shared list, which now holds `left`: lower the
        low-water mark. The cache's maglock must be held."""
        at = self._ext(cache) + CACHE_EXT.depot_low
        if left < self.ld(at):
            self.st(at, left)

    def _slab_reap(self, cache):
        """Destroy the full magazines of cache's shared list beyond its working set (as many as
        the low-water mark says sat unused since the previous reap), from the tail; then a new
        interval starts. Returns (frames freed as the seed counts them, magazines destroyed)."""
        ext = self._ext(cache)
        self._depot_lock(cache)
        n = min(self.ld(ext + CACHE_EXT.depot_low), self.ld(cache + CACHE.magazine_counter))
        self.unlock(cache + CACHE.maglock)
        frames = destroyed = 0
        previous = self._stage(STAGE_REAP, cache)
        for _ in range(n):
            mag = self._get_mag_from_cache(cache, False)
            if not mag:
                break
            frames += self._magazine_destroy(cache, mag)
            destroyed += 1
        self._stage(*previous)
        self._depot_lock(cache)
        self.st(ext + CACHE_EXT.depot_low, self.ld(cache + CACHE.magazine_counter))
        self.unlock(cache + CACHE.maglock)
        return frames, destroyed

    def slab_reap_all_caches(self):
        """slab_reap over every cache with magazines, in creation order, under slab_cache_lock
        (as slab_reclaim walks them); returns the frames freed (the seed's count)."""
        self.lock(KERNEL.slab_cache_lock)
        frames = destroyed = 0
        for cache in self.caches(charged=True):
            if self._magazines(cache):
                f, d = self._slab_reap(cache)
                frames, destroyed = frames + f, destroyed + d
        self.unlock(KERNEL.slab_cache_lock)
        line = self.regions.options_line
        self.arena.fetch_add(line + OPTIONS.reap_calls, 1)        # statistics
        self.arena.fetch_add(line + OPTIONS.reap_frames, frames)
        self.arena.fetch_add(line + OPTIONS.reap_magazines, destroyed)
        return frames

    def reap_due(self):
        """True when this CPU has claimed a periodic reap that is due (the first to see it due
        wins the compare-and-swap that moves the due time one period on). No lock is held."""
        at = self.regions.options_line + OPTIONS.reap_due
        due, now = self.peek(at), clock_ns(self)
        return now >= due and self.arena.cas(at, due, now + self._reap_period_ns)

    # --- a cache's CACHE_EXT, when it is linked ---------------------------------------------

    def _init_ext(self, cache, cid, ctor, dtor):
        """Record cache's constructor and destructor names and clear its statistics
        (CACHE_STATS, cache id cid), and set up its CACHE_EXT for what the machine's options
        use. slab_cache_lock must be held."""
        stats = self.regions.stats(cid)
        for f in CACHE_STATS.fields:
            if f not in ("ctor", "dtor"):
                self.poke(stats + getattr(CACHE_STATS, f), 0)
        self._set_fn_name(stats + CACHE_STATS.ctor, ctor)
        self._set_fn_name(stats + CACHE_STATS.dtor, dtor)
        if ctor or dtor:                          # from now on, slab operations look them up
            self.poke(self.regions.options_line + OPTIONS.functions, 1)
        ext = self.regions.ext(cid)
        if self._resize:
            self.st(ext + CACHE_EXT.depot_contention, 0)
            self.st(ext + CACHE_EXT.period_start, clock_ns(self))
        if self._reap:
            self.st(ext + CACHE_EXT.depot_low, 0)
        if self._empty:
            lock = ext + CACHE_EXT.emptylock
            self.segment[lock:lock + SPINLOCK.sizeof] = bytes(SPINLOCK.sizeof)
            self.list_init(ext + CACHE_EXT.empty)
            self.st(ext + CACHE_EXT.empty_counter, 0)
        if self._colour:
            from .slab import SLAB_CACHE_SLINSIDE
            from .slabopts import colour_range
            ld = self.ld
            step, largest = colour_range(ld(cache + CACHE.size), ld(cache + CACHE.order),
                                         ld(cache + CACHE.objects),
                                         ld(cache + CACHE.flags) & SLAB_CACHE_SLINSIDE,
                                         ld(cache + CACHE.align))
            self.st(ext + CACHE_EXT.colour_step, step)
            self.st(ext + CACHE_EXT.colour_max, largest)
            self.st(ext + CACHE_EXT.colour_next, 0)
