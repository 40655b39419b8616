"""Finding workloads: bundled ones whatever the current folder holds, installed ones through the
entry-point group, "module:function" and files; the Heap's latency sampling; and the length of a
run in the machine's time (Budget), every bundled workload's included."""

import os
import subprocess
import sys
import time

import pytest

import smpsim
from smpsim import workloads
from smpsim.workloads import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bundled_workloads_are_found_whatever_the_current_folder_holds(tmp_path):
    """A folder with its own threadtest.py and workers/ package: smpsim still finds its own."""
    (tmp_path / "threadtest.py").write_text("raise SystemExit('the wrong threadtest')\n")
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "__init__.py").write_text("raise SystemExit('the wrong workers')\n")
    code = ("from smpsim import workloads\n"
            "print(sorted(workloads.find(n).module.__name__ for n in workloads.WORKLOADS))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(sorted(workloads.WORKLOADS.values()))


def _install(tmp_path, monkeypatch, entries):
    """A distribution on sys.path whose entry points (group smpsim.workloads) are `entries`."""
    site = tmp_path / "site"
    (site / "mywl").mkdir(parents=True)
    (site / "mywl" / "__init__.py").write_text("")
    (site / "mywl" / "spin.py").write_text(
        '"""spin: a workload from an installed package."""\n'
        "def run(k, params):\n    return {'ops': 0, 'seconds': 0.0}\n"
        "def other(k, params):\n    return {'ops': 1, 'seconds': 0.0}\n")
    info = site / "mywl-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mywl\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[smpsim.workloads]\n" + "".join(
        f"{name} = {value}\n" for name, value in entries.items()))
    monkeypatch.syspath_prepend(str(site))
    for name in [m for m in sys.modules if m == "mywl" or m.startswith("mywl.")]:
        monkeypatch.delitem(sys.modules, name)


def test_installed_workloads_come_from_entry_points(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, {"spin": "mywl.spin", "spin2": "mywl.spin:other",
                                     "larson": "mywl.spin"})
    assert workloads.installed() == {"spin": "mywl.spin", "spin2": "mywl.spin:other"}
    wl = workloads.find("spin")
    assert (wl.ref, wl.kind, wl.function, wl.program) == ("spin", "installed", "run",
                                                           "mywl.spin:run")
    assert wl.params is None and wl.columns is None
    assert wl.doc == "spin: a workload from an installed package."
    assert workloads.find("spin2").program == "mywl.spin:other"
    assert workloads.find("larson").kind == "bundled"          # bundled names come first
    with pytest.raises(KeyError, match=r"no workload 'nope'; known: burst, contend, floor, .*, "
                                       r"xmalloc, spin, spin2"):
        workloads.find("nope")


def test_smpsim_workloads_lists_installed_ones(tmp_path, monkeypatch, capsys):
    from smpsim.experiment import cli
    _install(tmp_path, monkeypatch, {"spin": "mywl.spin", "broken": "mywl.absent"})
    assert cli.main(["workloads"]) == 0
    out = capsys.readouterr().out
    assert ("# spin: a workload from an installed package.\n"
            "# installed: spin = 'mywl.spin' (entry point group 'smpsim.workloads')\n"
            'name = "spin"\n'
            "# no PARAMS: its parameters are passed on as given\n") in out
    assert "# broken (installed: mywl.absent) cannot be loaded: ValueError: cannot import " \
           "'mywl.absent'" in out
    assert 'name = "threadtest"\n' in out


def test_files_and_modules(tmp_path):
    (tmp_path / "w.py").write_text("def run(k, p):\n    return {}\ndef go(k, p):\n    return 1\n")
    wl = workloads.find("w.py:go", str(tmp_path))
    assert (wl.ref, wl.name, wl.kind) == (f"{tmp_path}/w.py:go", "w", "file")
    assert wl.program.path == f"{tmp_path}/w.py" and wl.program(None, {}) == 1
    assert workloads.find(f"{tmp_path}/w.py").ref == f"{tmp_path}/w.py:run"
    assert workloads.short_name(f"{tmp_path}/w.py:go") == "w"
    wl = workloads.find("smpsim.workloads.floor:run")
    assert (wl.ref, wl.kind, wl.params is not None) == ("smpsim.workloads.floor:run", "module",
                                                         True)
    with pytest.raises(ValueError, match="no workload file"):
        workloads.find("missing.py", str(tmp_path))
    with pytest.raises(ValueError, match="has no function 'walk'"):
        workloads.find("smpsim.workloads.floor:walk")


