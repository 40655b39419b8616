"""smpsim/engine/slabopts.py: constructors and destructors, colouring and slab locks, on one CPU
step by step and on 2 to 8 CPUs through Machine.run, each ending with m.check()."""

import logging
import random
import struct

import pytest

import smpsim
from smpsim import FRAME_ATOMIC, SLAB_CACHE_NOMAGAZINE, SLAB_RECLAIM_ALL, Machine
from smpsim.engine.layout import CACHE, CACHE_EXT, FN_MAX, PAGE_SIZE, SLAB

import option_helpers
from test_faults import churn

H = "option_helpers"
_Q = struct.Struct("<Q")


def constructed(k, addr):
    return _Q.unpack_from(k.memory, addr + 8)[0] == option_helpers.MAGIC


def counts(m, name):
    c = m.stats()["caches"][name]
    return c["constructed"], c["destructed"]


# --- constructors and destructors -------------------------------------------------------------

def test_objects_in_magazines_stay_constructed():
    """Bonwick's point: an object is constructed when it leaves its slab, not when it is
    allocated; through the magazines it is reused constructed, and destructed only on its way
    back to its slab (here: reclaim)."""
    with Machine(2, "4M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 100, ctor=f"{H}:construct", dtor=f"{H}:destruct")
        objs = [k.slab_alloc(c) for _ in range(20)]
        assert all(constructed(k, a) for a in objs)
        assert counts(m, "obj") == (20, 0)
        for a in objs:
            k.slab_free(c, a)                      # into magazines: still constructed
        assert counts(m, "obj") == (20, 0)
        again = [k.slab_alloc(c) for _ in range(20)]
        assert set(again) == set(objs) and all(constructed(k, a) for a in again)
        assert counts(m, "obj") == (20, 0)         # no constructor call for any of them
        for a in again:
            k.slab_free(c, a)
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        assert counts(m, "obj") == (20, 20)
        assert m.stats()["caches"]["obj"]["slabs"] == 0
        m.check()


def test_without_magazines_every_allocation_constructs():
    with Machine(2, "4M") as m:
        k = m.cpu(1)
        c = k.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE, ctor=f"{H}:construct",
                                dtor=f"{H}:destruct")
        for _ in range(3):
            objs = [k.slab_alloc(c) for _ in range(50)]
            for a in objs:
                k.slab_free(c, a)
        assert counts(m, "obj") == (150, 150)
        m.check()


