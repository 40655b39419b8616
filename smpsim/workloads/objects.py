"""Constructors and destructors for the scenarios' caches (slab_cache_create(..., ctor=, dtor=)),
in the manner of Bonwick's examples: an object whose header (a lock, an empty list, a reference
count) its constructor sets up once, and which stays set up while the object waits in a
magazine; its destructor checks the header is as the constructor left it and clears it.

A constructed object (at least HEADER_SIZE bytes):

    [0, 8)      the caller's (the workloads' Heap tags it with the allocating CPU)
    [8, 16)     MAGIC
    [16, 24)    a lock word, 0 when free
    [24, 40)    a list head (prev, next) pointing at itself: an empty list
    [40, 48)    a reference count, 0

Use them as "smpsim.workloads.objects:construct" and "smpsim.workloads.objects:destruct". Both
run inside the allocator on the CPU doing the work (Kernel k) and must not call it.
"""

import struct

__all__ = ["construct", "destruct", "MAGIC", "HEADER_SIZE", "is_constructed"]

MAGIC = 0x0B1EC7C0_5EED5AB1
HEADER_SIZE = 48
_HEADER = struct.Struct("<QQQQQ")        # magic, lock, prev, next, refcount (from offset 8)


def construct(k, addr):
    """Set up the header of the object at addr. Returns 0 (success)."""
    _HEADER.pack_into(k.memory, addr + 8, MAGIC, 0, addr + 24, addr + 24, 0)
    return 0


def is_constructed(k, addr):
    """True when the object at addr holds the header construct() wrote."""
    return _HEADER.unpack_from(k.memory, addr + 8) == (MAGIC, 0, addr + 24, addr + 24, 0)


def destruct(k, addr):
    """Check the header of the object at addr and clear it. ValueError when the header is not
    the constructor's (the allocator logs it and counts it in the cache's dtor_errors)."""
    if not is_constructed(k, addr):
        raise ValueError(f"object {addr:#x} is not as its constructor left it")
    k.memory[addr + 8:addr + 8 + _HEADER.size] = bytes(_HEADER.size)
