"""Faults: CPUs that die, raise, hang or are interrupted, locks that are never released, the
parent dying, stale segments, running out of memory.

Every CPU failure must surface as a CPUError naming the CPU within seconds, leave no process and
no segment behind, and leave a machine that m.check() either passes (the CPU was outside
allocator code) or faults with exactly what the unfinished operation left (the seed's windows:
the seed updates counters after releasing its locks, so holding no lock is not enough).

Precise kill points use a test-only hook installed by the program itself in its CPU process:
it wraps that CPU's Kernel.lock / unlock / st on the instance and SIGKILLs its own process right
after a chosen step. The engine carries no fault-injection code.
"""

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import smpsim
from smpsim import FRAME_ATOMIC, FRAME_NO_RECLAIM, SLAB_CACHE_NOMAGAZINE, Machine
from smpsim.engine.layout import CPU_CTL
from smpsim.engine.machine import SHM_DIR, SHM_PREFIX, sweep_stale_segments

pytestmark = pytest.mark.timeout(120)


# --- programs run on the CPUs (module level, so Machine.run can start them) ----------------

def churn(k, name, n, seed=0, stop_at=None):
    """Allocate and free objects of cache `name` at random, n operations; frees what is left."""
    c = k.cache(name)
    rnd = random.Random(seed * 1000 + k.cpu_id)
    live = []
    for i in range(n):
        if i == stop_at:
            os.kill(os.getpid(), signal.SIGKILL)          # outside allocator code
        if live and rnd.random() < 0.5:
            k.slab_free(c, live.pop(rnd.randrange(len(live))))
        else:
            live.append(k.slab_alloc(c))
    for a in live:
        k.slab_free(c, a)
    return n


def _suicide():
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)                                          # never reached


def die_after(k, name, step, lock_name, op, warmup=True, n=100000, seed=0):
    """Churn on cache `name`; SIGKILL this CPU right after it does `step` ("lock" or "unlock")
    of the lock called `lock_name` while inside `op` (CPU_CTL.in_kernel). With `warmup`, two
    objects are allocated and one freed first, so that the cache has a partial slab (or an
    object in this CPU's magazine). Returns "survived" when the kill point never came."""
    from smpsim.engine.kernel import OPS
    if warmup:
        c = k.cache(name)
        k.slab_alloc(c)
        k.slab_free(c, k.slab_alloc(c))
    sa = k._sa
    orig = getattr(sa, step)

    def hooked(lock):
        orig(lock)
        if OPS[sa.q[(sa.ctl + CPU_CTL.in_kernel) >> 3]] == op and sa.lock_name(lock) == lock_name:
            _suicide()
    setattr(sa, step, hooked)
    churn(k, name, n, seed)
    return "survived"


def die_at_store(k, name, nth, n=100000, seed=0):
    """Churn; SIGKILL this CPU at its nth store to shared memory made inside allocator code: a
    random point inside the allocator, inside or between critical sections."""
    orig = k._sa.st
    ctl = (k._sa.ctl + CPU_CTL.in_kernel) >> 3
    count = [0]

    def st(addr, value):
        orig(addr, value)
        if k._sa.q[ctl]:
            count[0] += 1
            if count[0] == nth:
                _suicide()
    k._sa.st = st
    churn(k, name, n, seed)
    return "survived"


def hold_lock_then_die(k, name):
    """Take the cache's slablock and die holding it."""
    from smpsim.engine.layout import CACHE
    k._sa.lock(k.cache(name)._addr + CACHE.slablock)
    _suicide()


def raise_after(k, name, n):
    churn(k, name, n)
    raise ValueError(f"program gave up after {n} operations")


def exit_after(k, name, n):
    churn(k, name, n)
    os._exit(3)


def spin_forever(k):
    while True:
        time.sleep(0.01)


def alloc_one(k, name):
    c = k.cache(name)
    a = k.slab_alloc(c)
    k.slab_free(c, a)
    return k.cpu_id


