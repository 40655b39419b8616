"""Faults inside the options' own windows: a CPU killed while it runs a constructor or a
destructor, holds a slab lock or a cache's empty-list lock, or reaps. As in tests/test_faults.py
the run ends with a CPUError naming the CPU, whether it was inside allocator code and the locks
it held, and m.check() reports exactly what the unfinished operation left, explaining the
option's window. Kill points are hooks the program installs in its own CPU process."""

import math
import os
import re
import signal
import time

import pytest

import smpsim
from smpsim import SLAB_CACHE_NOMAGAZINE, SLAB_RECLAIM_ALL, Machine
from smpsim.engine.layout import CPU_CTL

from test_faults import churn, held_and_inside, match_all, no_cpu_processes, violations

pytestmark = pytest.mark.timeout(120)

H = "option_helpers"
OBJ = r"0x[0-9a-f]+"


def _suicide():
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


def die_holding(k, name, prefix, op, n=100000):
    """Churn on cache `name`; SIGKILL this CPU right after it takes (or try-locks) a lock whose
    name starts with `prefix` inside operation `op`."""
    from smpsim.engine.kernel import OPS
    sa = k._sa
    real_lock, real_trylock = sa.lock, sa.trylock

    def check(addr):
        if OPS[sa.q[(sa.ctl + CPU_CTL.in_kernel) >> 3]] == op and \
                sa.lock_name(addr).startswith(prefix):
            _suicide()

    def lock(addr):
        real_lock(addr)
        check(addr)

    def trylock(addr):
        got = real_trylock(addr)
        if got:
            check(addr)
        return got
    sa.lock, sa.trylock = lock, trylock
    churn(k, name, n, 0)
    return "survived"


def reap_and_die(k, name):
    """Fill the cache's shared list, reap twice; die while the second reap destroys its first
    magazine."""
    c = k.cache(name)
    objs = [k.slab_alloc(c) for _ in range(60)]
    for a in objs:
        k.slab_free(c, a)
    k.slab_reap()
    sa = k._sa
    real = sa._magazine_destroy

    def destroy(cache, mag):
        if sa.peek(sa.ctl + CPU_CTL.stage):
            _suicide()
        return real(cache, mag)
    sa._magazine_destroy = destroy
    k.slab_reap()
    return "survived"


def _died(m, prog, *args, cpu=1):
    with pytest.raises(smpsim.CPUError) as ei:
        m.run(prog, *args, cpus=[cpu])
    e = ei.value
    assert (e.cpu, e.reason, e.inside) == (cpu, "died", True), str(e)
    assert no_cpu_processes()
    return e, violations(m)


def test_killed_in_a_constructor():
    with Machine(2, "8M") as m:
        m.cpu(0).slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE, ctor=f"{H}:die")
        e, vs = _died(m, churn, "obj", 10, 0)
        assert e.locks == []
        match_all([rf"cache obj: object {OBJ} is neither free nor cached but the object table "
                   r"holds 0x0 there \(lost object\)",
                   r"cache obj: allocated_objs is 0, the walk finds 1 allocated objects",
                   rf"CPU 1 is inside allocator code \(slab_alloc\): its operation did not "
                   rf"finish; it was running the constructor of cache obj on {OBJ}, which has "
                   r"left its slab and is not allocated yet \(a lost object; allocated_objs "
                   r"does not count it yet\)"], vs)
        lost = re.search(r"object (0x[0-9a-f]+) is neither", " ".join(vs)).group(1)
        assert f"constructor of cache obj on {lost}," in " ".join(vs)


def test_killed_in_a_destructor_on_a_free():
    with Machine(2, "8M") as m:
        m.cpu(0).slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE, ctor=f"{H}:construct",
                                   dtor=f"{H}:die")
        e, vs = _died(m, churn, "obj", 10, 0)
        assert e.locks == [] and str(e).endswith("during slab_free; it was inside allocator "
                                                 "code, holding no lock (m.check() reports "
                                                 "what its unfinished operation left)")
        match_all([rf"cache obj: object {OBJ} is neither free nor cached but the object table "
                   r"holds 0x0 there \(lost object\)",
                   rf"CPU 1 is inside allocator code \(slab_free\): its operation did not "
                   rf"finish; it was running the destructor of cache obj on {OBJ}, on its way "
                   r"back to its slab .*"], vs)