def test_kalloc_caches_and_caches_without_functions_call_nothing():
    with Machine(1, "2M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("plain", 64)
        k.slab_free(c, k.slab_alloc(c))
        k.kfree(k.kalloc(64))
        assert all(v["constructed"] == v["destructed"] == 0 for v in m.stats()["caches"].values())


@pytest.mark.parametrize("ctor,why", [
    ("refuse", "returned 12"),
    ("explode", "raised RuntimeError: no resources for this object")])
def test_a_failing_constructor_fails_the_allocation_and_loses_nothing(ctor, why):
    with Machine(2, "4M") as m:
        k = m.cpu(0)
        boot_free = m.stats()["frames"]["free"]
        c = k.slab_cache_create("obj", 100, ctor=f"{H}:{ctor}", dtor=f"{H}:destruct")
        with pytest.raises(smpsim.OutOfMemory) as e:
            k.slab_alloc(c)
        assert str(e.value) == (f"slab_alloc: no object for an object of 'obj': the "
                                f"constructor {H}:{ctor} of cache 'obj' {why}")
        assert k.slab_alloc(c, FRAME_ATOMIC) is None
        st = m.stats()
        assert st["caches"]["obj"]["allocated"] == 0 and st["caches"]["obj"]["slabs"] == 0
        assert st["caches"]["obj"]["ctor_failures"] == 2
        assert counts(m, "obj") == (0, 0)          # never constructed, so never destructed
        assert st["frames"]["free"] == boot_free - 0   # the slab went back at once
        m.check()


def test_a_constructor_failing_now_and_then_under_kalloc_style_traffic():
    with Machine(1, "4M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 64, 0, SLAB_CACHE_NOMAGAZINE,
                                ctor=f"{H}:refuse_every_third", dtor=f"{H}:destruct")
        live, failed = [], 0
        for _ in range(300):
            a = k.slab_alloc(c, FRAME_ATOMIC)
            if a is None:
                failed += 1
            else:
                assert constructed(k, a)
                live.append(a)
        assert failed == 100
        assert m.stats()["caches"]["obj"]["allocated"] == 200
        m.check()
        for a in live:
            k.slab_free(c, a)
        assert counts(m, "obj") == (200, 200)
        m.check()


def test_a_destructor_that_raises_is_logged_counted_and_the_object_goes_back(caplog):
    with Machine(1, "2M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE, ctor=f"{H}:construct",
                                dtor=f"{H}:explode")
        a = k.slab_alloc(c)
        with caplog.at_level(logging.ERROR, logger="smpsim.engine.slab"):
            k.slab_free(c, a)
        assert f"destructor {H}:explode of cache obj raised on {a:#x}: RuntimeError" in caplog.text
        st = m.stats()["caches"]["obj"]
        assert (st["destructed"], st["dtor_errors"], st["slabs"], st["allocated"]) == (1, 1, 0, 0)
        m.check()


@pytest.mark.parametrize("arg,value,msg", [
    ("ctor", "construct", "slab_cache_create: 'ctor' must be None or a 'module:function' "
                          f"string of at most {FN_MAX} characters, got 'construct'"),
    ("dtor", 42, "slab_cache_create: 'dtor' must be None or a 'module:function' string"),
    ("ctor", "no_such_module_here:f", "slab_cache_create: 'ctor' 'no_such_module_here:f' "
                                      "cannot be used: No module named 'no_such_module_here'"),
    ("dtor", f"{H}:missing", f"slab_cache_create: 'dtor' '{H}:missing' cannot be used: module "
                             f"'{H}' has no attribute 'missing'"),
    ("ctor", f"{H}:NOT_CALLABLE", f"slab_cache_create: 'ctor' '{H}:NOT_CALLABLE' cannot be "
                                  f"used: {H}:NOT_CALLABLE is not callable"),
    ("ctor", "m:" + "f" * FN_MAX, "slab_cache_create: 'ctor' must be None or a "
                                  "'module:function' string"),
])
def test_bad_constructor_arguments_change_nothing(arg, value, msg):
    with Machine(1, "1M") as m:
        k = m.cpu(0)
        before = m.stats()["caches"]
        with pytest.raises(smpsim.BadArgument) as e:
            k.slab_cache_create("obj", 100, **{arg: value})
        assert str(e.value).startswith(msg)
        assert m.stats()["caches"] == before
        m.check()


def test_a_constructor_may_not_call_the_allocator():
    with Machine(1, "2M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 64, ctor=f"{H}:reenter")
        with pytest.raises(smpsim.OutOfMemory, match=r"the constructor option_helpers:reenter "
                                                     r"of cache 'obj' raised SmpsimError: cache: "
                                                     r"a constructor or destructor may not call "
                                                     r"the allocator \(it runs inside it\)$"):
            k.slab_alloc(c)
        m.check()


def test_the_constructor_gets_the_kernel_of_the_cpu_doing_the_work():
    with Machine(3, "4M") as m:
        m.cpu(0).slab_cache_create("obj", 64, 0, SLAB_CACHE_NOMAGAZINE,
                                   ctor=f"{H}:record_cpu")
        assert m.run(_alloc_and_read_cpu, cpus=[2, 1]) == [2, 1]
        m.check()


def _alloc_and_read_cpu(k):
    c = k.cache("obj")
    a = k.slab_alloc(c)
    who = _Q.unpack_from(k.memory, a + 8)[0] - 1
    k.slab_free(c, a)
    return who


def churn_constructed(k, name, n, seed):
    """Random allocations and frees of cache `name`; every object allocated must be
    constructed (its constructor ran, here or on another CPU, and no destructor since)."""
    c = k.cache(name)
    rnd = random.Random(seed * 100 + k.cpu_id)
    live, bad, failed = [], 0, 0
    for _ in range(n):
        if live and rnd.random() < 0.5:
            k.slab_free(c, live.pop(rnd.randrange(len(live))))
        else:
            a = k.slab_alloc(c, FRAME_ATOMIC)
            if a is None:
                failed += 1
                continue
            bad += not constructed(k, a)
            live.append(a)
    for a in live:
        k.slab_free(c, a)
    return bad, failed


@pytest.mark.parametrize("cpus,flags,ctor", [(2, 0, "construct"),
                                             (4, 0, "refuse_every_third"),
                                             (4, SLAB_CACHE_NOMAGAZINE, "construct")])
def test_constructed_objects_on_several_cpus(cpus, flags, ctor):
    """Objects move between CPUs' magazines, the shared list and slabs: each one is handed out
    constructed, and constructed - destructed is the objects out of their slabs."""
    with Machine(cpus, "8M", magazine_size=3) as m:
        m.cpu(0).slab_cache_create("obj", 96, 0, flags, ctor=f"{H}:{ctor}",
                                   dtor=f"{H}:destruct")
        results = m.run(churn_constructed, "obj", 4000, 5, timeout=120)
        assert sum(bad for bad, _ in results) == 0
        if ctor == "construct":
            assert sum(failed for _, failed in results) == 0
        else:
            assert sum(failed for _, failed in results) > 0
        st = m.stats()["caches"]["obj"]
        assert st["constructed"] - st["destructed"] == st["allocated"] + st["cached"] == \
            st["cached"]
        assert st["dtor_errors"] == 0
        m.check()
        m.cpu(0).slab_reclaim(SLAB_RECLAIM_ALL)
        st = m.stats()["caches"]["obj"]
        assert st["constructed"] == st["destructed"] and st["slabs"] == 0
        m.check()


def test_debugging_mode_keeps_constructed_bytes_and_checks_the_red_zone():
    with Machine(1, "4M", debug=True) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 100, ctor=f"{H}:construct", dtor=f"{H}:destruct")
        a = k.slab_alloc(c)
        assert constructed(k, a)
        k.slab_free(c, a)
        b = k.slab_alloc(c)
        assert b == a and constructed(k, b)       # no free pattern over a constructed object
        k.memory[b + 100] = 0                      # past the caller's 100 bytes
        with pytest.raises(smpsim.DebugError, match="red zone overrun"):
            k.slab_free(c, b)
        m.check()


# --- colouring --------------------------------------------------------------------------------

def _colours(k, c, slabs):
    """The colour offsets of `slabs` successive new slabs of cache c (one object of each kept)."""
    out, keep = [], []
    for _ in range(slabs):
        objs = [k.slab_alloc(c) for _ in range(c.objects)]
        slab = k._sa.frame_parent(objs[0])
        start = k._sa.peek(slab + SLAB.start)
        out.append(start % (PAGE_SIZE << c.order))
        keep += objs
    return out, keep


@pytest.mark.parametrize("size,align,expect", [
    (640, 0, [0, 64, 128, 192, 0, 64]),          # slack 208: four colours
    (600, 128, [0, 128, 0, 128, 0, 128]),        # 640 aligned to 128: colours step 128
    (8, 0, [0, 0, 0]),                           # no slack at all
    (100, 0, [0, 64, 0, 64]),                    # slack 96
    (24576, 4096, [0, 4096, 0]),                 # order 3, slack 8144 in steps of 4096: the
])                                               # first object a whole page in
def test_successive_slabs_take_successive_colours(size, align, expect):
    with Machine(1, "4M", colour=True) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", size, align, SLAB_CACHE_NOMAGAZINE)
        got, keep = _colours(k, c, len(expect))
        assert got == expect
        assert all(a % max(align, 8) == 0 for a in keep)
        ext = k._sa._ext(c._addr)
        assert k._sa.peek(ext + CACHE_EXT.colour_step) == max(64, align)
        m.check()
        for a in keep:
            k.slab_free(c, a)
        assert m.stats()["caches"]["obj"]["slabs"] == 0
        m.check()


def test_without_colour_every_slab_starts_at_its_frames():
    with Machine(1, "4M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 640, 0, SLAB_CACHE_NOMAGAZINE)
        assert _colours(k, c, 5)[0] == [0] * 5


@pytest.mark.parametrize("cpus", [2, 5])
def test_colour_on_several_cpus(cpus):
    from test_stress import CACHES, SIZES, WORD, exchange
    with Machine(cpus, "16M", colour=True) as m:
        k = m.cpu(0)
        boot_free = m.stats()["frames"]["free"]
        made = [k.slab_cache_create(*c) for c in CACHES]
        mailbox = k.kalloc(cpus * (1 + 3 * 40) * WORD)
        results = m.run(exchange, made, SIZES, 12, 40, mailbox, 0, 3, timeout=120)
        assert sum(r["corrupt"] for r in results) == 0
        m.check()
        k.kfree(mailbox)
        for c in made:
            k.slab_cache_destroy(c)
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        assert m.stats()["frames"]["free"] == boot_free
        m.check()


# --- slab locks -------------------------------------------------------------------------------

def test_slab_locks_are_counted_and_named():
    with Machine(2, "4M", slab_locks=True) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)
        objs = [k.slab_alloc(c) for _ in range(60)]          # two slabs of 38
        names = [n for n, _ in k._sa.all_locks() if n.startswith("obj.slab@")]
        assert len(names) == 2
        for a in objs:
            k.slab_free(c, a)
        st = m.stats()["locks"]
        assert "obj.slablocks" in st and not any(".slab@" in n for n in st)
        # 60 allocations and 60 frees, each once under its slab's lock (more for the frees
        # that move a slab between lists): all kept after the slabs were freed.
        assert st["obj.slablocks"]["acquisitions"] >= 120
        m.check()


def test_a_free_that_keeps_its_slab_partial_takes_only_the_slab_lock():
    with Machine(1, "4M", slab_locks=True) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)
        objs = [k.slab_alloc(c) for _ in range(10)]
        slablock = m.stats()["locks"]["obj.slablock"]["acquisitions"]
        for a in objs[:5]:
            k.slab_free(c, a)
        assert m.stats()["locks"]["obj.slablock"]["acquisitions"] == slablock
        m.check()
    with Machine(1, "4M") as m:                               # the seed: once per free
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)
        objs = [k.slab_alloc(c) for _ in range(10)]
        slablock = m.stats()["locks"]["obj.slablock"]["acquisitions"]
        for a in objs[:5]:
            k.slab_free(c, a)
        assert m.stats()["locks"]["obj.slablock"]["acquisitions"] == slablock + 5


