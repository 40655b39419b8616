"""Debugging mode (Machine(debug=True), smpsim/engine/debug.py): patterns, red zones, the audit trail,
the geometry with and without the trailer, and the lock-order check."""

import pytest

import smpsim
from smpsim import SLAB_CACHE_NOMAGAZINE, Machine
from smpsim.engine.debug import TRAILER, audit
from smpsim.engine.layout import CACHE, KERNEL

pytestmark = pytest.mark.timeout(60)

DEADBEEF = (0xDEADBEEF).to_bytes(4, "little")
BADDCAFE = (0xBADDCAFE).to_bytes(4, "little")


def churn(k, name, n):
    import random
    c = k.cache(name)
    rnd = random.Random(k.cpu_id)
    live = []
    for _ in range(n):
        if live and rnd.random() < 0.5:
            a = live.pop(rnd.randrange(len(live)))
            assert bytes(k.memory[a:a + 8]) == k.cpu_id.to_bytes(8, "little")
            k.slab_free(c, a)
        else:
            a = k.slab_alloc(c)
            k.memory[a:a + 8] = k.cpu_id.to_bytes(8, "little")
            live.append(a)
    for a in live:
        k.slab_free(c, a)
    return n


def write_after_free(k, name):
    """Free an object, scribble on it, and allocate until it comes back."""
    c = k.cache(name)
    a = k.slab_alloc(c)
    k.slab_free(c, a)
    k.memory[a + 20] = 0
    k.slab_alloc(c)


@pytest.fixture
def dm():
    with Machine(2, "8M", debug=True) as m:
        yield m


def test_geometry_is_the_seeds_without_debugging_and_enlarged_with_it():
    with Machine(1, "4M") as plain, Machine(1, "4M", debug=True) as debug:
        a = plain.cpu(0).slab_cache_create("node", 100)
        b = debug.cpu(0).slab_cache_create("node", 100)
        assert (a.size, a.order, a.objects) == smpsim.geometry(100)[:3] == (104, 0, 38)
        assert (b.size, b.order, b.objects) == smpsim.geometry(104 + TRAILER.sizeof)[:3]
        assert b.size == 144
        k = debug.cpu(0)
        assert k._sa.ld(b._addr + CACHE.objsize) == 100
        # The allocator's own caches keep the seed's geometry.
        for name in ("slab_magazine", "slab_cache", "slab_extern"):
            assert debug.stats()["caches"][name]["size"] == plain.stats()["caches"][name]["size"]
        assert debug.stats()["caches"]["malloc-8"]["size"] == 8 + TRAILER.sizeof
        plain.check()
        debug.check()


def test_fresh_objects_hold_baddcafe_and_freed_ones_deadbeef(dm):
    k = dm.cpu(0)
    c = k.slab_cache_create("node", 100)
    a = k.slab_alloc(c)
    assert bytes(k.memory[a:a + 100]) == (BADDCAFE * 25)
    k.memory[a:a + 100] = b"x" * 100
    k.slab_free(c, a)
    # In the magazine: the whole object holds the free pattern.
    assert bytes(k.memory[a:a + 100]) == DEADBEEF * 25
    assert k.slab_alloc(c) == a                          # LIFO: the same object again
    assert bytes(k.memory[a:a + 100]) == BADDCAFE * 25
    k.slab_free(c, a)
    dm.check()


def test_objects_of_a_new_slab_hold_the_free_pattern_but_the_free_list(dm):
    k = dm.cpu(0)
    c = k.slab_cache_create("node", 100, 0, SLAB_CACHE_NOMAGAZINE)
    a = k.slab_alloc(c)
    second = a + c.size
    assert bytes(k.memory[second + 4:second + 100]) == (DEADBEEF * 25)[4:100]
    assert int.from_bytes(k.memory[second:second + 4], "little") == 2   # the seed's index
    k.slab_free(c, a)
    dm.check()


