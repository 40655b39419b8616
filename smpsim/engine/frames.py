"""The frame allocator: a buddy allocator over the page pool, with the frame table.

Frames are PAGE_SIZE pages of simulated memory, numbered from 0 (pfn). Blocks of 2**order frames
(order 0 .. MAX_ORDER) are handed out at addresses aligned to their size, as HelenOS's zone
allocator does. Each frame has a FRAME entry in the frame table, outside simulated memory:

    info    FRAME_FREE | order   first frame of a free block (then it is in free_lists[order])
            FRAME_USED | order   first frame of an allocated block
            FRAME_RESERVED       frame 0, the kernel's static data
            0                    any other frame of a block
    parent  the slab that owns the frame (the seed's frame->parent), 0 when none

Boot starts from maximal blocks (about 260 list heads for 1 GiB), so it costs nothing per page.
One lock, HEADER.frames_lock ("frames"), guards the free lists, `free_frames` and `info`; the
slab layer writes `parent` of frames it owns without it.

When no block is free, frame_alloc asks the slab allocator to give memory back, as HelenOS's
frame_alloc does: a light slab_reclaim(0), then slab_reclaim(SLAB_RECLAIM_ALL), retrying after
each (a reclaim also frees magazine frames that its count leaves out, so we retry even when it
returns 0). FRAME_NO_RECLAIM skips both; the magazine path relies on that, because it allocates
while holding a CPU magazine lock and reclaim takes every one of them.
"""

from typing import Final

from .layout import FRAME, HEADER, LINK, MAX_ORDER, PAGE_WIDTH
from .memory import Memory

__all__ = ["FrameAllocator", "FRAME_ATOMIC", "FRAME_NO_RECLAIM", "FRAME_FREE", "FRAME_USED",
           "FRAME_RESERVED", "ORDER_MASK"]

# Allocation flags (HelenOS mm/frame.h values). FRAME_ATOMIC: fail instead of waiting, so
# slab_alloc returns None instead of raising OutOfMemory. FRAME_NO_RECLAIM: never call reclaim.
FRAME_ATOMIC: Final[int] = 0x2
FRAME_NO_RECLAIM: Final[int] = 0x4

ORDER_MASK = 0xFF
FRAME_FREE = 0x100
FRAME_USED = 0x200
FRAME_RESERVED = 0x400


def boot_frames(m: Memory):
    """Lay out an empty frame allocator: frame 0 reserved, every other frame in maximal blocks."""
    r = m.regions
    h = r.header
    for order in range(MAX_ORDER + 1):
        m.list_init(h + HEADER.free_lists + order * LINK.sizeof)
    m.st(r.frame(0) + FRAME.info, FRAME_RESERVED)
    pfn, nframes = 1, r.nframes
    while pfn < nframes:
        order = MAX_ORDER
        while pfn % (1 << order) or pfn + (1 << order) > nframes:
            order -= 1
        entry = r.frame(pfn)
        m.st(entry + FRAME.info, FRAME_FREE | order)
        m.list_append(entry + FRAME.link, h + HEADER.free_lists + order * LINK.sizeof)
        pfn += 1 << order
    m.st(h + HEADER.free_frames, nframes - 1)


class FrameAllocator(Memory):
    """The buddy allocator, as seen from one CPU."""

    def _free_list(self, order):
        return self.regions.header + HEADER.free_lists + order * LINK.sizeof

    @property
    def frames_lock(self):
        return self.regions.header + HEADER.frames_lock

    def frame_alloc(self, order, flags):
        """Allocate 2**order frames; returns the address of the first, or 0 when none are left
        even after reclaim (the caller turns that into None or OutOfMemory)."""
        pfn = self._buddy_alloc(order)
        if pfn is None and not flags & FRAME_NO_RECLAIM:
            for how in (0, self.RECLAIM_ALL):
                self.slab_reclaim_all_caches(how)
                pfn = self._buddy_alloc(order)
                if pfn is not None:
                    break
        return 0 if pfn is None else pfn << PAGE_WIDTH

    def frame_free(self, addr):
        """Return the block that starts at addr (its order is in the frame table)."""
        r = self.regions
        self.lock(self.frames_lock)
        pfn = addr >> PAGE_WIDTH
        info = self.ld(r.frame(pfn) + FRAME.info)
        assert info & FRAME_USED, f"frame_free({addr:#x}): not an allocated block"
        order = info & ORDER_MASK
        self.st(r.frame(pfn) + FRAME.info, 0)
        self.st(r.header + HEADER.free_frames,
                self.ld(r.header + HEADER.free_frames) + (1 << order))
        # Coalesce with free buddies of the same order.
        while order < MAX_ORDER:
            buddy = pfn ^ (1 << order)
            if buddy + (1 << order) > r.nframes:
                break
            entry = r.frame(buddy)
            if self.ld(entry + FRAME.info) != FRAME_FREE | order:
                break
            self.list_remove(entry + FRAME.link)
            self.st(entry + FRAME.info, 0)
            pfn = min(pfn, buddy)
            order += 1
        entry = r.frame(pfn)
        self.st(entry + FRAME.info, FRAME_FREE | order)
        self.list_prepend(entry + FRAME.link, self._free_list(order))
        self.unlock(self.frames_lock)

    def _buddy_alloc(self, order):
        """Take a block of 2**order frames from the free lists; its pfn, or None."""
        r = self.regions
        self.lock(self.frames_lock)
        for o in range(order, MAX_ORDER + 1):
            head = self._free_list(o)
            if not self.list_empty(head):
                break
        else:
            self.unlock(self.frames_lock)
            return None
        link = self.ld(head + LINK.next)
        self.list_remove(link)
        pfn = (link - FRAME.link - r.frame_table) // FRAME.sizeof
        # Split: the upper halves go back to the free lists.
        while o > order:
            o -= 1
            buddy = r.frame(pfn + (1 << o))
            self.st(buddy + FRAME.info, FRAME_FREE | o)
            self.list_prepend(buddy + FRAME.link, self._free_list(o))
        self.st(r.frame(pfn) + FRAME.info, FRAME_USED | order)
        self.st(r.header + HEADER.free_frames,
                self.ld(r.header + HEADER.free_frames) - (1 << order))
        self.unlock(self.frames_lock)
        return pfn

    def free_frames(self):
        """Frames on the free lists (a bookkeeping read, for statistics)."""
        return self.peek(self.regions.header + HEADER.free_frames)

    # Provided by the slab layer.
    RECLAIM_ALL = 1

    def slab_reclaim_all_caches(self, flags):
        return 0
