"""The trace of a controlled run: one line per scheduling point, in the order the points passed.

Machine(schedule=..., trace=path) makes every CPU of a controlled run append to `path`, at each
scheduling point it passes (one CPU runs at a time, so the lines come in step order):

    step  CPU  function            what                          next
    1412  1    _slab_obj_create    lock obj.slablock             -> CPU 0 (preempted)

`function` is the allocator's function that reached the point (the innermost frame outside the
memory layer), or the program's for its own atomics and locks (as module.function; "-" at the
program's start and end); `what` names the point's action
and the lock, counter or field it is about (Tracer.describe); `next` says when the token moved,
and "(preempted)" when it left a CPU that could have gone on. The trace is the simulator's own
bookkeeping: writing it changes nothing in the machine.
"""

import os
import sys

__all__ = ["Tracer", "POINT_KINDS", "HEADER_LINE"]

# The kinds of scheduling points (PT_* in smpsim/engine/_sim.h), as the trace words them.
POINT_KINDS = ["start", "end", "lock", "unlock", "trylock", "atomic", "load", "store", "read",
               "write", "barrier"]
HEADER_LINE = "step\tcpu\tfunction\twhat\tnext\n"

# Frames of these functions are the memory layer's, not the allocator's.
_PLUMBING = {"ld", "st", "ld32", "st32", "lock", "unlock", "trylock", "list_append",
             "list_prepend", "list_remove", "list_empty", "list_init", "list_links",
             "frame_parent", "_count", "_magazines", "counted", "hooked", "atomic_load",
             "atomic_store", "atomic_add", "atomic_cas", "spin_lock", "spin_unlock"}


class Tracer:
    """The tracer of one CPU process (Arena.set_tracer): appends a line per scheduling point
    to the file at `path`."""

    def __init__(self, kernel, path):
        self.k, self.sa = kernel, kernel._sa
        self.cpu = kernel.cpu_id
        self.fd = os.open(os.fspath(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._names = {}

    def __call__(self, step, kind, addr, nxt, preempted):
        what = POINT_KINDS[kind] if 0 <= kind < len(POINT_KINDS) else f"point {kind}"
        if kind in (0, 1):                  # the program's start and end
            obj, function = "", "-"
        else:
            obj, function = self.describe(addr, kind), self._function()
        if nxt < 0:
            moved = "-> nobody"
        elif nxt != self.cpu:
            moved = f"-> CPU {nxt}" + (" (preempted)" if preempted else "")
        else:
            moved = ""
        line = f"{step}\t{self.cpu}\t{function}\t{what} {obj}".rstrip() + f"\t{moved}\n"
        os.write(self.fd, line.encode())

    @staticmethod
    def _function():
        """The innermost caller outside the memory layer: the allocator's function by its
        name (the seed's, with a leading underscore), a program's as module.function."""
        f = sys._getframe(2)
        while f is not None:
            code = f.f_code
            if code.co_name not in _PLUMBING and not code.co_filename.endswith("memory.py"):
                module = f.f_globals.get("__name__", "")
                if module.startswith("smpsim.engine"):
                    return code.co_name
                return f"{module.rsplit('.', 1)[-1]}.{code.co_name}"
            f = f.f_back
        return "?"

    def describe(self, addr, kind):
        """The lock, counter or field at addr, in words (cached per address)."""
        name = self._names.get((addr, kind))
        if name is None:
            name = self._names[(addr, kind)] = describe(self.sa, addr, kind in (2, 3, 4))
        return name

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def describe(sa, addr, lock=False):
    """What lies at address addr of the machine seen through allocator sa: a lock's name, a
    field of a cache descriptor or of a CPU's magazine pair, a slab's or a magazine's field, a
    frame table entry, or the bare address (bookkeeping reads only)."""
    from .layout import CACHE, CPU_MAGS, FRAME, HEADER, KERNEL, MAGAZINE, SLAB
    if lock:
        return sa.lock_name(addr)
    r, pk = sa.regions, sa.peek
    if addr >= r.memory:
        if r.frame_table <= addr < r.object_table:
            pfn, off = divmod(addr - r.frame_table, FRAME.sizeof)
            return f"frame {pfn}.{_field(FRAME, off)}"
        if r.header <= addr < r.header + HEADER.sizeof:
            return f"frames.{_field(HEADER, addr - r.header)}"
        return f"bookkeeping@{addr:#x}"
    for cache in [sa.mag_cache, sa.slab_cache_cache] + sa.caches():
        if cache <= addr < cache + CACHE.mag_cache + sa.cpus * CPU_MAGS.sizeof:
            name, off = sa.cache_name(cache), addr - cache
            if off < CACHE.mag_cache:
                return f"{name}.{_field(CACHE, off)}"
            cpu, off = divmod(off - CACHE.mag_cache, CPU_MAGS.sizeof)
            return f"{name}.cpu{cpu}.{_field(CPU_MAGS, off)}"
    if addr < KERNEL.sizeof:
        return f"kernel.{_field(KERNEL, addr)}"
    slab = pk(sa.frame_entry(addr) + FRAME.parent)
    if slab:
        cache = pk(slab + SLAB.cache)
        name = sa.cache_name(cache) if cache else "?"
        if slab <= addr < slab + SLAB.sizeof:
            return f"slab {slab:#x} ({name}).{_field(SLAB, addr - slab)}"
        start, size = pk(slab + SLAB.start), pk(cache + CACHE.size) if cache else 0
        if size:
            obj, off = start + (addr - start) // size * size, (addr - start) % size
            if cache == sa.mag_cache:
                return f"magazine {obj:#x}.{_field(MAGAZINE, off)}"
            return f"{name} object {obj:#x}" + (f"+{off}" if off else "")
    return f"memory@{addr:#x}"


def _field(struct, off):
    """The field of struct at byte offset off: a list link or head (16 bytes) as name.prev or
    name.next, an array element as name[i]."""
    starts = sorted(struct.fields.items(), key=lambda f: f[1])
    best = None
    for i, (name, start) in enumerate(starts):
        if start <= off:
            end = starts[i + 1][1] if i + 1 < len(starts) else struct.sizeof
            best = (name, start, end)
    if best is None:
        return f"+{off}"
    name, start, end = best
    extra = off - start
    if end - start == 16 and extra in (0, 8):
        return f"{name}.{'next' if extra else 'prev'}"
    return name if not extra else f"{name}[{extra // 8}]"
