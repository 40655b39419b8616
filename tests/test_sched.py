"""Controlled schedules (smpsim/engine/_sim.h, smpsim/engine/sched.py): one CPU runs between
scheduling points and a strategy picks which; record and replay; deadlocks; kills at a step;
the constants Python shares with the C code.
"""
import pickle
import random
import re

import pytest

import smpsim
from smpsim import Machine
from smpsim.engine import _atomics, sched
from smpsim.engine.sched import Schedule


def busy(k, box, counter, n):
    """Remote frees through a mailbox word per CPU, reclaims, and a racy shared counter (a
    load and a store that other CPUs may interleave): everything a schedule decides."""
    c = k.cache("x")
    rng = random.Random(k.cpu_id)
    mine = []
    for i in range(n):
        mine.append(k.slab_alloc(c))
        if rng.random() < 0.3 and mine:
            slot = box + 8 * ((k.cpu_id + 1) % k.cpus)
            if k.atomic_cas(slot, 0, mine[-1]):
                mine.pop()
        got = k.atomic_load(box + 8 * k.cpu_id)
        if got and k.atomic_cas(box + 8 * k.cpu_id, got, 0):
            k.slab_free(c, got)
        if rng.random() < 0.5 and mine:
            k.slab_free(c, mine.pop(rng.randrange(len(mine))))
        if i % 40 == 0:
            k.slab_reclaim(smpsim.SLAB_RECLAIM_ALL if i % 80 == 0 else 0)
        v = k.atomic_load(counter)
        k.atomic_store(counter, v + 1)
    k.barrier()
    got = k.atomic_load(box + 8 * k.cpu_id)
    if got:
        k.atomic_store(box + 8 * k.cpu_id, 0)
        k.slab_free(c, got)
    for a in mine:
        k.slab_free(c, a)
    return n


def _controlled(n=120, **kw):
    """A 3-CPU controlled run of busy(); its results, stats, memory and schedule."""
    with Machine(3, "8M", **kw) as m:
        k = m.cpu(0)
        k.slab_cache_create("x", 100)
        box, counter = k.kalloc(64), k.kalloc(8)
        for i in range(8):
            k.atomic_store(box + 8 * i, 0)
        k.atomic_store(counter, 0)
        out = m.run(busy, box, counter, n, timeout=120)
        m.check()
        st = m.stats()
        return out, k.atomic_load(counter), st, bytes(k.memory), m.last_schedule


def test_a_random_schedule_repeats_exactly_and_its_replay_too():
    a = _controlled(schedule="random", seed=7)
    b = _controlled(schedule="random", seed=7)
    assert a[:4] == b[:4]
    assert a[4] == b[4] and a[4].decisions == b[4].decisions
    assert a[1] < 3 * 120                   # the racy counter lost updates: CPUs interleaved
    replay = _controlled(schedule=a[4])
    assert replay[:4] == a[:4]
    assert replay[4].decisions == a[4].decisions and replay[4].strategy == "replay"
    assert replay[4].preemptions == a[4].preemptions
    other = _controlled(schedule="random", seed=8)
    assert other[3] != a[3]                 # another seed, another interleaving


def test_pct_repeats_and_preempts_rarely():
    a = _controlled(schedule="pct", seed=3, depth=3)
    b = _controlled(schedule="pct", seed=3, depth=3)
    assert a[:4] == b[:4]
    # PCT switches away from a CPU that could go on only at its d - 1 change points, or when
    # a CPU of higher priority can run again (it waited for a lock or at the barrier).
    assert a[4].preemptions <= 10 and a[4].strategy == "pct" and a[4].depth == 3
    rnd = _controlled(schedule="random", seed=3)
    assert rnd[4].preemptions > 50 * a[4].preemptions + 10


def test_a_controlled_run_gives_an_smpsim_schedule():
    """m.last_schedule is the public smpsim.Schedule, which loads back and replays."""
    s = _controlled(20, schedule="random", seed=3)[4]
    assert isinstance(s, smpsim.Schedule) and "Schedule" in smpsim.__all__
    assert _controlled(20, schedule=s)[4].decisions == s.decisions


def test_strict_time_and_controlled_runs_take_the_python_path_only_when_controlled():
    with Machine(2, "4M", schedule="random") as m:
        assert m.cpu(0)._fast is None and m.cpu(0)._sa.data_points
    with Machine(2, "4M", time="simulated", quantum=0) as m:
        assert m.cpu(0)._fast is not None and not m.cpu(0)._sa.data_points
    with Machine(2, "4M") as m:
        k = m.cpu(0)
        assert not k._sa.scheduled and k._sa.ld == k._sa.arena.get
        assert m.last_schedule is None
        k.slab_free(k.cache("malloc-64"), k.slab_alloc(k.cache("malloc-64")))
        m.check()


