"""smpsim/engine/slab.py, reclaim: the seed's slab_reclaim and _slab_reclaim, rule by rule.

Light reclaim (flags 0) takes magazines off the tail of each cache's shared list (the oldest:
frees prepend) and destroys them, and stops in that cache as soon as the magazines destroyed so
far emptied a slab; while they empty none it goes on. It takes at most as many magazines as the
cache's counter held when it started, however many other CPUs add meanwhile. It visits every
cache in creation order. SLAB_RECLAIM_ALL destroys every shared magazine and every CPU's pair.

The machines here use a cache of 1000-byte objects, four to a one-page slab, so that which
magazine holds which objects decides exactly which slabs a reclaim empties.
"""
import pytest

import smpsim
from smpsim import PAGE_SIZE, SLAB_RECLAIM_ALL


def by_slab(objs):
    """The objects grouped by the one-page slab holding them, in allocation order."""
    slabs = {}
    for a in objs:
        slabs.setdefault(a // PAGE_SIZE, []).append(a)
    return list(slabs.values())


def new_cache(k, name="r"):
    c = k.slab_cache_create(name, 1000)
    assert (c.size, c.order, c.objects) == (1000, 0, 4)
    return c


def magazines(m, name="r"):
    return m.stats()["caches"][name]["magazines"]


def test_light_reclaim_takes_the_tail_goes_on_while_nothing_is_freed_and_stops_at_frames():
    """magazine_size 4 on CPU 0: frees 1-4 fill magazine A, 5-8 B, 9-12 C, 13-16 D, 17-20 E.
    B, A and then C are pushed to the shared list, so it reads C, B, A from head to tail, and
    D, E are the CPU's pair. A holds half of two slabs (destroying it empties none), B and C a
    whole slab each."""
    with smpsim.Machine(cpus=2, memory="8M", magazine_size=4) as m:
        k = m.cpu(0)
        c = new_cache(k)
        s = by_slab([k.slab_alloc(c) for _ in range(24)])
        assert [len(x) for x in s] == [4] * 6
        mag_a = [s[0][0], s[0][1], s[1][0], s[1][1]]
        kept = [s[0][2], s[0][3], s[1][2], s[1][3]]     # stay allocated
        for a in mag_a + s[2] + s[3] + s[4] + s[5]:      # A, B, C, D, E
            k.slab_free(c, a)
        st = m.stats()["caches"]["r"]
        assert (st["magazines"], st["cached"], st["slabs"]) == (3, 20, 6)
        free_before = m.stats()["frames"]["free"]

        # A (tail) empties no slab: go on; B empties s[2]: stop. C stays on the list.
        assert k.slab_reclaim() == 1
        st = m.stats()["caches"]["r"]
        assert (st["magazines"], st["cached"], st["slabs"]) == (1, 12, 5)
        assert m.stats()["frames"]["free"] == free_before + 1
        # CPU 1's pair is empty, so its allocation imports the one shared magazine left: C,
        # whose top object is the last one freed into it.
        assert m.cpu(1).slab_alloc(c) == s[3][-1]
        # A's objects went back to their slabs, CPU 0's pair (E current, D last) is untouched.
        assert [k.slab_alloc(c) for _ in range(8)] == s[5][::-1] + s[4][::-1]
        m.check()

        # The next light reclaim: C (its top object is out) empties nothing, the list is empty.
        assert k.slab_reclaim() == 0
        assert magazines(m) == 0
        m.check()


def test_light_reclaim_stops_only_when_frames_were_freed():
    """Three shared magazines that each empty a slab: light reclaim destroys the oldest only;
    three that empty none: it destroys all three."""
    with smpsim.Machine(cpus=1, memory="8M", magazine_size=4) as m:
        k = m.cpu(0)
        c = new_cache(k)
        s = by_slab([k.slab_alloc(c) for _ in range(20)])
        for a in s[0] + s[1] + s[2] + s[3] + s[4]:       # A..C shared, D, E the pair
            k.slab_free(c, a)
        assert magazines(m) == 3
        assert k.slab_reclaim() == 1
        assert magazines(m) == 2
        assert m.cpu(0).slab_alloc(c) == s[4][-1]        # the pair is untouched
        m.check()

    with smpsim.Machine(cpus=1, memory="8M", magazine_size=4) as m:
        k = m.cpu(0)
        c = new_cache(k)
        s = by_slab([k.slab_alloc(c) for _ in range(24)])
        halves = [x[:2] for x in s]                      # two objects of each slab stay allocated
        for a in sum(halves, []) + s[0][2:] + s[1][2:]:  # 16 frees: A, B shared, C, D the pair
            k.slab_free(c, a)
        assert magazines(m) == 2
        # A = halves of s[0], s[1]; B = halves of s[2], s[3]: neither empties a slab.
        assert k.slab_reclaim() == 0
        assert magazines(m) == 0
        assert m.stats()["caches"]["r"]["cached"] == 8
        m.check()


@pytest.mark.parametrize("flags", [0, SLAB_RECLAIM_ALL])
def test_reclaim_takes_no_more_magazines_than_the_counter_held_at_its_start(flags):
    """While the reclaim takes magazines off the shared list, another CPU keeps putting new
    ones on it (here CPU 1, one full magazine each time one is taken, in the same process:
    a fixed interleaving of what CPUs racing the reclaim do). The reclaim takes the three
    that were there when it started and leaves the three that came later."""
    with smpsim.Machine(cpus=2, memory="8M", magazine_size=4) as m:
        k0, k1 = m.cpu(0), m.cpu(1)
        c = k0.slab_cache_create("r", 64)                # 63 objects to a slab
        k1_objs = [k1.slab_alloc(c) for _ in range(8 + 4 * 6)]
        k0_objs = [k0.slab_alloc(c) for _ in range(21)]
        for a in k0_objs[1:]:                            # 20 frees: 3 shared, the pair full
            k0.slab_free(c, a)
        for a in k1_objs[:8]:                            # CPU 1's pair full, nothing shared
            k1.slab_free(c, a)
        assert magazines(m) == 3
        later = iter([k1_objs[8 + 4 * i:12 + 4 * i] for i in range(6)])
        taken = []
        sa = k0._sa
        take = sa._get_mag_from_cache

        def take_and_race(cache, first):
            mag = take(cache, first)
            if not first and mag:                        # the reclaim took one off the tail
                taken.append(mag)
                for a in next(later, []):               # CPU 1: the first free pushes one
                    k1.slab_free(c, a)
            return mag

        sa._get_mag_from_cache = take_and_race
        try:
            k0.slab_reclaim(flags)
        finally:
            del sa._get_mag_from_cache
        assert len(taken) == 3
        assert magazines(m) == 3
        m.check()
        k0.slab_reclaim(SLAB_RECLAIM_ALL)
        assert magazines(m) == 0
        m.check()


def test_caches_are_visited_in_creation_order():
    """A full reclaim of a cache whose slab descriptors live outside the slab ("Out") frees
    those descriptors into slab_extern, a boot cache created before every other: slab_extern
    was visited already, so they stay cached there until the next reclaim."""
    with smpsim.Machine(cpus=1, memory="8M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("out", 2048)             # two to a page, descriptors outside
        assert not m.stats()["caches"]["out"]["inside"]
        objs = [k.slab_alloc(c) for _ in range(8)]        # four slabs, four descriptors
        assert m.stats()["caches"]["slab_extern"]["allocated"] == 4
        for a in objs:
            k.slab_free(c, a)
        assert m.stats()["caches"]["slab_extern"]["cached"] == 0
        assert k.slab_reclaim(SLAB_RECLAIM_ALL) == 4
        ext = m.stats()["caches"]["slab_extern"]
        assert (ext["allocated"], ext["cached"], ext["slabs"]) == (0, 4, 1)
        assert k.slab_reclaim(SLAB_RECLAIM_ALL) == 1     # now slab_extern's slab goes
        ext = m.stats()["caches"]["slab_extern"]
        assert (ext["cached"], ext["slabs"]) == (0, 0)
        m.check()


def test_full_reclaim_empties_every_cpus_pair_and_light_reclaim_none():
    """CPU 0 and CPU 1 each hold a pair (current and last) and nothing is shared: light
    reclaim frees nothing, a full one from CPU 0 destroys all four magazines."""
    with smpsim.Machine(cpus=3, memory="8M", magazine_size=4) as m:
        k0, k1 = m.cpu(0), m.cpu(1)
        c = new_cache(k0)
        s = by_slab([k0.slab_alloc(c) for _ in range(16)])
        for a in s[0] + s[1]:                            # CPU 0: current s[1], last s[0]
            k0.slab_free(c, a)
        for a in s[2] + s[3]:                            # CPU 1: current s[3], last s[2]
            k1.slab_free(c, a)
        st = m.stats()["caches"]["r"]
        assert (st["magazines"], st["cached"], st["slabs"]) == (0, 16, 4)
        mags_in_use = m.stats()["caches"]["slab_magazine"]["allocated"]
        assert mags_in_use == 4
        assert k0.slab_reclaim() == 0
        assert m.stats()["caches"]["r"]["cached"] == 16
        assert k0.slab_reclaim(SLAB_RECLAIM_ALL) == 4
        st = m.stats()["caches"]["r"]
        assert (st["cached"], st["slabs"]) == (0, 0)
        assert m.stats()["caches"]["slab_magazine"]["allocated"] == 0
        m.check()
        # Both pairs are gone, not left pointing at freed magazines: each CPU starts anew.
        for k, path in ((k0, "frames"), (k1, "slab")):     # a new slab, then its second object
            a = k.slab_alloc(c)
            assert k.last_path == path
            k.slab_free(c, a)
            assert k.last_path == "depot"                # a new, empty magazine
        m.check()
