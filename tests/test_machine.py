"""smpsim/engine/machine.py and smpsim/engine/cpu.py: arguments, lifecycle, runs, statistics."""
import os

import pytest

import smpsim
from smpsim.engine.machine import SHM_DIR, parse_memory


@pytest.mark.parametrize("memory,expect", [("1M", 1 << 20), ("64M", 64 << 20), ("1G", 1 << 30),
                                           ("2048K", 2 << 20), (1 << 20, 1 << 20),
                                           ("16MiB", 16 << 20)])
def test_memory_sizes(memory, expect):
    assert parse_memory(memory) == expect


@pytest.mark.parametrize("kw,msg", [
    (dict(cpus=0), "Machine: 'cpus' must be an int from 1 to 256, got 0"),
    (dict(cpus=257), "Machine: 'cpus' must be an int from 1 to 256, got 257"),
    (dict(cpus="4"), "Machine: 'cpus' must be an int from 1 to 256, got '4'"),
    (dict(cpus=1, memory="512K"), "Machine: 'memory' must be a multiple of 4096 bytes and at "
                                  "least 1M, got 524288"),
    (dict(cpus=1, memory=(1 << 20) + 1), "Machine: 'memory' must be a multiple of 4096"),
    (dict(cpus=1, memory="64X"), "Machine: 'memory' must be an int or a string like '64M', "
                                 "got '64X'"),
    (dict(cpus=1, magazine_size=0), "Machine: 'magazine_size' must be an int from 1 to 1024, "
                                    "got 0"),
    (dict(cpus=1, magazine_size=1025), "Machine: 'magazine_size' must be an int from 1 to 1024"),
    (dict(cpus=1, counters="x"), "Machine: 'counters' must be 'shared' or 'percpu', got 'x'"),
    (dict(cpus=1, lock_timeout=0), "Machine: 'lock_timeout' must be a positive number"),
])
def test_bad_arguments(kw, msg):
    with pytest.raises(ValueError) as e:
        smpsim.Machine(**kw)
    assert str(e.value).startswith(msg)


def test_memory_beyond_shared_memory_is_refused():
    with pytest.raises(ValueError, match=r"Machine: 'memory' 1099511627776 needs a segment of "
                                         r"\d+ bytes, more than /dev/shm has free"):
        smpsim.Machine(cpus=1, memory=1 << 40)


def test_lifecycle_removes_the_segment():
    m = smpsim.Machine(cpus=2, memory="4M")
    path = os.path.join(SHM_DIR, m.name)
    assert os.path.exists(path) and m.name.startswith(f"smpsim_{os.getpid()}_")
    view = m.cpu(0).memory
    m.close()
    m.close()                                           # twice is harmless
    assert not os.path.exists(path)
    with pytest.raises(ValueError):
        view[0]                                         # views die with the machine
    with pytest.raises(smpsim.SmpsimError, match="Machine is closed"):
        m.cpu(0)