def _heap_run(k, every):
    heap = common.Heap(k, "", every)
    for _ in range(800):
        heap.free(heap.alloc(24))
    return heap.result("t", 0.0)


def test_the_heap_times_one_operation_in_n_at_random_gaps():
    with smpsim.Machine(1, "4M") as m:
        k = m.cpu(0)
        every_op = _heap_run(k, 1)["latency"]
        assert sum(h["count"] for h in every_op.values()) == 1600
        assert set(every_op) <= {f"{kind}/{path}" for kind in ("kalloc", "kfree")
                                 for path in ("hit", "depot", "slab", "frames")}
        assert {"kalloc/hit", "kfree/hit"} <= set(every_op)
        # one in 16 at random gaps: about 100 of 1600, both kinds (a fixed gap of 16 would
        # always land on the same phase of the alloc-free pairs: only allocations or frees)
        sampled = _heap_run(k, 16)["latency"]
        assert 60 <= sum(h["count"] for h in sampled.values()) <= 140
        assert {"kalloc/hit", "kfree/hit"} <= set(sampled)
        assert _heap_run(k, 0)["latency"] == {}
        m.check()


def test_failed_allocations_are_not_timed():
    with smpsim.Machine(1, "1M") as m:
        k = m.cpu(0)
        heap = common.Heap(k, "", 1)
        objs = []
        while len(objs) < 64 and (a := heap.alloc(65536)) is not None:
            objs.append(a)
        heap.alloc(65536)
        assert heap.failed >= 1
        assert sum(h.count for key, h in heap.latency.items()
                   if key.startswith("kalloc/")) == heap.allocs
        for a in objs:
            heap.free(a)
        m.check()


def test_the_heap_measures_with_the_machines_clock():
    """In simulated time the Heap's latencies are the CPU's cycles (latency.clock, from k.time)."""
    with smpsim.Machine(1, "4M", time="simulated") as m:
        k = m.cpu(0)
        r = _heap_run(k, 1)
        assert {h["unit"] for h in r["latency"].values()} == {"cycles"}
        assert max(h["max"] for h in r["latency"].values()) > 0
        m.check()


# --- the length of a run, in the machine's time ----------------------------------------------------

def test_a_budget_counts_simulated_seconds_on_the_cpus_clock():
    """In simulated time `seconds` are the CPU's cycles over k.hz (here 1000 cycles a second),
    counted from when the Budget was made; `ops` still count operations."""
    with smpsim.Machine(1, "4M", time="simulated", cost={"hz": 1000}) as m:
        k = m.cpu(0)
        k.compute(12345)                         # before the Budget: not counted
        budget = common.Budget(k, {"seconds": 2.0})
        k.compute(1999)
        assert budget.more(10 ** 6) and budget.elapsed() == 1.999
        k.compute(1)
        assert not budget.more(0) and budget.elapsed() == 2.0
        assert common.now(k) == k.cycles / 1000
        by_ops = common.Budget(k, {"ops": 5, "seconds": 0.0})
        assert by_ops.more(4) and not by_ops.more(5)


def test_a_budget_in_host_time_counts_host_seconds():
    with smpsim.Machine(1, "4M") as m:
        k = m.cpu(0)
        budget = common.Budget(k, {"seconds": 0.05})
        k.compute(10 ** 9)                       # charges nothing in host time
        assert budget.more(0)
        time.sleep(0.06)
        assert not budget.more(0) and budget.elapsed() >= 0.05


def test_a_budget_needs_the_kernel():
    with pytest.raises(TypeError, match=r"Budget: expected the CPU's Kernel and the "
                                        r"parameters, Budget\(k, params\), got Budget\(dict\)"):
        common.Budget({"ops": 10})