# --- helpers ---------------------------------------------------------------------------------

def violations(m):
    """The messages of m.check() (empty when every invariant holds)."""
    try:
        m.check()
    except smpsim.InvariantError as e:
        return e.violations
    return []


def held_and_inside(vs):
    """(locks held, CPUs inside) as m.check() names them."""
    locks = {re.fullmatch(r"lock (\S+) is held by CPU \d+", v).group(1)
             for v in vs if v.startswith("lock ")}
    cpus = {int(re.match(r"CPU (\d+) is inside allocator code", v).group(1))
            for v in vs if re.match(r"CPU \d+ is inside", v)}
    return locks, cpus


def no_cpu_processes():
    kids = [c for c in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(c.cmdline())]
    return not kids


def match_all(patterns, vs):
    """Every violation fullmatches one pattern, and every pattern matches one violation."""
    assert len(patterns) == len(vs), vs
    left = list(vs)
    for p in patterns:
        hit = [v for v in left if re.fullmatch(p, v)]
        assert hit, f"no violation matches {p!r}: {vs}"
        left.remove(hit[0])


# --- CPUs that fail outside allocator code ---------------------------------------------------

def test_sigkill_outside_allocator_code_leaves_a_consistent_machine():
    with Machine(2, "8M") as m:
        m.cpu(0).slab_cache_create("obj", 100)
        with pytest.raises(smpsim.CPUError) as ei:
            m.run(churn, "obj", 400, 0, 200, cpus=[1])
        e = ei.value
        assert (e.cpu, e.reason, e.inside, e.locks) == (1, "died", False, [])
        assert str(e) == "CPU 1 died: killed by signal SIGKILL"
        assert no_cpu_processes()
        m.check()
        assert m.run(churn, "obj", 300) == [300, 300]      # the machine stays usable
        m.check()


def test_exception_in_program():
    with Machine(2, "8M") as m:
        m.cpu(0).slab_cache_create("obj", 100)
        with pytest.raises(smpsim.CPUError) as ei:
            m.run(raise_after, "obj", 50, cpus=[0])
        e = ei.value
        assert (e.cpu, e.reason, e.inside, e.locks) == (0, "exception", False, [])
        assert str(e) == "CPU 0 raised an exception: ValueError: program gave up after 50 operations"
        assert "raise ValueError" in e.traceback
        m.check()


def test_os_exit_in_program():
    with Machine(2, "8M") as m:
        m.cpu(0).slab_cache_create("obj", 100)
        with pytest.raises(smpsim.CPUError) as ei:
            m.run(exit_after, "obj", 50, cpus=[1, 0])
        assert (ei.value.cpu, ei.value.reason, ei.value.inside) in {(1, "died", False),
                                                                     (0, "died", False)}
        assert re.fullmatch(r"CPU [01] died: exited with status 3 without a result",
                            str(ei.value))
        m.check()


def test_a_cpu_dying_before_the_start_keeps_the_others_from_starting():
    """CPU 1 dies while getting ready: the run fails naming it, and CPU 0, waiting at the start
    gate, never enters the program."""
    parent = os.getpid()
    with Machine(2, "4M") as m:
        real = m._new_kernel

        def new_kernel(i):
            if i == 1 and os.getpid() != parent:
                os._exit(9)
            return real(i)
        m._new_kernel = new_kernel
        with pytest.raises(smpsim.CPUError) as ei:
            m.run(alloc_one, "malloc-8")
        assert str(ei.value) == "CPU 1 died: exited with status 9 without a result"
        assert [c["ops"] for c in m.cpu_stats()] == [0, 0]
        m.check()


