"""smpsim/engine/layout.py: the declared structures have the seed's sizes and the regions do not overlap."""
import pytest

from smpsim.engine import _atomics
from smpsim.engine.layout import (CACHE, CPU_CTL, CPU_MAGS, FRAME, HEADER, KERNEL, LINE, LINK, MAGAZINE,
                           PAGE_SIZE, SLAB, SPINLOCK, Regions, Struct)


def test_seed_struct_sizes():
    assert SLAB.sizeof == 48                      # the seed's slab_t on a 64-bit build
    assert list(SLAB.fields) == ["cache", "link", "start", "available", "nextavail"]
    assert MAGAZINE.sizeof == 32 and MAGAZINE.objs == 32
    assert LINK.sizeof == 16 and (LINK.prev, LINK.next) == (0, 8)


def test_spinlock_matches_the_c_extension():
    assert SPINLOCK.sizeof == _atomics.SPINLOCK_SIZE
    assert list(SPINLOCK.fields) == ["holder", "acquisitions", "contended", "spins"]


def test_per_cpu_data_is_line_padded():
    assert CPU_MAGS.sizeof == LINE and CPU_CTL.sizeof % LINE == 0
    assert CACHE.sizeof % LINE == 0 and CACHE.mag_cache % LINE == 0
    assert KERNEL.mag_cache % LINE == 0 and KERNEL.slab_cache_cache % LINE == 0
    # the locks of a cache do not share a line with each other
    assert CACHE.slablock // LINE != CACHE.maglock // LINE
    assert KERNEL.sizeof <= PAGE_SIZE


def test_a_field_cannot_hide_the_struct_size():
    with pytest.raises(AssertionError, match="would hide Struct.sizeof"):
        Struct("bad", [("sizeof", 8)])


@pytest.mark.parametrize("memory,cpus", [(1 << 20, 1), (64 << 20, 4), (1 << 30, 256)])
def test_regions_follow_memory_without_overlap(memory, cpus):
    r = Regions(memory, cpus)
    bounds = [(memory, r.header), (r.header + HEADER.sizeof, r.cpu_ctl),
              (r.cpu(cpus - 1) + CPU_CTL.sizeof, r.cache_ids),
              (r.frame(r.nframes - 1) + FRAME.sizeof, r.object_table)]
    for end, start in bounds:
        assert end <= start
    assert r.granule(memory - 8) + 2 <= r.size and r.size % PAGE_SIZE == 0
    assert r.nframes == memory // PAGE_SIZE
