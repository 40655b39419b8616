"""smpsim/engine/depot.py: magazine resizing, the empty-magazine list, the per-CPU magazine cache
and working-set reaping, step by step on one CPU and on 2 to 8 CPUs through Machine.run, each
ending with m.check()."""

import math

import pytest

from smpsim import SLAB_CACHE_NOMAGAZINE, SLAB_RECLAIM_ALL, Machine
from smpsim.engine import depot
from smpsim.engine.layout import CACHE, CACHE_EXT, CPU_MAGS, MAGAZINE, OPTIONS, SLAB
from smpsim.engine.options import SLAB_CACHE_MAGCACHE


def cycle(k, c, n):
    """Allocate n objects of c, then free them (LIFO)."""
    objs = [k.slab_alloc(c) for _ in range(n)]
    for a in reversed(objs):
        k.slab_free(c, a)


def owner(k, mag):
    """The cache a magazine is an object of."""
    return k._sa.peek(k._sa.frame_parent(mag) + SLAB.cache)


# --- resizing ---------------------------------------------------------------------------------

def contend(k, times):
    """Make this CPU's next `times` tries of a shared-list lock fail (as if another CPU held
    it), so that each of its acquisitions counts as contended."""
    sa = k._sa
    real = type(sa).trylock.__get__(sa)
    left = [times]

    def trylock(lock):
        if left[0] > 0:
            left[0] -= 1
            return False
        return real(lock)
    sa.trylock = trylock


def test_more_than_threshold_contended_acquisitions_grow_the_magazines(monkeypatch):
    now = [10 ** 12]
    monkeypatch.setattr(depot, "clock_ns", lambda sa=None: now[0])
    with Machine(1, "4M", resize_magazines=True, resize_threshold=3, resize_period=1.0) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 64)
        cycle(k, c, 40)                           # magazines on the shared list
        contend(k, 3)
        cycle(k, c, 40)
        assert m.stats()["caches"]["obj"]["magazine_size"] == 4     # 3: not more than 3
        now[0] += 2 * 10 ** 9                     # a new period: the count starts again
        contend(k, 3)
        cycle(k, c, 40)
        assert m.stats()["caches"]["obj"]["magazine_size"] == 4
        contend(k, 1)                             # the fourth in this period
        cycle(k, c, 40)
        st = m.stats()["caches"]["obj"]
        assert (st["magazine_size"], st["resizes"]) == (7, 1)
        cycle(k, c, 200)                          # new magazines are of 7, from slab_magazine_7
        sa = k._sa
        mag = sa.peek(sa._mags(c._addr) + CPU_MAGS.current)
        assert sa.peek(mag + MAGAZINE.size) == 7
        assert owner(k, mag) == k.cache("slab_magazine_7")._addr
        m.check()
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        m.check()


def test_resizing_steps_through_solaris_sizes_and_stops_at_the_largest(monkeypatch):
    monkeypatch.setattr(depot, "clock_ns", lambda sa=None: 10 ** 12)
    with Machine(1, "8M", magazine_size=1, resize_magazines=True, resize_threshold=0) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 32)
        sizes = []
        for _ in range(10):
            contend(k, 1)
            cycle(k, c, 400)
            sizes.append(m.stats()["caches"]["obj"]["magazine_size"])
        assert sizes == [3, 7, 15, 31, 47, 63, 95, 143, 143, 143]
        assert m.stats()["caches"]["obj"]["resizes"] == 8
        m.check()


