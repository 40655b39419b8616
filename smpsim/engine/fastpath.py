"""The magazine hit path of the Kernel's four hot methods, in C and in its pure-Python twin.

A slab_alloc whose object waits in this CPU's magazine pair, or a slab_free that finds room in
it, is the seed's common case and the one Bonwick's magazines exist for. Run through the whole
Python path (Kernel -> SlabAllocator -> Memory, one method call per field) it costs over a
hundred times a Python list.append + list.pop pair; as one C call it costs about two
(docs/bench.md). So a Kernel built with an accelerator (Machine(accel=...), below) replaces its
slab_alloc, slab_free, kalloc and kfree on the instance with an accelerator's methods, which

- serve a magazine hit completely (argument checks as far as a hit needs them, in_kernel, the
  object-table claim or mark, this CPU's magazine lock, pop or push, the seed's counters, the
  CPU_CTL counters), and
- hand every other call, unchanged, to the Kernel's own Python method: misses (the shared
  magazine list, the slab layer, a new magazine), NOMAGAZINE caches, argument errors and invalid
  frees, whose messages therefore stay the Python path's. A miss changes nothing before it
  hands over (smpsim/engine/_fastpath.c's header has the details and the memory orderings).

Two accelerators with the same constructor and methods, chosen by Machine(accel=...):

    "c"       smpsim.engine._fastpath.FastPath (smpsim/engine/_fastpath.c); the default
    "python"  PyFastPath below: the same steps in Python, the reference the C code is tested
              against (tests/test_fastpath.py runs both and compares the whole segment)
    "off"     none: every call takes the Kernel's Python methods (as debugging mode does)

SMPSIM_NO_ACCEL=1 in the environment turns "c" into "python"; so does a build without the C
extension. Debugging mode (Machine(debug=True)) never uses an accelerator: its hooks live in the
Python methods.

The magazine lock is tried once (test-and-test-and-set, as smpsim/engine/_atomics.c's first attempt);
if another CPU holds it (only reclaim or cache destruction takes another CPU's magazine lock) the
call goes to Python, which spins, checks signals and honours lock timeouts. No Python code runs
while an accelerator has in_kernel set (C) or could be interrupted in a way that matters (the
twin runs Python code, so a stop signal arriving in it sets Kernel._stop_pending; the twin
checks it after clearing in_kernel, as Kernel._leave does).
"""

import os

from .frames import FRAME_ATOMIC, FRAME_NO_RECLAIM
from .kernel import EXIT_STOPPED
from .layout import (CACHE, CPU_CTL, CPU_MAGS, FRAME, HEADER, KERNEL, MAGAZINE, OBJ_INTERNAL,
                     PAGE_SIZE, SLAB, SPINLOCK, WORD)
from .memory import DEAD_HOLDER_POLL, sim_fields
from .sched import SCHED_FREE, SCHED_TOKEN, STRATEGY_CLOCK
from .slab import PATH_HIT, SLAB_CACHE_NOMAGAZINE, SLAB_MAX_MALLOC_W, SLAB_MIN_MALLOC_W

__all__ = ["PyFastPath", "ACCEL_CHOICES", "accelerator", "install", "c_available"]

ACCEL_CHOICES = ("c", "python", "off")
READ, WRITE = 0, 1                  # charge kinds (ACC_READ, ACC_WRITE in _sim.h)
ALLOC_FLAGS = FRAME_ATOMIC | FRAME_NO_RECLAIM
KALLOC_MAX = 1 << SLAB_MAX_MALLOC_W
MALLOC_MIN = 1 << SLAB_MIN_MALLOC_W

_c_module = None      # smpsim.engine._fastpath once configured; False when it cannot be imported