def test_schedules_save_load_and_pickle(tmp_path):
    s = _controlled(40, schedule="random", seed=1)[4]
    assert len(s) == len(s.decisions) > 0 and s.cpus == 3 and s.steps >= len(s)
    path = tmp_path / "run.schedule"
    s.save(path)
    t = Schedule.load(path)
    assert t == s and (t.preemptions, t.steps, t.strategy) == (s.preemptions, s.steps, "random")
    assert pickle.loads(pickle.dumps(s)) == s
    (tmp_path / "junk").write_bytes(b"not a schedule")
    with pytest.raises(ValueError, match=r"Schedule.load: .*junk is not a saved schedule"):
        Schedule.load(tmp_path / "junk")
    with pytest.raises(ValueError, match=r"Schedule.load: cannot read .*missing"):
        Schedule.load(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"Machine: 'schedule' was recorded on 3 CPUs, this "
                                         r"machine has 2"):
        Machine(2, "4M", schedule=s)


def inversion(k, a, b):
    """CPU 0 takes a then b, CPU 1 takes b then a: a lock-order inversion."""
    if k.cpu_id == 1:
        a, b = b, a
    for _ in range(30):
        k.spin_lock(a)
        k.spin_lock(b)
        k.spin_unlock(b)
        k.spin_unlock(a)
    return "done"


def test_a_deadlock_names_each_stuck_cpu_its_lock_and_the_lock_it_wants():
    with Machine(2, "4M", schedule="random", seed=0) as m:
        k = m.cpu(0)
        a, b = k.kalloc(64), k.kalloc(64)
        k.atomic_store(a, 0)
        k.atomic_store(b, 0)
        with pytest.raises(smpsim.CPUError) as e:
            m.run(inversion, a, b, timeout=60)
        assert e.value.reason == "deadlock"
        msg = str(e.value)
        assert f"CPU 0 holds user@{a} and waits for user@{b}" in msg
        assert f"CPU 1 holds user@{b} and waits for user@{a}" in msg
        assert re.search(r"no CPU can go on at step \d+", msg)
    # Both CPU processes are gone (the leak check of conftest.py), the segment with them.


def test_a_replay_that_no_longer_matches_says_so():
    s = _controlled(40, schedule="random", seed=2)[4]
    with Machine(3, "8M", schedule=s) as m:
        k = m.cpu(0)
        k.slab_cache_create("x", 100)
        box, counter = k.kalloc(64), k.kalloc(8)
        for i in range(8):
            k.atomic_store(box + 8 * i, 0)
        with pytest.raises(smpsim.CPUError) as e:
            m.run(busy, box, counter, 12, timeout=60)      # a shorter program
        assert e.value.reason == "schedule"
        assert "the schedule replayed does not match the program" in str(e.value)


def churn(k, n):
    c = k.cache("x")
    for _ in range(n):
        k.slab_free(c, k.slab_alloc(c))
    return n


def _killed(step):
    with Machine(2, "4M", schedule="random", seed=1, kill=(1, step)) as m:
        m.cpu(0).slab_cache_create("x", 100)
        with pytest.raises(smpsim.CPUError) as e:
            m.run(churn, 20, timeout=60)
        try:
            m.check()
            violations = []
        except smpsim.InvariantError as ie:
            violations = ie.violations
        return e.value, violations


def test_kill_at_a_step_is_deterministic():
    first, v1 = _killed(37)
    again, v2 = _killed(37)
    assert first.cpu == again.cpu == 1 and first.reason == again.reason == "died"
    assert (first.inside, first.locks, v1) == (again.inside, again.locks, v2)
    assert first.inside and v1                       # mid-operation: the checker says what
    assert any("CPU 1 is inside allocator code" in v for v in v1)


def test_kill_needs_a_controlled_run_and_a_real_step():
    with pytest.raises(ValueError, match=r"Machine: 'kill' needs a controlled run"):
        Machine(2, "4M", kill=(1, 3))
    with pytest.raises(ValueError, match=r"Machine: 'kill' must be \(cpu, step\) with a CPU id "
                                         r"from 0 to 1 and a step >= 1, got \(2, 3\)"):
        Machine(2, "4M", schedule="random", kill=(2, 3))
    with pytest.raises(ValueError, match=r"Machine: 'depth' must be an int from 1 to 65, got 0"):
        Machine(2, "4M", schedule="pct", depth=0)
    with pytest.raises(ValueError, match=r"Machine: 'schedule' must be None, 'random', 'pct' "
                                         r"or a smpsim.Schedule, got 'fifo'"):
        Machine(2, "4M", schedule="fifo")


