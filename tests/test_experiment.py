"""The experiment layer: a small scenario run through runner.run_points, and the contents of
the result folder it writes (JSON, CSV, slabinfo), interruption and a failing CPU; user
workloads run like bundled ones; the setup check; result folders never mixed."""

import csv
import json
import os
import socket
import pickle

import pytest

import smpsim
from smpsim.experiment import folder, report, runner, scenario, tables

pytestmark = pytest.mark.timeout(90)

TOML = """
name = "tiny"
[machine]
cpus = 2
memory = "8M"
[[caches]]
name = "obj"
size = 100
[workload]
name = "threadtest"
cache = "obj"
batch = 2
ops = 300
[run]
interval = 0.05
[[variants]]
label = "mag"
[[variants]]
label = "nomag"
caches = [{ name = "obj", size = 100, flags = ["NOMAGAZINE"] }]
"""


@pytest.fixture
def scn(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TOML)
    return scenario.load(str(path))


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_points_writes_the_result_folder(scn, tmp_path):
    out = str(tmp_path / "out")
    results, sweep = runner.run_points(scn, scn.points([1, 2]), out)
    assert [r["point"]["id"] for r in results] == ["mag-c1-r0", "nomag-c1-r0", "mag-c2-r0",
                                                   "nomag-c2-r0"]
    assert all(r["check"] == "ok" and r["error"] is None for r in results)
    assert sorted(os.listdir(out)) == ["latency.csv", "runs", "scenario.toml", "summary.csv",
                                       "summary.json", "sweep.csv", "sweep.md"]
    assert open(os.path.join(out, "scenario.toml")).read() == TOML

    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["partial"] is False and summary["scenario"] == "tiny"
    assert [r["id"] for r in summary["runs"]] == [r["point"]["id"] for r in results]
    table = rows(os.path.join(out, "summary.csv"))
    assert list(table[0]) == tables.SUMMARY_COLUMNS
    assert [int(r["ops"]) for r in table] == [300, 300, 600, 600]
    assert [(r["label"], int(r["cpus"])) for r in rows(os.path.join(out, "sweep.csv"))] == [
        ("mag", 1), ("mag", 2), ("nomag", 1), ("nomag", 2)]
    md = open(os.path.join(out, "sweep.md")).read().splitlines()
    assert md[0] == "# tiny, host time"
    assert md[2].startswith("| variant | CPUs | runs | ops / s (host) | 95% CI |")
    assert md[4 + len(sweep):7 + len(sweep)] == ["", "## Latency (host ns; sampled operations)",
                                                 ""]


def test_one_run_result_contents(scn, tmp_path):
    out = str(tmp_path / "out")
    (mag, nomag), _ = runner.run_points(scn, scn.points([2]), out)
    run_dir = os.path.join(out, "runs", "mag-c2-r0")
    assert sorted(os.listdir(run_dir)) == ["cpus.csv", "latency.csv", "locks.csv",
                                           "result.json", "slabinfo.txt", "timeseries.csv"]
    r = json.load(open(os.path.join(run_dir, "result.json")))
    assert r == json.loads(json.dumps(mag))
    # throughput in total and per CPU
    assert r["ops"] == 600 and r["throughput"] > 0 and r["elapsed"] > 0
    assert [c["cpu"] for c in r["cpus"]] == [0, 1]
    assert all(c["ops"] == 300 and c["throughput"] > 0 for c in r["cpus"])
    # CPU time and context switches of each CPU process
    assert all(c["pid"] and c["user"] is not None and c["voluntary"] is not None
               for c in r["cpus"])
    # locks: the magazine locks carried the hit path; nothing contended on one's own lock
    assert r["locks"]["obj.cpu0"]["acquisitions"] >= 300
    assert r["locks"]["obj.cpu1"]["contended"] == 0
    assert r["magazines"]["hit_rate"] > 0.5
    assert nomag["magazines"]["hit_rate"] == 0.0
    assert "obj.cpu0" not in nomag["locks"]
    assert nomag["locks"]["obj.slablock"]["acquisitions"] >= 600
    assert r["reclaim"] == {"calls": 0, "frames": 0}
    assert r["frames"]["total"] == 2048 and r["frames"]["peak_used"] >= r["frames"]["used_before"]
    # the time series: a sample before the run and one after it
    ts = r["timeseries"]
    assert len(ts) >= 2 and ts[0]["ops"] == 0 and ts[-1]["ops"] == 600
    assert [t["t"] for t in ts] == sorted(t["t"] for t in ts)
    assert set(r["caches_peak"]) == set(r["caches_end"])
    assert r["caches_end"]["obj"]["has_magazines"] is True
    assert nomag["caches_end"]["obj"]["has_magazines"] is False

    assert [int(c["ops"]) for c in rows(os.path.join(run_dir, "cpus.csv"))] == [300, 300]
    locks = {x["lock"]: x for x in rows(os.path.join(run_dir, "locks.csv"))}
    assert int(locks["obj.cpu0"]["acquisitions"]) == r["locks"]["obj.cpu0"]["acquisitions"]
    assert len(rows(os.path.join(run_dir, "timeseries.csv"))) == len(ts)
    info = open(os.path.join(run_dir, "slabinfo.txt")).read().splitlines()
    assert info[0] == "slabinfo - version: 2.1" and info[1].startswith("# name ")
    assert any(line.split()[0] == "obj" for line in info[2:])