@pytest.mark.timeout(30)                # the bound on "it ends": no time is asserted
def test_timeout_stops_a_program_that_never_ends():
    with Machine(2, "8M") as m:
        with pytest.raises(smpsim.CPUError) as ei:
            m.run(spin_forever, timeout=0.5)
        assert (ei.value.cpu, ei.value.reason, ei.value.inside) == (0, "timeout", False)
        assert str(ei.value) == "CPU 0 timed out: still running after 0.5 s"
        assert no_cpu_processes()
        m.check()


def test_ctrl_c_during_a_run_stops_every_cpu():
    """KeyboardInterrupt in the caller (as Ctrl-C raises it): every CPU stops at a point outside
    allocator code, the interrupt reaches the caller, and the machine stays consistent."""
    with Machine(2, "8M") as m:
        m.cpu(0).slab_cache_create("obj", 100)
        t0 = time.monotonic()

        def ctrl_c(machine):
            if time.monotonic() - t0 > 0.3:
                os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            m.run(churn, "obj", 10 ** 8, monitor=ctrl_c, interval=0.05)
        assert no_cpu_processes()
        m.check()
        assert m.run(churn, "obj", 100) == [100, 100]
        m.check()


def _churning_script(tmp_path):
    """A script in its own process: a 2-CPU machine whose CPUs allocate and free until stopped;
    it prints "PIDS <cpu0> <cpu1> <segment>" once both CPU processes run."""
    script = tmp_path / "churn.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import smpsim, test_faults
        from smpsim.engine.layout import CPU_CTL
        with smpsim.Machine(2, "8M") as m:
            m.cpu(0).slab_cache_create("obj", 100)
            def tell(m):
                k = m.cpu(0)
                pids = [k._sa.ld(m.regions.cpu(i) + CPU_CTL.pid) for i in range(2)]
                if all(pids):
                    print("PIDS", *pids, m.name, flush=True)
            m.run(test_faults.churn, "obj", 10 ** 8, monitor=tell, interval=0.1)
    """))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _churning_cpus(p):
    """The CPU processes' pids and the segment's name, as the churning script prints them."""
    line = p.stdout.readline().split()
    assert line[0] == "PIDS", p.stderr.read()
    return [int(x) for x in line[1:3]], line[3]


def test_ctrl_c_of_a_script_leaves_nothing_behind(tmp_path):
    """A real SIGINT to a script in the middle of m.run: it ends with KeyboardInterrupt, its CPU
    processes are gone and so is its segment."""
    p = _churning_script(tmp_path)
    try:
        pids, name = _churning_cpus(p)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
        p.wait()
    # Python ends on an uncaught KeyboardInterrupt by killing itself with SIGINT.
    assert p.returncode == -signal.SIGINT and err.rstrip().endswith("KeyboardInterrupt")
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert not os.path.exists(os.path.join(SHM_DIR, name))


# --- CPUs killed inside allocator code: the seed's windows -----------------------------------

OBJ = r"0x[0-9a-f]+"


def _die_inside(m, flags, step, lock, op, warmup=True, cpu=1):
    m.cpu(0).slab_cache_create("obj", 100, 0, flags)
    with pytest.raises(smpsim.CPUError) as ei:
        m.run(die_after, "obj", step, lock, op, warmup, cpus=[cpu])
    e = ei.value
    assert (e.cpu, e.reason, e.inside) == (cpu, "died", True)
    assert no_cpu_processes()
    return e, violations(m)


def test_killed_after_slablock_release_before_the_counter_update():
    """slab_alloc on a NOMAGAZINE cache: the object left its slab and slablock is released,
    but allocated_objs is not yet incremented (and the object not yet marked live)."""
    with Machine(2, "8M") as m:
        e, vs = _die_inside(m, SLAB_CACHE_NOMAGAZINE, "unlock", "obj.slablock", "slab_alloc")
        assert e.locks == []
        assert str(e) == ("CPU 1 died: killed by signal SIGKILL during slab_alloc; it was inside "
                          "allocator code, holding no lock (m.check() reports what its "
                          "unfinished operation left)")
        match_all([rf"cache obj: object {OBJ} is neither free nor cached but the object table "
                   r"holds 0x0 there \(lost object\)",
                   r"cache obj: allocated_objs is (\d+), the walk finds \d+ allocated objects",
                   r"CPU 1 is inside allocator code \(slab_alloc\): its operation did not finish"],
                  vs)
        n, walk = map(int, re.search(r"allocated_objs is (\d+), the walk finds (\d+)",
                                     " ".join(vs)).groups())
        assert walk == n + 1                                 # off by exactly one


def test_killed_after_magazine_lock_release_before_cached_objs_update():
    """magazine_obj_get: the object left the CPU's magazine and the lock is released, but
    cached_objs is not yet decremented nor allocated_objs incremented. (The seed's Python path:
    the C hit path does the same steps in one call, which a hook cannot split.)"""
    with Machine(2, "8M", accel="off") as m:
        e, vs = _die_inside(m, 0, "unlock", "obj.cpu1", "slab_alloc")
        assert e.locks == []
        match_all([rf"cache obj: object {OBJ} is neither free nor cached but the object table "
                   r"holds 0x0 there \(lost object\)",
                   r"cache obj: cached_objs is \d+, its magazines hold \d+",
                   r"cache obj: allocated_objs is \d+, the walk finds \d+ allocated objects",
                   r"CPU 1 is inside allocator code \(slab_alloc\): its operation did not finish"],
                  vs)
        cached, held = map(int, re.search(r"cached_objs is (\d+), its magazines hold (\d+)",
                                          " ".join(vs)).groups())
        assert cached == held + 1


def test_killed_after_magazine_put_before_the_counters():
    """_slab_free into a magazine: the object is in the magazine and the lock released, but
    cached_objs is not yet incremented nor allocated_objs decremented (the Python path)."""
    with Machine(2, "8M", accel="off") as m:
        e, vs = _die_inside(m, 0, "unlock", "obj.cpu1", "slab_free")
        match_all([r"cache obj: cached_objs is \d+, its magazines hold \d+",
                   r"cache obj: allocated_objs is \d+, the walk finds \d+ allocated objects",
                   r"CPU 1 is inside allocator code \(slab_free\): its operation did not finish"],
                  vs)
        text = " ".join(vs)
        cached, held = map(int, re.search(r"cached_objs is (\d+), its magazines hold (\d+)",
                                          text).groups())
        alloc, walk = map(int, re.search(r"allocated_objs is (\d+), the walk finds (\d+)",
                                         text).groups())
        assert (held - cached, alloc - walk) == (1, 1)


def test_killed_while_slablock_is_dropped_for_a_new_slab():
    """slab_obj_create drops slablock to allocate a new slab's frames: killed right after the
    frame allocator gave them, no slab owns those frames yet."""
    with Machine(2, "8M") as m:
        e, vs = _die_inside(m, SLAB_CACHE_NOMAGAZINE, "unlock", "frames", "slab_alloc",
                            warmup=False)
        assert e.locks == []
        match_all([r"frames \d+\.\.\d+ are allocated but no slab owns them \(leaked\)",
                   r"CPU 1 is inside allocator code \(slab_alloc\): its operation did not finish"],
                  vs)


def test_killed_holding_a_lock():
    with Machine(2, "8M") as m:
        e, vs = _die_inside(m, 0, "lock", "obj.maglock", "slab_free", warmup=False)
        assert e.locks == ["obj.maglock", "obj.cpu1"]
        assert str(e).startswith("CPU 1 died: killed by signal SIGKILL during slab_free; it was "
                                 "inside allocator code, holding obj.maglock, obj.cpu1")
        locks, cpus = held_and_inside(vs)
        assert locks == {"obj.maglock", "obj.cpu1"} and cpus == {1}


# --- locks that will never be released -------------------------------------------------------

def test_waiting_for_a_dead_cpus_lock_ends_with_a_clear_error():
    """CPU 0 dies holding obj.slablock while CPU 1 allocates from obj: the run ends naming CPU 0
    and its lock; CPU 1 gives up its wait (the holder is dead) instead of spinning; afterwards
    the caller's own wait for that lock fails at once instead of hanging."""
    with Machine(2, "8M") as m:
        k = m.cpu(1)
        c = k.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)

        with pytest.raises(smpsim.CPUError) as ei:
            m.run(hold_lock_then_die, "obj", cpus=[0])
        e = ei.value
        assert (e.cpu, e.reason, e.inside, e.locks) == (0, "died", False, ["obj.slablock"])
        with pytest.raises(smpsim.CPUError) as ei:
            m.run(churn, "obj", 100, cpus=[1], timeout=30)
        e = ei.value
        assert (e.cpu, e.reason, e.inside, e.locks) == (1, "exception", True, [])
        assert re.fullmatch(r"CPU 1 raised an exception: LockTimeout: lock obj.slablock not "
                            r"acquired within [\d.]+ s: held by CPU 0, which died \(process "
                            r"\d+\) without releasing it; it was inside allocator code, holding "
                            r"no lock \(m.check\(\) reports what its unfinished operation left\)",
                            str(e))
        with pytest.raises(smpsim.LockTimeout) as ei:
            k.slab_alloc(c)
        assert (ei.value.lock, ei.value.holder, ei.value.dead) == ("obj.slablock", 0, True)
        locks, cpus = held_and_inside(violations(m))
        assert locks == {"obj.slablock"} and cpus == {1}