def _layout():
    """The fields and constants the C accelerator needs, by name, from smpsim/engine/layout.py."""
    from .kernel import OPS
    fields = {}
    for prefix, struct, names in (
            ("CACHE", CACHE, ("flags", "size", "id", "gen", "mag_cache", "allocated_objs",
                              "cached_objs")),
            ("CPU_MAGS", CPU_MAGS, ("sizeof", "lock", "current", "last", "allocated", "cached")),
            ("MAGAZINE", MAGAZINE, ("busy", "size", "objs")),
            ("SPINLOCK", SPINLOCK, ("holder", "acquisitions", "contended", "spins")),
            ("CPU_CTL", CPU_CTL, ("in_kernel", "ops", "allocs", "frees", "hits", "path")),
            ("KERNEL", KERNEL, ("malloc_caches",)), ("FRAME", FRAME, ("sizeof", "parent")),
            ("SLAB", SLAB, ("cache",)), ("HEADER", HEADER, ("stop",))):
        for n in names:
            fields[f"{prefix}.{n}"] = getattr(struct, n)
    consts = {"PAGE_SIZE": PAGE_SIZE, "SLAB_CACHE_NOMAGAZINE": SLAB_CACHE_NOMAGAZINE,
              "OBJ_INTERNAL": OBJ_INTERNAL, "ALLOC_FLAGS": ALLOC_FLAGS,
              "SLAB_MIN_MALLOC_W": SLAB_MIN_MALLOC_W, "SLAB_MAX_MALLOC_W": SLAB_MAX_MALLOC_W,
              "OP_SLAB_ALLOC": OPS.index("slab_alloc"), "OP_SLAB_FREE": OPS.index("slab_free"),
              "OP_KALLOC": OPS.index("kalloc"), "OP_KFREE": OPS.index("kfree"),
              "PATH_HIT": PATH_HIT, "EXIT_STOPPED": EXIT_STOPPED,
              "DEAD_HOLDER_POLL_MS": int(DEAD_HOLDER_POLL * 1000)}
    return fields, consts


def c_available():
    """True when the C accelerator is built (and configured, on first use)."""
    global _c_module
    if _c_module is None:
        try:
            from . import _fastpath
            from .kernel import SlabCache
        except ImportError:
            _c_module = False
        else:
            _fastpath.configure(*_layout(), SlabCache, sim_fields())
            _c_module = _fastpath
    return bool(_c_module)


def accelerator(accel, sa=None):
    """The accelerator class for Machine(accel=...) (None for "off"), after the environment's
    SMPSIM_NO_ACCEL and the build have had their say. A controlled run (a schedule) takes the
    Python path for every operation: each access of the allocator's code is a scheduling point
    there, which only the Python path passes."""
    if accel == "off" or (sa is not None and sa.data_points):
        return None
    if accel == "c" and os.environ.get("SMPSIM_NO_ACCEL", "") not in ("", "0"):
        accel = "python"
    if accel == "c" and c_available():
        return _c_module.FastPath
    return PyFastPath


def install(k, cls, buf):
    """Give Kernel k (on segment buffer buf) an accelerator of class cls: its four hot methods
    become the accelerator's, which call the Kernel's own (class) methods for everything but a
    magazine hit. Returns the accelerator (k._release() must release it)."""
    kt, sa = type(k), k._sa
    r = sa.regions
    fp = cls(buf, r.memory, k.cpu_id, sa.ctl, r.object_table, r.cache_ids,
             bool(sa.percpu), kt.slab_alloc.__get__(k), kt.slab_free.__get__(k),
             kt.kalloc.__get__(k), kt.kfree.__get__(k))
    try:
        fp.configure_sim(*sa.sim_regions(), r.frame_table)
    except BaseException:
        fp.release()
        raise
    k.slab_alloc, k.slab_free = fp.slab_alloc, fp.slab_free
    k.kalloc, k.kfree = fp.kalloc, fp.kfree
    return fp


