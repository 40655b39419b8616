"""smpsim/engine/_fastpath.c against its Python twin (smpsim/engine/fastpath.py) and the unaccelerated path.

The same operation sequence runs on machines that differ only in Machine(accel=...): the C
accelerator, its pure-Python twin, and none ("off", the seed's whole Python path). Everything
runs in this one process, so even the lock counters must agree: after every sequence the whole
shared-memory segment (simulated memory, frame table, object table, locks, CPU control lines)
must be the same byte for byte, every return value and every error message the same.
"""
import os
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smpsim
from smpsim import (FRAME_ATOMIC, FRAME_NO_RECLAIM, SLAB_CACHE_NOMAGAZINE, SLAB_RECLAIM_ALL,
                    Machine)
from smpsim.engine import fastpath

ACCELS = ("c", "python", "off")
SIZES = [8, 24, 64, 100, 700, 4096]


def _outcome(fn, *args, **kw):
    try:
        return ("ok", fn(*args, **kw))
    except Exception as e:          # noqa: BLE001 - the error itself is what is compared
        return ("error", type(e).__name__, str(e))


class Twins:
    """One Machine per accelerator, driven in lockstep from the CPUs `cpu_ids` (the caller's
    Kernels of those CPUs, one after another): every call's outcome must agree."""

    def __init__(self, stack, cpu_ids=(0,), **machine_kw):
        self.machines = [stack.enter_context(Machine(accel=a, **machine_kw)) for a in ACCELS]
        self.cpu_ids = list(cpu_ids)
        self.by_cpu = {c: [m.cpu(c) for m in self.machines] for c in self.cpu_ids}
        self.kernels = self.by_cpu[self.cpu_ids[0]]
        self.caches = []          # per cache: one handle per machine
        self.live = []            # (cache index or None for kalloc, address)

    def on(self, cpu):
        """Make the following calls on CPU `cpu`."""
        self.kernels = self.by_cpu[cpu]

    def do(self, method, *args, **kw):
        """Call method on the current CPU of every machine (handles given as cache indexes);
        the outcome."""
        outcomes = []
        for i, k in enumerate(self.kernels):
            real = [self.caches[a.index][i] if isinstance(a, CacheRef) else a for a in args]
            outcomes.append(_outcome(getattr(k, method), *real, **kw))
        assert all(o == outcomes[0] for o in outcomes), (method, args, kw, outcomes)
        return outcomes[0]

    def same_state(self):
        segments = [bytes(m._shm.buf) for m in self.machines]
        for a, seg in zip(ACCELS[1:], segments[1:]):
            if seg != segments[0]:
                diff = next(i for i in range(len(seg)) if seg[i] != segments[0][i])
                pytest.fail(f"accel={a!r} differs from accel='c' first at byte {diff:#x}")
        for m in self.machines:
            m.check()


class CacheRef:
    def __init__(self, index):
        self.index = index


def _step(t, rng):
    """One random operation on the twins, on one of their CPUs."""
    t.on(rng.choice(t.cpu_ids))
    r = rng.random()
    if r < 0.04 or not t.caches:
        name = f"c{len(t.caches)}"
        flags = SLAB_CACHE_NOMAGAZINE if rng.random() < 0.3 else 0
        size = rng.choice(SIZES)
        outs = [k.slab_cache_create(name, size, 0, flags) for k in t.kernels]
        t.caches.append(outs)
        return
    ci = rng.randrange(len(t.caches))
    ref = CacheRef(ci)
    if r < 0.35:
        flags = rng.choice([0, 0, FRAME_ATOMIC, FRAME_NO_RECLAIM])
        how = rng.random()
        out = (t.do("slab_alloc", ref) if how < 0.6 else t.do("slab_alloc", ref, flags) if
               how < 0.8 else t.do("slab_alloc", ref, flags=flags))
        if out[0] == "ok" and out[1]:
            t.live.append((ci, out[1]))
    elif r < 0.5:
        out = t.do("kalloc", rng.choice([1, 8, 9, 64, 100, 1000, 5000]),
                   *([rng.choice([0, FRAME_ATOMIC])] if rng.random() < 0.5 else []))
        if out[0] == "ok" and out[1]:
            t.live.append((None, out[1]))
    elif r < 0.85 and t.live:
        ci, a = t.live.pop(rng.randrange(len(t.live)) if rng.random() < 0.3 else -1)
        out = t.do("kfree", a) if ci is None else t.do("slab_free", CacheRef(ci), a)
        assert out[0] == "ok", out
    elif r < 0.92:
        # Invalid frees: double, interior, wrong cache, out of range, not an int.
        a = t.live[-1][1] if t.live else 4096
        bad = rng.choice([a + 8, a + 1, 0, 1 << 40, -8, "x", None, True])
        if bad in {addr for _, addr in t.live}:
            bad += 1                                    # 8 bytes on: the next live object
        if rng.random() < 0.5:
            t.do("slab_free", ref, bad)
        else:
            t.do("kfree", bad)
    elif r < 0.95:
        t.do("slab_reclaim", rng.choice([0, SLAB_RECLAIM_ALL]))
    elif r < 0.97:
        # Destroy a cache when it is empty (else CacheNotEmpty), then use its dead handle.
        if t.do("slab_cache_destroy", ref)[0] == "ok":
            t.live = [(c, a) for c, a in t.live if c != ci]
            t.do("slab_alloc", ref)
    else:
        t.do("slab_alloc", ref, 99)                     # a bad flag
        t.do("kalloc", 0)
        t.do("kalloc", 1 << 20)


