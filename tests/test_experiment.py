"""The experiment layer: a small scenario run through runner.run_points, and the contents of
the result folder it writes (JSON, CSV, slabinfo), interruption and a failing CPU."""

import csv
import json
import os

import pytest

import smpsim
from smpsim.experiment import report, runner, scenario

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
    assert sorted(os.listdir(out)) == ["runs", "scenario.toml", "summary.csv", "summary.json",
                                       "sweep.csv", "sweep.md"]
    assert open(os.path.join(out, "scenario.toml")).read() == TOML

    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["partial"] is False and summary["scenario"] == "tiny"
    assert [r["id"] for r in summary["runs"]] == [r["point"]["id"] for r in results]
    table = rows(os.path.join(out, "summary.csv"))
    assert list(table[0]) == report.SUMMARY_COLUMNS
    assert [int(r["ops"]) for r in table] == [300, 300, 600, 600]
    assert [(r["label"], int(r["cpus"])) for r in rows(os.path.join(out, "sweep.csv"))] == [
        ("mag", 1), ("mag", 2), ("nomag", 1), ("nomag", 2)]
    md = open(os.path.join(out, "sweep.md")).read().splitlines()
    assert md[0] == "# tiny" and md[2].startswith("| variant | CPUs | runs | ops/s |")
    assert len(md) == 4 + len(sweep)


def test_one_run_result_contents(scn, tmp_path):
    out = str(tmp_path / "out")
    (mag, nomag), _ = runner.run_points(scn, scn.points([2]), out)
    run_dir = os.path.join(out, "runs", "mag-c2-r0")
    assert sorted(os.listdir(run_dir)) == ["cpus.csv", "locks.csv", "result.json",
                                           "slabinfo.txt", "timeseries.csv"]
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
    assert open(os.path.join(out, "sweep.md")).readline() == "# tiny (partial: interrupted)\n"


def test_a_failing_cpu_is_recorded_and_the_machine_checked(scn, tmp_path):
    [point] = scn.points()[:1]
    point.workload = dict(point.workload, cache="missing")      # every CPU raises KeyError
    r = runner.run_point(point)
    assert r["error"].startswith("CPU ")
    assert r["error_detail"]["reason"] == "exception"
    assert "KeyError" in r["error_detail"]["traceback"]
    assert r["check"] == "ok"
    assert report.summary_row(r)["error"] == r["error"]


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
    assert float(table["seed"]["magazine_size"]) == 4 and int(table["seed"]["resizes"]) == 0
    assert table["seed"]["line_miss_rate"] == ""
    md = open(os.path.join(out, "sweep.md")).read()
    assert "| ctor calls/alloc | magazine size | check |" in md
    assert "line misses/access" not in md


def test_the_walk_workload_reports_line_misses(tmp_path):
    path = tmp_path / "walk.toml"
    path.write_text(TOML.replace('name = "threadtest"\ncache = "obj"\nbatch = 2\nops = 300',
                                 'name = "walk"\ncache = "obj"\ncount = 20\npasses = 3'))
    scn = scenario.load(str(path))
    (mag, _), sweep = runner.run_points(scn, scn.points([1]), str(tmp_path / "out"))
    assert mag["cpus"][0]["line_accesses"] == 60
    assert report.summary_row(mag)["line_miss_rate"] is not None
    assert ("line_miss_rate", "line misses/access") in report.optional_columns(sweep)
