"""smpsim/engine/check.py: each kind of damage is found, and every violation is listed, not just one."""
import pytest

import smpsim
from smpsim.engine.frames import FRAME_NO_RECLAIM
from smpsim.engine.layout import CACHE, CPU_CTL, KERNEL, SLAB


@pytest.fixture
def m():
    with smpsim.Machine(cpus=2, memory="8M") as m:
        yield m


def _setup(m):
    k = m.cpu(0)
    c = k.slab_cache_create("node", 100)
    objs = [k.slab_alloc(c) for _ in range(10)]
    return k, c, objs


def violations(m):
    with pytest.raises(smpsim.InvariantError) as e:
        m.check()
    assert str(e.value).startswith(f"{len(e.value.violations)} invariant violation(s):")
    return e.value.violations


def test_clean_machine_passes(m):
    _setup(m)
    assert m.check() is None


def test_a_held_lock(m):
    k, c, _ = _setup(m)
    k._sa.lock(c._addr + CACHE.slablock)
    assert violations(m) == ["lock node.slablock is held by CPU 0"]
    k._sa.unlock(c._addr + CACHE.slablock)
    m.check()


def test_a_cpu_left_inside_allocator_code(m):
    k, _, _ = _setup(m)
    k._sa.st(m.regions.cpu(1) + CPU_CTL.in_kernel, 2)
    assert violations(m) == ["CPU 1 is inside allocator code (slab_free): its operation did "
                             "not finish"]


def test_counters_off(m):
    k, c, _ = _setup(m)
    k._sa.fetch_add(c._addr + CACHE.allocated_objs, 1)
    k._sa.fetch_add(c._addr + CACHE.allocated_slabs, -1)
    v = violations(m)
    assert "cache node: allocated_objs is 11, the walk finds 10 allocated objects" in v
    assert "cache node: allocated_slabs is 0, the lists hold 1 slabs" in v
    assert len(v) == 2


def test_a_lost_object(m):
    k, c, objs = _setup(m)
    k._sa.h[m.regions.granule(objs[3]) >> 1] = 0            # neither free nor cached nor live
    v = violations(m)
    assert any(f"object {objs[3]:#x} is neither free nor cached" in x for x in v)


def test_a_corrupt_free_list(m):
    k, c, objs = _setup(m)
    slab = k._sa.frame_parent(objs[0])
    nxt = k._sa.ld(slab + SLAB.nextavail)
    first_free = k._sa.ld(slab + SLAB.start) + nxt * c.size
    k._sa.i32[first_free >> 2] = nxt                        # the free list loops on itself
    v = violations(m)
    assert any("free list holds" in x for x in v)


def test_an_object_both_free_and_cached(m):
    k, c, objs = _setup(m)
    k.slab_free(c, objs[0])                             # into CPU 0's magazine
    slab = k._sa.frame_parent(objs[0])
    idx = (objs[0] - k._sa.ld(slab + SLAB.start)) // c.size
    # Also push it on the slab's free list by hand.
    k._sa.i32[objs[0] >> 2] = k._sa.ld(slab + SLAB.nextavail)
    k._sa.st(slab + SLAB.nextavail, idx)
    k._sa.st(slab + SLAB.available, k._sa.ld(slab + SLAB.available) + 1)
    v = violations(m)
    assert f"cache node: object {objs[0]:#x} is free in its slab and in magazine" in " ".join(v)


def test_leaked_frames_and_free_count(m):
    k, _, _ = _setup(m)
    a = k._sa.frame_alloc(2, FRAME_NO_RECLAIM)
    v = violations(m)
    pfn = a >> 12
    assert v == [f"frames {pfn}..{pfn + 3} are allocated but no slab owns them (leaked)"]
    k._sa.frame_free(a)
    k._sa.st(m.regions.header + smpsim.engine.layout.HEADER.free_frames, k._sa.free_frames() + 1)
    assert any("free_frames is" in x for x in violations(m))


def test_a_stray_mark_in_the_object_table(m):
    k, c, objs = _setup(m)
    k._sa.h[m.regions.granule(objs[0] + 8) >> 1] = k._sa.ld(c._addr + CACHE.id)
    assert any(f"object table at {objs[0] + 8:#x}" in x for x in violations(m))


def test_many_violations_are_all_listed(m):
    k, c, objs = _setup(m)
    k._sa.lock(KERNEL.slab_cache_lock)
    k._sa.fetch_add(c._addr + CACHE.cached_objs, 5)
    k._sa.st(m.regions.cpu(0) + CPU_CTL.in_kernel, 1)
    v = violations(m)
    assert "lock slab_cache_lock is held by CPU 0" in v
    assert "cache node: cached_objs is 5, its magazines hold 0" in v
    assert "CPU 0 is inside allocator code (slab_alloc): its operation did not finish" in v
    assert len(v) == 3


# --- the options beyond the seed: each one's own broken states --------------------------------

import math  # noqa: E402

from smpsim.engine.layout import CACHE_EXT, CPU_MAGS, LINK, MAGAZINE, PAGE_SIZE  # noqa: E402
from smpsim.engine.options import STAGE_CTOR, STAGE_REAP  # noqa: E402


def _cycle(k, c, n):
    objs = [k.slab_alloc(c) for _ in range(n)]
    for a in reversed(objs):
        k.slab_free(c, a)


def _with_empty_list():
    m = smpsim.Machine(cpus=1, memory="4M", empty_magazines=True)
    k = m.cpu(0)
    c = k.slab_cache_create("node", 64)
    _cycle(k, c, 40)
    objs = [k.slab_alloc(c) for _ in range(40)]          # eight emptied magazines kept
    return m, k, c, objs


