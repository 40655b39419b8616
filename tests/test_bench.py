"""smpsim/experiment/bench.py: `smpsim bench --quick` runs every section and writes every number. No test
here asserts a time: the quick sizes are too small to mean anything, and hosts differ."""
import json
import math
import os
import subprocess
import sys

import pytest

from smpsim.experiment import bench

NUMBER = (int, float)


def _is_number(v):
    return isinstance(v, NUMBER) and not isinstance(v, bool) and math.isfinite(v)


def _check_result(res):
    assert set(res) >= {"host", "config", "hot_path", "scaling", "depot", "start", "targets"}
    assert res["host"]["nproc"] >= 1 and res["host"]["python"]
    hp = res["hot_path"]
    assert _is_number(hp["floor_ns"]) and hp["floor_ns"] > 0
    for key in ("hit_pair", "kalloc_kfree_pair", "miss_to_slab_pair", "nomagazine_pair",
                "hit_pair_python_twin", "hit_pair_no_accel", "hit_pair_debug"):
        assert _is_number(hp[key]["ns"]) and hp[key]["ns"] > 0, key
        assert _is_number(hp[key]["ratio"]) and hp[key]["ratio"] > 0, key
    sc = res["scaling"]
    cpus = [str(n) for n in res["config"]["cpus"]]
    for workload in ("threadtest", "xmalloc"):
        for variant in ("magazines", "nomagazine"):
            runs = sc[workload][variant]
            assert sorted(runs, key=int) == cpus
            for run in runs.values():
                assert run["ops_all"] > 0
                for f in ("ops_per_s", "speedup", "shared_locks_per_op", "seconds"):
                    assert _is_number(run[f]), (workload, variant, f)
                assert set(run["locks_per_op"]) == set(bench.LOCK_KINDS)
                for row in run["locks_per_op"].values():
                    assert all(_is_number(row[f]) for f in ("acquisitions", "contended", "spins"))
    # Lock traffic that does not depend on the host: with magazines and a batch that fits
    # them, threadtest touches only each CPU's own magazine lock, once per operation; without
    # magazines, every operation takes the cache's slablock.
    tt = sc["threadtest"]["magazines"]["2"]["locks_per_op"]
    assert tt["cpu_magazine"]["acquisitions"] == pytest.approx(1.0, abs=0.01)
    assert sc["threadtest"]["magazines"]["2"]["shared_locks_per_op"] < 0.05
    assert sc["threadtest"]["nomagazine"]["2"]["locks_per_op"]["slablock"]["acquisitions"] >= 1
    eff = sc["efficiency_2cpu"]
    assert _is_number(eff["python_speedup_median"])
    for name in ("shared", "percpu"):
        assert _is_number(eff[name]["efficiency_median"])
        assert _is_number(eff[name]["speedup_median"])
    for f in ("ratio_to_2", "python_ratio_to_2", "ratio_to_python_ratio", "ops_per_s_2",
              "ops_per_s_64"):
        assert _is_number(sc["oversubscribed"][f]), f
    for n, d in res["depot"].items():
        assert d["bonwick_bound_per_op"] == 1 / d["magazine_size"]
        assert all(_is_number(d[f]) for f in ("maglock_per_op", "slablock_per_op",
                                              "magazine_cache_slablock_per_op"))
        assert d["maglock_per_op"] > 0           # batches past two magazines reach the list
    assert set(res["start"]["boot_s"]) == set(res["config"]["boot"])
    assert set(res["start"]["start_s"]) == {str(n) for n in res["config"]["start"]}
    assert all(_is_number(v) for v in res["start"]["boot_s"].values())
    assert all(_is_number(v) for v in res["start"]["start_s"].values())
    sim, ctl = res["simulated"], res["controlled"]
    for mode in ("host", "simulated"):
        assert _is_number(sim["hit_pair"][mode]["ns"]) and sim["hit_pair"][mode]["ratio"] > 0
    assert len(sim["runs"]) == len(res["config"]["sim_runs"])
    for r in sim["runs"]:
        assert all(_is_number(r[f]) and r[f] > 0 for f in ("host_s", "simulated_s", "ratio"))
    assert ctl["points"] > ctl["schedules"] * ctl["ops_per_cpu"]   # several points per op
    assert all(_is_number(ctl[f]) for f in ("us_per_point", "schedule_s",
                                            "thousand_schedules_s"))
    assert len(res["targets"]) == 8 + 1 + len(sim["runs"]) + 2
    for t in res["targets"]:
        assert _is_number(t["value"]) and isinstance(t["met"], bool)


def test_quick_bench_writes_every_number(tmp_path, capsys):
    assert bench.main(["--quick", "--quiet", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "bench.json") as f:
        res = json.load(f)
    _check_result(res)
    md = (tmp_path / "bench.md").read_text()
    assert md == capsys.readouterr().out
    for heading in ("### Targets", "### 1. Hot path", "### 2. Scaling", "### 3. Lock traffic",
                    "### 4. Boot and start", "### 5. Simulated time", "### 6. Controlled runs"):
        assert heading in md
    assert "| threadtest | nomagazine |" in md and "| xmalloc | magazines |" in md


def test_cli_delegates_to_bench(capsys):
    from smpsim.experiment import cli
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--help"])
    assert e.value.code == 0
    assert "usage: smpsim bench" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        bench.main(["--no-such-option"])
    assert e.value.code == 2


@pytest.mark.slow
def test_full_bench_from_the_command_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "smpsim", "bench", "--quiet", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=1800,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "bench.json") as f:
        _check_result(json.load(f))
    assert "### Targets" in out.stdout