# Every bundled workload but floor, with what keeps a run short: in simulated time at 10^6
# cycles a second, `seconds` = 0.02 is 20,000 cycles, a few hundred operations.
_SIM_RUNS = {
    "threadtest": "batch = 8\nseconds = 0.02\n",
    "larson": "slots = 16\nround_ops = 20\nseconds = 0.02\n",
    "xmalloc": "seconds = 0.02\n",
    "scratch": "writes = 1\nseconds = 0.02\n",
    "kalloc_mix": "live = 16\nseconds = 0.02\n",
    "pressure": "rounds = 1\nlimit = 50\n",
    "burst": "burst = 20\nseconds = 0.02\n",
    "walk": "count = 20\npasses = 2\n",
    "contend": "live = 4\nseconds = 0.02\n",
    "racy": "atomic = true\nops = 200\n",
}
_PART = {"burst", "walk"}    # their `seconds` are one phase of the run (the steady one, the walks)


def test_every_bundled_workload_is_listed_here():
    assert set(_SIM_RUNS) | {"floor"} == set(workloads.WORKLOADS)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(_SIM_RUNS))
def test_bundled_workloads_run_for_simulated_seconds(tmp_path, name):
    """In simulated time each CPU's `seconds` are simulated seconds: at least the length asked
    for, and within the run's simulated span, which a run measured in host seconds would
    overshoot many times (host seconds spent in Python are thousands of simulated ones here)."""
    from smpsim.experiment import runner, scenario
    path = tmp_path / "s.toml"
    path.write_text(f'[machine]\ncpus = 2\nmemory = "8M"\ntime = "simulated"\n'
                    f'[cost]\nhz = 1000000\n[workload]\nname = "{name}"\n{_SIM_RUNS[name]}')
    [point] = scenario.load(str(path)).points()
    r = runner.run_point(point)
    assert r["error"] is None and r["check"] == "ok"
    assert r["time"]["mode"] == "simulated" and r["time"]["cost"]["hz"] == 10 ** 6
    asked = point.workload.get("seconds") or 0.0
    for w, c in zip(r["workers"], r["cpus"]):
        assert asked <= w["seconds"] <= r["sim_seconds"]
        if name not in _PART:                                                    # its own clock
            assert 0 <= c["cycles"] - w["seconds"] * 10 ** 6 <= 0.2 * c["cycles"]
        if name == "walk":           # its reads of simulated memory are not charged: no time
            assert w["seconds"] == 0.0
    assert r["sim_seconds"] < (2 * asked if asked and name not in _PART else 0.5)


def test_floor_has_no_meaning_in_simulated_time():
    from smpsim.workloads import floor
    with smpsim.Machine(1, "4M", time="simulated") as m:
        with pytest.raises(ValueError, match=r"floor.run: the host's ceiling has no meaning in "
                                             r"simulated time"):
            floor.run(m.cpu(0), {"ops": 1000})
    assert workloads.find("floor").times == ("host",)
    assert workloads.find("threadtest").times == ("host", "simulated")


@pytest.mark.parametrize("returns, says", [
    ("7", "run() returned int on CPU 0; expected a dict with at least 'ops' and 'seconds' "
          "(numbers)"),
    ("{'ops': 3}", "run() returned a dict without a number under 'seconds' on CPU 0 (got None); "
                   "expected at least 'ops' and 'seconds'"),
])
def test_a_workload_that_returns_the_wrong_thing_is_named(tmp_path, returns, says):
    """A user's run() that breaks the contract (a dict with `ops` and `seconds`): the run fails
    with a message naming the workload and what it returned, not a traceback from the
    collector, and the machine is left clean."""
    from smpsim.experiment import runner, scenario
    (tmp_path / "mine.py").write_text(
        "def run(k, p):\n    c = k.cache('obj')\n    k.slab_free(c, k.slab_alloc(c))\n"
        f"    return {returns}\n")
    path = tmp_path / "s.toml"
    path.write_text('[machine]\ncpus = 2\nmemory = "8M"\n[[caches]]\nname = "obj"\nsize = 64\n'
                    '[workload]\nname = "mine.py"\n')
    [point] = scenario.load(str(path)).points()
    r = runner.run_point(point)
    assert r["error"] == f"workload {tmp_path}/mine.py:run: {says}"
    assert r["check"] == "ok"
