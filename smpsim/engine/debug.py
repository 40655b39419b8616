"""Debugging mode (Machine(debug=True)): Bonwick's (USENIX 1994, section 5) checks on every
caller-facing object.

Each object of a cache made by slab_cache_create or a malloc cache gets a trailer, so the slab
geometry is the seed's for `size + trailer` (slab.py, _slab_cache_init_desc; with debugging off
it is the seed's for `size`). `CACHE.objsize` keeps the size the creator asked for, `CACHE.size`
(and the handle's `size`) is the enlarged stride. With `aligned` the seed's aligned size:

    [0, objsize)              the caller's bytes
    [objsize, aligned + 8)    the red zone: 0xfeedface repeated (alignment padding included)
    aligned + 8 .. + 40       the audit trail, four words: CPU + 1 and that CPU's operation
                              count (CPU_CTL.ops) of the last allocation, then of the last free

The allocator's own caches (slab_magazine, slab_cache, slab_extern) get no trailer: their
objects are the allocator's data, never a caller's.

Patterns, as Bonwick's allocator uses them:

- a free object holds 0xdeadbeef: a new slab is filled with it, and every free fills the
  caller's bytes with it again. Only the first 4 bytes may differ: there the slab keeps its
  free list (the seed's `int` index of the next free object), which a free object in a slab
  holds and one in a magazine does not, so they must hold the pattern or an index up to
  `objects`. A free object waits in a magazine or in its slab with the pattern intact;
- every allocation checks the pattern (and the red zone) before it hands the object out: any
  other byte means something wrote to the object after it was freed, and DebugError names the
  object, its cache, the offset, and the CPU that freed it last (the audit trail). The object
  stays allocated (it is counted and marked live, its bytes kept as evidence); the caller may
  free it;
- then the caller's bytes are filled with 0xbaddcafe (uninitialised memory);
- every free checks the red zone first: a byte past `objsize` that is not the red-zone pattern
  is an overrun; DebugError names the object, its cache and who allocated it, and nothing is
  changed (the object stays allocated, like any rejected free).

A cache with a constructor or destructor (slab_cache_create(..., ctor=, dtor=)) keeps its
objects constructed while they wait in magazines: their bytes are the constructor's, so they
get no free or fresh pattern (and no check of it); their red zone and audit trail are kept.
The magazine caches the options add (SLAB_CACHE_MAGCACHE) get no trailer, like slab_magazine.

Debugging mode also turns on the lock-order check of smpsim/engine/memory.py (LockOrderError), and
never uses the magazine-hit accelerator (its hooks live in the Python methods).

The hooks run inside the Kernel's bracket (_enter/_leave) on the CPU doing the operation, with
the object owned by that CPU (just allocated, or just claimed from the object table), so they
take no lock.
"""

from .errors import DebugError
from .layout import CACHE, CPU_CTL, WORD, Struct
from .options import SLAB_CACHE_MAGCACHE

__all__ = ["Debugger", "TRAILER", "FREE_PATTERN", "FRESH_PATTERN", "REDZONE_PATTERN",
           "UNTRAILERED", "debug_size", "audit"]

FREE_PATTERN = 0xDEADBEEF
FRESH_PATTERN = 0xBADDCAFE
REDZONE_PATTERN = 0xFEEDFACE

# The trailer after each object's seed-aligned size.
TRAILER = Struct("debug_trailer", [("redzone", 8), ("alloc_cpu", 8), ("alloc_ops", 8),
                                   ("free_cpu", 8), ("free_ops", 8)])

# The allocator's own caches: no trailer.
UNTRAILERED = frozenset({"slab_magazine", "slab_cache", "slab_extern"})


