"""The invariant checker behind Machine.check: walks all shared state with no CPU running.

It never stops at the first problem: every violation found is listed. What must hold:

Frames   frame 0 is reserved; every other frame lies in exactly one buddy block, free (in the
         free list of its order, aligned) or allocated; `free_frames` counts the free ones; every
         allocated block is the space of exactly one live slab, whose frames all point to it.
Slabs    each slab of a cache is on its full list (none available) or its partial list (some,
         not all); its free list is `available` distinct in-range indexes long; its descriptor
         lies inside the slab or is the allocator's own object of slab_extern.
Objects  every free object is in exactly one place: one slab's free list or one magazine; the
         object table marks exactly the allocated objects, at their first granule, with their
         cache's id (or the internal bit for magazines and descriptors); nothing else is marked.
Counters allocated_slabs, cached_objs, allocated_objs and magazine_counter equal what the walk
         counts; the frames-lock free count too.
Locks    no lock is held and no CPU is inside allocator code.

With the options beyond the seed (smpsim/engine/options.py), also:
Colour   a slab's first object lies a whole number of colour steps into its frames, within
         the cache's slack (Machine(colour=True)); without colouring, at their start.
Empty    every magazine on a cache's empty list is empty, the list is as long as its count,
         and no magazine is there and elsewhere (Machine(empty_magazines=True)).
Sizes    a cache's magazine size is the machine's or one of Solaris's above it (resizing);
         every magazine fits the magazine cache object it lives in, and every live object of a
         magazine cache is a magazine some cache holds, and the other way round.
Reaping  the low-water mark of a shared list is at most the list's length.
Slab locks  none is held (they are among the locks).
A CPU that died inside an option's window (a constructor, a destructor, a reap) is reported
with what that window leaves behind (CPU_CTL.stage).
"""

from .frames import FRAME_FREE, FRAME_RESERVED, FRAME_USED, ORDER_MASK
from .layout import (CACHE, CACHE_EXT, CPU_CTL, CPU_MAGS, FRAME, HEADER, KERNEL, LINK, MAGAZINE,
                     MAX_CACHES, MAX_ORDER, OBJ_INTERNAL, PAGE_SIZE, PAGE_WIDTH, SLAB, SPINLOCK,
                     WORD)
from .options import STAGE_CTOR, STAGE_DTOR, STAGE_REAP, STAGES
from .slab import SLAB_CACHE_SLINSIDE

__all__ = ["check_machine"]

WALK_LIMIT = 1 << 24      # longest list walked before calling it a cycle


def check_machine(k):
    """Every violation of the machine seen through allocator k (reading with bookkeeping
    accesses only), as a list of messages."""
    c = _Checker(k)
    c.frames()
    c.caches()
    c.leftovers()
    c.locks_and_cpus()
    return c.bad


