"""Result tables: the sweep aggregate (declared order, variation, speed-up), the columns that
appear only when there is something to show (lock times, a workload's own numbers), Markdown,
and the latency table merged over runs."""

import math

import pytest

from smpsim.experiment import tables
from smpsim.workloads.latency import Histogram


def row(label, cpus, tp, check="ok", error="", **extra):
    return {"label": label, "cpus": cpus, "throughput": tp, "ops_per_cpu_s": tp / 2,
            "hit_rate": 0.9, "contended_per_op": 0.01, "spins_per_op": 0.1,
            "shared_list_per_op": 0.0, "other_cores": 0.5, "check": check, "error": error,
            **extra}


def test_aggregate_means_variation_and_speedup():
    out = tables.aggregate([row("m", 2, 300.0), row("m", 1, 100.0), row("m", 2, 100.0),
                            row("n", 1, 50.0, check="violations"), row("n", 2, 1.0, error="x")])
    assert [(r["label"], r["cpus"], r["runs"]) for r in out] == [("m", 1, 1), ("m", 2, 2),
                                                                 ("n", 1, 1)]
    m1, m2, n1 = out
    assert m2["throughput"] == 200.0 and m2["speedup"] == 2.0 and m1["speedup"] == 1.0
    assert tables.aggregate([row("x", 2, 5.0)])[0]["speedup"] is None
    assert m2["throughput_sd"] == pytest.approx(141.42, abs=0.01)
    assert m2["throughput_cv"] == pytest.approx(141.42 / 200, abs=1e-4)
    assert m2["throughput_ci95"] == pytest.approx(12.7062 * 141.4214 / math.sqrt(2), rel=1e-4)
    assert m1["throughput_cv"] is None and m1["throughput_ci95"] is None
    assert m2["throughput_per_cpu"] == 100.0 and m2["ops_per_cpu_s_cv"] == m2["throughput_cv"]
    assert n1["check"] == "violations"


def test_rows_keep_the_scenarios_order():
    rows = [row(label, n, 1.0) for n in (1, 2) for label in ("zeta", "alpha", "mid")]
    assert [(r["label"], r["cpus"]) for r in tables.aggregate(rows)] == [
        ("zeta", 1), ("zeta", 2), ("alpha", 1), ("alpha", 2), ("mid", 1), ("mid", 2)]


def test_columns_show_what_there_is():
    plain = tables.aggregate([row("m", 1, 10.0)])
    headings = [c[1] for c in tables.sweep_columns(plain)]
    assert headings[:6] == ["variant", "CPUs", "runs", "ops / s (host)", "95% CI", "CV"]
    assert headings[-2:] == ["other load (cores)", "check"]
    assert not any("lock" in h or "failed" in h for h in headings)
    cols = [["failed", "failed allocs"], ["reclaim_calls", "reclaim calls"]]
    rich = tables.aggregate([
        row("p", 1, 10.0, columns=cols, failed=4, reclaim_calls=2, lock_wait_ns_per_op=30.0,
            lock_wait_ns_per_acq=60.0, lock_hold_ns_per_op=10.0, lock_hold_ns_per_acq=20.0),
        row("p", 1, 12.0, columns=cols, failed=6, reclaim_calls=4, lock_wait_ns_per_op=50.0,
            lock_wait_ns_per_acq=80.0, lock_hold_ns_per_op=10.0, lock_hold_ns_per_acq=20.0)])
    headings = [c[1] for c in tables.sweep_columns(rich)]
    assert headings[13:19] == ["lock wait ns/op", "wait ns/acq", "lock hold ns/op",
                               "hold ns/acq", "failed allocs", "reclaim calls"]
    r = rich[0]
    assert (r["failed"], r["reclaim_calls"], r["lock_wait_ns_per_op"]) == (5.0, 3.0, 40.0)
    md = tables.sweep_markdown(rich).splitlines()
    assert md[2].startswith("| p | 1 | 2 | 11 | ± 12.71 | 12.9% | 11 |")


def test_markdown_table():
    rows = [{"a": "x", "b": 1234567.0, "c": 0.5, "n": 12345}, {"a": "y", "b": None, "c": 3,
                                                               "n": 7}]
    md = tables.markdown_table(rows, [("a", "A"), ("b", "B"), ("c", "C"), ("n", "N")])
    assert md.splitlines() == ["| A | B | C | N |", "| --- | ---: | ---: | ---: |",
                               "| x | 1,234,567 | 0.5 | 12,345 |", "| y |  | 3 | 7 |"]


