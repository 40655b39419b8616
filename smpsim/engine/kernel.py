"""The Kernel: one simulated CPU's public interface to the allocator (docs/api.md), and boot.

A Kernel checks every argument before it changes anything (a caller's mistake raises a typed
error and leaves shared state as it was), then brackets the seed's code between _enter and
_leave. The bracket records the operation in the CPU's control line (`in_kernel`), so that

- a stop request (Machine.run stopping the CPUs) that arrives inside allocator code waits until
  the operation is done: the signal handler only sets `_stop_pending`, and _leave exits;
- after a CPU dies, the supervisor can tell whether it died inside allocator code.

An exception that escapes the allocator's own code (a LockTimeout, a bug) leaves `in_kernel`
set and its locks held on purpose: the state is half done and the checker will say so.

The Kernel is the public face only: it holds the CPU's SlabAllocator (smpsim/engine/slab.py,
with the frame allocator and the memory views beneath it) in `_sa` and calls into it, so that
help(smpsim.Kernel) shows the calls a program makes and none of the allocator's internals.

Live objects are tracked in the object table (one uint16 per 8-byte granule, outside simulated
memory): the id of the cache whose live object starts there. One read of it rejects double,
interior, wrong-cache and out-of-range frees; a compare-and-swap claims the entry, so two CPUs
freeing one object at once cannot both succeed.
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

from .errors import BadArgument, CacheNotEmpty, InvalidCache, InvalidFree, OutOfMemory, SmpsimError
from .frames import FRAME_ATOMIC, FRAME_NO_RECLAIM
from .layout import (CACHE, CPU_CTL, CPU_MAGS, FRAME, HEADER, KERNEL, LINE, MAGAZINE,
                     MAGAZINE_SIZES, OBJ_INTERNAL, PAGE_SIZE, SLAB, WORD)
from .options import SLAB_CACHE_MAGCACHE, check_function
from .sched import CLOCK_MAX
from .slab import (MALLOC_NAMES, PATH_HIT, PATHS, SLAB_CACHE_NOMAGAZINE, SLAB_CACHE_SLINSIDE,
                   SLAB_MAX_MALLOC_W, SLAB_MIN_MALLOC_W, SLAB_RECLAIM_ALL, check_cache_args,
                   fnzb)

__all__ = ["Kernel", "SlabCache", "boot", "OPS", "EXIT_STOPPED"]

# What a CPU is doing inside allocator code (CPU_CTL.in_kernel); index 0 is "outside".
OPS = [None, "slab_alloc", "slab_free", "kalloc", "kfree", "slab_cache_create",
       "slab_cache_destroy", "slab_reclaim", "slab_print_list", "cache", "boot", "slab_reap"]
_OP = {name: i for i, name in enumerate(OPS) if name}

# Exit status of a CPU process stopped by its supervisor.
EXIT_STOPPED = 75
# Generations of caches start here, so a stale handle never matches a word of other data.
GEN_BASE = 0x5AB0_0000_0000_0001
ALLOC_FLAGS = FRAME_ATOMIC | FRAME_NO_RECLAIM
KALLOC_MAX = 1 << SLAB_MAX_MALLOC_W


class SlabCache:
    """A handle of a slab cache: picklable, usable from every CPU of its machine.

    `size` is the aligned object size, `order` and `objects` the slab geometry, `flags` the
    cache's flags (with SLAB_CACHE_SLINSIDE when the geometry chose it). Once the cache is
    destroyed, every use raises InvalidCache.
    """

    __slots__ = ("name", "size", "order", "objects", "flags", "_addr", "_gen")
    name: str
    size: int
    order: int
    objects: int
    flags: int

    def __init__(self, name: str, size: int, order: int, objects: int, flags: int, addr: int,
                 gen: int) -> None:
        self.name, self.size, self.order, self.objects, self.flags = name, size, order, objects, flags
        self._addr, self._gen = addr, gen

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlabCache) and (self._addr, self._gen) == (other._addr, other._gen)

    def __hash__(self) -> int:
        return hash((self._addr, self._gen))

    def __repr__(self) -> str:
        return (f"<SlabCache {self.name!r} size={self.size} order={self.order} "
                f"objects={self.objects} flags={self.flags}>")


class Kernel:
    """The allocator as one simulated CPU runs it: create, find and destroy caches, allocate
    and free objects, reclaim, print the seed's table; inside Machine.run also the barrier,
    and atomics on words of simulated memory for workloads that share structures.

    Get one from Machine.cpu(i) (in the calling process) or as the first argument of a program
    that Machine.run runs on a CPU. `cpu_id` is this CPU's id, `cpus` the machine's CPU count,
    `memory` a writable memoryview of all simulated physical memory, indexed by address.
    """

    _stop_pending = False
    _in_run = False          # set in a CPU process of Machine.run (barrier() needs it)
    _fast = None             # the magazine-hit accelerator (smpsim/engine/fastpath.py), if any
    _malloc_ids = None       # malloc cache id -> descriptor, for kfree
    _debug = None            # debugging mode's Debugger (smpsim/engine/debug.py)
    cpu_id: int
    cpus: int
    memory: memoryview

    # `allocator`: the CPU's SlabAllocator (smpsim/engine/slab.py), which help() leaves out.
    def __init__(self, allocator: Any, *, accel: str = "off") -> None:
        sa = self._sa = allocator
        sa._kernel = self                     # what constructors and destructors are given
        self._reap_period = sa._reap_period_ns
        self.cpu_id, self.cpus, self.memory = sa.cpu_id, sa.cpus, sa.memory
        a = sa.arena                    # atomics on simulated memory: scheduling points if any
        self._atomics = ((a.aload, a.astore, a.aadd, a.acas) if sa.scheduled else
                         (a.load, a.store, a.fetch_add, a.cas))
        ctl = sa.ctl
        self._in_kernel = (ctl + CPU_CTL.in_kernel) >> 3
        self._ctl = {f: (ctl + getattr(CPU_CTL, f)) >> 3
                     for f in ("ops", "allocs", "frees", "hits", "misses", "path")}
        self._ctl_paths = [None, None] + [(ctl + getattr(CPU_CTL, f)) >> 3
                                          for f in ("depot", "slab", "frames")]
        if sa.debug:
            from .debug import Debugger       # debugging mode only (smpsim/engine/debug.py)
            self._debug = sa._debug = Debugger(self)
        else:
            # slab_alloc, slab_free, kalloc and kfree become the accelerator's on this instance:
            # it serves magazine hits and calls the methods below for everything else.
            from .fastpath import accelerator, install
            try:
                cls = accelerator(accel, sa)
                if cls is not None:
                    self._fast = install(self, cls, sa.segment)
            except BaseException:
                sa.release()
                raise

    def __repr__(self) -> str:
        return f"<Kernel cpu {self.cpu_id} of {self.cpus}>"

    def _release(self):
        """Drop every view of the segment, the accelerator's too (safe to repeat)."""
        if self._fast is not None:
            self._fast.release()
        self._sa.release()

    # --- the bracket around allocator code ----------------------------------------------

    def _enter(self, op):
        if self._sa.in_function:
            raise SmpsimError(f"{op}: a constructor or destructor may not call the allocator "
                              f"(it runs inside it)")
        self._sa.q[self._in_kernel] = _OP[op]
        self._sa.path = PATH_HIT
        if self._reap_period is not None and self._sa.reap_due():
            self._periodic_reap(op)

    def _periodic_reap(self, op):
        """Machine(reap_every=...): this CPU claimed the reap that is due; it runs it before the
        operation it was entering (smpsim/engine/depot.py)."""
        sa = self._sa
        sa.q[self._in_kernel] = _OP["slab_reap"]
        sa.slab_reap_all_caches()
        sa.q[self._in_kernel] = _OP[op]
        sa.path = PATH_HIT

    def _leave(self):
        self._sa.q[self._in_kernel] = 0
        if self._stop_pending:
            os._exit(EXIT_STOPPED)

    def _on_stop_signal(self, signum, frame):
        """Signal handler of a CPU process asked to stop: exit now, or at _leave."""
        if self._sa.q[self._in_kernel]:
            self._stop_pending = True
        else:
            os._exit(EXIT_STOPPED)

    def _counted(self, alloc):
        """One allocation or free done: count it, and the path it took, in the control line."""
        q, ctl, path = self._sa.q, self._ctl, self._sa.path
        q[ctl["ops"]] += 1
        q[ctl["allocs" if alloc else "frees"]] += 1
        if path == PATH_HIT:
            q[ctl["hits"]] += 1
        else:
            q[ctl["misses"]] += 1
            q[self._ctl_paths[path]] += 1
        q[ctl["path"]] = path

    @property
    def last_path(self) -> Literal["hit", "depot", "slab", "frames"] | None:
        """How deep this CPU's last allocation or free went: "hit" (its own magazines),
        "depot" (a magazine exchanged with the shared list, or a new one), "slab" (a slab's
        free list) or "frames" (the frame allocator); None before the first."""
        return PATHS[self._sa.q[self._ctl["path"]]]

    # --- argument checks --------------------------------------------------------------------

    def _desc(self, cache, fn):
        """The descriptor address of a live cache handle, else InvalidCache / BadArgument."""
        if type(cache) is not SlabCache:
            raise BadArgument(f"{fn}: 'cache' must be a SlabCache, got {cache!r}")
        if self._sa.peek(cache._addr + CACHE.gen) != cache._gen:
            raise InvalidCache(f"{fn}: cache {cache.name!r} was destroyed")
        return cache._addr

    @staticmethod
    def _check_flags(flags, allowed, fn, what):
        if type(flags) is not int or flags & ~allowed:
            raise BadArgument(f"{fn}: 'flags' may hold only {what}, got {flags!r}")

    def _check_addr(self, addr, fn):
        if type(addr) is not int:
            raise InvalidFree(f"{fn}: address {addr!r} is not an int")
        if not PAGE_SIZE <= addr < self._sa.regions.memory:
            raise InvalidFree(f"{fn}: address {addr:#x} is outside the simulated memory's "
                              f"objects ({PAGE_SIZE:#x}..{self._sa.regions.memory:#x})")
        if addr % WORD:
            raise InvalidFree(f"{fn}: address {addr:#x} is not 8-byte aligned, so no object "
                              f"starts there")

    def _claim(self, addr, cid, fn, name):
        """Take the live object at addr of the cache with id cid out of the object table, or
        raise InvalidFree saying what is there instead (nothing changed)."""
        sa = self._sa
        if sa.arena.cas16(sa.regions.granule(addr), cid, 0):
            return
        cur = sa.h[sa.regions.granule(addr) >> 1]
        if cur & OBJ_INTERNAL:
            what = "an object the allocator uses itself"
        elif cur:
            other = sa.peek(sa.regions.cache_ids + cur * WORD)
            what = f"a live object of cache {sa.cache_name(other)!r}"
        else:
            what = self._not_live(addr)
        raise InvalidFree(f"{fn}: address {addr:#x} is {what}, not a live object of {name!r}")

    def _not_live(self, addr):
        """What lies at addr, which starts no live object: for InvalidFree's message. Reads
        the slab's fields without its lock (another CPU may be changing them), so it only
        words the message; it decides nothing."""
        sa, pk = self._sa, self._sa.peek
        try:
            slab = pk(sa.frame_entry(addr) + FRAME.parent)
            if not slab:
                return "not in any slab (a free frame or the allocator's own memory)"
            cache = pk(slab + SLAB.cache)
            start, size = pk(slab + SLAB.start), pk(cache + CACHE.size)
            name = sa.cache_name(cache)
            idx, off = divmod(addr - start, size)
            if not 0 <= idx < pk(cache + CACHE.objects):
                return f"past the last object of a slab of cache {name!r}"
            if off:
                obj = start + idx * size
                state = "live" if sa.h[sa.regions.granule(obj) >> 1] else "free"
                return f"{off} bytes inside the {state} object {obj:#x} of cache {name!r}"
            return f"a free object of cache {name!r} (freed already, or never allocated)"
        except (IndexError, ValueError):
            return "not a live object"

    def _mark(self, obj, cid):
        self._sa.h[self._sa.regions.granule(obj) >> 1] = cid

    # --- caches -------------------------------------------------------------------------------

    def slab_cache_create(self, name: str, size: int, align: int = 0, flags: int = 0, *,
                          ctor: str | None = None, dtor: str | None = None) -> SlabCache:
        """A new cache (the seed's slab_cache_create) and its handle. BadArgument for a bad
        argument or a name already used; OutOfMemory when its descriptor cannot be allocated.

        `ctor` and `dtor`: None, or "module:function" strings naming f(k, addr), called on the
        CPU doing the work with its Kernel k: the constructor when an object is taken from its
        slab, the destructor when it goes back to its slab; objects in magazines stay
        constructed. A constructor that raises or returns a non-zero int fails the allocation
        as a lack of memory. Neither may call the allocator."""
        check_cache_args(name, size, align, flags)
        check_function(ctor, "slab_cache_create", "ctor")
        check_function(dtor, "slab_cache_create", "dtor")
        return self._create(name, size, align, flags, ctor, dtor)

    def _create(self, name, size, align, flags, ctor=None, dtor=None):
        """slab_cache_create once its arguments are checked (boot's own caches come here
        directly)."""
        sa = self._sa
        self._enter("slab_cache_create")
        cache = sa._alloc_internal(sa.slab_cache_cache, 0)
        if not cache:
            self._leave()
            raise OutOfMemory("slab_cache_create: no memory left for the cache descriptor")
        sa._slab_cache_init_desc(cache, name, size, align, flags)
        sa.lock(KERNEL.slab_cache_lock)
        problem = None
        if sa.find_cache(name):
            problem = BadArgument(f"slab_cache_create: 'name' {name!r} is already used by a "
                                  f"live cache")
        elif not sa._link_cache(cache, ctor, dtor):
            problem = OutOfMemory("slab_cache_create: every cache id is in use")
        sa.unlock(KERNEL.slab_cache_lock)
        if problem:
            sa._free_internal(sa.slab_cache_cache, cache)
            self._leave()
            raise problem
        self._leave()
        return self._handle(cache)

    def _handle(self, cache):
        pk = self._sa.peek
        return SlabCache(self._sa.cache_name(cache), pk(cache + CACHE.size),
                         pk(cache + CACHE.order), pk(cache + CACHE.objects),
                         pk(cache + CACHE.flags), cache, pk(cache + CACHE.gen))

    def cache(self, name: str) -> SlabCache:
        """The handle of the live cache called name, boot caches included; KeyError if none."""
        sa = self._sa
        self._enter("cache")
        sa.lock(KERNEL.slab_cache_lock)
        cache = sa.find_cache(name) if isinstance(name, str) else 0
        handle = self._handle(cache) if cache else None
        sa.unlock(KERNEL.slab_cache_lock)
        self._leave()
        if handle is None:
            raise KeyError(name)
        return handle

    def _boot_caches(self):
        sa = self._sa
        return {sa.mag_cache, sa.slab_cache_cache, sa.slab_extern, *self._malloc_caches(),
                *sa.magazine_caches()}

    def slab_cache_destroy(self, cache: SlabCache) -> None:
        """Remove a cache: CacheNotEmpty (nothing changed) while it has allocated objects;
        otherwise reclaims everything it holds first."""
        c = self._desc(cache, "slab_cache_destroy")
        if c in self._boot_caches():
            raise BadArgument(f"slab_cache_destroy: {cache.name!r} is a boot cache of the "
                              f"allocator and cannot be destroyed")
        sa = self._sa
        self._enter("slab_cache_destroy")
        allocated = sa.counter(c, "allocated")
        if allocated:
            self._leave()
            raise CacheNotEmpty(f"slab_cache_destroy: cache {cache.name!r} still has "
                                f"{allocated} allocated object(s)")
        sa.lock(KERNEL.slab_cache_lock)
        sa._unlink_cache(c)
        sa.unlock(KERNEL.slab_cache_lock)
        sa._slab_reclaim(c, SLAB_RECLAIM_ALL)
        assert sa.list_empty(c + CACHE.full_slabs) and sa.list_empty(c + CACHE.partial_slabs), \
            f"slab_cache_destroy: cache {cache.name!r} has slabs left after a full reclaim"
        sa._release_id(c)
        sa._free_internal(sa.slab_cache_cache, c)
        self._leave()

    # --- objects --------------------------------------------------------------------------------

    def _alloc_object(self, c, flags, fn, what):
        """slab_alloc and kalloc once their arguments are checked: an object of cache c, marked
        live in the object table; out of memory, None with FRAME_ATOMIC, else OutOfMemory."""
        sa = self._sa
        self._enter(fn)
        sa.ctor_failure = None
        obj = sa._alloc(c, flags)
        if obj:
            self._mark(obj, sa.peek(c + CACHE.id))
            self._counted(True)
            if self._debug:
                self._debug.on_alloc(c, obj)
        self._leave()
        if obj:
            return obj
        if flags & FRAME_ATOMIC:
            return None
        if sa.ctor_failure:
            cname, ctor, why = sa.ctor_failure
            raise OutOfMemory(f"{fn}: no object for {what}: the constructor {ctor} of cache "
                              f"{cname!r} {why}")
        raise OutOfMemory(f"{fn}: no memory left for {what}")

    def _free_object(self, c, addr, cid, fn, name):
        """slab_free and kfree once their arguments are checked: claim the live object at addr
        of the cache with id cid (InvalidFree, nothing changed, if it is not one) and free it."""
        self._enter(fn)
        try:
            self._claim(addr, cid, fn, name)
            if self._debug:
                self._debug.on_free(c, addr)
        except InvalidFree:
            self._leave()
            raise
        sa, slab = self._sa, 0
        if fn == "kfree":                   # the seed's kfree finds the object's slab first
            slab = sa.frame_parent(addr)
            sa.ld(slab + SLAB.cache)
        sa._free(c, addr, slab)
        self._counted(False)
        self._leave()

    def slab_alloc(self, cache: SlabCache, flags: int = 0) -> int | None:
        """An object of cache (an int address). Out of memory: None with FRAME_ATOMIC, else
        OutOfMemory; FRAME_NO_RECLAIM: no reclaim is tried first."""
        c = self._desc(cache, "slab_alloc")
        self._check_flags(flags, ALLOC_FLAGS, "slab_alloc", "FRAME_ATOMIC | FRAME_NO_RECLAIM")
        return self._alloc_object(c, flags, "slab_alloc", f"an object of {cache.name!r}")

    def slab_free(self, cache: SlabCache, addr: int) -> None:
        """Free a live object of cache; InvalidFree (nothing changed) for anything else."""
        c = self._desc(cache, "slab_free")
        self._check_addr(addr, "slab_free")
        self._free_object(c, addr, self._sa.peek(c + CACHE.id), "slab_free", cache.name)

    def _malloc_caches(self):
        pk = self._sa.peek
        return [pk(KERNEL.malloc_caches + i * WORD) for i in range(len(MALLOC_NAMES))]

    def kalloc(self, size: int, flags: int = 0) -> int | None:
        """An object of at least size bytes (1..131072) from the malloc caches."""
        if type(size) is not int or not 1 <= size <= KALLOC_MAX:
            raise BadArgument(f"kalloc: 'size' must be an int from 1 to {KALLOC_MAX}, got {size!r}")
        self._check_flags(flags, ALLOC_FLAGS, "kalloc", "FRAME_ATOMIC | FRAME_NO_RECLAIM")
        idx = fnzb(max(size, 1 << SLAB_MIN_MALLOC_W) - 1) - SLAB_MIN_MALLOC_W + 1
        c = self._sa.ld(KERNEL.malloc_caches + idx * WORD)
        return self._alloc_object(c, flags, "kalloc", f"{size} bytes")

    def kfree(self, addr: int | None) -> None:
        """Free what kalloc returned; 0 and None do nothing; InvalidFree for anything else."""
        if addr is None or addr == 0:
            return
        self._check_addr(addr, "kfree")
        sa = self._sa
        if self._malloc_ids is None:
            self._malloc_ids = {sa.peek(c + CACHE.id): c for c in self._malloc_caches()}
        cid = sa.h[sa.regions.granule(addr) >> 1]
        c = self._malloc_ids.get(cid)
        if c is None:
            what = ("not a live object" if not cid else "the allocator's own object"
                    if cid & OBJ_INTERNAL else "a live object of a cache kalloc does not use")
            raise InvalidFree(f"kfree: address {addr:#x} is {what}, not an object kalloc gave")
        self._free_object(c, addr, cid, "kfree", sa.cache_name(c))

    # --- reclaim and the table ------------------------------------------------------------

    def slab_reclaim(self, flags: int = 0) -> int:
        """The seed's reclaim over all caches; returns the frames freed as the seed counts them
        (frames of slabs emptied by destroying magazines). SLAB_RECLAIM_ALL also empties every
        CPU's magazines."""
        self._check_flags(flags, SLAB_RECLAIM_ALL, "slab_reclaim", "SLAB_RECLAIM_ALL")
        self._enter("slab_reclaim")
        frames = self._sa.slab_reclaim_all_caches(flags)
        self._leave()
        return frames

    def slab_reap(self) -> int:
        """Working-set reaping (Machine(reap_every=...)): destroys, in every cache, the full
        magazines of its shared list beyond its working set (as many as the list never went
        below since the previous reap); returns the frames freed, counted as slab_reclaim
        counts them. SmpsimError on a machine made without reap_every (it does not keep the
        working set)."""
        sa = self._sa
        if not sa._reap:
            raise SmpsimError("slab_reap: this machine does not keep its shared lists' working "
                              "set; make it with Machine(reap_every=seconds) (math.inf: reaps "
                              "by hand only)")
        self._enter("slab_reap")
        frames = sa.slab_reap_all_caches()
        self._leave()
        return frames

    def slab_print_list(self) -> str:
        """The seed's table of caches, tab separated, header first."""
        sa = self._sa
        self._enter("slab_print_list")
        sa.lock(KERNEL.slab_cache_lock)
        lines = ["SLAB name\tOsize\tPages\tObj/pg\tSlabs\tCached\tAllocobjs\tCtl"]
        for c in sa.caches(charged=True):
            ld = sa.ld
            lines.append("\t".join(map(str, [
                sa.cache_name(c), ld(c + CACHE.size), 1 << ld(c + CACHE.order),
                ld(c + CACHE.objects), sa.signed(c + CACHE.allocated_slabs),
                sa.counter(c, "cached"), sa.counter(c, "allocated"), "",
                "In" if ld(c + CACHE.flags) & SLAB_CACHE_SLINSIDE else "Out"])))
        sa.unlock(KERNEL.slab_cache_lock)
        self._leave()
        return "\n".join(lines) + "\n"

    # --- inside Machine.run: the barrier, atomics on simulated memory -------------------------

    def barrier(self) -> None:
        """Inside Machine.run: wait until every CPU of the run has reached this barrier."""
        if not self._in_run:
            raise SmpsimError("barrier: only CPUs inside Machine.run can wait at a barrier")
        sa = self._sa
        if sa.scheduled:                # a scheduling point; in simulated time a charged one
            sa.arena.barrier()
            return
        hdr = sa.regions.header
        n = sa.peek(hdr + HEADER.run_cpus)
        rnd = sa.arena.load(hdr + HEADER.barrier_round)
        if sa.arena.fetch_add(hdr + HEADER.barrier_count, 1) == n - 1:
            sa.arena.store(hdr + HEADER.barrier_count, 0)
            sa.arena.fetch_add(hdr + HEADER.barrier_round, 1)
            return
        spins = 0
        while sa.arena.load(hdr + HEADER.barrier_round) == rnd:
            spins += 1
            if spins < 1000:            # yield the core; past that, sleep
                os.sched_yield()
            else:
                time.sleep(0.0002)

    def _word(self, addr, fn):
        if type(addr) is not int or not WORD <= addr <= self._sa.regions.memory - WORD or \
                addr % WORD:
            raise BadArgument(f"{fn}: 'addr' must be an 8-byte aligned address of simulated "
                              f"memory, got {addr!r}")
        return addr

    @staticmethod
    def _value(value, fn, name, signed=False):
        lo = -(1 << 63) if signed else 0
        if type(value) is not int or not lo <= value < 1 << 64:
            raise BadArgument(f"{fn}: '{name}' must be an int from {lo} to 2**64 - 1, "
                              f"got {value!r}")
        return value

    def atomic_load(self, addr: int) -> int:
        """The word at addr of simulated memory (an acquire load)."""
        return self._atomics[0](self._word(addr, "atomic_load"))

    def atomic_store(self, addr: int, value: int) -> None:
        """Store value (0 .. 2**64-1) in the word at addr (a release store)."""
        self._atomics[1](self._word(addr, "atomic_store"),
                         self._value(value, "atomic_store", "value"))

    def atomic_add(self, addr: int, delta: int) -> int:
        """Fetch-and-add on the word at addr (modulo 2**64; delta may be negative); returns
        the old value."""
        return self._atomics[2](self._word(addr, "atomic_add"),
                                self._value(delta, "atomic_add", "delta", signed=True))

    def atomic_cas(self, addr: int, old: int, new: int) -> bool:
        """Compare-and-swap on the word at addr; True when it swapped."""
        return self._atomics[3](self._word(addr, "atomic_cas"),
                                self._value(old, "atomic_cas", "old"),
                                self._value(new, "atomic_cas", "new"))

    def spin_lock(self, addr: int) -> None:
        """Take the simulator's spinlock on the 8-byte word at addr of simulated memory (0 when
        free; the holder's CPU id + 1 while held), for workloads that build their own shared
        structures. Counted in Machine.stats()["locks"] as "user@<addr>". Waits as long as
        another CPU holds it (LockTimeout when the holder died, or after the machine's
        lock_timeout)."""
        sa = self._sa
        self._word(addr, "spin_lock")
        if sa.arena.ulock(addr, sa.owner, sa._poll) < 0:
            sa._lock_slow(addr, sa.arena.ulock)

    def spin_unlock(self, addr: int) -> None:
        """Release the spinlock at addr, which this CPU must hold (ValueError otherwise)."""
        sa = self._sa
        self._word(addr, "spin_unlock")
        if not sa.arena.uunlock(addr, sa.owner):
            holder = sa.peek(addr)
            who = "nobody" if not holder else f"CPU {holder - 1}"
            raise BadArgument(f"spin_unlock: CPU {self.cpu_id} does not hold the lock at "
                              f"{addr} (held by {who})")

    # --- simulated time -------------------------------------------------------------------

    @property
    def time(self) -> Literal["host", "simulated"]:
        """The machine's time: "host" or "simulated" (then `cycles` is this CPU's clock)."""
        return "simulated" if self._sa.timed else "host"

    @property
    def hz(self) -> int:
        """The simulated clock's rate, cycles per simulated second (the cost model's "hz")."""
        return self._sa.peek(self._sa.regions.header + HEADER.hz)

    @property
    def cycles(self) -> int:
        """This CPU's simulated clock, in cycles (0 when the machine runs in host time)."""
        return self._sa.arena.clock() if self._sa.timed else 0

    def compute(self, cycles: int) -> None:
        """Charge `cycles` of private work (the application's own, between allocations) to
        this CPU's clock; nothing in host time. ValueError unless an int >= 0 that keeps the
        clock within CLOCK_MAX."""
        if type(cycles) is not int or cycles < 0:
            raise BadArgument(f"compute: 'cycles' must be an int >= 0, got {cycles!r}")
        if cycles > CLOCK_MAX - self.cycles:
            raise BadArgument(f"compute: 'cycles' {cycles} would take this CPU's clock past "
                              f"{CLOCK_MAX} cycles, the model's largest time")
        self._sa.arena.compute(cycles)