class _Checker:
    def __init__(self, k):
        self.k = k
        self.r = k.regions
        self.bad = []
        self.block_of = {}        # pfn of an allocated block's head -> order
        self.slab_blocks = {}     # pfn of a block -> slab that owns it
        self.internal = {}        # cache descriptor -> its objects the allocator uses itself
        self.internal_objs = {}   # cache descriptor -> the addresses of those objects
        self.mag_refs = {}        # magazine -> where a cache holds it
        self.magazines = 0
        self.out_slabs = 0
        self.user_caches = 0

    def v(self, msg):
        self.bad.append(msg)

    def walk(self, head, what):
        links = list(self.k.list_links(head, WALK_LIMIT, charged=False))
        if len(links) >= WALK_LIMIT:
            self.v(f"{what}: list does not end (a cycle?)")
        return links

    # --- frames -----------------------------------------------------------------------------

    def frames(self):
        k, r = self.k, self.r
        n = r.nframes
        info = [k.peek(r.frame(p) + FRAME.info) for p in range(n)]
        seen = bytearray(n)
        if info[0] != FRAME_RESERVED:
            self.v(f"frame 0 is not reserved (info {info[0]:#x})")
        seen[0] = 1
        free = 0
        listed = set()
        for order in range(MAX_ORDER + 1):
            head = r.header + HEADER.free_lists + order * LINK.sizeof
            for link in self.walk(head, f"free list of order {order}"):
                pfn, rem = divmod(link - FRAME.link - r.frame_table, FRAME.sizeof)
                if rem or not 0 <= pfn < n:
                    self.v(f"free list of order {order} links to {link:#x}, not a frame")
                    break
                listed.add(pfn)
                if info[pfn] != FRAME_FREE | order:
                    self.v(f"frame {pfn} is on the free list of order {order} but its info "
                           f"is {info[pfn]:#x}")
                if pfn % (1 << order) or pfn + (1 << order) > n:
                    self.v(f"free block at frame {pfn} of order {order} is misaligned or "
                           f"runs past the end")
                    continue
                self._claim_frames(seen, pfn, order, "a free block")
                free += 1 << order
        for pfn, inf in enumerate(info):
            if inf & FRAME_FREE and pfn not in listed:
                self.v(f"frame {pfn} heads a free block of order {inf & ORDER_MASK} that is on "
                       f"no free list")
            elif inf & FRAME_USED:
                order = inf & ORDER_MASK
                self.block_of[pfn] = order
                self._claim_frames(seen, pfn, order, "an allocated block")
        for pfn in range(n):
            if not seen[pfn]:
                self.v(f"frame {pfn} belongs to no block (info {info[pfn]:#x})")
        counted = k.peek(r.header + HEADER.free_frames)
        if counted != free:
            self.v(f"free_frames is {counted}, the free lists hold {free} frames")
        # Nothing in free memory may be marked live.
        for order in range(MAX_ORDER + 1):
            head = r.header + HEADER.free_lists + order * LINK.sizeof
            for link in k.list_links(head, WALK_LIMIT, charged=False):
                pfn = (link - FRAME.link - r.frame_table) // FRAME.sizeof
                if 0 <= pfn < n:
                    self._table_expect(pfn << PAGE_WIDTH, PAGE_SIZE << order, {}, "free frames")

    def _claim_frames(self, seen, pfn, order, what):
        for p in range(pfn, min(pfn + (1 << order), len(seen))):
            if seen[p]:
                self.v(f"frame {p} is in {what} at frame {pfn} and in another block")
            seen[p] = 1

    def _table_expect(self, start, length, marks, what):
        """The object table over [start, start+length) holds exactly `marks` (addr -> id)."""
        k, r = self.k, self.r
        lo = r.granule(start) >> 1
        actual = k.h[lo:lo + (length >> 3)]
        expected = [0] * (length >> 3)
        for addr, cid in marks.items():
            expected[(addr - start) >> 3] = cid
        if actual.tolist() != expected:
            for i, (a, e) in enumerate(zip(actual.tolist(), expected)):
                if a != e:
                    self.v(f"object table at {start + 8 * i:#x} ({what}) holds {a:#x}, "
                           f"expected {e:#x}")

    # --- caches -----------------------------------------------------------------------------

    def caches(self):
        k = self.k
        caches = [link - CACHE.link for link in self.walk(KERNEL.slab_cache_list, "cache list")]
        self.cache_set = set(caches)
        statics = {k.mag_cache, k.slab_cache_cache}
        for cache in caches:
            if cache not in statics:
                self.user_caches += 1
            try:
                self.cache(cache)
            except Exception as e:                 # noqa: BLE001 - corrupt state; report it
                self.v(f"cache at {cache:#x}: the walk failed: {type(e).__name__}: {e}")
        ids = self.r.cache_ids
        for cid in range(1, MAX_CACHES):
            desc = k.peek(ids + cid * WORD)
            if desc and (desc not in self.cache_set or k.peek(desc + CACHE.id) != cid):
                self.v(f"cache id {cid} points to {desc:#x}, which is not the live cache "
                       f"with that id")

    def cache(self, cache):
        k, ld = self.k, self.k.peek
        name = k.cache_name(cache)
        cid = ld(cache + CACHE.id)
        size, order, objects = ld(cache + CACHE.size), ld(cache + CACHE.order), ld(cache + CACHE.objects)
        if ld(self.r.cache_ids + cid * WORD) != cache or not ld(cache + CACHE.gen):
            self.v(f"cache {name}: id {cid} or its generation is wrong")
        inside = ld(cache + CACHE.flags) & SLAB_CACHE_SLINSIDE
        slabs = {}            # slab -> (start, set of free indexes)
        for lst, full in ((CACHE.full_slabs, True), (CACHE.partial_slabs, False)):
            which = "full" if full else "partial"
            for link in self.walk(cache + lst, f"cache {name} {which} slabs"):
                slab = link - SLAB.link
                if slab in slabs:
                    self.v(f"cache {name}: slab {slab:#x} is on its lists twice")
                    continue
                slabs[slab] = self.slab(name, cache, slab, full, size, order, objects, inside)
        if k.signed(cache + CACHE.allocated_slabs) != len(slabs):
            self.v(f"cache {name}: allocated_slabs is {k.signed(cache + CACHE.allocated_slabs)}, "
                   f"the lists hold {len(slabs)} slabs")
        # Magazines: the shared list, then every CPU's pair.
        cached = {}           # object -> where
        mags = self.walk(cache + CACHE.magazines, f"cache {name} magazine list")
        if ld(cache + CACHE.magazine_counter) != len(mags):
            self.v(f"cache {name}: magazine_counter is {ld(cache + CACHE.magazine_counter)}, "
                   f"the shared list holds {len(mags)}")
        where = [(link - MAGAZINE.link, "the shared list") for link in mags]
        if k._has_magazines(cache):
            for cpu in range(k.cpus):
                m = k._mags(cache, cpu)
                for field, label in ((CPU_MAGS.current, "current"), (CPU_MAGS.last, "last")):
                    if ld(m + field):
                        where.append((ld(m + field), f"CPU {cpu}'s {label}"))
            where += self.option_magazines(cache, name, len(mags))
        seen_mags = set()
        for mag, label in where:
            if mag in seen_mags:
                self.v(f"cache {name}: magazine {mag:#x} is in two places ({label})")
                continue
            seen_mags.add(mag)
            self.magazines += 1
            self.mag_refs[mag] = f"cache {name}'s {label}"
            busy, msize = ld(mag + MAGAZINE.busy), ld(mag + MAGAZINE.size)
            if busy > msize:
                self.v(f"cache {name}: magazine {mag:#x} in {label} holds {busy} of {msize}")
                busy = min(busy, msize)
            for i in range(busy):
                obj = ld(mag + MAGAZINE.objs + i * WORD)
                if obj in cached:
                    self.v(f"cache {name}: object {obj:#x} is in {label} and in {cached[obj]}")
                cached[obj] = f"magazine {mag:#x} ({label})"
        free_total, marks_by_slab = 0, {}
        for slab, (start, free, _) in slabs.items():
            free_total += len(free)
            marks_by_slab[slab] = {start + i * size for i in range(objects)} - \
                {start + i * size for i in free}
        live_total = 0
        internal = 0
        internal_objs = set()
        for obj, label in cached.items():
            slab = k.peek(k.frame_entry(obj) + FRAME.parent) if 0 < obj < self.r.memory else 0
            if slab not in slabs or (obj - slabs[slab][0]) % size:
                self.v(f"cache {name}: {label} holds {obj:#x}, not an object of this cache")
            elif obj not in marks_by_slab[slab]:
                self.v(f"cache {name}: object {obj:#x} is free in its slab and in {label}")
            else:
                marks_by_slab[slab].discard(obj)
        for slab, live in marks_by_slab.items():
            base = slabs[slab][2]
            table = {}
            for obj in live:
                mark = self.k.h[self.r.granule(obj) >> 1]
                if mark not in (cid, cid | OBJ_INTERNAL):
                    self.v(f"cache {name}: object {obj:#x} is neither free nor cached but the "
                           f"object table holds {mark:#x} there (lost object)")
                if mark == cid | OBJ_INTERNAL:
                    internal += 1
                    internal_objs.add(obj)
                table[obj] = mark if mark in (cid, cid | OBJ_INTERNAL) else 0
            live_total += len(live)
            if live:
                self._table_expect_at_live(base, PAGE_SIZE << order, live, table, name)
            else:
                self._table_expect(base, PAGE_SIZE << order, {}, f"cache {name} slab {slab:#x}")
        self.internal[cache] = internal
        self.internal_objs[cache] = internal_objs
        ncached = k.counter(cache, "cached")
        if ncached != len(cached):
            self.v(f"cache {name}: cached_objs is {ncached}, its magazines hold {len(cached)}")
        nalloc = k.counter(cache, "allocated")
        if nalloc != live_total:
            self.v(f"cache {name}: allocated_objs is {nalloc}, the walk finds {live_total} "
                   f"allocated objects")
        if not inside:
            self.out_slabs += len(slabs)

    def _table_expect_at_live(self, start, length, live, table, name):
        marks = {obj: table[obj] for obj in live if table[obj]}
        self._table_expect(start, length, marks, f"cache {name}")

    def slab(self, name, cache, slab, full, size, order, objects, inside):
        k, ld = self.k, self.k.peek
        start, available = ld(slab + SLAB.start), ld(slab + SLAB.available)
        if ld(slab + SLAB.cache) != cache:
            self.v(f"cache {name}: slab {slab:#x} says it belongs to {ld(slab + SLAB.cache):#x}")
        if full and available != 0 or not full and not 0 < available < objects:
            self.v(f"cache {name}: slab {slab:#x} with {available} of {objects} available is on "
                   f"the {'full' if full else 'partial'} list")
        base = start
        if k._colour:                       # the first object lies `colour` into the frames
            base = start & ~((PAGE_SIZE << order) - 1)
            self.colour(name, cache, slab, start - base)
        pfn = base >> PAGE_WIDTH
        if base % PAGE_SIZE or self.block_of.get(pfn) != order:
            self.v(f"cache {name}: slab {slab:#x} starts at {start:#x}, not an allocated block "
                   f"of order {order}")
        elif pfn in self.slab_blocks:
            self.v(f"cache {name}: slab {slab:#x} shares its frames with slab "
                   f"{self.slab_blocks[pfn]:#x}")
        self.slab_blocks[pfn] = slab
        for p in range(pfn, pfn + (1 << order)):
            if p < self.r.nframes and ld(self.r.frame(p) + FRAME.parent) != slab:
                self.v(f"cache {name}: frame {p} of slab {slab:#x} does not point to it")
        if inside and slab != base + (PAGE_SIZE << order) - SLAB.sizeof:
            self.v(f"cache {name}: slab {slab:#x} should sit at the end of its space")
        free, idx = set(), ld(slab + SLAB.nextavail)
        for _ in range(min(available, objects + 1)):
            if not 0 <= idx < objects or idx in free:
                self.v(f"cache {name}: slab {slab:#x} free list holds {idx} after "
                       f"{len(free)} entries (of {available})")
                break
            free.add(idx)
            idx = k.i32[(start + idx * size) >> 2]
        return start, free, base

    # --- cross checks -------------------------------------------------------------------------

    def leftovers(self):
        k = self.k
        for pfn, order in self.block_of.items():
            if pfn not in self.slab_blocks:
                self.v(f"frames {pfn}..{pfn + (1 << order) - 1} are allocated but no slab "
                       f"owns them (leaked)")
        expect = {k.slab_extern: self.out_slabs, k.slab_cache_cache: self.user_caches}
        magcaches = k.magazine_caches()
        if magcaches == [k.mag_cache]:
            expect[k.mag_cache] = self.magazines
        for cache, n in expect.items():
            got = self.internal.get(cache)
            if got is not None and got != n:
                self.v(f"cache {k.cache_name(cache)} holds {got} objects of the allocator's "
                       f"own, the walk needs {n}")
        if magcaches != [k.mag_cache] or k._empty:
            self.magazine_objects(magcaches)

    def locks_and_cpus(self):
        k = self.k
        for name, lock in k.all_locks():
            holder = k.peek(lock + SPINLOCK.holder)
            if holder:
                self.v(f"lock {name} is held by CPU {holder - 1}")
        from .kernel import OPS
        for cpu in range(k.cpus):
            op = k.peek(self.r.cpu(cpu) + CPU_CTL.in_kernel)
            if op:
                what = OPS[op] if op < len(OPS) else op
                self.v(f"CPU {cpu} is inside allocator code ({what}): its operation did not "
                       f"finish" + self.stage(cpu))

    # --- the options beyond the seed ----------------------------------------------------------

    def option_magazines(self, cache, name, shared):
        """The magazines on cache's empty list, with its count and the low-water mark and
        magazine size checked, as (magazine, label) pairs."""
        k, ld = self.k, self.k.peek
        ext = k._ext(cache)
        size = ld(cache + CACHE.magazine_size)
        if k._resize and size != k.opts.magazine_size and size not in k.opts.sized_magazines:
            self.v(f"cache {name}: magazine size {size} is neither the machine's "
                   f"({k.opts.magazine_size}) nor one of {list(k.opts.sized_magazines)}")
        if k._reap and ld(ext + CACHE_EXT.depot_low) > shared:
            self.v(f"cache {name}: the shared list's low-water mark is "
                   f"{ld(ext + CACHE_EXT.depot_low)}, above the {shared} magazines it holds")
        if not k._empty:
            return []
        links = self.walk(ext + CACHE_EXT.empty, f"cache {name} empty list")
        if ld(ext + CACHE_EXT.empty_counter) != len(links):
            self.v(f"cache {name}: empty_counter is {ld(ext + CACHE_EXT.empty_counter)}, the "
                   f"empty list holds {len(links)}")
        out = []
        for link in links:
            mag = link - MAGAZINE.link
            if ld(mag + MAGAZINE.busy):
                self.v(f"cache {name}: magazine {mag:#x} on the empty list holds "
                       f"{ld(mag + MAGAZINE.busy)} objects")
            out.append((mag, "the empty list"))
        return out

    def magazine_objects(self, magcaches):
        """Every live object of a magazine cache is a magazine some cache holds, and every
        magazine a cache holds is one, of a cache whose objects are large enough for it."""
        k, ld = self.k, self.k.peek
        live = {}
        for cache in magcaches:
            for obj in self.internal_objs.get(cache, ()):
                live[obj] = cache
        for mag, label in self.mag_refs.items():
            owner = live.get(mag)
            if owner is None:
                self.v(f"magazine {mag:#x} in {label} is no live object of a magazine cache")
            elif MAGAZINE.objs + WORD * ld(mag + MAGAZINE.size) > ld(owner + CACHE.size):
                self.v(f"magazine {mag:#x} in {label} holds up to {ld(mag + MAGAZINE.size)} "
                       f"objects, more than an object of {k.cache_name(owner)} has room for")
        for obj, owner in live.items():
            if obj not in self.mag_refs:
                self.v(f"magazine {obj:#x} of cache {k.cache_name(owner)} is allocated but no "
                       f"cache holds it (leaked)")

    def colour(self, name, cache, slab, offset):
        """A coloured slab's first object lies whole colour steps into it, within the slack."""
        ld, ext = self.k.peek, self.k._ext(cache)
        step, largest = ld(ext + CACHE_EXT.colour_step), ld(ext + CACHE_EXT.colour_max)
        if not step or offset % step or offset > largest:
            self.v(f"cache {name}: slab {slab:#x} starts {offset} bytes into its frames, not a "
                   f"colour (steps of {step} up to {largest})")

    def stage(self, cpu):
        """What CPU cpu, inside allocator code, was doing in an option's window: "" when
        nothing of the kind."""
        k = self.k
        ctl = self.r.cpu(cpu)
        stage = k.peek(ctl + CPU_CTL.stage)
        if not stage:
            return ""
        cache, obj = k.peek(ctl + CPU_CTL.stage_cache), k.peek(ctl + CPU_CTL.stage_obj)
        name = k.cache_name(cache) if cache else "?"
        if stage == STAGE_CTOR:
            return (f"; it was running the constructor of cache {name} on {obj:#x}, which has "
                    f"left its slab and is not allocated yet (a lost object; allocated_objs "
                    f"does not count it yet)")
        if stage == STAGE_DTOR:
            return (f"; it was running the destructor of cache {name} on {obj:#x}, on its way "
                    f"back to its slab (lost until it gets there; if it came from a magazine "
                    f"being destroyed, that magazine's other objects and the magazine itself "
                    f"are unaccounted for too)")
        if stage == STAGE_REAP:
            return (f"; it was reaping cache {name}: a magazine it took off the shared list "
                    f"may be half destroyed (its objects, the magazine, cached_objs)")
        return f"; it was in {STAGES[stage] if stage < len(STAGES) else stage}"