def test_lock_watchdog_names_the_lock_and_its_holder():
    """Machine(lock_timeout): a lock held too long by a live CPU (here the caller's CPU 0)."""
    with Machine(2, "8M", lock_timeout=0.5) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)
        from smpsim.engine.layout import CACHE
        k._sa.lock(c._addr + CACHE.slablock)
        try:
            with pytest.raises(smpsim.CPUError) as ei:
                m.run(alloc_one, "obj", cpus=[1])
        finally:
            k._sa.unlock(c._addr + CACHE.slablock)
        e = ei.value
        assert (e.cpu, e.reason, e.inside, e.locks) == (1, "exception", True, [])
        assert str(e).startswith("CPU 1 raised an exception: LockTimeout: lock obj.slablock not "
                                 "acquired within 0.5 s: held by CPU 0;")
        assert violations(m) == ["CPU 1 is inside allocator code (slab_alloc): its operation "
                                 "did not finish"]


def test_no_lock_timeout_and_a_lock_never_released_ends_by_the_run_timeout():
    with Machine(2, "8M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 100, 0, SLAB_CACHE_NOMAGAZINE)
        from smpsim.engine.layout import CACHE
        k._sa.lock(c._addr + CACHE.slablock)
        try:
            with pytest.raises(smpsim.CPUError) as ei:
                m.run(alloc_one, "obj", cpus=[1], timeout=0.5)
        finally:
            k._sa.unlock(c._addr + CACHE.slablock)
        assert (ei.value.cpu, ei.value.reason, ei.value.inside) == (1, "timeout", True)
        assert no_cpu_processes()
        assert violations(m) == ["CPU 1 is inside allocator code (slab_alloc): its operation "
                                 "did not finish"]


# --- the parent dies; stale segments ---------------------------------------------------------

def test_cpus_exit_when_the_parent_dies_and_its_segment_is_swept(tmp_path):
    p = _churning_script(tmp_path)
    try:
        pids, name = _churning_cpus(p)
        p.kill()                                     # SIGKILL: no cleanup of any kind
        p.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(pid) for pid in pids):
            time.sleep(0.05)
        assert not any(_running(pid) for pid in pids)
    finally:
        p.kill()
        p.wait()
    path = os.path.join(SHM_DIR, name)
    # Left behind: its creator could not remove it. (Another smpsim process starting on this host
    # meanwhile, e.g. a concurrent test run, may already have swept it: that is the same sweep.)
    with Machine(1, "1M"):                           # the next start sweeps it
        assert not os.path.exists(path)