def boot(k: Kernel, magazine_size: int) -> None:
    """The seed's slab_cache_init, run once by CPU 0 on a machine whose frames are booted."""
    sa = k._sa
    k._enter("boot")
    sa.list_init(KERNEL.slab_cache_list)
    sa.poke(KERNEL.next_gen, GEN_BASE)
    statics = [(KERNEL.mag_cache, "slab_magazine", MAGAZINE.sizeof + WORD * magazine_size, WORD),
               (KERNEL.slab_cache_cache, "slab_cache",
                CACHE.sizeof + k.cpus * CPU_MAGS.sizeof, LINE)]
    for cache, name, size, align in statics:
        sa._slab_cache_init_desc(cache, name, size, align,
                                 SLAB_CACHE_NOMAGAZINE | SLAB_CACHE_SLINSIDE)
        sa.lock(KERNEL.slab_cache_lock)
        sa._link_cache(cache)
        sa.unlock(KERNEL.slab_cache_lock)
    k._leave()
    extern = k.slab_cache_create("slab_extern", SLAB.sizeof, 0, SLAB_CACHE_SLINSIDE)
    sa.st(KERNEL.slab_extern, extern._addr)
    for i, name in enumerate(MALLOC_NAMES):
        c = k.slab_cache_create(name, 1 << (SLAB_MIN_MALLOC_W + i))
        sa.st(KERNEL.malloc_caches + i * WORD, c._addr)
    # The options' magazine caches (smpsim/engine/depot.py), after the seed's caches.
    o = sa.opts
    if o.cpu_magazine_cache:
        front = k._create("slab_magazine_cpu", MAGAZINE.sizeof + WORD * magazine_size, WORD,
                          SLAB_CACHE_SLINSIDE | SLAB_CACHE_MAGCACHE)
        sa.st(KERNEL.mag_front, front._addr)
    for size in o.sized_magazines:
        flags = SLAB_CACHE_SLINSIDE | SLAB_CACHE_MAGCACHE
        if not o.cpu_magazine_cache:
            flags |= SLAB_CACHE_NOMAGAZINE
        c = k._create(f"slab_magazine_{size}", MAGAZINE.sizeof + WORD * size, WORD, flags)
        sa.st(KERNEL.mag_sized + MAGAZINE_SIZES.index(size) * WORD, c._addr)
