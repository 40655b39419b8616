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


def test_a_list_that_loops_without_its_head_is_reported_once_and_walked_once(m):
    """Two slabs on the partial list, the second linking back to the first: the walk stops at
    the repeated link (it used to go on for 2**24 links) and says so."""
    from smpsim.engine.layout import LINK
    k = m.cpu(0)
    c = k.slab_cache_create("big", 1000, 0, smpsim.SLAB_CACHE_NOMAGAZINE)
    objs = [k.slab_alloc(c) for _ in range(c.objects + 1)]    # one full slab, one partial
    k.slab_free(c, objs[0])                                   # both partial now
    head = c._addr + CACHE.partial_slabs
    first = k._sa.ld(head + LINK.next)
    second = k._sa.ld(first + LINK.next)
    k._sa.st(second + LINK.next, first)                       # the loop misses the head
    v = violations(m)
    assert v.count("cache big partial slabs: list does not end (a cycle)") == 1