def test_write_after_free_names_object_cache_and_freeing_cpu(dm):
    k = dm.cpu(1)
    c = k.slab_cache_create("node", 100)
    a = k.slab_alloc(c)
    k.slab_free(c, a)
    k.memory[a + 50] = 0x41
    with pytest.raises(smpsim.DebugError) as ei:
        k.slab_alloc(c)
    e = ei.value
    assert str(e) == (f"slab_alloc: write after free: object {a:#x} of cache 'node' was changed "
                      f"at offset 50 while free (byte 0x41 where 0xad belongs); CPU 1 freed it "
                      f"last (at its operation 2). The object is now allocated to CPU 1, left "
                      f"as found")
    assert (e.kind, e.obj, e.cache, e.cpu, e.offset) == ("write after free", a, "node", 1, 50)
    dm.check()                                          # consistent: the object is allocated
    assert dm.stats()["caches"]["node"]["allocated"] == 1
    k.slab_free(c, a)                                   # and can be freed
    dm.check()


def test_write_after_free_through_the_slab_layer_and_kalloc(dm):
    k = dm.cpu(0)
    c = k.slab_cache_create("node", 64, 0, SLAB_CACHE_NOMAGAZINE)
    a = k.slab_alloc(c)
    b = k.slab_alloc(c)
    k.slab_free(c, a)                                    # back in its slab (free list)
    k.memory[a + 8:a + 16] = b"\0" * 8
    with pytest.raises(smpsim.DebugError, match=rf"^slab_alloc: write after free: object "
                                                rf"{a:#x} of cache 'node' was changed at offset 8"):
        k.slab_alloc(c)
    k.slab_free(c, a)
    k.slab_free(c, b)
    x = k.kalloc(30)
    k.kfree(x)
    k.memory[x + 31] = 7
    with pytest.raises(smpsim.DebugError, match=rf"^kalloc: write after free: object {x:#x} of "
                                                r"cache 'malloc-32' was changed at offset 31"):
        k.kalloc(17)
    k.kfree(x)
    dm.check()


def test_red_zone_overrun_is_caught_at_free_and_changes_nothing(dm):
    k = dm.cpu(0)
    c = k.slab_cache_create("node", 100)
    a, b = k.slab_alloc(c), k.slab_alloc(c)
    k.memory[b:b + 100] = b"B" * 100
    k.memory[a:a + 101] = b"A" * 101                     # one byte too many
    before = dm.stats()["caches"]["node"]
    with pytest.raises(smpsim.DebugError) as ei:
        k.slab_free(c, a)
    assert str(ei.value) == (f"slab_free: red zone overrun: object {a:#x} of cache 'node' (100 "
                             f"bytes) was written past its end, at offset 100; CPU 0 allocated "
                             f"it (at its operation 1). The object stays allocated")
    assert (ei.value.kind, ei.value.cpu, ei.value.offset) == ("red zone", 0, 100)
    assert dm.stats()["caches"]["node"] == before
    assert bytes(k.memory[b:b + 100]) == b"B" * 100
    dm.check()
    k.memory[a + 100] = 0xCE                             # repair the red zone: the free works
    k.slab_free(c, a)
    k.slab_free(c, b)
    dm.check()


def test_overrun_into_the_trailer_of_a_kalloc_object(dm):
    k = dm.cpu(0)
    x = k.kalloc(64)
    k.memory[x + 64:x + 72] = b"\0" * 8
    with pytest.raises(smpsim.DebugError, match=rf"^kfree: red zone overrun: object {x:#x} of "
                                                r"cache 'malloc-64' \(64 bytes\) was written past "
                                                r"its end, at offset 64;"):
        k.kfree(x)
    dm.check()