def _running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sweep_removes_only_segments_whose_creator_is_gone():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    names = {"dead": f"{SHM_PREFIX}{dead.pid}_0123456789ab",
             "alive": f"{SHM_PREFIX}{alive.pid}_0123456789ab",
             "other": "smpsimx_1_0123456789ab"}
    try:
        for n in names.values():
            with open(os.path.join(SHM_DIR, n), "wb") as f:
                f.write(b"x")
        swept = sweep_stale_segments()
        assert names["dead"] in swept
        assert not os.path.exists(os.path.join(SHM_DIR, names["dead"]))
        assert os.path.exists(os.path.join(SHM_DIR, names["alive"]))
        assert os.path.exists(os.path.join(SHM_DIR, names["other"]))
    finally:
        alive.kill()
        alive.wait()
        for n in names.values():
            try:
                os.unlink(os.path.join(SHM_DIR, n))
            except FileNotFoundError:
                pass


# --- memory exhaustion -----------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_running_out_of_memory_at_any_step_changes_nothing(seed):
    """A 1M machine, many caches (in and out of slab, with and without magazines), random
    allocations with every flag until memory runs out again and again: each failure is None
    (FRAME_ATOMIC) or OutOfMemory, and the state stays consistent throughout."""
    rnd = random.Random(seed)
    with Machine(2, "1M", magazine_size=rnd.choice([1, 4, 16])) as m:
        k = m.cpu(seed % 2)
        caches = [k.slab_cache_create(f"c{i}", rnd.choice([8, 24, 100, 600, 3000, 5000, 20000]),
                                      0, rnd.choice([0, SLAB_CACHE_NOMAGAZINE]))
                  for i in range(30)]
        flagset = [0, FRAME_ATOMIC, FRAME_NO_RECLAIM, FRAME_ATOMIC | FRAME_NO_RECLAIM]
        live, ooms, nones = [], 0, 0
        for step in range(2500):
            if rnd.random() < 0.6 or not live:
                flags = rnd.choice(flagset)
                c = rnd.choice(caches + [None])
                try:
                    a = (k.kalloc(rnd.choice([8, 100, 1000, 5000, 70000]), flags) if c is None
                         else k.slab_alloc(c, flags))
                except smpsim.OutOfMemory:
                    assert not flags & FRAME_ATOMIC
                    ooms += 1
                    continue
                if a is None:
                    assert flags & FRAME_ATOMIC
                    nones += 1
                    continue
                live.append((c, a))
            else:
                c, a = live.pop(rnd.randrange(len(live)))
                k.kfree(a) if c is None else k.slab_free(c, a)
            if step % 500 == 0:
                m.check()
        assert ooms and nones
        assert m.stats()["frames"]["free"] <= 2
        m.check()
        # Cache creation fails cleanly too, once memory is full.
        made = []
        with pytest.raises(smpsim.OutOfMemory, match="^slab_cache_create: no memory left for "
                                                     "the cache descriptor$"):
            for i in range(1000):
                made.append(k.slab_cache_create(f"late{i}", 64))
        m.check()
        for c, a in live:
            k.kfree(a) if c is None else k.slab_free(c, a)
        for c in caches + made:
            k.slab_cache_destroy(c)
        k.slab_reclaim(smpsim.SLAB_RECLAIM_ALL)
        k.slab_reclaim(smpsim.SLAB_RECLAIM_ALL)
        m.check()
        assert m.stats()["caches"]["malloc-64"]["allocated"] == 0