def test_allocation_tries_past_a_slab_whose_lock_is_taken():
    """Two partial slabs; CPU 0 holds the first one's lock: CPU 1's allocation takes an object
    of the second instead of waiting."""
    with Machine(2, "4M", slab_locks=True) as m:
        k0, k1 = m.cpu(0), m.cpu(1)
        c = k0.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)
        objs = [k0.slab_alloc(c) for _ in range(2 * c.objects)]
        first = k0._sa.frame_parent(objs[0])
        second = k0._sa.frame_parent(objs[-1])
        k0.slab_free(c, objs[0])
        k0.slab_free(c, objs[-1])                  # both slabs partial, `second` listed first
        head = k0._sa.peek(c._addr + CACHE.partial_slabs + 8) - SLAB.link
        assert head == second
        lock = k0._sa._slab_lock_of(c._addr, second)
        k0._sa.lock(lock)
        try:
            a = k1.slab_alloc(c)
        finally:
            k0._sa.unlock(lock)
        assert k0._sa.frame_parent(a) == first
        k1.slab_free(c, a)
        m.check()


def test_debugging_mode_checks_the_slab_locks_place_in_the_order():
    with Machine(1, "4M", slab_locks=True, debug=True) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)
        a = k.slab_alloc(c)
        slab = k._sa.frame_parent(a)
        lock = k._sa._slab_lock_of(c._addr, slab)
        k._sa.lock(lock)
        try:
            with pytest.raises(smpsim.LockOrderError) as e:
                k._sa.lock(c._addr + CACHE.slablock)
        finally:
            k._sa.unlock(lock)
        base = k._sa.peek(slab + SLAB.start) & ~(PAGE_SIZE - 1)
        assert str(e.value) == (f"CPU 0 takes obj.slablock (rank 4) while holding "
                                f"obj.slab@{base:#x} (rank 5): against the lock order of "
                                f"smpsim/engine/locks.py")
        k.slab_free(c, a)
        m.check()


@pytest.mark.parametrize("cpus,debug", [(2, False), (4, True), (8, False)])
def test_slab_locks_on_several_cpus(cpus, debug):
    with Machine(cpus, "8M", slab_locks=True, debug=debug) as m:
        k = m.cpu(0)
        k.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)
        k.slab_cache_create("big", 3000, 0, SLAB_CACHE_NOMAGAZINE)     # slabs of 1 object
        assert m.run(churn, "obj", 3000 if not debug else 600, 1, timeout=120) == \
            [3000 if not debug else 600] * cpus
        assert m.run(churn, "big", 300, 2, timeout=120) == [300] * cpus
        st = m.stats()
        assert st["caches"]["obj"]["slabs"] == 0 and st["caches"]["big"]["slabs"] == 0
        m.check()