def test_a_machine_never_closed_is_cleaned_up_quietly_at_exit():
    import subprocess
    import sys
    code = ("import smpsim\n"
            "m = smpsim.Machine(cpus=2, memory='4M')\n"
            "k = m.cpu(0)\n"
            "k.slab_alloc(k.slab_cache_create('x', 10))\n"
            "print(m.name)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == ""
    assert not os.path.exists(os.path.join(SHM_DIR, p.stdout.strip()))


def test_exception_inside_with_still_cleans_up():
    with pytest.raises(RuntimeError):
        with smpsim.Machine(cpus=2, memory="4M") as m:
            name = m.name
            raise RuntimeError("boom")
    assert not os.path.exists(os.path.join(SHM_DIR, name))


def test_cpu_ids(machine):
    assert machine.cpus == 4
    with pytest.raises(ValueError, match="Machine.cpu: CPU id must be an int from 0 to 3, got 4"):
        machine.cpu(4)
    assert machine.cpu(1) is machine.cpu(1)


def _whoami(k, x):
    return (k.cpu_id, k.cpus, x)


def _alloc_some(k, n):
    c = k.cache("node")
    objs = [k.slab_alloc(c) for _ in range(n)]
    k.barrier()
    for a in objs:
        k.slab_free(c, a)
    return n


def test_run_returns_in_cpu_order(machine):
    assert machine.run(_whoami, 7) == [(i, 4, 7) for i in range(4)]
    assert machine.run(_whoami, 1, cpus=[3, 1]) == [(3, 4, 1), (1, 4, 1)]
    assert machine.run("test_machine:_whoami", 2, cpus=[0]) == [(0, 4, 2)]
    assert [c["cpu"] for c in machine.last_run["cpus"]] == [0]
    machine.check()


def test_run_allocates_on_every_cpu_and_monitors(machine):
    machine.cpu(0).slab_cache_create("node", 100)
    ticks = []
    assert machine.run(_alloc_some, 500, monitor=lambda m: ticks.append(m.cpu_stats()),
                       interval=0.001) == [500] * 4
    ops = machine.cpu_stats()
    assert [s["allocs"] for s in ops] == [500] * 4 and [s["frees"] for s in ops] == [500] * 4
    for s in ops:
        assert s["hits"] + s["misses"] == s["ops"] == 1000
    st = machine.stats()
    assert all(st["locks"][f"node.cpu{i}"]["acquisitions"] >= 1000 for i in range(4))
    machine.check()


@pytest.mark.parametrize("kw,msg", [
    (dict(cpus=[4]), "Machine.run: 'cpus' must be distinct CPU ids from 0 to 3, got [4]"),
    (dict(cpus=[1, 1]), "Machine.run: 'cpus' must be distinct CPU ids from 0 to 3, got [1, 1]"),
    (dict(timeout=0), "Machine.run: 'timeout' must be a positive number of seconds, got 0"),
])
def test_run_rejects_bad_arguments(machine, kw, msg):
    with pytest.raises(ValueError) as e:
        machine.run(_whoami, 0, **kw)
    assert str(e.value) == msg
    with pytest.raises(ValueError, match="'program' string must be 'module:function'"):
        machine.run("nocolon")
    with pytest.raises(ValueError, match="cannot find program 'no_such_module:f'"):
        machine.run("no_such_module:f")
    machine.check()


def _raise_on_2(k):
    if k.cpu_id == 2:
        raise KeyError("lost")
    k.barrier()                                  # the others wait here until stopped


def _exit_on_1(k):
    if k.cpu_id == 1:
        os._exit(3)
    k.barrier()


def _sleep(k):
    import time
    time.sleep(60)


def test_failures_become_cpu_errors(machine):
    with pytest.raises(smpsim.CPUError) as e:
        machine.run(_raise_on_2, timeout=30)
    assert (e.value.cpu, e.value.reason, e.value.inside, e.value.locks) == (2, "exception", False, [])
    assert str(e.value) == "CPU 2 raised an exception: KeyError: 'lost'"
    assert "KeyError: 'lost'" in e.value.traceback
    with pytest.raises(smpsim.CPUError) as e:
        machine.run(_exit_on_1, timeout=30)
    assert (e.value.cpu, e.value.reason) == (1, "died")
    assert str(e.value) == "CPU 1 died: exited with status 3 without a result"
    with pytest.raises(smpsim.CPUError) as e:
        machine.run(_sleep, timeout=0.5)
    assert (e.value.cpu, e.value.reason) == (0, "timeout")
    assert str(e.value) == "CPU 0 timed out: still running after 0.5 s"
    machine.check()                                  # all of them stopped outside the allocator
    assert machine.run(_whoami, 0, cpus=[0]) == [(0, 4, 0)]   # and the machine is usable


def test_stats_has_every_named_lock(machine):
    machine.cpu(0).slab_cache_create("node", 100)
    st = machine.stats()
    assert st["frames"]["total"] == machine.memory // 4096
    names = set(st["locks"])
    assert {"slab_cache_lock", "frames", "node.slablock", "node.maglock"} <= names
    assert {f"node.cpu{i}" for i in range(4)} <= names
    assert "slab_magazine.cpu0" not in names           # no magazines, no CPU locks
    for v in st["locks"].values():
        assert set(v) == {"acquisitions", "contended", "spins"}
    for v in st["caches"].values():
        assert {"size", "pages", "objects", "slabs", "cached", "allocated", "inside"} <= set(v)


def test_percpu_counters_sum_to_the_same(tmp_path):
    def run(counters):
        with smpsim.Machine(cpus=2, memory="8M", counters=counters) as m:
            c = m.cpu(0).slab_cache_create("node", 100)
            objs = [m.cpu(i % 2).slab_alloc(c) for i in range(50)]
            for a in objs[:30]:
                m.cpu(1).slab_free(c, a)
            m.check()
            st = m.stats()["caches"]["node"]
            for a in objs[30:]:
                m.cpu(0).slab_free(c, a)
            return st["allocated"], st["cached"]
    assert run("shared") == run("percpu") == (20, 30)


def test_stale_segments_of_dead_creators_are_swept():
    from smpsim.engine.machine import sweep_stale_segments
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    stale = os.path.join(SHM_DIR, f"smpsim_{dead}_abcdef")
    live = os.path.join(SHM_DIR, f"smpsim_{os.getppid()}_abcdef")
    for p in (stale, live):
        open(p, "wb").close()
    try:
        assert f"smpsim_{dead}_abcdef" in sweep_stale_segments()
        assert not os.path.exists(stale) and os.path.exists(live)
    finally:
        for p in (stale, live):
            if os.path.exists(p):
                os.unlink(p)