# --- the fault-injection loop ----------------------------------------------------------------

def _one_kill(rnd, log):
    """One run of 2 CPUs churning on shared caches; one CPU is killed at a random point, either
    by the test after a random delay (anywhere) or by itself at a random store inside
    allocator code. Checks what a kill must leave: a CPUError naming the CPU, no CPU process,
    the checker's report matching the error (locks held, CPUs inside) or, killed outside
    allocator code, a machine still usable; no segment after close. Returns whether the kill
    was inside."""
    flags = rnd.choice([0, SLAB_CACHE_NOMAGAZINE])
    victim = rnd.randrange(2)
    how = rnd.choice(["delay", "store", "between"])
    with Machine(2, "4M", magazine_size=rnd.choice([1, 2, 4]),
                 accel=rnd.choice(["c", "off"])) as m:
        k = m.cpu(0)
        k.slab_cache_create("obj", rnd.choice([16, 100, 700]), 0, flags)
        t0 = time.monotonic()
        delay = rnd.uniform(0.0, 0.3)
        if how == "delay":
            def monitor(machine):
                if time.monotonic() - t0 >= delay:
                    pid = k._sa.ld(machine.regions.cpu(victim) + CPU_CTL.pid)
                    if pid and not pid >> 63 and psutil.pid_exists(pid):
                        os.kill(pid, signal.SIGKILL)
            prog, args = churn, ("obj", 10 ** 7, rnd.randrange(1000))
        elif how == "store":
            monitor = None
            nth = rnd.randrange(1, 3000)
            prog, args = _victim_store, (victim, "obj", nth, rnd.randrange(1000))
        else:
            monitor = None
            prog, args = _victim_between, (victim, "obj", rnd.randrange(2000), rnd.randrange(1000))
        with pytest.raises(smpsim.CPUError) as ei:
            m.run(prog, *args, monitor=monitor, interval=0.01, timeout=60)
        e = ei.value
        assert (e.cpu, e.reason) == (victim, "died"), str(e)
        assert str(e).startswith(f"CPU {victim} died: killed by signal SIGKILL")
        assert no_cpu_processes()
        vs = violations(m)
        locks, inside = held_and_inside(vs)
        if how == "store":
            assert e.inside
        if how == "between":
            assert not e.inside
        if not e.inside:
            assert e.locks == [] and not e.others
            assert vs == [], vs
            assert m.run(churn, "obj", 50) == [50, 50]    # still usable
            m.check()
        else:
            assert victim in inside
            expected_locks = set(e.locks) | {n for o in e.others for n in o.locks}
            assert locks == expected_locks, (vs, str(e))
            assert inside == {victim} | {o.cpu for o in e.others}, (vs, str(e))
        log.append((how, e.inside, len(e.locks), len(vs)))
        name = m.name
    assert not os.path.exists(os.path.join(SHM_DIR, name))
    return e.inside


def _victim_store(k, victim, name, nth, seed):
    if k.cpu_id == victim:
        return die_at_store(k, name, nth, seed=seed)
    return churn(k, name, 10 ** 7, seed)


def _victim_between(k, victim, name, at, seed):
    if k.cpu_id == victim:
        return churn(k, name, 10 ** 7, seed, stop_at=at)
    return churn(k, name, 10 ** 7, seed)


def _kill_loop(kills, seed):
    rnd = random.Random(seed)
    log = []
    for _ in range(kills):
        _one_kill(rnd, log)
    inside = sum(1 for entry in log if entry[1])
    assert len(log) == kills
    return inside, log


def test_fault_injection_short():
    inside, log = _kill_loop(6, seed=1)
    assert 0 < inside


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fault_injection_loop():
    """At least 50 kills, inside and outside allocator code, without a hang or a leak."""
    inside, log = _kill_loop(80, seed=2)
    print(f"\n{len(log)} kills: {inside} inside allocator code "
          f"({sum(1 for x in log if x[1] and x[2])} holding locks), {len(log) - inside} outside")
    assert inside >= 10 and len(log) - inside >= 10
