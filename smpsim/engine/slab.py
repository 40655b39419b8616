"""The slab allocator of HelenOS (kernel/generic/src/mm/slab.c, revision 781), on one CPU.

Modelled, like the seed, on Bonwick's slab allocator with per-CPU magazines (USENIX 1994, 2001).
The behaviour is the seed's, step for step:

- Allocation tries the CPU's magazine pair (current, then last), then a full magazine from the
  cache's shared list (the old `last` is destroyed), then a partial slab, then a new slab.
- Free puts the object in the current or last magazine; when both are full it first gets a new
  empty magazine from `slab_magazine` with FRAME_ATOMIC | FRAME_NO_RECLAIM, and only then moves
  `last` to the shared list; without one, the object goes straight back to its slab.
- A slab whose objects are all free is returned to the frame allocator at once.
- Inside a slab, a free object's first int holds the index of the next free object.
- Reclaim: light reclaim destroys shared magazines (from the tail, up to the count read at the
  start) until a cache gives frames back; SLAB_RECLAIM_ALL also empties every CPU's pair.

Where smpsim differs from the seed: cache descriptors hold their name and line-padded per-CPU
entries; the magazine size is the machine's `magazine_size`; caches get a small id so that the
object table (outside simulated memory) can say which cache's live object starts at an address;
the counters can be per-CPU (Machine(counters="percpu")).

Beyond the seed, each off by default (smpsim/engine/options.py): constructors and destructors,
colouring and slab locks (smpsim/engine/slabopts.py); magazine resizing, the empty-magazine
list, the per-CPU magazine cache and working-set reaping (smpsim/engine/depot.py). The methods
below call into those only where a cache has a constructor or destructor or the machine has the
option on: with every option off, each step is the seed's.

Locks: see smpsim/engine/locks.py. The seed updates its atomic counters after releasing locks
(magazine_obj_get, slab_alloc) and drops `slablock` while it allocates a new slab: a CPU that
dies there holds no lock and still leaves counters or a slab half done, which the checker sees.

Sections follow the seed: slab space, slab objects, CPU magazines, caches, reclaim.
"""

from typing import Final

from .debug import UNTRAILERED, debug_size
from .depot import DepotOptions
from .errors import BadArgument
from .frames import FRAME_ATOMIC, FRAME_NO_RECLAIM, FrameAllocator
from .layout import (CACHE, CACHE_EXT, CACHE_STATS, CPU_MAGS, FRAME, HEADER, KERNEL, LINE, LINK,
                     LOCKSTAT, LOCKTAB_SIZE, MAGAZINE, MAX_CACHES, MAX_ORDER, NAME_MAX,
                     OBJ_INTERNAL, OPTIONS, PAGE_SIZE, PAGE_WIDTH, SLAB, SPINLOCK, WORD)
from .locks import (RANK_CACHE_LIST, RANK_FRAMES, TIER_CLIENT, TIER_EXTERN, TIER_INTERNAL,
                    TIER_MAGAZINES, cache_lock_rank)
from .options import SLAB_CACHE_MAGCACHE, Options
from .sched import LOCK_USER
from .slabopts import SlabLayerOptions

__all__ = ["SlabAllocator", "geometry", "fnzb", "SLAB_CACHE_NOMAGAZINE", "SLAB_CACHE_SLINSIDE",
           "SLAB_RECLAIM_ALL", "SLAB_MIN_MALLOC_W", "SLAB_MAX_MALLOC_W", "MALLOC_NAMES", "PATHS",
           "PATH_HIT", "PATH_DEPOT", "PATH_SLAB", "PATH_FRAMES"]

SLAB_CACHE_NOMAGAZINE: Final[int] = 1
SLAB_CACHE_SLINSIDE: Final[int] = 2
SLAB_RECLAIM_ALL: Final[int] = 1
SLAB_INSIDE_SIZE = PAGE_SIZE >> 3
SLAB_MIN_MALLOC_W = 3
SLAB_MAX_MALLOC_W = 17
# How deep an allocation or a free went in its own cache (SlabAllocator.path, CPU_CTL.path;
# the allocator's own objects it needed on the way, a magazine or a slab descriptor, do not
# count), index into PATHS:
#   hit     this CPU's own magazine pair served it
#   depot   a magazine was exchanged: a full one taken from or given to the cache's shared list,
#           or a new empty one allocated
#   slab    an object was taken from or returned to a slab
#   frames  the frame allocator was called: a new slab's frames, or an emptied slab's returned
PATHS = [None, "hit", "depot", "slab", "frames"]
PATH_HIT, PATH_DEPOT, PATH_SLAB, PATH_FRAMES = 1, 2, 3, 4
MALLOC_NAMES = ["malloc-8", "malloc-16", "malloc-32", "malloc-64", "malloc-128", "malloc-256",
                "malloc-512", "malloc-1K", "malloc-2K", "malloc-4K", "malloc-8K", "malloc-16K",
                "malloc-32K", "malloc-64K", "malloc-128K"]


