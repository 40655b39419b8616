"""smpsim/engine/slab.py: the seed's geometry for every size, real caches for a sample, and the seed's
magazine and reclaim behaviour step by step."""
import pytest

import smpsim
from smpsim import SLAB_CACHE_NOMAGAZINE, SLAB_CACHE_SLINSIDE, SLAB_RECLAIM_ALL, geometry

PAGE = 4096
SLAB_T = 48


def seed_geometry(size, align=0, flags=0):
    """A transliteration of the seed's _slab_cache_create, comp_objects and badness, written
    apart from smpsim/engine/slab.py to check it."""
    def comp_objects(order, flags):
        if flags & SLAB_CACHE_SLINSIDE:
            return ((PAGE << order) - SLAB_T) // size
        return (PAGE << order) // size

    def badness(order, flags):
        ssize = PAGE << order
        if flags & SLAB_CACHE_SLINSIDE:
            ssize -= SLAB_T
        return ssize - comp_objects(order, flags) * size

    if align < 8:
        align = 8
    size = (size + align - 1) & ~(align - 1)
    if size < PAGE >> 3:
        flags |= SLAB_CACHE_SLINSIDE
    pages = ((size - 1) >> 12) + 1
    order = pages.bit_length() - 1
    while badness(order, flags) > (PAGE << order) >> 2:
        order += 1
    objects = comp_objects(order, flags)
    if badness(order, flags) > SLAB_T:
        flags |= SLAB_CACHE_SLINSIDE
    return size, order, objects, flags


def test_worked_examples_of_spec():
    assert geometry(8) == (8, 0, 506, SLAB_CACHE_SLINSIDE)            # malloc-8: In
    assert geometry(4096) == (4096, 0, 1, 0)                          # malloc-4K: Out
    assert geometry(16385) == (16392, 4, 3, SLAB_CACHE_SLINSIDE)      # grows to order 4, In
    assert geometry(100) == (104, 0, 38, SLAB_CACHE_SLINSIDE)


def test_geometry_of_every_size_from_1_to_131072():
    for size in range(1, 131073):
        assert geometry(size) == seed_geometry(size), size


@pytest.mark.parametrize("align", [16, 64, 512, 4096])
def test_geometry_with_alignment(align):
    for size in list(range(1, 5000, 7)) + [65535, 131072]:
        assert geometry(size, align) == seed_geometry(size, align), (size, align)
    assert geometry(1, 0, SLAB_CACHE_NOMAGAZINE)[3] & SLAB_CACHE_NOMAGAZINE


SAMPLE = [1, 7, 8, 9, 100, 511, 512, 1000, 2049, 4095, 4096, 4097, 16385, 50000, 131072]