@pytest.mark.parametrize("seed, kw, cpu_ids", [
    (1, {}, (0,)),
    (2, {"counters": "percpu"}, (1,)),
    (3, {"magazine_size": 1}, (0, 1)),
    (4, {"magazine_size": 16, "cpus": 3}, (2, 0, 1)),
    (5, {"memory": "1M"}, (1, 0)),               # runs out of memory: reclaim, None, errors
    (6, {"cpus": 4, "counters": "percpu"}, (3, 1)),
    # Simulated time: the same cycles too (the clocks and the coherence tags are in the
    # segment), frees of one CPU's objects on another paying transfers.
    (7, {"time": "simulated"}, (0, 1)),
    (8, {"time": "simulated", "quantum": 0, "cpus": 3, "counters": "percpu"}, (2, 1)),
])
def test_random_sequences_leave_identical_segments(seed, kw, cpu_ids):
    from contextlib import ExitStack
    rng = random.Random(seed)
    with ExitStack() as stack:
        t = Twins(stack, cpu_ids, **{"cpus": 2, "memory": "4M", **kw})
        for _ in range(1500):
            _step(t, rng)
        t.same_state()
        while t.live:
            ci, a = t.live.pop()
            out = t.do("kfree", a) if ci is None else t.do("slab_free", CacheRef(ci), a)
            assert out[0] == "ok", out
        t.do("slab_reclaim", SLAB_RECLAIM_ALL)
        t.same_state()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.sampled_from(["alloc", "free", "kalloc", "kfree", "reclaim"]),
                              st.integers(0, 3), st.integers(1, 5000)), max_size=80),
       magazine_size=st.sampled_from([1, 2, 4]), percpu=st.booleans())
def test_hypothesis_sequences(ops, magazine_size, percpu):
    from contextlib import ExitStack
    with ExitStack() as stack:
        t = Twins(stack, cpus=2, memory="2M", magazine_size=magazine_size,
                  counters="percpu" if percpu else "shared")
        t.caches.append([k.slab_cache_create("a", 40) for k in t.kernels])
        t.caches.append([k.slab_cache_create("b", 200, 0, SLAB_CACHE_NOMAGAZINE)
                         for k in t.kernels])
        for op, which, n in ops:
            if op == "alloc":
                out = t.do("slab_alloc", CacheRef(which % 2), FRAME_ATOMIC)
                if out[1]:
                    t.live.append((which % 2, out[1]))
            elif op == "kalloc":
                out = t.do("kalloc", n, FRAME_ATOMIC)
                if out[1]:
                    t.live.append((None, out[1]))
            elif op in ("free", "kfree") and t.live:
                ci, a = t.live.pop(-1 - which % len(t.live))
                t.do("kfree", a) if ci is None else t.do("slab_free", CacheRef(ci), a)
                t.do("kfree", a)                 # a double free: the same InvalidFree
            elif op == "reclaim":
                t.do("slab_reclaim", which % 2)
        t.same_state()


def test_accelerator_is_used_and_misses_go_to_python():
    with Machine(cpus=1, memory="4M") as m:
        k = m.cpu(0)
        assert fastpath.c_available()
        assert type(k._fast).__name__ == "FastPath"
        c = k.slab_cache_create("x", 64)
        a = k.slab_alloc(c)                      # a miss: from a slab
        k.slab_free(c, a)                        # a miss: a new magazine
        b = k.slab_alloc(c)                      # a hit
        assert b == a
        k.slab_free(c, b)
        st_ = m.cpu_stats()[0]
        assert (st_["hits"], st_["misses"]) == (2, 2)
        assert k._sa.ld(k._sa.ctl + smpsim.engine.layout.CPU_CTL.in_kernel) == 0
        m.check()