def test_option_empty_list_damage_is_found():
    m, k, c, objs = _with_empty_list()
    with m:
        m.check()
        sa = k._sa
        ext = sa._ext(c._addr)
        first = sa.peek(ext + CACHE_EXT.empty + LINK.next) - MAGAZINE.link
        sa.poke(first + MAGAZINE.busy, 2)
        sa.poke(ext + CACHE_EXT.empty_counter, 9)
        v = violations(m)
        assert f"cache node: magazine {first:#x} on the empty list holds 2 objects" in v
        assert "cache node: empty_counter is 9, the empty list holds 8" in v
        sa.poke(first + MAGAZINE.busy, 0)
        sa.poke(ext + CACHE_EXT.empty_counter, 8)
        m.check()
        # The CPU's current magazine also put on the empty list: in two places.
        cur = sa.peek(sa._mags(c._addr) + CPU_MAGS.current)
        sa.list_prepend(cur + MAGAZINE.link, ext + CACHE_EXT.empty)
        sa.poke(ext + CACHE_EXT.empty_counter, 9)
        assert any(f"magazine {cur:#x} is in two places" in x for x in violations(m))


def test_option_magazine_sizes_and_leaks_are_found():
    with smpsim.Machine(cpus=1, memory="4M", resize_magazines=True) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("node", 64)
        _cycle(k, c, 40)
        sa = k._sa
        sa.poke(c._addr + CACHE.magazine_size, 5)
        mag = sa.peek(sa._mags(c._addr) + CPU_MAGS.current)
        sa.poke(mag + MAGAZINE.size, 143)                 # an object of slab_magazine is 64 bytes
        v = violations(m)
        assert "cache node: magazine size 5 is neither the machine's (4) nor one of " \
               "[7, 15, 31, 47, 63, 95, 143]" in v
        assert any(f"magazine {mag:#x} in cache node's CPU 0's current holds up to 143 objects, "
                   f"more than an object of slab_magazine has room for" in x for x in v)
        sa.poke(c._addr + CACHE.magazine_size, 4)
        sa.poke(mag + MAGAZINE.size, 4)
        m.check()
        # A full magazine taken off the shared list and forgotten: its magazine is leaked (and
        # its objects are neither cached nor free).
        head = c._addr + CACHE.magazines
        lost = sa.peek(head + LINK.next) - MAGAZINE.link
        sa.list_remove(lost + MAGAZINE.link)
        sa.fetch_add(c._addr + CACHE.magazine_counter, -1)
        assert f"magazine {lost:#x} of cache slab_magazine is allocated but no cache holds it " \
               f"(leaked)" in violations(m)


def test_option_low_water_mark_above_the_list_is_found():
    with smpsim.Machine(cpus=1, memory="4M", reap_every=math.inf) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("node", 64)
        _cycle(k, c, 40)
        k._sa.poke(k._sa._ext(c._addr) + CACHE_EXT.depot_low, 9)
        assert violations(m) == ["cache node: the shared list's low-water mark is 9, above the "
                                 "8 magazines it holds"]


def test_option_a_slab_out_of_colour_is_found():
    with smpsim.Machine(cpus=1, memory="4M", colour=True) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("node", 640)
        objs = [k.slab_alloc(c) for _ in range(7)]        # a second slab: colour 64
        slab = k._sa.frame_parent(objs[-1])
        start = k._sa.peek(slab + SLAB.start)
        assert start % PAGE_SIZE == 64
        k._sa.poke(slab + SLAB.start, start + 8)
        assert any(f"cache node: slab {slab:#x} starts 72 bytes into its frames, not a colour "
                   f"(steps of 64 up to 192)" in x for x in violations(m))


def test_option_a_held_slab_lock_is_found():
    with smpsim.Machine(cpus=2, memory="4M", slab_locks=True) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("node", 100, 0, smpsim.SLAB_CACHE_NOMAGAZINE)
        a = k.slab_alloc(c)
        slab = k._sa.frame_parent(a)
        lock = k._sa._slab_lock_of(c._addr, slab)
        k._sa.lock(lock)
        base = k._sa.peek(slab + SLAB.start) & ~(PAGE_SIZE - 1)
        assert violations(m) == [f"lock node.slab@{base:#x} is held by CPU 0"]
        k._sa.unlock(lock)
        k.slab_free(c, a)                                  # the slab is gone; its lock held:
        k._sa.lock(lock)
        assert violations(m) == [f"lock slab lock of frame {base >> 12} is held by CPU 0"]
        k._sa.unlock(lock)
        m.check()


@pytest.mark.parametrize("stage,text", [
    (STAGE_CTOR, "it was running the constructor of cache node on 0x1000, which has left its "
                 "slab and is not allocated yet"),
    (STAGE_REAP, "it was reaping cache node: a magazine it took off the shared list may be half "
                 "destroyed")])
def test_option_windows_are_explained(m, stage, text):
    k, c, _ = _setup(m)
    ctl = m.regions.cpu(1)
    k._sa.poke(ctl + CPU_CTL.in_kernel, 1)
    k._sa.poke(ctl + CPU_CTL.stage, stage)
    k._sa.poke(ctl + CPU_CTL.stage_cache, c._addr)
    k._sa.poke(ctl + CPU_CTL.stage_obj, 0x1000)
    v = violations(m)
    assert len(v) == 1 and v[0].startswith("CPU 1 is inside allocator code (slab_alloc): its "
                                           "operation did not finish; " + text)