def test_seed_table_matches_the_kernels(tmp_path):
    with smpsim.Machine(2, "4M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("node", 100)
        objs = [k.slab_alloc(c) for _ in range(10)]
        k.slab_free(c, objs.pop())
        assert report.seed_table(m.stats()["caches"]) == k.slab_print_list()
        for a in objs:
            k.slab_free(c, a)
        k.slab_cache_destroy(c)


def test_interrupt_writes_what_finished_marked_partial(scn, tmp_path):
    out = str(tmp_path / "out")

    def interrupt(result):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        runner.run_points(scn, scn.points([1]), out, on_result=interrupt)
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["partial"] is True
    assert [r["id"] for r in summary["runs"]] == ["mag-c1-r0"]
    assert open(os.path.join(out, "sweep.md")).readline() == \
        "# tiny, host time (partial: interrupted)\n"


def test_a_failing_cpu_is_recorded_and_the_machine_checked(scn, tmp_path):
    [point] = scn.points()[:1]
    point.workload = dict(point.workload, cache="missing")      # every CPU raises KeyError
    r = runner.run_point(point)
    assert r["error"].startswith("CPU ")
    assert r["error_detail"]["reason"] == "exception"
    assert "KeyError" in r["error_detail"]["traceback"]
    assert r["check"] == "ok"
    assert tables.summary_row(r)["error"] == r["error"]


class _CtrlC:
    """A live view that presses Ctrl-C at its second frame (the first one during the run)."""

    def __init__(self):
        self.frames = 0

    def draw(self, *args, **kwargs):
        self.frames += 1
        if self.frames == 2:
            raise KeyboardInterrupt


def test_ctrl_c_during_a_run_keeps_its_counters(scn, tmp_path):
    out = str(tmp_path / "out")
    [point] = scn.points()[:1]
    point.workload = dict(point.workload, ops=0, seconds=30.0)
    with pytest.raises(runner.Interrupted):
        runner.run_points(scn, [point], out, view=_CtrlC())
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["partial"] is True
    [run] = summary["runs"]
    assert run["error"] == "interrupted" and run["ops"] > 0 and float(run["elapsed"]) < 30
    assert summary["sweep"] == []
    r = json.load(open(os.path.join(out, "runs", run["id"], "result.json")))
    assert r["error"] == "interrupted" and r["ops"] == run["ops"]


# --- user workloads, setup check, folders, what a result records -----------------------------

USER_WORKLOAD = '''"""widgets: a user's workload in a file of its own."""
import os
from smpsim.workloads.common import COMMON, LENGTH, Budget, Heap, Param, resolve

LOADED_IN = os.getpid()
PARAMS = {**COMMON, **LENGTH, "widgets": Param("int", 3, lo=1, hi=10, doc="widgets per op"),
          "log": Param("str", "", doc="a file finish() appends to")}

def prepare(k, params, cpus):
    return {**params, "_prepared": cpus}

def run(k, params):
    p = resolve(PARAMS, params)
    heap, budget = Heap(k, p["cache"], p["sample_every"]), Budget(k, p)
    while budget.more(heap.ops):
        heap.free(heap.alloc(32))
    return heap.result("widgets", budget.elapsed(), widgets=p["widgets"] * heap.ops,
                       prepared=p["_prepared"], loaded_in=LOADED_IN, pid=os.getpid())

def finish(k, params):
    with open(params["log"], "a") as f:
        f.write("finished\\n")
'''


def test_a_user_workload_file_runs_like_a_bundled_one(tmp_path, monkeypatch):
    """Named by a path relative to the scenario file (not the current folder), its PARAMS
    checked, prepare and finish called, loaded by path in every CPU process."""
    (tmp_path / "wl").mkdir()
    (tmp_path / "wl" / "widgets.py").write_text(USER_WORKLOAD)
    log = tmp_path / "finish.log"
    path = tmp_path / "s.toml"
    path.write_text(f'[machine]\ncpus = 2\nmemory = "4M"\n[workload]\nname = "wl/widgets.py"\n'
                    f'ops = 64\nsample_every = 1\nlog = "{log}"\n')
    monkeypatch.chdir(tmp_path / "wl")               # not where the scenario is
    scn = scenario.load(str(path))
    [point] = scn.points()
    assert point.workload["name"] == f"{tmp_path}/wl/widgets.py:run"
    r = runner.run_point(point)
    assert r["error"] is None and r["check"] == "ok"
    assert r["workload"] == {"ref": f"{tmp_path}/wl/widgets.py:run", "name": "widgets",
                             "kind": "file"}
    assert [w["prepared"] for w in r["workers"]] == [2, 2]
    assert [w["widgets"] for w in r["workers"]] == [192, 192]
    assert all(w["loaded_in"] == w["pid"] != os.getpid() for w in r["workers"])
    assert log.read_text() == "finished\n"
    assert r["latency"]["all"]["samples"] == 128
    row = tables.summary_row(r)
    assert (row["workload"], row["widgets"], row["prepared"]) == ("widgets", 384, 4)
    path.write_text(path.read_text().replace("ops = 64", "widgets = 11"))
    with pytest.raises(scenario.ScenarioError, match=r"key 'workload.widgets': expected an "
                                                     r"integer 1..10, got 11"):
        scenario.load(str(path))


def test_a_workload_without_params_takes_its_parameters_as_given(tmp_path, monkeypatch):
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg" / "__init__.py").write_text("")
    (tmp_path / "userpkg" / "echo.py").write_text(
        "def go(k, params):\n"
        "    return {'ops': 0, 'seconds': 0.0, 'got': sorted(params), 'knobs': params['knobs']}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "s.toml"
    path.write_text('[machine]\ncpus = 1\nmemory = "4M"\n[workload]\nname = "userpkg.echo:go"\n'
                    'knobs = 7\nanything = "goes"\n')
    [point] = scenario.load(str(path)).points()
    assert point.workload == {"name": "userpkg.echo:go", "knobs": 7, "anything": "goes"}
    r = runner.run_point(point)
    assert r["error"] is None and r["workers"][0]["got"] == ["anything", "knobs"]
    assert r["columns"] == [["knobs", "knobs"]]            # its numbers become its columns


def test_every_point_is_set_up_before_the_first_runs(tmp_path):
    """larson's exchange area for 30000 objects per CPU fits 1 MiB on 1 CPU, not on 4: the
    sweep stops before its first run, and its folder is not made."""
    path = tmp_path / "s.toml"
    path.write_text('[machine]\nmemory = "1M"\n[workload]\nname = "larson"\nslots = 30000\n'
                    'ops = 100\n')
    scn = scenario.load(str(path))
    out = str(tmp_path / "out")
    with pytest.raises(scenario.ScenarioError, match="cannot be set up on 4 CPUs"):
        runner.run_points(scn, scn.points([1, 4]), out)
    assert not os.path.exists(out)


def test_run_points_refuses_a_folder_with_content(scn, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep")
    with pytest.raises(folder.FolderError, match="not empty"):
        runner.run_points(scn, scn.points()[:1], str(out))
    assert os.listdir(out) == ["old.txt"]


def test_every_machine_key_reaches_the_machine(scn, monkeypatch):
    """runner passes [machine] on generically: a key added to MACHINE_KEYS needs no runner code."""
    seen = {}

    class Recorder:
        def __init__(self, cpus, **kw):
            seen.update(kw, cpus=cpus)
    monkeypatch.setitem(scenario.MACHINE_KEYS, "colour", (lambda c, v, key: c.bool(v, key),
                                                          False))
    monkeypatch.setattr(smpsim, "Machine", Recorder)
    [point] = scn.points()[:1]
    point.machine["colour"] = True
    runner._machine(point)
    assert seen == {"cpus": 2, "memory": 8 << 20, "magazine_size": 4, "debug": False,
                    "counters": "shared", "lock_timeout": None, "time": "host", "quantum": None,
                    "cost": None, "colour": True,
                    "resize_magazines": False, "empty_magazines": False,
                    "cpu_magazine_cache": False, "slab_locks": False, "reap_every": None,
                    "resize_threshold": 3, "resize_period": 1.0}


def test_a_result_records_where_and_how_it_was_measured(scn, tmp_path):
    [point] = scn.points()[:1]
    point.workload = dict(point.workload, sample_every=1)
    point_copy = pickle.loads(pickle.dumps(point))       # a remote executor gets a copy
    r = runner.run_point(point_copy)
    pickle.dumps(r)
    h = r["host"]
    assert h["smpsim"] == (getattr(smpsim, "__version__", None) or
                           __import__("importlib.metadata").metadata.version("smpsim"))
    assert h["cores"] == os.cpu_count() and h["cpu_model"] and h["python"]
    assert h["name"] == socket.gethostname()
    assert len(h["loadavg"]) == 3
    assert set(h["interference"]) == {"busy_cores", "other_cores", "loadavg"}
    assert h["interference"]["other_cores"] >= 0
    assert r["seed"] == 1
    lat = r["latency"]
    # 300 operations per CPU, every one timed
    assert lat["all"]["samples"] == 600 == sum(v["samples"] for k, v in lat.items()
                                               if k != "all")
    assert {"slab_alloc/hit", "slab_free/hit"} <= set(lat)
    assert lat["all"]["unit"] == "ns" and 0 < lat["all"]["p50"] <= lat["all"]["p99"]
    assert "latency" not in r["workers"][0]               # merged into the run's
    assert sum(r["magazines"]["misses_by_path"].values()) == r["magazines"]["misses"]


class _Frames:
    """A live view that records the numbers of every frame it is asked to draw."""

    def __init__(self):
        self.frames = []

    def draw(self, stats, cpu, elapsed, ops, label="", force=False, sim_seconds=None):
        self.frames.append((elapsed, ops, force))
        self.sim = sim_seconds


def test_the_live_views_last_frame_is_the_runs_own_numbers(scn):
    view = _Frames()
    [point] = scn.points()[:1]
    r = runner.run_point(point, view=view)
    elapsed, ops, force = view.frames[-1]
    assert force and ops == r["ops"] and elapsed == r["elapsed"]
    assert ops / elapsed == r["throughput"]


def test_a_workload_that_does_not_clean_up_is_refused_before_the_runs(tmp_path):
    (tmp_path / "leaky.py").write_text(
        "def prepare(k, params, cpus):\n"
        "    k.slab_alloc(k.cache('obj'))\n"
        "    return params\n"
        "def run(k, params):\n"
        "    return {'ops': 0, 'seconds': 0.0}\n")
    path = tmp_path / "s.toml"
    path.write_text('[machine]\nmemory = "4M"\n[[caches]]\nname = "obj"\nsize = 64\n'
                    '[workload]\nname = "leaky.py"\n')
    scn = scenario.load(str(path))
    with pytest.raises(scenario.ScenarioError, match=r"cannot be set up on 2 CPUs: its clean-up "
                                                     r"failed: .*'obj'"):
        runner.check_setup(scn.points())


def test_lock_times_the_engine_counts_reach_the_tables(tmp_path):
    """In simulated time the engine counts cycles locks were waited for and held: the run's
    totals and the sweep table show them per operation and per acquisition."""
    path = tmp_path / "tiny.toml"
    path.write_text(TOML.replace("[machine]", "[machine]\ntime = \"simulated\""))
    [point] = scenario.load(str(path)).points()[:1]
    r = runner.run_point(point)
    t = r["lock_totals"]
    assert t["hold_cycles"] > 0 and t["hold_cycles_per_acq"] == t["hold_cycles"] / \
        t["acquisitions"]
    assert r["locks"]["obj.cpu0"]["hold_cycles_per_acq"] > 0
    headings = [c[1] for c in tables.sweep_columns(tables.aggregate([tables.summary_row(r)]))]
    assert {"lock wait cycles/op", "wait cycles/acq", "lock hold cycles/op",
            "hold cycles/acq"} <= set(headings)


OPTIONS_TOML = """
name = "opts"
[machine]
cpus = 2
memory = "8M"
[[caches]]
name = "obj"
size = 100
ctor = "smpsim.workloads.objects:construct"
dtor = "smpsim.workloads.objects:destruct"
[workload]
name = "threadtest"
cache = "obj"
batch = 40
ops = 2000
[run]
interval = 0.05
[[variants]]
label = "seed"
[[variants]]
label = "options"
[variants.machine]
resize_magazines = true
resize_threshold = 0
colour = true
reap_every = 0.01
empty_magazines = true
cpu_magazine_cache = true
slab_locks = true
"""


def test_the_options_reach_the_machine_and_the_tables(tmp_path):
    path = tmp_path / "opts.toml"
    path.write_text(OPTIONS_TOML)
    scn = scenario.load(str(path))
    out = str(tmp_path / "out")
    (seed, opts), sweep = runner.run_points(scn, scn.points([2]), out)
    assert seed["check"] == opts["check"] == "ok"
    # Constructor calls per allocation: objects come back constructed from the magazines.
    for r in (seed, opts):
        assert 0 < r["options"]["ctor_per_alloc"] < 0.5
        assert r["options"]["constructed"] > 0
    assert seed["options"]["magazine_sizes"] == {"obj": 4} and seed["options"]["resizes"] == 0
    # Every option reached the machine (whether the magazines grew depends on the host).
    assert {"slab_magazine_cpu", "slab_magazine_7"} <= set(opts["caches_end"])
    assert "obj.emptylock" in opts["locks"] and "obj.slablocks" in opts["locks"]
    assert opts["options"]["reap_calls"] > 0
    assert "slab_magazine_cpu" not in seed["caches_end"]
    table = {r["label"]: r for r in rows(os.path.join(out, "summary.csv"))}
    assert int(table["seed"]["resizes"]) == 0 and table["seed"]["magazine_size"] == ""
    assert table["seed"]["line_miss_rate"] == "" and int(table["seed"]["frames_held"]) > 0
    md = open(os.path.join(out, "sweep.md")).read()
    assert "| frames held | ctor calls/alloc |" in md and "line misses/access" not in md


def test_the_walk_workload_reports_line_misses(tmp_path):
    path = tmp_path / "walk.toml"
    path.write_text(TOML.replace('name = "threadtest"\ncache = "obj"\nbatch = 2\nops = 300',
                                 'name = "walk"\ncache = "obj"\ncount = 20\npasses = 3'))
    scn = scenario.load(str(path))
    (mag, _), sweep = runner.run_points(scn, scn.points([1]), str(tmp_path / "out"))
    assert mag["cpus"][0]["line_accesses"] == 60
    assert tables.summary_row(mag)["line_miss_rate"] is not None
    assert ("line_miss_rate", "line misses/access", None) in tables.sweep_columns(sweep)


# --- simulated time -------------------------------------------------------------------------------

COMPUTE = """
def run(k, params):
    for _ in range(10):
        k.compute(1000)          # 10 operations of 1000 cycles each, on every CPU
    return {"ops": 10, "seconds": 0.0}
"""


def test_simulated_throughput_is_operations_per_simulated_second(tmp_path):
    """The run's span runs from the common start clock (the setup on CPU 0 advanced only its
    clock) to the latest clock at the end: 10,000 cycles at 10^6 cycles a second is 0.01
    simulated seconds for 20 operations, whatever the host took; the quantum and the cost model
    reach the machine; the host's numbers stay beside."""
    (tmp_path / "compute.py").write_text(COMPUTE)
    path = tmp_path / "s.toml"
    path.write_text('[machine]\ncpus = 2\nmemory = "4M"\ntime = "simulated"\nquantum = 0\n'
                    '[cost]\nhz = 1000000\ntransfer = 200\n[workload]\nname = "compute.py"\n')
    [point] = scenario.load(str(path)).points()
    r = runner.run_point(point)
    assert r["error"] is None and r["check"] == "ok"
    t = r["time"]
    assert (t["mode"], t["quantum"], t["hz"]) == ("simulated", 0, 10 ** 6)
    assert t["cost"] == {"hit": 5, "transfer": 200, "atomic": 20, "hz": 10 ** 6}
    assert t["start"] > 0 and t["end"] == t["start"] + 10000
    assert [c["cycles"] for c in r["cpus"]] == [10000, 10000]
    assert (r["ops"], r["sim_seconds"], r["throughput"]) == (20, 0.01, 2000.0)
    assert r["throughput_unit"] == "ops / simulated s"
    assert (r["cycles_per_op"], r["transfers_per_op"]) == (1000.0, 0.0)
    assert r["host_throughput"] == 20 / r["elapsed"] != r["throughput"]
    row = tables.summary_row(r)
    assert (row["time"], row["throughput_unit"], row["throughput"], row["cycles_per_op"]) == (
        "simulated", "ops / simulated s", 2000.0, 1000.0)
    assert row["host_throughput"] == r["host_throughput"]


def test_a_simulated_sweep_reports_transfers_and_lock_waits(tmp_path):
    """Without magazines two CPUs pass the slab lock's and the slab's lines back and forth: line
    transfers and lock wait cycles per operation are the sums of the CPUs' and the locks' counts
    over the operations; on one CPU nothing is transferred. The time series and the live view's
    last frame carry simulated seconds, and the tables say which time they show."""
    path = tmp_path / "tiny.toml"
    path.write_text(TOML.replace("[machine]", "[machine]\ntime = \"simulated\""))
    scn = scenario.load(str(path))
    out = str(tmp_path / "out")
    view = _Frames()
    points = [p for p in scn.points([1, 2]) if p.label == "nomag"]
    results, sweep = runner.run_points(scn, points, out, view=view)
    one, two = results
    assert all(r["check"] == "ok" for r in results)
    assert one["transfers_per_op"] == 0.0
    assert two["transfers_per_op"] == sum(c["transfers"] for c in two["cpus"]) / two["ops"] > 0
    waits = sum(d.get("wait_cycles", 0) for d in two["locks"].values())
    assert two["lock_totals"]["wait_cycles_per_op"] == waits / two["ops"] > 0
    assert two["cycles_per_op"] == sum(c["cycles"] for c in two["cpus"]) / two["ops"]
    assert view.sim == two["sim_seconds"] and two["throughput"] == two["ops"] / two["sim_seconds"]
    series = two["timeseries"]
    assert series[0]["sim_t"] == 0 and series[-1]["sim_t"] == two["sim_seconds"]
    md = open(os.path.join(out, "sweep.md")).read().splitlines()
    assert md[0] == "# tiny, simulated time"
    assert md[2].startswith("| variant | CPUs | runs | ops / simulated s | 95% CI | CV | per CPU "
                            "| speed-up | cycles/op | transfers/op | lock wait cycles/op |")
    assert "| host s | ops / s (host) | ops per CPU-s (host) |" in md[2]
    assert "## Latency (simulated cycles; sampled operations)" in md
    csv_rows = rows(os.path.join(out, "sweep.csv"))
    assert [(r["time"], r["throughput_unit"]) for r in csv_rows] == [
        ("simulated", "ops / simulated s")] * 2
    assert float(csv_rows[1]["transfers_per_op"]) == pytest.approx(two["transfers_per_op"])