def test_killed_in_a_destructor_while_reclaim_destroys_a_magazine():
    with Machine(2, "8M") as m:
        m.cpu(0).slab_cache_create("obj", 100, ctor=f"{H}:construct", dtor=f"{H}:die")
        e, vs = _died(m, _fill_then_reclaim, "obj")
        assert e.locks == ["slab_cache_lock", "obj.cpu1"]
        locks, inside = held_and_inside(vs)
        assert locks == {"slab_cache_lock", "obj.cpu1"} and inside == {1}
        # The magazine is still the CPU's, and its objects still in it, until it is destroyed:
        # the locks and the window explain everything.
        match_all([r"lock slab_cache_lock is held by CPU 1", r"lock obj.cpu1 is held by CPU 1",
                   rf"CPU 1 is inside allocator code \(slab_reclaim\): its operation did not "
                   rf"finish; it was running the destructor of cache obj on {OBJ}, .*"], vs)


def _fill_then_reclaim(k, name):
    c = k.cache(name)
    objs = [k.slab_alloc(c) for _ in range(6)]
    for a in objs:
        k.slab_free(c, a)
    k.slab_reclaim(SLAB_RECLAIM_ALL)
    return "survived"


def test_killed_holding_a_slab_lock():
    with Machine(2, "8M", slab_locks=True) as m:
        m.cpu(0).slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)
        e, vs = _died(m, die_holding, "obj", "obj.slab@", "slab_free")
        assert len(e.locks) == 1 and re.fullmatch(r"obj\.slab@0x[0-9a-f]+", e.locks[0])
        locks, inside = held_and_inside(vs)
        assert locks == set(e.locks) and inside == {1}


def test_killed_holding_slablock_and_a_slab_lock_while_allocating():
    with Machine(2, "8M", slab_locks=True) as m:
        m.cpu(0).slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)
        e, vs = _died(m, die_holding, "obj", "obj.slab@", "slab_alloc")
        assert e.locks[0] == "obj.slablock" and e.locks[1].startswith("obj.slab@")
        assert held_and_inside(vs) == (set(e.locks), {1})


def test_killed_holding_an_empty_list_lock():
    with Machine(2, "8M", empty_magazines=True) as m:
        m.cpu(0).slab_cache_create("obj", 100)
        e, vs = _died(m, die_holding, "obj", "obj.emptylock", "slab_free")
        assert set(e.locks) == {"obj.emptylock", "obj.cpu1"}
        assert held_and_inside(vs) == ({"obj.emptylock", "obj.cpu1"}, {1})


def test_killed_while_reaping():
    with Machine(2, "8M", reap_every=math.inf) as m:
        m.cpu(0).slab_cache_create("obj", 100)
        e, vs = _died(m, reap_and_die, "obj")
        assert e.locks == ["slab_cache_lock"]
        text = " ".join(vs)
        assert "CPU 1 is inside allocator code (slab_reap): its operation did not finish; it " \
               "was reaping cache obj: a magazine it took off the shared list may be half " \
               "destroyed" in text
        assert re.search(r"cache obj: cached_objs is \d+, its magazines hold \d+", text)
        assert "lock slab_cache_lock is held by CPU 1" in vs


@pytest.mark.parametrize("options", [
    dict(resize_magazines=True, resize_threshold=0), dict(colour=True),
    dict(empty_magazines=True), dict(cpu_magazine_cache=True), dict(slab_locks=True),
    dict(reap_every=0.01)], ids=lambda o: next(iter(o)))
def test_killed_outside_allocator_code_leaves_a_consistent_machine(options):
    """Each option: a CPU killed between operations leaves nothing to report, and the machine
    goes on."""
    with Machine(2, "8M", **options) as m:
        m.cpu(0).slab_cache_create("obj", 100)
        with pytest.raises(smpsim.CPUError) as ei:
            m.run(churn, "obj", 3000, 0, 1500, cpus=[1])
        assert (ei.value.reason, ei.value.inside) == ("died", False)
        m.check()
        assert m.run(churn, "obj", 500) == [500, 500]
        m.check()
