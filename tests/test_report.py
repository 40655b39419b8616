"""Reports: slabinfo 2.1 and seed formats, Markdown and CSV tables, the sweep aggregate, reading
results back."""

import csv
import json

import pytest

from smpsim.experiment import report

CACHES = {
    "slab_magazine": {"size": 64, "pages": 1, "objects": 63, "slabs": 1, "cached": 0,
                      "allocated": 5, "inside": True, "has_magazines": False, "shared": 0},
    "malloc-4K": {"size": 4096, "pages": 1, "objects": 1, "slabs": 3, "cached": 2,
                  "allocated": 1, "inside": False, "has_magazines": True, "shared": 1},
}


def test_slabinfo_2_1():
    lines = report.slabinfo(CACHES, magazine_size=4).splitlines()
    assert lines[0] == "slabinfo - version: 2.1"
    assert lines[1] == ("# name            <active_objs> <num_objs> <objsize> <objperslab> "
                        "<pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : "
                        "slabdata <active_slabs> <num_slabs> <sharedavail>")
    assert lines[2] == ("slab_magazine          5     63     64   63    1 : tunables    0    0"
                        "    0 : slabdata      1      1      0")
    assert lines[3].split() == ["malloc-4K", "3", "3", "4096", "1", "1", ":", "tunables", "8",
                                "4", "1", ":", "slabdata", "3", "3", "4"]
    assert len(lines) == 4


def test_seed_table():
    assert report.seed_table(CACHES) == (
        "SLAB name\tOsize\tPages\tObj/pg\tSlabs\tCached\tAllocobjs\tCtl\n"
        "slab_magazine\t64\t1\t63\t1\t0\t5\t\tIn\n"
        "malloc-4K\t4096\t1\t1\t3\t2\t1\t\tOut\n")


def test_markdown_and_csv(tmp_path):
    rows = [{"a": "x", "b": 1234567.0, "c": 0.5}, {"a": "y", "b": None, "c": 3}]
    md = report.markdown_table(rows, [("a", "A"), ("b", "B"), ("c", "C")])
    assert md.splitlines() == ["| A | B | C |", "| --- | ---: | ---: |",
                               "| x | 1,234,567 | 0.5 |", "| y |  | 3 |"]
    path = tmp_path / "t.csv"
    report.write_csv(path, rows, ["a", "c"])
    assert list(csv.DictReader(open(path))) == [{"a": "x", "c": "0.5"}, {"a": "y", "c": "3"}]


def row(label, cpus, tp, check="ok", error=""):
    return {"label": label, "cpus": cpus, "throughput": tp, "hit_rate": 0.9,
            "contended_per_op": 0.01, "spins_per_op": 0.1, "shared_list_per_op": 0.0,
            "check": check, "error": error}


def test_aggregate_means_and_speedup():
    out = report.aggregate([row("m", 2, 300.0), row("m", 1, 100.0), row("m", 2, 100.0),
                            row("n", 1, 50.0, check="violations"), row("n", 2, 1.0, error="x")])
    assert [(r["label"], r["cpus"], r["runs"]) for r in out] == [("m", 1, 1), ("m", 2, 2),
                                                                 ("n", 1, 1)]
    m1, m2, n1 = out
    assert m2["throughput"] == 200.0 and m2["speedup"] == 2.0 and m1["speedup"] == 1.0
    assert report.aggregate([row("x", 2, 5.0)])[0]["speedup"] is None
    assert m2["throughput_sd"] == pytest.approx(141.42, abs=0.01)
    assert m2["throughput_per_cpu"] == 100.0
    assert n1["check"] == "violations"


def test_load_results_refuses_what_is_not_a_result(tmp_path):
    with pytest.raises(ValueError, match="no result here"):
        report.load_results(tmp_path)
    bad = tmp_path / "result.json"
    bad.write_text(json.dumps({"x": 1}))
    with pytest.raises(ValueError, match="not a smpsim run result"):
        report.load_results(tmp_path)
    bad.write_text("{")
    with pytest.raises(ValueError, match="not a readable result"):
        report.load_results(bad)