def test_audit_trail_records_cpu_and_operation_count(dm):
    k0, k1 = dm.cpu(0), dm.cpu(1)
    c = k0.slab_cache_create("node", 40)
    a = k0.slab_alloc(c)                                 # CPU 0's operation 1
    k0.slab_alloc(c)                                     # 2
    assert audit(k0, a) == {"alloc_cpu": 0, "alloc_ops": 1, "free_cpu": None, "free_ops": None}
    k1.slab_free(c, a)                                   # CPU 1's operation 1 (a remote free)
    assert audit(k0, a) == {"alloc_cpu": 0, "alloc_ops": 1, "free_cpu": 1, "free_ops": 1}
    assert k1.slab_alloc(c) == a                         # CPU 1's operation 2
    assert audit(k1, a) == {"alloc_cpu": 1, "alloc_ops": 2, "free_cpu": 1, "free_ops": 1}
    assert audit(k0, dm.memory - 4096) is None          # a free frame: no object there
    with Machine(1, "1M") as plain:
        with pytest.raises(ValueError, match="^audit: the machine is not in debugging mode"):
            audit(plain.cpu(0), 4096)


def test_a_write_after_free_inside_a_run_comes_back_as_cpu_error(dm):
    dm.cpu(0).slab_cache_create("node", 100)
    with pytest.raises(smpsim.CPUError) as ei:
        dm.run(write_after_free, "node", cpus=[1])
    e = ei.value
    assert (e.cpu, e.reason, e.inside, e.locks) == (1, "exception", False, [])
    assert str(e).startswith("CPU 1 raised an exception: DebugError: slab_alloc: write after "
                             "free: object ")
    assert "CPU 1 freed it last" in str(e)
    dm.check()


def test_debugging_mode_runs_a_workload_cleanly_with_the_lock_order_checked(dm):
    dm.cpu(0).slab_cache_create("node", 100)
    dm.cpu(0).slab_cache_create("big", 5000)             # slabs with outside descriptors
    assert dm.run(churn, "node", 1500) == [1500, 1500]
    assert dm.run(churn, "big", 300) == [300, 300]
    dm.check()
    k = dm.cpu(0)
    k.slab_reclaim(smpsim.SLAB_RECLAIM_ALL)
    dm.check()


def test_lock_order_is_checked_in_debugging_mode(dm):
    k = dm.cpu(0)
    c = k.slab_cache_create("node", 100)
    slablock = c._addr + CACHE.slablock
    k._sa.lock(slablock)
    try:
        with pytest.raises(smpsim.LockOrderError) as ei:
            k._sa.lock(KERNEL.slab_cache_lock)
        assert str(ei.value) == ("CPU 0 takes slab_cache_lock (rank 1) while holding "
                                 "node.slablock (rank 4): against the lock order of "
                                 "smpsim/engine/locks.py")
    finally:
        k._sa.unlock(slablock)
    dm.check()
    with Machine(1, "1M") as plain:                      # not checked without debugging
        k = plain.cpu(0)
        c = k.slab_cache_create("node", 100)
        k._sa.lock(c._addr + CACHE.slablock)
        k._sa.lock(KERNEL.slab_cache_lock)
        k._sa.unlock(KERNEL.slab_cache_lock)
        k._sa.unlock(c._addr + CACHE.slablock)
        plain.check()


def test_lock_ranks_from_addresses_agree_with_the_named_locks(dm):
    """The order check ranks a lock from its address alone; the ranks must be those of the
    lock's name (smpsim/engine/locks.py) for every lock of the machine."""
    k = dm.cpu(0)
    k.slab_cache_create("node", 100)
    k.slab_cache_create("big", 5000, 0, SLAB_CACHE_NOMAGAZINE)
    locks = list(k._sa.all_locks())
    locks += [(f"{k._sa.cache_name(c)}.{kind}", lock) for c in (k._sa.mag_cache, k._sa.slab_cache_cache)
              for kind, lock in k._sa.cache_locks(c)]
    assert len(locks) > 40
    for name, lock in locks:
        assert k._sa._locate_lock(lock)[0] == name
        assert k._sa.lock_rank(lock) == k._sa._locate_lock(lock)[1], name