class PyFastPath:
    """The pure-Python twin of smpsim.engine._fastpath.FastPath: the same steps, the same result in
    shared memory, byte for byte. See the module docstring and smpsim/engine/_fastpath.c."""

    def __init__(self, buffer, memory, cpu, ctl, object_table, cache_ids, percpu,
                 slab_alloc, slab_free, kalloc, kfree):
        from ._atomics import Arena
        from .kernel import SlabCache
        self._handle_type = SlabCache
        self.arena = Arena(buffer)
        self.q = buffer.cast("Q")
        self.h = buffer.cast("H")
        self.seglen = len(buffer)
        self.memory, self.cpu, self.owner, self.ctl = memory, cpu, cpu + 1, ctl
        self.object_table, self.cache_ids, self.percpu = object_table, cache_ids, percpu
        self.slow_alloc, self.slow_free = slab_alloc, slab_free
        self.slow_kalloc, self.slow_kfree = kalloc, kfree
        from .kernel import OPS
        self.ops = {name: OPS.index(name) for name in ("slab_alloc", "slab_free", "kalloc",
                                                       "kfree")}
        self.kernel = getattr(slab_alloc, "__self__", None)
        self.live = True

    simulated = False

    def configure_sim(self, *args):
        """As FastPath.configure_sim: the arena's for simulated time and the scheduler, then
        the frame table (kfree reads frame->parent)."""
        *regions, frame_table = args
        self.arena.configure_sim(*regions)
        q, hdr = self.q, regions[2]
        timed = q[(hdr + HEADER.time_mode) >> 3]
        sched = q[(hdr + HEADER.sched_mode) >> 3]
        if sched == SCHED_TOKEN and q[(hdr + HEADER.strategy) >> 3] != STRATEGY_CLOCK:
            raise ValueError("FastPath: a controlled run takes the Python path")
        self.simulated = bool(timed or sched != SCHED_FREE)
        self.hdr, self.frame_table = hdr, frame_table

    def release(self):
        """Drop the views (safe to repeat); later calls all go to the Python methods."""
        if self.live:
            self.live = False
            self.arena.release()
            self.q.release()
            self.h.release()

    # --- helpers (the C file's, one for one) ----------------------------------------------

    def _in_memory(self, addr, n):
        return PAGE_SIZE <= addr <= self.memory - n and not addr & 7

    def _granule(self, addr):
        return (self.object_table + (addr >> 2)) >> 1

    def _take_lock(self, lock):
        q = self.q
        if q[(lock + SPINLOCK.holder) >> 3] == 0 and \
                self.arena.cas(lock + SPINLOCK.holder, 0, self.owner):
            q[(lock + SPINLOCK.acquisitions) >> 3] += 1
            return 1
        # Held (by reclaim on another CPU): spin and count as the C code does (the attempt
        # above found it held: a contended acquisition even if the lock is free at once now).
        spins = self.arena.lock(lock, self.owner, DEAD_HOLDER_POLL)
        if spins < 0:
            return 0
        if spins == 0:
            q[(lock + SPINLOCK.contended) >> 3] += 1
            q[(lock + SPINLOCK.spins) >> 3] += 1
        return 1

    def _untake_lock(self, lock):
        self.q[(lock + SPINLOCK.acquisitions) >> 3] -= 1
        self.arena.store(lock + SPINLOCK.holder, 0)

    def _hit_lock(self, cache, lock, pre):
        if not self.simulated:
            return self._take_lock(lock)
        a = self.arena
        if pre:
            a.charge(pre, READ)
        a.charge(cache + CACHE.flags, READ)
        return 1 if a.lock(lock, self.owner, DEAD_HOLDER_POLL) >= 0 else 0

    def _unlock(self, lock):
        if self.simulated:
            self.arena.unlock(lock, self.owner)
        else:
            self.arena.store(lock + SPINLOCK.holder, 0)

    def _count(self, cache, mags, shared, percpu, delta):
        addr = mags + percpu if self.percpu else cache + shared
        (self.arena.tfetch_add if self.simulated else self.arena.fetch_add)(addr, delta)

    def _counted(self, alloc):
        q, ctl = self.q, self.ctl
        q[(ctl + CPU_CTL.ops) >> 3] += 1
        q[(ctl + (CPU_CTL.allocs if alloc else CPU_CTL.frees)) >> 3] += 1
        q[(ctl + CPU_CTL.hits) >> 3] += 1
        q[(ctl + CPU_CTL.path) >> 3] = PATH_HIT

    def _leave(self):
        self.q[(self.ctl + CPU_CTL.in_kernel) >> 3] = 0

    def _done(self):
        """After an operation served here: a stop request that arrived while it ran ends the
        CPU now (the C code's stop_if_asked, and Kernel._leave's _stop_pending)."""
        self._leave()
        if self.q[(self.hdr + HEADER.stop) >> 3] or \
                (self.kernel is not None and self.kernel._stop_pending):
            os._exit(EXIT_STOPPED)

    def _handle_cache(self, h):
        if type(h) is not self._handle_type:
            return 0
        cache, gen = getattr(h, "_addr", None), getattr(h, "_gen", None)
        if type(cache) is not int or type(gen) is not int or cache < 0 or gen < 0:
            return 0
        if not self._in_memory(cache, CACHE.mag_cache + (self.cpu + 1) * CPU_MAGS.sizeof):
            return 0
        q = self.q
        if q[(cache + CACHE.gen) >> 3] != gen or q[(cache + CACHE.flags) >> 3] & \
                SLAB_CACHE_NOMAGAZINE:
            return 0
        return cache

    @staticmethod
    def _flags_ok(flags):
        return type(flags) is int and flags >= 0 and not flags & ~ALLOC_FLAGS

    def _would_hit(self, mags, alloc):
        q, mem = self.q, self._in_memory
        cmag, lastmag = q[(mags + CPU_MAGS.current) >> 3], q[(mags + CPU_MAGS.last) >> 3]
        if not (cmag and mem(cmag, MAGAZINE.objs)):
            return False
        if alloc:
            return bool(q[(cmag + MAGAZINE.busy) >> 3] or (
                lastmag and mem(lastmag, MAGAZINE.objs) and q[(lastmag + MAGAZINE.busy) >> 3]))
        return (q[(cmag + MAGAZINE.busy) >> 3] < q[(cmag + MAGAZINE.size) >> 3] or bool(
            lastmag and mem(lastmag, MAGAZINE.objs) and
            q[(lastmag + MAGAZINE.busy) >> 3] < q[(lastmag + MAGAZINE.size) >> 3]))

    # --- the hit paths ----------------------------------------------------------------------

    def _alloc_hit(self, cache, op, pre=0):
        """The object popped from this CPU's magazines, or 0 (nothing changed)."""
        q = self.q
        mags = cache + CACHE.mag_cache + self.cpu * CPU_MAGS.sizeof
        lock = mags + CPU_MAGS.lock
        if self.simulated and not self._would_hit(mags, True):
            return 0
        q[(self.ctl + CPU_CTL.in_kernel) >> 3] = op
        if not self._hit_lock(cache, lock, pre):
            self._leave()
            return 0
        cmag, lastmag = q[(mags + CPU_MAGS.current) >> 3], q[(mags + CPU_MAGS.last) >> 3]
        mag = 0
        if cmag and self._in_memory(cmag, MAGAZINE.objs):
            if q[(cmag + MAGAZINE.busy) >> 3]:
                mag = cmag
            elif lastmag and self._in_memory(lastmag, MAGAZINE.objs) and \
                    q[(lastmag + MAGAZINE.busy) >> 3]:
                q[(mags + CPU_MAGS.current) >> 3] = lastmag
                q[(mags + CPU_MAGS.last) >> 3] = cmag
                mag = lastmag
        busy = q[(mag + MAGAZINE.busy) >> 3] - 1 if mag else 0
        slot = mag + MAGAZINE.objs + busy * WORD
        obj = q[slot >> 3] if mag and self._in_memory(slot, WORD) else 0
        if not obj or not self._in_memory(obj, WORD):
            if mag and mag != cmag:                          # undo the swap
                q[(mags + CPU_MAGS.current) >> 3] = cmag
                q[(mags + CPU_MAGS.last) >> 3] = lastmag
            self._untake_lock(lock)
            self._leave()
            return 0
        if self.simulated:                  # in the order slab.py makes them
            ch = self.arena.charge
            ch(mags + CPU_MAGS.current, READ)
            ch(mags + CPU_MAGS.last, READ)
            ch(cmag + MAGAZINE.busy, READ)
            if mag != cmag:
                ch(lastmag + MAGAZINE.busy, READ)
                ch(mags + CPU_MAGS.current, WRITE)
                ch(mags + CPU_MAGS.last, WRITE)
            ch(mag + MAGAZINE.busy, READ)
            ch(mag + MAGAZINE.busy, WRITE)
            ch(slot, READ)
        q[(mag + MAGAZINE.busy) >> 3] = busy
        self._unlock(lock)
        self._count(cache, mags, CACHE.cached_objs, CPU_MAGS.cached, -1)
        self._count(cache, mags, CACHE.allocated_objs, CPU_MAGS.allocated, 1)
        self.h[self._granule(obj)] = q[(cache + CACHE.id) >> 3]
        self._counted(True)
        self._done()
        return obj

    def _free_hit(self, cache, obj, cid, op, kfree=False):
        """True when obj went into this CPU's magazines; False (nothing changed) otherwise."""
        q = self.q
        mags = cache + CACHE.mag_cache + self.cpu * CPU_MAGS.sizeof
        lock = mags + CPU_MAGS.lock
        granule = self.object_table + (obj >> 2)
        if self.simulated and not self._would_hit(mags, False):
            return False
        q[(self.ctl + CPU_CTL.in_kernel) >> 3] = op
        if not self.arena.cas16(granule, cid, 0):
            self._leave()
            return False
        if self.simulated and kfree:
            parent = self.frame_table + (obj >> 12) * FRAME.sizeof + FRAME.parent
            self.arena.charge(parent, READ)
            self.arena.charge(q[parent >> 3] + SLAB.cache, READ)
        if not self._hit_lock(cache, lock, 0):
            self.h[granule >> 1] = cid
            self._leave()
            return False
        cmag, lastmag = q[(mags + CPU_MAGS.current) >> 3], q[(mags + CPU_MAGS.last) >> 3]
        mag = 0
        if cmag and self._in_memory(cmag, MAGAZINE.objs):
            if q[(cmag + MAGAZINE.busy) >> 3] < q[(cmag + MAGAZINE.size) >> 3]:
                mag = cmag
            elif lastmag and self._in_memory(lastmag, MAGAZINE.objs) and \
                    q[(lastmag + MAGAZINE.busy) >> 3] < q[(lastmag + MAGAZINE.size) >> 3]:
                mag = lastmag
        busy = q[(mag + MAGAZINE.busy) >> 3] if mag else 0
        slot = mag + MAGAZINE.objs + busy * WORD
        if not mag or not self._in_memory(slot, WORD):
            self._untake_lock(lock)
            self.h[granule >> 1] = cid
            self._leave()
            return False
        if self.simulated:                  # in the order slab.py makes them
            ch = self.arena.charge
            ch(mags + CPU_MAGS.current, READ)
            ch(mags + CPU_MAGS.last, READ)
            ch(cmag + MAGAZINE.busy, READ)
            ch(cmag + MAGAZINE.size, READ)
            if mag != cmag:
                ch(lastmag + MAGAZINE.busy, READ)
                ch(lastmag + MAGAZINE.size, READ)
                ch(mags + CPU_MAGS.last, WRITE)
                ch(mags + CPU_MAGS.current, WRITE)
            ch(mag + MAGAZINE.busy, READ)
            ch(slot, WRITE)
            ch(mag + MAGAZINE.busy, WRITE)
        if mag != cmag:
            q[(mags + CPU_MAGS.last) >> 3] = cmag
            q[(mags + CPU_MAGS.current) >> 3] = lastmag
        q[slot >> 3] = obj
        q[(mag + MAGAZINE.busy) >> 3] = busy + 1
        self._unlock(lock)
        self._count(cache, mags, CACHE.cached_objs, CPU_MAGS.cached, 1)
        self._count(cache, mags, CACHE.allocated_objs, CPU_MAGS.allocated, -1)
        self._counted(False)
        self._done()
        return True

    @staticmethod
    def _malloc_slot(size):
        """The malloc_caches[] entry of size (the seed's kalloc index)."""
        idx = (max(size, MALLOC_MIN) - 1).bit_length() - 1 - SLAB_MIN_MALLOC_W + 1
        return KERNEL.malloc_caches + idx * WORD

    def _malloc_cache(self, size):
        """The malloc cache kalloc(size) uses, if it has magazines; else 0."""
        cache = self.q[self._malloc_slot(size) >> 3]
        if not self._in_memory(cache, CACHE.mag_cache + (self.cpu + 1) * CPU_MAGS.sizeof) or \
                self.q[(cache + CACHE.flags) >> 3] & SLAB_CACHE_NOMAGAZINE:
            return 0
        return cache

    def _addr_ok(self, addr):
        return type(addr) is int and PAGE_SIZE <= addr <= self.memory - WORD and not addr & 7

    # --- the Kernel's methods -------------------------------------------------------------

    def slab_alloc(self, *args, **kw):
        if self.live and 1 <= len(args) + len(kw) <= 2 and args and set(kw) <= {"flags"} \
                and self._flags_ok(kw["flags"] if kw else args[1] if len(args) == 2 else 0):
            cache = self._handle_cache(args[0])
            obj = self._alloc_hit(cache, self.ops["slab_alloc"]) if cache else 0
            if obj:
                return obj
        return self.slow_alloc(*args, **kw)

    def slab_free(self, *args, **kw):
        if self.live and len(args) == 2 and not kw and self._addr_ok(args[1]):
            cache = self._handle_cache(args[0])
            if cache and self._free_hit(cache, args[1], self.q[(cache + CACHE.id) >> 3],
                                        self.ops["slab_free"]):
                return None
        return self.slow_free(*args, **kw)

    def kalloc(self, *args, **kw):
        if self.live and 1 <= len(args) + len(kw) <= 2 and args and set(kw) <= {"flags"} \
                and self._flags_ok(kw["flags"] if kw else args[1] if len(args) == 2 else 0) \
                and type(args[0]) is int and 1 <= args[0] <= KALLOC_MAX:
            cache = self._malloc_cache(args[0])
            obj = self._alloc_hit(cache, self.ops["kalloc"], self._malloc_slot(args[0])) \
                if cache else 0
            if obj:
                return obj
        return self.slow_kalloc(*args, **kw)

    def kfree(self, *args, **kw):
        if self.live and len(args) == 1 and not kw and self._addr_ok(args[0]):
            obj = args[0]
            cid = self.h[self._granule(obj)]
            cache = 0
            if cid and not cid & OBJ_INTERNAL and \
                    self.cache_ids + cid * WORD <= self.seglen - WORD:
                c = self.q[(self.cache_ids + cid * WORD) >> 3]
                if self._in_memory(c, CACHE.mag_cache):
                    size = self.q[(c + CACHE.size) >> 3]
                    if MALLOC_MIN <= size <= KALLOC_MAX and not size & (size - 1) and \
                            self._malloc_cache(size) == c:
                        cache = c
            if cache and self._free_hit(cache, obj, cid, self.ops["kfree"], True):
                return None
        return self.slow_kfree(*args, **kw)
