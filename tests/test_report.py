"""Reports: slabinfo 2.1 and seed formats, CSV, reading results back (and naming the file that
is not one)."""

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


def test_csv(tmp_path):
    rows = [{"a": "x", "b": 1234567.0, "c": 0.5}, {"a": "y", "b": None, "c": 3}]
    path = tmp_path / "t.csv"
    report.write_csv(path, rows, ["a", "c"])
    assert list(csv.DictReader(open(path))) == [{"a": "x", "c": "0.5"}, {"a": "y", "c": "3"}]


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


GOOD = {"point": {"id": "base-c2-r0", "machine": {"magazine_size": 4}},
        "caches_end": CACHES, "caches_peak": CACHES}


@pytest.mark.parametrize("content, why", [
    (b"\x89PNG\r\n\x1a\n\x00\xff", "not a readable result (not JSON: "),
    (b"[1, 2]", "not a smpsim run result (a JSON list, not an object)"),
    (json.dumps(dict(GOOD, point={"id": "x"})).encode(),
     "not a smpsim run result (its 'point' lacks the id or the machine's magazine_size)"),
    (json.dumps(dict(GOOD, caches_peak=None)).encode(),
     "not a smpsim run result (no 'caches_peak')"),
    (json.dumps(dict(GOOD, caches_end={"x": {"size": 1}})).encode(),
     "not a smpsim run result (cache 'x' lacks its counts)"),
])
def test_a_bad_result_file_is_named(tmp_path, content, why):
    f = tmp_path / "odd.json"
    f.write_bytes(content)
    with pytest.raises(ValueError) as e:
        report.load_results(f)
    assert str(e.value).startswith(f"{f}: {why}")
    assert report.load_results(_write(tmp_path / "ok.json", GOOD))[0]["point"]["id"] == \
        "base-c2-r0"


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_a_missing_path_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"^{tmp_path}/nope: no such file or folder$"):
        report.load_results(tmp_path / "nope")