def _align(n, a):
    return -(-n // a) * a


def debug_size(size, align):
    """The object size whose seed geometry a debugging-mode cache uses."""
    return _align(size, max(align, WORD)) + TRAILER.sizeof


def _pattern(word, length):
    """`length` bytes of the 32-bit `word` repeated, as it lies in little-endian memory from an
    object's start (so a slice [a:b] is what bytes a..b of an object hold)."""
    return (word.to_bytes(4, "little") * (length // 4 + 1))[:length]


class Debugger:
    """The checks of one Kernel (one CPU) in debugging mode. Its reads and writes of the trailer
    are bookkeeping (peek, poke): debugging data is not part of the simulated machine."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.k = kernel._sa
        self._shape = {}      # (cache, gen) -> (objsize, aligned, stride, objects) or None
        self._patterns = {}   # stride -> (free, fresh, redzone) byte strings of that length

    # --- geometry ---------------------------------------------------------------------------

    def shape(self, cache):
        """(objsize, aligned, stride, objects) of a trailered cache, None for the allocator's."""
        k = self.k
        key = (cache, k.peek(cache + CACHE.gen))
        shape = self._shape.get(key, False)
        if shape is False:
            shape = None
            if k.cache_name(cache) not in UNTRAILERED and \
                    not k.peek(cache + CACHE.flags) & SLAB_CACHE_MAGCACHE:
                objsize = k.peek(cache + CACHE.objsize)
                aligned = _align(objsize, k.peek(cache + CACHE.align))
                shape = (objsize, aligned, k.peek(cache + CACHE.size), k.peek(cache + CACHE.objects))
            self._shape[key] = shape
        return shape

    def _pats(self, stride):
        p = self._patterns.get(stride)
        if p is None:
            p = self._patterns[stride] = (_pattern(FREE_PATTERN, stride),
                                          _pattern(FRESH_PATTERN, stride),
                                          _pattern(REDZONE_PATTERN, stride + 8))
        return p

    def _template(self, shape):
        """A free object's bytes: free pattern, red zone, an empty audit trail, padding."""
        objsize, aligned, stride, _ = shape
        free, _, red = self._pats(stride)
        t = bytearray(stride)
        t[:objsize] = free[:objsize]
        t[objsize:aligned + 8] = red[objsize:aligned + 8]
        return bytes(t)

    # --- hooks ----------------------------------------------------------------------------------

    def on_new_slab(self, cache, start):
        """A new slab's objects become free objects (called before its free list is laid)."""
        shape = self.shape(cache)
        if shape is None:
            return
        stride, objects = shape[2], shape[3]
        self.k.memory[start:start + stride * objects] = self._template(shape) * objects

    def on_alloc(self, cache, obj):
        """Check a just-allocated object's free pattern and red zone, fill it with the fresh
        pattern and record the allocation. DebugError on a write after free."""
        shape = self.shape(cache)
        if shape is None:
            return
        k = self.k
        objsize, aligned, stride, objects = shape
        free, fresh, red = self._pats(stride)
        mem = k.memory
        body = bytes(mem[obj:obj + aligned + 8])
        bad = None
        constructed = any(k.functions(cache))      # the object's bytes are its constructor's
        if constructed:
            pass
        elif body[:4] != free[:4] and int.from_bytes(body[:4], "little") > objects:
            bad = 0
        elif body[4:objsize] != free[4:objsize]:
            bad = _first_difference(body, free, 4, objsize)
        if bad is None and body[objsize:] != red[objsize:aligned + 8]:
            bad = _first_difference(body, red, objsize, aligned + 8)
        trailer = obj + aligned
        if bad is not None:
            freed_by, freed_at = k.peek(trailer + TRAILER.free_cpu), k.peek(trailer + TRAILER.free_ops)
            self._record(trailer, TRAILER.alloc_cpu, TRAILER.alloc_ops)
            who = (f"CPU {freed_by - 1} freed it last (at its operation {freed_at})" if freed_by
                   else "it was never allocated before (a fresh object of a new slab)")
            expected = (red if bad >= objsize else free)[bad]
            self._raise(f"write after free: object {obj:#x} of cache {k.cache_name(cache)!r} "
                        f"was changed at offset {bad} while free (byte {body[bad]:#04x} where "
                        f"{expected:#04x} belongs); {who}. The object is now allocated to "
                        f"CPU {k.cpu_id}, left as found",
                        kind="write after free", obj=obj, cache=k.cache_name(cache),
                        cpu=freed_by - 1 if freed_by else None, offset=bad)
        if not constructed:
            mem[obj:obj + objsize] = fresh[:objsize]
        self._record(trailer, TRAILER.alloc_cpu, TRAILER.alloc_ops)

    def on_free(self, cache, obj):
        """Check a freed object's red zone, fill it with the free pattern and record the free.
        DebugError on an overrun; then the object stays allocated (nothing changed)."""
        shape = self.shape(cache)
        if shape is None:
            return
        k = self.k
        objsize, aligned, stride, _ = shape
        free, _, red = self._pats(stride)
        mem = k.memory
        trailer = obj + aligned
        zone = bytes(mem[obj + objsize:trailer + 8])
        if zone != red[objsize:aligned + 8]:
            bad = _first_difference(bytes(mem[obj:trailer + 8]), red, objsize, aligned + 8)
            by, at = k.peek(trailer + TRAILER.alloc_cpu), k.peek(trailer + TRAILER.alloc_ops)
            self.kernel._mark(obj, k.peek(cache + CACHE.id))   # undo the claim
            self._raise(f"red zone overrun: object {obj:#x} of cache {k.cache_name(cache)!r} "
                        f"({objsize} bytes) was written past its end, at offset {bad}; CPU "
                        f"{by - 1} allocated it (at its operation {at}). The object stays "
                        f"allocated", kind="red zone", obj=obj, cache=k.cache_name(cache),
                        cpu=by - 1 if by else None, offset=bad)
        if not any(k.functions(cache)):          # a constructed object keeps its bytes
            mem[obj:obj + objsize] = free[:objsize]
        self._record(trailer, TRAILER.free_cpu, TRAILER.free_ops, 1)

    def _record(self, trailer, cpu_field, ops_field, ahead=0):
        k = self.k
        k.poke(trailer + cpu_field, k.cpu_id + 1)
        k.poke(trailer + ops_field, k.peek(k.ctl + CPU_CTL.ops) + ahead)

    def _raise(self, message, **info):
        """Leave allocator code (the state is whole again) and raise DebugError."""
        from .kernel import OPS
        op = OPS[self.k.q[(self.k.ctl + CPU_CTL.in_kernel) >> 3]] or "debug"
        self.kernel._leave()
        raise DebugError(f"{op}: {message}", **info)

    def audit(self, obj):
        """The audit trail of the object at obj (its cache found through its slab), or None
        for an object without a trailer."""
        from .layout import FRAME, SLAB
        k = self.k
        slab = k.peek(k.frame_entry(obj) + FRAME.parent)
        if not slab:
            return None
        cache = k.peek(slab + SLAB.cache)
        shape = self.shape(cache)
        if shape is None:
            return None
        trailer = obj + shape[1]
        out = {}
        for what in ("alloc", "free"):
            cpu = k.peek(trailer + getattr(TRAILER, f"{what}_cpu"))
            out[f"{what}_cpu"] = cpu - 1 if cpu else None
            out[f"{what}_ops"] = k.peek(trailer + getattr(TRAILER, f"{what}_ops")) if cpu else None
        return out


def _first_difference(got, want, lo, hi):
    """The first offset in [lo, hi) where got differs from want."""
    for i in range(lo, hi):
        if got[i] != want[i]:
            return i
    return lo


def audit(kernel, obj):
    """The audit trail of the object at obj on a debugging-mode machine: a dict with
    alloc_cpu, alloc_ops, free_cpu, free_ops (None where it never happened), or None."""
    dbg = getattr(kernel, "_debug", None)
    if dbg is None:
        raise ValueError("audit: the machine is not in debugging mode (Machine(debug=True))")
    return dbg.audit(obj)