@pytest.mark.parametrize("size", SAMPLE)
def test_real_caches_have_the_geometry(size):
    with smpsim.Machine(cpus=1, memory="8M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create(f"s{size}", size, 0, SLAB_CACHE_NOMAGAZINE)
        want = seed_geometry(size, 0, SLAB_CACHE_NOMAGAZINE)
        assert (c.size, c.order, c.objects, c.flags) == want
        st = m.stats()["caches"][c.name]
        assert (st["size"], st["pages"], st["objects"]) == (want[0], 1 << want[1], want[2])
        assert st["inside"] == bool(want[3] & SLAB_CACHE_SLINSIDE)
        # One slab holds exactly `objects`: the next allocation makes a second slab.
        objs = [k.slab_alloc(c) for _ in range(c.objects)]
        assert m.stats()["caches"][c.name]["slabs"] == 1
        assert len(set(objs)) == c.objects and all(a % 8 == 0 for a in objs)
        assert max(objs) - min(objs) == (c.objects - 1) * c.size
        extra = k.slab_alloc(c)
        assert m.stats()["caches"][c.name]["slabs"] == 2
        m.check()
        for a in objs + [extra]:
            k.slab_free(c, a)
        assert m.stats()["caches"][c.name]["slabs"] == 0              # empty slabs freed at once
        m.check()


def test_alignment_is_honoured():
    with smpsim.Machine(cpus=1, memory="8M") as m:
        k = m.cpu(0)
        for align in (8, 64, 256, 4096):
            c = k.slab_cache_create(f"a{align}", 100, align)
            objs = [k.slab_alloc(c) for _ in range(5)]
            assert all(a % align == 0 for a in objs)
            for a in objs:
                k.slab_free(c, a)
        m.check()


def test_magazines_follow_the_seed_then_reclaim_counts_like_it():
    """magazine_size 4: frees fill current, then last; the ninth free needs a new magazine and
    sends last to the shared list. Light reclaim destroys shared magazines only, and counts the
    frames of slabs it empties; full reclaim also empties the CPU's pair."""
    with smpsim.Machine(cpus=2, memory="8M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("node", 100)
        objs = [k.slab_alloc(c) for _ in range(12)]           # one slab of 38
        for a in objs:
            k.slab_free(c, a)
        st = m.stats()["caches"]["node"]
        assert (st["cached"], st["allocated"], st["slabs"], st["magazines"]) == (12, 0, 1, 1)
        assert m.stats()["caches"]["slab_magazine"]["allocated"] == 3
        # LIFO: the last object freed comes back first, from this CPU's current magazine.
        assert k.slab_alloc(c) == objs[-1]
        k.slab_free(c, objs[-1])
        assert k.slab_reclaim() == 0                      # 4 back to the slab; it is not empty
        st = m.stats()["caches"]["node"]
        assert (st["cached"], st["magazines"]) == (8, 0)
        assert k.slab_reclaim(SLAB_RECLAIM_ALL) == 1      # the CPU pair: the slab empties
        st = m.stats()["caches"]["node"]
        assert (st["cached"], st["slabs"]) == (0, 0)
        m.check()


def test_full_reclaim_can_leave_work_for_a_second_one():
    """Descriptors of an Out cache freed by a full reclaim land in slab_extern's magazines,
    after slab_extern was visited: a second full reclaim frees them (the seed's order)."""
    with smpsim.Machine(cpus=1, memory="8M") as m:
        k = m.cpu(0)
        boot_free = m.stats()["frames"]["free"]
        xs = [k.kalloc(1024) for _ in range(12)]              # malloc-1K is Out
        for x in xs:
            k.kfree(x)
        first = k.slab_reclaim(SLAB_RECLAIM_ALL)
        second = k.slab_reclaim(SLAB_RECLAIM_ALL)
        assert first == 3 and second == 1
        assert k.slab_reclaim(SLAB_RECLAIM_ALL) == 0
        assert m.stats()["frames"]["free"] == boot_free
        m.check()


def test_nomagazine_cache_goes_straight_to_slabs():
    with smpsim.Machine(cpus=2, memory="8M") as m:
        k = m.cpu(1)
        c = k.slab_cache_create("raw", 64, 0, SLAB_CACHE_NOMAGAZINE)
        a = k.slab_alloc(c)
        k.slab_free(c, a)
        st = m.stats()
        assert st["caches"]["raw"]["cached"] == 0 and st["caches"]["raw"]["slabs"] == 0
        assert "raw.cpu0" not in st["locks"] and st["locks"]["raw.slablock"]["acquisitions"] == 3  # twice on the new-slab path
        m.check()


def test_magazine_size_option_sets_the_magazine_cache():
    with smpsim.Machine(cpus=1, memory="4M", magazine_size=1) as m:
        assert m.stats()["caches"]["slab_magazine"]["size"] == 32 + 8
    with smpsim.Machine(cpus=1, memory="4M", magazine_size=1024) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("big", 8)
        objs = [k.slab_alloc(c) for _ in range(3000)]
        for a in objs:
            k.slab_free(c, a)
        assert m.stats()["caches"]["big"]["cached"] == 3000       # two magazines of 1024 + 952
        m.check()