def test_without_resizing_contention_changes_nothing():
    with Machine(1, "4M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 64)
        cycle(k, c, 40)
        contend(k, 50)                            # the seed never tries first
        cycle(k, c, 40)
        assert m.stats()["caches"]["obj"]["magazine_size"] == 4
        assert "slab_magazine_7" not in m.stats()["caches"]


def threadtest(k, name, rounds, batch):
    c = k.cache(name)
    for _ in range(rounds):
        cycle(k, c, batch)
    return rounds


@pytest.mark.parametrize("cpus,front", [(2, False), (4, True), (8, False)])
def test_resizing_on_several_cpus(cpus, front):
    """Threshold 0: every contended acquisition of the shared list grows the magazines, so that
    magazines of several sizes meet on the shared lists."""
    with Machine(cpus, "16M", resize_magazines=True, resize_threshold=0,
                 cpu_magazine_cache=front) as m:
        k = m.cpu(0)
        k.slab_cache_create("obj", 64)
        assert m.run(threadtest, "obj", 60, 40, timeout=120) == [60] * cpus
        m.check()
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        m.check()


# --- the empty-magazine list ------------------------------------------------------------------

def test_emptied_magazines_are_kept_and_reused():
    with Machine(1, "4M", empty_magazines=True) as m, Machine(1, "4M") as seed:
        for mach in (m, seed):
            k = mach.cpu(0)
            c = k.slab_cache_create("obj", 64)
            cycle(k, c, 40)                       # ten magazines, eight on the shared list
            mags = mach.stats()["caches"]["slab_magazine"]["allocated"]
            objs = [k.slab_alloc(c) for _ in range(40)]     # empties them again
            if mach is m:
                # The CPU gave up eight emptied magazines for full ones: kept, not freed.
                assert mach.stats()["caches"]["obj"]["empty_magazines"] == 8
                assert mach.stats()["caches"]["slab_magazine"]["allocated"] == mags
            else:
                assert mach.stats()["caches"]["slab_magazine"]["allocated"] == mags - 8
            for a in reversed(objs):
                k.slab_free(c, a)
            # Refilled: from the empty list, where the seed allocated eight new ones.
            assert mach.stats()["caches"]["slab_magazine"]["allocated"] == mags
            assert mach.stats()["caches"]["obj"]["empty_magazines"] == 0
        st, sst = m.stats(), seed.stats()
        assert st["locks"]["slab_magazine.slablock"]["acquisitions"] + 16 == \
            sst["locks"]["slab_magazine.slablock"]["acquisitions"]
        # Ten looks at the empty list before each new magazine of the first cycle, then eight
        # magazines put there and eight taken.
        assert st["locks"]["obj.emptylock"]["acquisitions"] == 10 + 16
        assert "obj.emptylock" not in sst["locks"]
        m.check()
        seed.check()
        k = m.cpu(0)
        objs = [k.slab_alloc(c) for _ in range(40)]
        assert m.stats()["caches"]["obj"]["empty_magazines"] == 8
        k.slab_reclaim()                          # even a light reclaim frees the empty list
        assert m.stats()["caches"]["obj"]["empty_magazines"] == 0
        m.check()
        for a in objs:
            k.slab_free(c, a)
        m.check()


def test_destroying_a_cache_frees_its_empty_magazines():
    with Machine(1, "4M", empty_magazines=True) as m:
        k = m.cpu(0)
        boot = m.stats()["caches"]["slab_magazine"]["allocated"]
        c = k.slab_cache_create("obj", 64)
        cycle(k, c, 40)
        cycle(k, c, 40)
        k.slab_cache_destroy(c)
        assert m.stats()["caches"]["slab_magazine"]["allocated"] == boot
        m.check()


@pytest.mark.parametrize("cpus,resize", [(2, False), (6, True)])
def test_empty_magazines_on_several_cpus(cpus, resize):
    with Machine(cpus, "16M", empty_magazines=True, resize_magazines=resize,
                 resize_threshold=1) as m:
        k = m.cpu(0)
        k.slab_cache_create("obj", 64)
        assert m.run(threadtest, "obj", 50, 30, timeout=120) == [50] * cpus
        m.check()
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        m.check()


# --- the per-CPU magazine cache ---------------------------------------------------------------

def test_magazines_come_from_the_per_cpu_magazine_cache():
    with Machine(2, "4M", cpu_magazine_cache=True) as m:
        k = m.cpu(1)
        front = k.cache("slab_magazine_cpu")
        assert front.flags & SLAB_CACHE_MAGCACHE and not front.flags & SLAB_CACHE_NOMAGAZINE
        c = k.slab_cache_create("obj", 64)
        cycle(k, c, 40)
        mag = k._sa.peek(k._sa._mags(c._addr) + CPU_MAGS.current)
        assert owner(k, mag) == front._addr
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        st = m.stats()
        # The destroyed magazines wait in CPU 1's magazines of slab_magazine_cpu ...
        assert st["caches"]["slab_magazine_cpu"]["cached"] > 0
        assert st["locks"]["slab_magazine_cpu.cpu1"]["acquisitions"] > 0
        # ... whose own magazines came from slab_magazine.
        fmag = k._sa.peek(k._sa._mags(front._addr) + CPU_MAGS.current)
        assert owner(k, fmag) == k._sa.mag_cache
        m.check()


def test_two_full_reclaims_give_every_frame_back():
    with Machine(2, "4M", cpu_magazine_cache=True, empty_magazines=True,
                 resize_magazines=True) as m:
        k = m.cpu(0)
        boot_free = m.stats()["frames"]["free"]
        c = k.slab_cache_create("big", 1000)            # outside descriptors: slab_extern too
        for _ in range(3):
            cycle(k, c, 60)
        k.slab_cache_destroy(c)
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        assert m.stats()["frames"]["free"] == boot_free
        m.check()


@pytest.mark.parametrize("cpus,debug", [(2, False), (3, True), (8, False)])
def test_per_cpu_magazine_cache_on_several_cpus(cpus, debug):
    with Machine(cpus, "16M", cpu_magazine_cache=True, debug=debug) as m:
        k = m.cpu(0)
        k.slab_cache_create("obj", 64)
        rounds = 15 if debug else 50
        assert m.run(threadtest, "obj", rounds, 30, timeout=120) == [rounds] * cpus
        m.check()


# --- working-set reaping ----------------------------------------------------------------------

def test_reap_destroys_what_stayed_unused_since_the_previous_reap():
    with Machine(1, "4M", reap_every=math.inf) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 256, 0, 0)
        cycle(k, c, 120)                          # 28 full magazines on the shared list
        shared = m.stats()["caches"]["obj"]["magazines"]
        assert shared == 28
        # The list was empty when the cache was made: nothing sat unused the whole interval.
        assert k.slab_reap() == 0
        assert m.stats()["caches"]["obj"]["magazines"] == 28
        # Now 10 are used (taken and given back); 18 never left the list.
        cycle(k, c, 48)
        frames = k.slab_reap()
        st = m.stats()
        assert st["caches"]["obj"]["magazines"] == 10
        assert st["reap"]["magazines"] == 18 and st["reap"]["calls"] == 2
        assert frames == st["reap"]["frames"] > 0
        # Nothing used since: all of them go at the next reap.
        k.slab_reap()
        assert m.stats()["caches"]["obj"]["magazines"] == 0
        m.check()