def test_debug_and_off_use_no_accelerator():
    pytest.importorskip("smpsim.engine.debug")
    with Machine(cpus=1, memory="4M", debug=True) as m:
        assert m.cpu(0)._fast is None
        assert "slab_alloc" not in vars(m.cpu(0))
    with Machine(cpus=1, memory="4M", accel="off") as m:
        assert m.cpu(0)._fast is None
    with Machine(cpus=1, memory="4M", accel=False) as m:
        assert type(m.cpu(0)._fast) is fastpath.PyFastPath


def test_bad_accel_argument():
    with pytest.raises(ValueError, match="Machine: 'accel' must be one of c, python, off"):
        Machine(cpus=1, memory="4M", accel="fast")


def test_environment_turns_the_c_accelerator_off():
    code = ("import smpsim\n"
            "with smpsim.Machine(cpus=1, memory='4M') as m:\n"
            "    print(type(m.cpu(0)._fast).__name__)\n")
    env = dict(os.environ, SMPSIM_NO_ACCEL="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "PyFastPath"


def test_errors_keep_their_messages():
    """Every error comes from the Python method, so its message is the one without accelerator."""
    from contextlib import ExitStack
    with ExitStack() as stack:
        t = Twins(stack, cpus=1, memory="4M")
        t.caches.append([k.slab_cache_create("x", 64) for k in t.kernels])
        t.caches.append([k.slab_cache_create("y", 64) for k in t.kernels])
        x, y = CacheRef(0), CacheRef(1)
        a = t.do("slab_alloc", x)[1]
        b = t.do("kalloc", 64)[1]
        errors = [("slab_free", y, a), ("slab_free", x, a + 8), ("slab_free", x, a + 1),
                  ("slab_free", x, 3), ("slab_free", x, "a"), ("slab_free", x, b),
                  ("kfree", a), ("kfree", b + 64), ("slab_alloc", x, 8), ("slab_alloc", 3),
                  ("kalloc", 0), ("kalloc", 64, -1), ("kalloc", 2.0)]
        for method, *args in errors:
            assert t.do(method, *args)[0] == "error", (method, args)
        t.do("slab_free", x, a)
        t.do("kfree", b)
        assert t.do("slab_free", x, a)[0] == "error"          # double frees
        assert t.do("kfree", b)[0] == "error"
        t.do("slab_cache_destroy", x)
        assert t.do("slab_alloc", x)[1] == "InvalidCache"
        assert t.do("slab_free", x, a)[1] == "InvalidCache"
        assert t.do("slab_alloc")[1] == "TypeError"
        t.same_state()


def _hits(k, cache, n):
    out = []
    for _ in range(n):
        a = k.slab_alloc(cache)
        k.slab_free(cache, a)
        out.append(a)
    return len(out)


def test_cpus_in_processes_use_the_accelerator():
    with Machine(cpus=2, memory="8M") as m:
        c = m.cpu(0).slab_cache_create("x", 64)
        assert m.run(_hits, c, 500) == [500, 500]
        cpus = m.cpu_stats()
        assert all(row["hits"] >= 996 for row in cpus), cpus
        m.check()


@pytest.mark.parametrize("accel", ["c", "python"])
def test_a_hit_that_finds_its_magazine_lock_held_counts_the_contention(accel):
    """Reclaim on another CPU may hold this CPU's magazine lock: the hit path waits for it and
    counts one contended acquisition, also when the lock is free again at its next look."""
    import threading
    from smpsim.engine.layout import CACHE, CPU_MAGS
    with Machine(2, "4M", accel=accel) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("h", 64)
        k.slab_free(c, k.slab_alloc(c))                # a warm magazine: the next alloc hits
        lock = c._addr + CACHE.mag_cache + CPU_MAGS.lock
        arena = m.cpu(1)._sa.arena
        assert arena.lock(lock, 2, 0.5) == 0           # CPU 1 holds CPU 0's magazine lock
        releaser = threading.Timer(0.05, arena.unlock, (lock, 2))
        releaser.start()
        before = m.stats()["locks"]["h.cpu0"]
        a = k.slab_alloc(c)
        releaser.join()
        after = m.stats()["locks"]["h.cpu0"]
        assert k.last_path == "hit"
        assert after["acquisitions"] - before["acquisitions"] == 1
        assert after["contended"] - before["contended"] == 1
        assert after["spins"] > before["spins"]
        k.slab_free(c, a)
        m.check()
