"""smpsim/engine/frames.py: the buddy allocator, its frame table, and reclaim when it runs out."""
import pytest

import smpsim
from smpsim.engine.frames import FRAME_FREE, FRAME_NO_RECLAIM, FRAME_RESERVED, FRAME_USED
from smpsim.engine.layout import FRAME, MAX_ORDER, PAGE_SIZE


@pytest.mark.parametrize("memory", ["1M", 1 << 20 | 3 * PAGE_SIZE, "5M", "64M"])
def test_boot_reserves_frame_0_and_frees_the_rest(memory):
    with smpsim.Machine(cpus=1, memory=memory) as m:
        k = m.cpu(0)
        n = m.stats()["frames"]["total"]
        assert n == m.memory // PAGE_SIZE
        assert k._sa.ld(m.regions.frame(0) + FRAME.info) == FRAME_RESERVED
        used = n - 1 - m.stats()["frames"]["free"]
        assert used == m.stats()["caches"]["slab_cache"]["slabs"]   # the boot caches' descriptors
        m.check()


def test_alloc_splits_and_free_coalesces():
    with smpsim.Machine(cpus=1, memory="8M") as m:
        k = m.cpu(0)
        free0 = k._sa.free_frames()
        a = k._sa.frame_alloc(0, FRAME_NO_RECLAIM)
        b = k._sa.frame_alloc(3, FRAME_NO_RECLAIM)
        assert a % PAGE_SIZE == 0 and b % (8 * PAGE_SIZE) == 0
        assert k._sa.ld(k._sa.frame_entry(b) + FRAME.info) == FRAME_USED | 3
        assert k._sa.free_frames() == free0 - 9
        k._sa.frame_free(b)
        k._sa.frame_free(a)
        assert k._sa.free_frames() == free0
        # Coalesced back: a maximal block is free again.
        heads = [k._sa.ld(m.regions.frame(p) + FRAME.info) for p in range(m.regions.nframes)]
        assert FRAME_FREE | MAX_ORDER in heads
        m.check()


def test_exhaustion_returns_0_and_frees_give_it_back():
    with smpsim.Machine(cpus=1, memory="1M") as m:
        k = m.cpu(0)
        got = []
        while True:
            a = k._sa.frame_alloc(0, FRAME_NO_RECLAIM)
            if not a:
                break
            got.append(a)
        assert k._sa.free_frames() == 0 and len(set(got)) == len(got)
        assert 0 not in got and all(0 < a < m.memory for a in got)
        for a in got:
            k._sa.frame_free(a)
        st = m.stats()
        assert k._sa.free_frames() == st["frames"]["total"] - 1 - st["caches"]["slab_cache"]["slabs"]
        m.check()


def _fill_then_cache(m):
    """Fill memory with objects of a cache, then free them: most go to magazines, not frames."""
    k = m.cpu(0)
    c = k.slab_cache_create("fill", 2000)
    objs = []
    while (a := k.slab_alloc(c, smpsim.FRAME_ATOMIC)) is not None:
        objs.append(a)
    for a in objs:
        k.slab_free(c, a)
    assert m.stats()["caches"]["fill"]["cached"] > 0
    return k


def test_running_out_reclaims_magazines():
    """Objects cached in magazines are given back when the frame allocator runs out."""
    with smpsim.Machine(cpus=1, memory="1M") as m:
        k = _fill_then_cache(m)
        calls = m.stats()["reclaim"]["calls"]
        x = k.kalloc(100 * 1024)                       # 32 frames: only reclaim finds them
        assert m.stats()["reclaim"]["calls"] > calls
        k.kfree(x)
        m.check()


def test_no_reclaim_flag_fails_instead():
    with smpsim.Machine(cpus=1, memory="1M") as m:
        k = _fill_then_cache(m)
        calls = m.stats()["reclaim"]["calls"]
        assert k.kalloc(100 * 1024, smpsim.FRAME_ATOMIC | smpsim.FRAME_NO_RECLAIM) is None
        assert m.stats()["reclaim"]["calls"] == calls
        with pytest.raises(smpsim.OutOfMemory, match="kalloc: no memory left for 102400 bytes"):
            k.kalloc(100 * 1024, smpsim.FRAME_NO_RECLAIM)
        m.check()