def test_the_reaped_magazines_are_the_oldest():
    with Machine(1, "4M", reap_every=math.inf) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 256)
        cycle(k, c, 40)
        sa = k._sa
        head = c._addr + CACHE.magazines
        listed = [link - MAGAZINE.link for link in sa.list_links(head, charged=False)]
        k.slab_reap()
        objs = [k.slab_alloc(c) for _ in range(12)]   # take the newest three, put them back
        for a in reversed(objs):
            k.slab_free(c, a)
        kept = {link - MAGAZINE.link for link in sa.list_links(head, charged=False)}
        k.slab_reap()
        left = {link - MAGAZINE.link for link in sa.list_links(head, charged=False)}
        assert left and left <= kept and not left & set(listed[-3:])
        m.check()


def test_reap_keeps_a_low_water_mark_below_the_list_length():
    with Machine(1, "4M", reap_every=math.inf) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 128)
        cycle(k, c, 60)
        k.slab_reap()
        ext = k._sa._ext(c._addr)
        assert k._sa.peek(ext + CACHE_EXT.depot_low) == m.stats()["caches"]["obj"]["magazines"]
        k.slab_reclaim(SLAB_RECLAIM_ALL)        # reclaim empties the list: the mark follows
        assert k._sa.peek(ext + CACHE_EXT.depot_low) == 0
        m.check()


def test_a_periodic_reap_runs_once_per_period_on_the_first_cpu_to_enter():
    """The due time is claimed with a compare-and-swap: of 4 CPUs entering the allocator, one
    reaps; the next is due a period later."""
    with Machine(4, "8M", reap_every=3600.0) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 128)
        cycle(k, c, 60)
        k._sa.poke(m.regions.options_line + OPTIONS.reap_due, 0)      # due now
        m.run(threadtest, "obj", 20, 20, timeout=120)
        assert m.stats()["reap"]["calls"] == 1
        due = k._sa.peek(m.regions.options_line + OPTIONS.reap_due)
        from smpsim.engine.options import clock_ns
        assert due > clock_ns() + 3000 * 10 ** 9
        m.check()


def burst_then_steady(k, name, burst, rounds, batch):
    import time
    c = k.cache(name)
    cycle(k, c, burst)
    k.barrier()
    for _ in range(rounds):
        cycle(k, c, batch)
        time.sleep(0.001)
    return rounds


@pytest.mark.parametrize("cpus", [2, 4])
def test_periodic_reaping_gives_a_burst_back(cpus):
    held = {}
    for reap in (None, 0.05):
        with Machine(cpus, "16M", reap_every=reap) as m:
            m.cpu(0).slab_cache_create("obj", 256)
            m.run(burst_then_steady, "obj", 1000, 150, 12, timeout=120)
            st = m.stats()
            held[reap] = st["caches"]["obj"]["slabs"]
            if reap:
                assert st["reap"]["calls"] >= 2 and st["reap"]["magazines"] > 0
            m.check()
    assert held[0.05] < held[None] / 2