def _run(label, rep, values, error=None):
    h = Histogram()
    for v in values:
        h.record(v)
    s = dict(h.summary(), histogram=h.as_dict())
    return {"point": {"label": label, "cpus": 2, "rep": rep}, "error": error,
            "latency": {"kalloc/hit": s, "all": s}}


def test_latency_table_merges_the_runs():
    runs = [_run("b", 0, [100] * 50), _run("b", 1, [120] * 50), _run("a", 0, [7]),
            _run("b", 2, [999], error="CPU 1 died")]
    out = tables.latency_table(runs)
    assert [(r["label"], r["kind"], r["path"]) for r in out] == [
        ("b", "all", ""), ("b", "kalloc", "hit"), ("a", "all", ""), ("a", "kalloc", "hit")]
    b = out[0]
    assert (b["runs"], b["samples"], b["p50"], b["p99"]) == (2, 100, 100, 120)
    assert b["p50_cv"] == pytest.approx(20 / math.sqrt(2) / 110)
    md = tables.latency_markdown(out).splitlines()
    assert md[0] == "## Latency (host ns; sampled operations)"
    assert md[2].startswith("| variant | CPUs | operation | path | runs | samples | p50 (ns) |")
    assert md[4] == "| b | 2 | all |  | 2 | 100 | 100 | 12.9% | 120 | 12.9% | 120 |"


def test_summary_columns_add_lock_times_and_workload_columns():
    rows = [{"lock_hold_cycles_per_op": 1.0, "columns": [["waits", "queue waits"]]}]
    cols = tables.summary_columns(rows)
    assert cols[:len(tables.SUMMARY_COLUMNS)] == tables.SUMMARY_COLUMNS
    assert cols[len(tables.SUMMARY_COLUMNS):] == ["lock_hold_cycles_per_op",
                                                  "lock_hold_cycles_per_acq", "waits"]


# --- simulated time ------------------------------------------------------------------------------

def sim_row(label, cpus, tp, **extra):
    return row(label, cpus, tp, time="simulated", cycles_per_op=100.0 * cpus,
               transfers_per_op=0.5, host_throughput=tp / 1000, elapsed=2.0, sim_seconds=0.001,
               **extra)


def test_a_simulated_table_says_its_time_and_keeps_the_hosts_numbers_beside():
    rows = [sim_row("m", 1, 10.0), sim_row("m", 1, 10.0), sim_row("m", 2, 20.0,
                                                                   lock_wait_cycles_per_op=3.0)]
    out = tables.aggregate(rows)
    assert [(r["time"], r["throughput_unit"]) for r in out] == [
        ("simulated", "ops / simulated s")] * 2
    assert (out[1]["cycles_per_op"], out[1]["transfers_per_op"], out[1]["host_throughput"]) == (
        200.0, 0.5, 0.02)
    assert out[0]["throughput_cv"] == 0.0                # exact repeats: no spread
    headings = [c[1] for c in tables.sweep_columns(out)]
    assert headings[:11] == ["variant", "CPUs", "runs", "ops / simulated s", "95% CI", "CV",
                             "per CPU", "speed-up", "cycles/op", "transfers/op",
                             "lock wait cycles/op"]
    assert headings[-5:] == ["host s", "ops / s (host)", "ops per CPU-s (host)",
                             "other load (cores)", "check"]
    csv_cols = tables.sweep_csv_columns(out)
    assert csv_cols[:6] == ["label", "cpus", "runs", "time", "throughput_unit", "throughput"]
    assert "sim_seconds" in csv_cols and "host_throughput" in csv_cols
    host = tables.aggregate([row("h", 1, 10.0)])
    assert [c[1] for c in tables.sweep_columns(host)][3] == "ops / s (host)"
    assert "cycles/op" not in [c[1] for c in tables.sweep_columns(host)]
    assert "sim_seconds" not in tables.sweep_csv_columns(host)
    mixed = [c[1] for c in tables.sweep_columns(out + host)]
    assert mixed[3:5] == ["time", "ops/s (in its time)"]


def test_latency_headings_say_cycles_or_ns():
    runs = [dict(_run("s", 0, [100] * 10))]
    h = Histogram("cycles")
    for v in [100] * 10:
        h.record(v)
    runs[0]["latency"] = {"all": dict(h.summary(), histogram=h.as_dict())}
    md = tables.latency_markdown(tables.latency_table(runs)).splitlines()
    assert md[0] == "## Latency (simulated cycles; sampled operations)"
    assert "| p50 (cycles) |" in md[2] and "| p99 (cycles) |" in md[2]