def fnzb(x):
    """HelenOS bitops: the index of the most significant set bit of x > 0."""
    return x.bit_length() - 1


def _comp_objects(size, order, flags):
    """Objects that fit in a slab of 2**order pages (the seed's comp_objects)."""
    space = PAGE_SIZE << order
    if flags & SLAB_CACHE_SLINSIDE:
        space -= SLAB.sizeof
    return space // size


def _badness(size, order, flags):
    """Bytes a slab wastes (the seed's badness)."""
    space = PAGE_SIZE << order
    if flags & SLAB_CACHE_SLINSIDE:
        space -= SLAB.sizeof
    return space - _comp_objects(size, order, flags) * size


def geometry(size: int, align: int = 0, flags: int = 0) -> tuple[int, int, int, int]:
    """The seed's slab geometry: (size, order, objects, flags) of a cache created with this
    size, alignment and flags (BadArgument for arguments slab_cache_create would refuse)."""
    _check_geometry_args("geometry", size, align, flags)
    return _geometry(size, align, flags)


def _geometry(size, align, flags):
    align = max(align, WORD)
    size = -(-size // align) * align
    if size < SLAB_INSIDE_SIZE:
        flags |= SLAB_CACHE_SLINSIDE
    order = fnzb(((size - 1) >> PAGE_WIDTH) + 1)
    while _badness(size, order, flags) > (PAGE_SIZE << order) >> 2:   # SLAB_MAX_BADNESS
        order += 1
    objects = _comp_objects(size, order, flags)
    if _badness(size, order, flags) > SLAB.sizeof:      # the descriptor fits in the waste
        flags |= SLAB_CACHE_SLINSIDE
    return size, order, objects, flags


class SlabAllocator(DepotOptions, SlabLayerOptions, FrameAllocator):
    """The seed's allocator run by CPU `cpu_id`. Caches are addresses of CACHE descriptors.

    Internal entry points keep the seed's names with a leading underscore; they take no
    argument checks (the Kernel does those) and signal running out of memory by returning 0.
    `options` are the machine's options beyond the seed (smpsim/engine/options.py).
    """

    RECLAIM_ALL = SLAB_RECLAIM_ALL
    path = PATH_HIT    # the deepest layer the operation under way has reached (PATHS)
    _debug = None      # debugging mode's Debugger (smpsim/engine/debug.py), set by the Kernel
    _kernel = None     # the Kernel holding this allocator: constructors get it (set by it)

    def __init__(self, buf, regions, cpu_id, cpus, *, percpu_counters=False, options=None, **kw):
        super().__init__(buf, regions, cpu_id, **kw)
        self.cpus = cpus
        self.percpu = percpu_counters
        self.mag_cache = KERNEL.mag_cache
        self.slab_cache_cache = KERNEL.slab_cache_cache
        self.ctl = regions.cpu(cpu_id)
        o = self.opts = options if options is not None else Options()
        self._resize, self._colour = o.resize_magazines, o.colour
        self._empty, self._front = o.empty_magazines, o.cpu_magazine_cache
        self._slablocks, self._reap = o.slab_locks, o.reap_every is not None
        self._magopts = self._resize or self._front      # magazines not all from slab_magazine
        self._resize_period_ns = int(o.resize_period * 1e9)
        self._reap_period_ns = o.reap_period_ns
        self._function_names = {}     # cache generation -> (constructor, destructor) names
        self._any_function = regions.options_line + OPTIONS.functions   # a ctor or dtor exists
        self._callables = {}          # "module:function" -> the callable, in this process

    @property
    def slab_extern(self):
        return self.peek(KERNEL.slab_extern)

    def _mags(self, cache, cpu=None):
        """The CPU_MAGS entry of `cpu` (default: this CPU) in `cache`."""
        return cache + CACHE.mag_cache + (self.cpu_id if cpu is None else cpu) * CPU_MAGS.sizeof

    def _magazines(self, cache):
        """The seed's test of SLAB_CACHE_NOMAGAZINE in the cache's flags."""
        return not self.ld(cache + CACHE.flags) & SLAB_CACHE_NOMAGAZINE

    def _has_magazines(self, cache):
        """The same, as a bookkeeping read (statistics, lock names, the checker)."""
        return not self.peek(cache + CACHE.flags) & SLAB_CACHE_NOMAGAZINE

    # --- counters -------------------------------------------------------------------------------

    def _reached(self, path):
        """Note that the operation under way went as deep as `path` (PATH_*)."""
        if path > self.path:
            self.path = path

    def _count(self, cache, shared_field, percpu_field, delta):
        """Add delta to one of the seed's atomic counters, or to this CPU's share of it (which
        one is the simulator's choice: a bookkeeping read of the flags)."""
        if self.percpu and self._has_magazines(cache):
            self.fetch_add(self._mags(cache) + percpu_field, delta)
        else:
            self.fetch_add(cache + shared_field, delta)

    def counter(self, cache, which):
        """The value of "allocated" (allocated_objs) or "cached" (cached_objs) of cache."""
        shared, percpu = {"allocated": (CACHE.allocated_objs, CPU_MAGS.allocated),
                          "cached": (CACHE.cached_objs, CPU_MAGS.cached)}[which]
        total = self.signed(cache + shared)
        if self._has_magazines(cache):
            total += sum(self.signed(self._mags(cache, i) + percpu) for i in range(self.cpus))
        return total

    # --- slab space -------------------------------------------------------------------------

    def _slab_space_alloc(self, cache, flags):
        """Frames for a new slab, its descriptor and its free list; 0 when out of memory."""
        self._reached(PATH_FRAMES)
        order = self.ld(cache + CACHE.order)
        data = self.frame_alloc(order, flags)
        if not data:
            return 0
        if self.ld(cache + CACHE.flags) & SLAB_CACHE_SLINSIDE:
            slab = data + (PAGE_SIZE << order) - SLAB.sizeof
        else:
            slab = self._alloc_internal(self.ld(KERNEL.slab_extern), flags)
            if not slab:
                self.frame_free(data)
                return 0
        for i in range(1 << order):
            self.st(self.frame_entry(data + i * PAGE_SIZE) + FRAME.parent, slab)
        size, objects = self.ld(cache + CACHE.size), self.ld(cache + CACHE.objects)
        start = data + self._colour_offset(cache) if self._colour else data
        self.st(slab + SLAB.start, start)
        self.st(slab + SLAB.available, objects)
        self.st(slab + SLAB.nextavail, 0)
        self.st(slab + SLAB.cache, cache)
        if self._debug:                            # fill with the free pattern first
            self._debug.on_new_slab(cache, start)
        st32 = self.st32
        for i in range(objects):                  # free object i points to i + 1
            st32(start + i * size, i + 1)
        self.fetch_add(cache + CACHE.allocated_slabs, 1)
        return slab

    def _slab_space_free(self, cache, slab):
        """Give a slab's frames (and its outside descriptor) back; returns the frames freed."""
        self._reached(PATH_FRAMES)
        order = self.ld(cache + CACHE.order)
        start = self.ld(slab + SLAB.start)
        if self._colour:                           # the frames begin before the first object
            start = self._slab_base(cache, start)
        for i in range(1 << order):
            self.st(self.frame_entry(start + i * PAGE_SIZE) + FRAME.parent, 0)
        self.frame_free(start)
        if not self.ld(cache + CACHE.flags) & SLAB_CACHE_SLINSIDE:
            self._free_internal(self.ld(KERNEL.slab_extern), slab)
        self.fetch_add(cache + CACHE.allocated_slabs, -1)
        return 1 << order

    # --- slab objects -----------------------------------------------------------------------

    def _slab_obj_destroy(self, cache, obj, slab=0, constructed=True):
        """Return obj to its slab, after its destructor if the cache has one (and obj was
        `constructed`); free the slab when it becomes empty. Returns frames freed."""
        if not slab:
            slab = self.frame_parent(obj)
        assert self.ld(slab + SLAB.cache) == cache, f"object {obj:#x} is not of this cache"
        dtor = (self.functions(cache)[1] if constructed and self.peek(self._any_function)
                else None)
        if dtor is not None:
            self._destruct(cache, obj, dtor)
        if self._slablocks:
            self._reached(PATH_SLAB)
            return self._slab_obj_put_locked(cache, obj, slab)
        lock = cache + CACHE.slablock
        self.lock(lock)
        start, nextavail = self.ld(slab + SLAB.start), self.ld(slab + SLAB.nextavail)
        self._reached(PATH_SLAB)
        self.st32(obj, nextavail)
        self.st(slab + SLAB.nextavail, (obj - start) // self.ld(cache + CACHE.size))
        available = self.ld(slab + SLAB.available) + 1
        self.st(slab + SLAB.available, available)
        frames = 0
        if available == self.ld(cache + CACHE.objects):
            # Empty: free it now. Holding slablock is safe: freeing the outside descriptor may
            # allocate a magazine, and that never reclaims (see smpsim/engine/locks.py).
            self.list_remove(slab + SLAB.link)
            frames = self._slab_space_free(cache, slab)
        elif available == 1:                       # it was full: move it to partial
            self.list_remove(slab + SLAB.link)
            self.list_prepend(slab + SLAB.link, cache + CACHE.partial_slabs)
        self.unlock(lock)
        return frames

    def _slab_obj_create(self, cache, flags):
        """Take an object from a partial slab, or from a new one, and construct it if the cache
        has a constructor; 0 when out of memory (or the constructor failed: ctor_failure)."""
        self._reached(PATH_SLAB)
        if self._slablocks:
            obj = self._slab_obj_take_locked(cache, flags)
        else:
            obj = self._slab_obj_take(cache, flags)
        ctor = self.functions(cache)[0] if obj and self.peek(self._any_function) else None
        if ctor is not None:
            obj = self._construct(cache, obj, ctor)
        return obj

    def _slab_obj_take(self, cache, flags):
        """The seed's slab_obj_create: an object from a partial slab, or from a new one."""
        lock = cache + CACHE.slablock
        self.lock(lock)
        if self.list_empty(cache + CACHE.partial_slabs):
            # The seed drops slablock while it allocates a slab: frame_alloc may reclaim, and
            # the descriptor may come from slab_extern (one level of recursion at most).
            self.unlock(lock)
            slab = self._slab_space_alloc(cache, flags)
            if not slab:
                return 0
            self.lock(lock)
        else:
            slab = self.ld(cache + CACHE.partial_slabs + LINK.next) - SLAB.link
            self.list_remove(slab + SLAB.link)
        obj = self.ld(slab + SLAB.start) + self.ld(slab + SLAB.nextavail) * self.ld(cache + CACHE.size)
        self.st(slab + SLAB.nextavail, self.ld32(obj))
        available = self.ld(slab + SLAB.available) - 1
        self.st(slab + SLAB.available, available)
        self.list_prepend(slab + SLAB.link,
                          cache + (CACHE.partial_slabs if available else CACHE.full_slabs))
        self.unlock(lock)
        return obj

    # --- CPU magazines ----------------------------------------------------------------------

    def _get_mag_from_cache(self, cache, first):
        """Take the first (or last) full magazine off the cache's shared list; 0 if none."""
        lock = cache + CACHE.maglock
        if self._resize:
            self._depot_lock(cache)                # counts contention (depot.py)
        else:
            self.lock(lock)
        head = cache + CACHE.magazines
        mag = 0
        if not self.list_empty(head):
            mag = self.ld(head + (LINK.next if first else LINK.prev)) - MAGAZINE.link
            self.list_remove(mag + MAGAZINE.link)
            left = self.fetch_add(cache + CACHE.magazine_counter, -1) - 1
            if self._reap:
                self._depot_took(cache, left)      # the working set's low-water mark
        self.unlock(lock)
        return mag

    def _put_mag_to_cache(self, cache, mag):
        """Prepend a full magazine to the cache's shared list."""
        lock = cache + CACHE.maglock
        if self._resize:
            self._depot_lock(cache)
        else:
            self.lock(lock)
        self.list_prepend(mag + MAGAZINE.link, cache + CACHE.magazines)
        self.fetch_add(cache + CACHE.magazine_counter, 1)
        self.unlock(lock)

    def _magazine_destroy(self, cache, mag):
        """Return every object of mag to its slab and free mag; returns the frames freed."""
        frames = 0
        for i in range(self.ld(mag + MAGAZINE.busy)):
            frames += self._slab_obj_destroy(cache, self.ld(mag + MAGAZINE.objs + i * WORD))
            self._count(cache, CACHE.cached_objs, CPU_MAGS.cached, -1)
        if self._magopts:
            self._magazine_free(mag)               # to the magazine cache it came from
        else:
            self._free_internal(self.mag_cache, mag)
        return frames

    def _get_full_current_mag(self, cache, mags):
        """Make `current` a magazine with objects in it and return it; 0 if none can be had.
        The CPU's magazine lock must be held."""
        assert self.holds(mags + CPU_MAGS.lock)
        cmag, lastmag = self.ld(mags + CPU_MAGS.current), self.ld(mags + CPU_MAGS.last)
        if cmag:                                   # first try the local magazines
            if self.ld(cmag + MAGAZINE.busy):
                return cmag
            if lastmag and self.ld(lastmag + MAGAZINE.busy):
                self.st(mags + CPU_MAGS.current, lastmag)
                self.st(mags + CPU_MAGS.last, cmag)
                return lastmag
        self._reached(PATH_DEPOT)                  # local ones are empty: import one
        newmag = self._get_mag_from_cache(cache, True)
        if not newmag:
            return 0
        if lastmag:
            if self._empty:
                self._magazine_retire(cache, lastmag)    # onto the empty list (depot.py)
            else:
                self._magazine_destroy(cache, lastmag)
        self.st(mags + CPU_MAGS.last, cmag)
        self.st(mags + CPU_MAGS.current, newmag)
        return newmag

    def _magazine_obj_get(self, cache):
        """An object from this CPU's magazines (or the shared list); 0 if none."""
        mags = self._mags(cache)
        self.lock(mags + CPU_MAGS.lock)
        mag = self._get_full_current_mag(cache, mags)
        if not mag:
            self.unlock(mags + CPU_MAGS.lock)
            return 0
        busy = self.ld(mag + MAGAZINE.busy) - 1
        self.st(mag + MAGAZINE.busy, busy)
        obj = self.ld(mag + MAGAZINE.objs + busy * WORD)
        self.unlock(mags + CPU_MAGS.lock)
        self._count(cache, CACHE.cached_objs, CPU_MAGS.cached, -1)
        return obj

    def _make_empty_current_mag(self, cache, mags):
        """Make `current` a magazine with room and return it; 0 if no new one can be had.
        The CPU's magazine lock must be held."""
        assert self.holds(mags + CPU_MAGS.lock)
        cmag, lastmag = self.ld(mags + CPU_MAGS.current), self.ld(mags + CPU_MAGS.last)
        if cmag:
            if self.ld(cmag + MAGAZINE.busy) < self.ld(cmag + MAGAZINE.size):
                return cmag
            if lastmag and self.ld(lastmag + MAGAZINE.busy) < self.ld(lastmag + MAGAZINE.size):
                self.st(mags + CPU_MAGS.last, cmag)
                self.st(mags + CPU_MAGS.current, lastmag)
                return lastmag
        # Both full or absent: a new one, without sleeping and without reclaim (reclaim takes
        # this CPU's magazine lock, which we hold).
        self._reached(PATH_DEPOT)
        if self._empty or self._magopts:
            newmag = self._magazine_new(cache)     # the empty list, or a magazine cache
            if not newmag:
                return 0
        else:
            newmag = self._alloc_internal(self.mag_cache, FRAME_ATOMIC | FRAME_NO_RECLAIM)
            if not newmag:
                return 0
            self.st(newmag + MAGAZINE.size, self.ld(cache + CACHE.magazine_size))
            self.st(newmag + MAGAZINE.busy, 0)
        if lastmag:
            self._put_mag_to_cache(cache, lastmag)
        self.st(mags + CPU_MAGS.last, cmag)
        self.st(mags + CPU_MAGS.current, newmag)
        return newmag

    def _magazine_obj_put(self, cache, obj):
        """Put obj in this CPU's magazines; False when no magazine could be had."""
        mags = self._mags(cache)
        self.lock(mags + CPU_MAGS.lock)
        mag = self._make_empty_current_mag(cache, mags)
        if not mag:
            self.unlock(mags + CPU_MAGS.lock)
            return False
        busy = self.ld(mag + MAGAZINE.busy)
        self.st(mag + MAGAZINE.objs + busy * WORD, obj)
        self.st(mag + MAGAZINE.busy, busy + 1)
        self.unlock(mags + CPU_MAGS.lock)
        self._count(cache, CACHE.cached_objs, CPU_MAGS.cached, 1)
        return True

    # --- allocation and free (the seed's slab_alloc and _slab_free) -------------------------

    def _alloc(self, cache, flags):
        """The seed's slab_alloc: magazines first, then the slab layer. 0 when out of memory."""
        obj = 0
        if self._magazines(cache):
            obj = self._magazine_obj_get(cache)
        if not obj:
            obj = self._slab_obj_create(cache, flags)
        if obj:
            self._count(cache, CACHE.allocated_objs, CPU_MAGS.allocated, 1)
        return obj

    def _free(self, cache, obj, slab=0):
        """The seed's _slab_free: into the magazines if one can be had, else to the slab."""
        if not (self._magazines(cache) and self._magazine_obj_put(cache, obj)):
            self._slab_obj_destroy(cache, obj, slab)
        self._count(cache, CACHE.allocated_objs, CPU_MAGS.allocated, -1)

    def _alloc_internal(self, cache, flags):
        """An object the allocator uses itself, marked so in the object table. Its path does
        not count as the path of the operation that needed it (a magazine, a descriptor)."""
        path = self.path
        obj = self._alloc(cache, flags)
        self.path = path
        if obj:
            self.h[self.regions.granule(obj) >> 1] = self.peek(cache + CACHE.id) | OBJ_INTERNAL
        return obj

    def _free_internal(self, cache, obj):
        path = self.path
        self.h[self.regions.granule(obj) >> 1] = 0
        self._free(cache, obj)
        self.path = path

    # --- caches -------------------------------------------------------------------------------

    def _slab_cache_init_desc(self, cache, name, size, align, flags):
        """Fill in a cache descriptor (the seed's _slab_cache_create, up to linking it)."""
        objsize = size
        if self.debug and name not in UNTRAILERED and not flags & SLAB_CACHE_MAGCACHE:
            # room for debugging mode's trailer
            size = debug_size(size, align)
        size, order, objects, flags = _geometry(size, align, flags)
        encoded = name.encode()
        self.memory[cache + CACHE.name:cache + CACHE.name + NAME_MAX] = \
            encoded + bytes(NAME_MAX - len(encoded))
        for field, value in (("size", size), ("align", max(align, WORD)), ("flags", flags),
                             ("order", order), ("objects", objects),
                             ("magazine_size", self.ld(self.regions.header + HEADER.magazine_size)),
                             ("objsize", objsize), ("allocated_objs", 0), ("cached_objs", 0), ("allocated_slabs", 0),
                             ("magazine_counter", 0), ("id", 0), ("gen", 0)):
            self.st(cache + getattr(CACHE, field), value)
        for lock in (CACHE.slablock, CACHE.maglock):
            self.memory[cache + lock:cache + lock + SPINLOCK.sizeof] = bytes(SPINLOCK.sizeof)
        for head in (CACHE.full_slabs, CACHE.partial_slabs, CACHE.magazines):
            self.list_init(cache + head)
        if not flags & SLAB_CACHE_NOMAGAZINE:
            base = cache + CACHE.mag_cache
            self.memory[base:base + self.cpus * CPU_MAGS.sizeof] = bytes(self.cpus * CPU_MAGS.sizeof)

    def _link_cache(self, cache, ctor=None, dtor=None):
        """Give cache an id and a generation, set up its CACHE_EXT (constructor and destructor
        names, the options' state) and append it to the cache list; returns False when every
        id is taken. slab_cache_lock must be held."""
        assert self.holds(KERNEL.slab_cache_lock)
        ids = self.regions.cache_ids
        for cid in range(1, MAX_CACHES):
            if not self.peek(ids + cid * WORD):
                break
        else:
            return False
        gen = self.peek(KERNEL.next_gen)           # the id and generation are bookkeeping
        self.poke(KERNEL.next_gen, gen + 1)
        self.poke(ids + cid * WORD, cache)
        self.poke(cache + CACHE.id, cid)
        self.poke(cache + CACHE.gen, gen)
        self._init_ext(cache, cid, ctor, dtor)
        self.list_append(cache + CACHE.link, KERNEL.slab_cache_list)
        return True

    def _unlink_cache(self, cache):
        """Remove cache from the list; its handles are stale from now on. slab_cache_lock must
        be held. Its id stays taken until _release_id, once the cache is emptied: its CACHE_EXT
        (the options' state, its destructor's name) is in use until then."""
        assert self.holds(KERNEL.slab_cache_lock)
        self.list_remove(cache + CACHE.link)
        self.poke(cache + CACHE.gen, 0)

    def _release_id(self, cache):
        """Give an unlinked, emptied cache's id back (a word of bookkeeping: _link_cache's scan
        under slab_cache_lock sees it taken or free, either is right)."""
        self.poke(self.regions.cache_ids + self.peek(cache + CACHE.id) * WORD, 0)

    def caches(self, *, charged=False):
        """Descriptor addresses of the live caches, in creation order (read without the lock:
        callers that need a stable list hold slab_cache_lock). A bookkeeping walk unless
        `charged` (the seed's own walk, in reclaim)."""
        return [link - CACHE.link for link in
                self.list_links(KERNEL.slab_cache_list, MAX_CACHES, charged=charged)]

    def cache_name(self, cache):
        raw = bytes(self.memory[cache + CACHE.name:cache + CACHE.name + NAME_MAX])
        return raw.rstrip(b"\0").decode(errors="replace")

    def find_cache(self, name):
        """The descriptor of the live cache called name, or 0. slab_cache_lock must be held."""
        for cache in self.caches():
            if self.cache_name(cache) == name:
                return cache
        return 0

    # --- reclaim ----------------------------------------------------------------------------

    def _slab_reclaim(self, cache, flags):
        """Give back what one cache's magazines hold; returns the seed's frame count."""
        if not self._magazines(cache):
            return 0
        frames = 0
        if self._empty:
            self._empty_drain(cache)               # empty magazines hold no objects (depot.py)
        # Count up to the magazines there were at the start, so that this ends.
        magcount = self.ld(cache + CACHE.magazine_counter)
        while magcount > 0:
            magcount -= 1
            mag = self._get_mag_from_cache(cache, False)
            if not mag:
                break
            frames += self._magazine_destroy(cache, mag)
            if not flags & SLAB_RECLAIM_ALL and frames:
                break
        if flags & SLAB_RECLAIM_ALL:               # also every CPU's magazine pair
            for cpu in range(self.cpus):
                mags = self._mags(cache, cpu)
                self.lock(mags + CPU_MAGS.lock)
                for field in (CPU_MAGS.current, CPU_MAGS.last):
                    mag = self.ld(mags + field)
                    if mag:
                        frames += self._magazine_destroy(cache, mag)
                    self.st(mags + field, 0)
                self.unlock(mags + CPU_MAGS.lock)
        return frames

    def slab_reclaim_all_caches(self, flags):
        """The seed's slab_reclaim: every cache, in creation order, under slab_cache_lock."""
        self.lock(KERNEL.slab_cache_lock)
        frames = 0
        for cache in self.caches(charged=True):
            frames += self._slab_reclaim(cache, flags)
        self.unlock(KERNEL.slab_cache_lock)
        self.fetch_add(KERNEL.reclaim_calls, 1)
        self.fetch_add(KERNEL.reclaim_frames, frames)
        return frames

    # --- lock names and ranks ---------------------------------------------------------------

    def cache_locks(self, cache):
        """(kind, lock address) of each lock of a cache; kind is "slablock", "maglock",
        "emptylock" (Machine(empty_magazines=True)) or "cpu<N>". Slab locks: slab_locks()."""
        locks = [("slablock", cache + CACHE.slablock), ("maglock", cache + CACHE.maglock)]
        if self._has_magazines(cache):
            if self._empty:
                locks.append(("emptylock", self._ext(cache) + CACHE_EXT.emptylock))
            locks += [(f"cpu{i}", self._mags(cache, i) + CPU_MAGS.lock) for i in range(self.cpus)]
        return locks

    def all_locks(self):
        """(name, address) of every lock of the machine: the allocator's (with slab locks, each
        slab's, "<cache>.slab@<address of its frames>", which Machine.stats adds up per cache),
        then the workloads' (Kernel.spin_lock, "user@<addr>")."""
        yield "slab_cache_lock", KERNEL.slab_cache_lock
        yield "frames", self.frames_lock
        for cache in self.caches():
            name = self.cache_name(cache)
            for kind, lock in self.cache_locks(cache):
                yield f"{name}.{kind}", lock
        if self._slablocks:
            yield from self.slab_locks()
        for entry, lock in self.lock_entries(LOCK_USER):
            yield f"user@{lock}", lock

    def lock_entries(self, kind=None):
        """(entry, lock word) of the lock table's entries (of `kind`, LOCK_USER or LOCK_KERNEL,
        or all), in address order: the statistics a lock word cannot hold (layout.LOCKSTAT)."""
        base, stride = self.regions.locktab, LOCKSTAT.sizeof >> 3
        words = self.q[base >> 3:(base >> 3) + LOCKTAB_SIZE * stride].tolist()
        a, k = LOCKSTAT.addr >> 3, LOCKSTAT.kind >> 3
        out = [(base + i * LOCKSTAT.sizeof, words[i * stride + a])
               for i in range(LOCKTAB_SIZE) if words[i * stride + a]
               and (kind is None or words[i * stride + k] == kind)]
        return sorted(out, key=lambda e: e[1])

    def slab_locks(self):
        """(name, address) of the lock of every slab there is, and of any other slab lock that
        is held (a CPU died holding it while the slab was on no list). Bookkeeping reads."""
        r, pk = self.regions, self.peek
        for pfn in range(r.nframes):
            lock = r.slab_lock(pfn)
            cache = self._slab_lock_cache(pfn)
            if cache:
                yield f"{self.cache_name(cache)}.slab@{pfn << PAGE_WIDTH:#x}", lock
            elif pk(lock + SPINLOCK.holder):
                yield f"slab lock of frame {pfn}", lock

    def _slab_lock_cache(self, pfn):
        """The cache of the slab whose frames begin at frame pfn, or 0 (bookkeeping reads)."""
        pk = self.peek
        slab = pk(self.regions.frame(pfn) + FRAME.parent)
        if not slab or not PAGE_SIZE <= slab < self.regions.memory:
            return 0
        cache = pk(slab + SLAB.cache)
        if not 0 < cache < self.regions.memory:
            return 0
        order = pk(cache + CACHE.order)
        if order > MAX_ORDER or (pk(slab + SLAB.start) >> PAGE_WIDTH) & ~((1 << order) - 1) != pfn:
            return 0
        return cache

    def fold_slab_locks(self, locks):
        """Machine.stats' lock rows with every slab's lock ("<cache>.slab@...") added into one
        row per cache, "<cache>.slablocks", together with the locks of its slabs freed since
        (their counts were kept in the cache's CACHE_STATS). Unchanged without slab locks."""
        if not self._slablocks:
            return locks
        out, pk = {}, self.peek
        for name, row in locks.items():
            if ".slab@" in name:
                total = out.setdefault(name.split(".slab@")[0] + ".slablocks",
                                       dict.fromkeys(row, 0))
                for f, v in row.items():
                    total[f] = total.get(f, 0) + v
            else:
                out[name] = row
        for cache in self.caches():
            stats = self._stats(cache)
            row = out.setdefault(f"{self.cache_name(cache)}.slablocks",
                                 dict.fromkeys(next(iter(locks.values())), 0))
            for f in row:
                if hasattr(CACHE_STATS, f"slab_{f}"):
                    row[f] += pk(stats + getattr(CACHE_STATS, f"slab_{f}"))
        return out

    def _tier(self, cache):
        """Which group of ranks a cache's locks belong to (smpsim/engine/locks.py)."""
        if cache in (self.mag_cache, self.slab_cache_cache):
            return TIER_INTERNAL
        if cache == self.slab_extern:
            return TIER_EXTERN
        flags = self.peek(cache + CACHE.flags)
        if flags & SLAB_CACHE_MAGCACHE:
            return TIER_INTERNAL if flags & SLAB_CACHE_NOMAGAZINE else TIER_MAGAZINES
        return TIER_CLIENT

    def _locate_option_lock(self, lock):
        """(cache, kind) of a lock the options keep outside the cache descriptor (a slab lock,
        an emptylock), or None."""
        r = self.regions
        if r.slab_locks and r.slab_locks <= lock < r.slab_locks + r.nframes * LINE:
            pfn, off = divmod(lock - r.slab_locks, LINE)
            cache = self._slab_lock_cache(pfn) if not off else 0
            return (cache, "slab") if cache else None
        if r.cache_ext and r.cache_ext <= lock < r.cache_ext + MAX_CACHES * CACHE_EXT.sizeof:
            cid, off = divmod(lock - r.cache_ext, CACHE_EXT.sizeof)
            cache = self.peek(r.cache_ids + cid * WORD)
            return (cache, "emptylock") if cache and off == CACHE_EXT.emptylock else None
        return None

    def _locate_lock(self, lock):
        if lock == KERNEL.slab_cache_lock:
            return "slab_cache_lock", RANK_CACHE_LIST
        if lock == self.frames_lock:
            return "frames", RANK_FRAMES
        found = self._locate_option_lock(lock) if lock >= self.regions.memory else None
        if found:
            cache, kind = found
            name = f"{self.cache_name(cache)}.{kind}"
            if kind == "slab":
                name += f"@{(lock - self.regions.slab_locks) // LINE << PAGE_WIDTH:#x}"
            return name, cache_lock_rank(self._tier(cache), kind)
        for cache in [self.mag_cache, self.slab_cache_cache] + self.caches():
            end = cache + CACHE.mag_cache + (self.cpus * CPU_MAGS.sizeof
                                             if self._has_magazines(cache) else 0)
            if cache <= lock < end:
                for kind, addr in self.cache_locks(cache):
                    if addr == lock:
                        rank = cache_lock_rank(self._tier(cache),
                                               "cpu" if kind.startswith("cpu") else kind)
                        return f"{self.cache_name(cache)}.{kind}", rank
        if any(addr == lock for _, addr in self.lock_entries(LOCK_USER)):
            return f"user@{lock}", 0
        return f"lock@{lock:#x}", 0

    def lock_name(self, lock):
        return self._locate_lock(lock)[0]

    def lock_rank(self, lock):
        """The rank of the lock at `lock` (smpsim/engine/locks.py), for debugging mode's order check
        on every acquisition: found from the address alone (the cache descriptor holding the
        lock is a slab_cache object or one of the two static caches; an option's lock is found
        through its frame or its cache id), without walking the cache list as _locate_lock does
        for names."""
        if lock == KERNEL.slab_cache_lock:
            return RANK_CACHE_LIST
        if lock == self.frames_lock:
            return RANK_FRAMES
        statics = (self.mag_cache, self.slab_cache_cache)
        if lock < PAGE_SIZE:
            desc = next((c for c in statics if c <= lock < c + CACHE.sizeof), 0)
        elif lock >= self.regions.memory:
            found = self._locate_option_lock(lock)
            return cache_lock_rank(self._tier(found[0]), found[1]) if found else 0
        else:
            pk = self.peek
            slab = pk(self.frame_entry(lock) + FRAME.parent)
            if not slab or pk(slab + SLAB.cache) != self.slab_cache_cache:
                return self._locate_lock(lock)[1]
            start, size = pk(slab + SLAB.start), pk(self.slab_cache_cache + CACHE.size)
            desc = start + (lock - start) // size * size
        off = lock - desc
        if not desc:
            return self._locate_lock(lock)[1]
        if off == CACHE.slablock:
            kind = "slablock"
        elif off == CACHE.maglock:
            kind = "maglock"
        elif off >= CACHE.mag_cache and (off - CACHE.mag_cache) % CPU_MAGS.sizeof == CPU_MAGS.lock:
            kind = "cpu"
        else:
            return self._locate_lock(lock)[1]
        return cache_lock_rank(self._tier(desc), kind)


def _check_geometry_args(fn, size, align, flags):
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise BadArgument(f"{fn}: 'size' must be an int of at least 1, got {size!r}")
    if not isinstance(align, int) or isinstance(align, bool) or align < 0 or \
            align > PAGE_SIZE or (align & (align - 1)):
        raise BadArgument(f"{fn}: 'align' must be 0 or a power of two up to {PAGE_SIZE}, "
                          f"got {align!r}")
    if not isinstance(flags, int) or isinstance(flags, bool) or \
            flags & ~(SLAB_CACHE_NOMAGAZINE | SLAB_CACHE_SLINSIDE):
        raise BadArgument(f"{fn}: 'flags' may hold only SLAB_CACHE_NOMAGAZINE and "
                          f"SLAB_CACHE_SLINSIDE, got {flags!r}")


def check_cache_args(name, size, align, flags):
    """Validate slab_cache_create's arguments (BadArgument naming the one that is wrong)."""
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX or \
            not name.isprintable() or any(c.isspace() for c in name) or \
            len(name.encode()) > NAME_MAX:
        raise BadArgument(f"slab_cache_create: 'name' must be 1 to {NAME_MAX} printable "
                          f"characters without whitespace, got {name!r}")
    _check_geometry_args("slab_cache_create", size, align, flags)
    order = _geometry(size, align, flags)[1]
    if order > MAX_ORDER:
        raise BadArgument(f"slab_cache_create: 'size' {size} needs slabs of order {order}, above "
                          f"the frame allocator's largest block (order {MAX_ORDER})")