def raises_on_one(k, n):
    churn(k, n)
    if k.cpu_id == 1:
        raise RuntimeError("planted")
    churn(k, n)
    return n


def test_an_exception_in_a_controlled_run_stops_every_cpu():
    with Machine(3, "4M", schedule="random", seed=4) as m:
        m.cpu(0).slab_cache_create("x", 100)
        with pytest.raises(smpsim.CPUError) as e:
            m.run(raises_on_one, 30, timeout=60)
        assert e.value.cpu == 1 and e.value.reason == "exception"
        assert "RuntimeError: planted" in str(e.value)
        m.check()
        assert m.run(churn, 5) == [5, 5, 5]          # the machine goes on
        m.check()


def test_lost_updates_are_found_by_some_schedule():
    """Two CPUs incrementing one word with a load and a store: random schedules interleave
    them, so most lose updates; each loss replays exactly."""
    def incr(k, word, n):
        for _ in range(n):
            k.atomic_store(word, k.atomic_load(word) + 1)
        return n
    lost = []
    for seed in range(10):
        with Machine(2, "4M", schedule="random", seed=seed) as m:
            k = m.cpu(0)
            w = k.kalloc(8)
            k.atomic_store(w, 0)
            m.run(incr, w, 3)
            if k.atomic_load(w) != 6:
                lost.append((seed, k.atomic_load(w), m.last_schedule))
    assert lost
    seed, value, schedule = lost[0]
    with Machine(2, "4M", schedule=schedule) as m:
        k = m.cpu(0)
        w = k.kalloc(8)
        k.atomic_store(w, 0)
        m.run(incr, w, 3)
        assert k.atomic_load(w) == value


def test_python_constants_match_the_c_scheduler():
    assert _atomics.ScheduleStop.__mro__[1] is BaseException
    assert (sched.SCHED_FREE, sched.SCHED_LAX, sched.SCHED_TOKEN) == (0, 1, 2)
    assert (sched.STRATEGY_CLOCK, sched.STRATEGY_RANDOM, sched.STRATEGY_PCT,
            sched.STRATEGY_REPLAY) == (0, 1, 2, 3)
    assert (sched.CPU_IDLE, sched.CPU_RUNNABLE, sched.CPU_BLOCKED, sched.CPU_BARRIER,
            sched.CPU_DONE) == (0, 1, 2, 3, 4)
    text = open(_sim_h()).read()
    for name in ("SCHED_FREE = 0, SCHED_LAX = 1, SCHED_TOKEN = 2",
                 "STRATEGY_CLOCK = 0, STRATEGY_RANDOM = 1, STRATEGY_PCT = 2, STRATEGY_REPLAY = 3",
                 "CPU_IDLE = 0, CPU_RUNNABLE = 1, CPU_BLOCKED = 2, CPU_BARRIER = 3, CPU_DONE = 4",
                 "FAIL_NONE = 0, FAIL_DEADLOCK = 1, FAIL_MISMATCH = 2, FAIL_LOG_FULL = 3",
                 "LOCK_KERNEL = 1, LOCK_USER = 2"):
        assert name in text


def _sim_h():
    import os
    return os.path.join(os.path.dirname(smpsim.engine.__file__), "_sim.h")


def test_a_lenient_replay_follows_what_it_can_and_records_what_ran():
    """Machine(replay="lenient") (for shrinking schedules): where the schedule names a CPU
    that cannot run, or has ended, the run goes on without a preemption; m.last_schedule is
    what ran, and replays exactly."""
    full = _controlled(60, schedule="random", seed=5)
    cut = Schedule(full[4].decisions[:len(full[4]) // 3], cpus=3)
    lenient = _controlled(60, schedule=cut, replay="lenient")
    ran = lenient[4]
    assert ran.decisions[:len(cut)] == cut.decisions and len(ran) > len(cut)
    assert ran.preemptions < full[4].preemptions
    exact = _controlled(60, schedule=ran)
    assert exact[:4] == lenient[:4]
    with pytest.raises(smpsim.CPUError) as e:
        _controlled(60, schedule=cut)                     # exact: it ends too soon
    assert e.value.reason == "schedule"
