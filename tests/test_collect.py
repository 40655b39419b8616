"""A run's result from counters: lock hold and wait times reported when the engine counts them
(and nothing fails when it does not), per-CPU latency histograms merged, a workload's own
columns."""

from smpsim.experiment import collect, tables
from smpsim.workloads.latency import Histogram


class _Sampler:
    start, peak_frames, series, peak = 0.0, 0, [], None


def _stats(locks):
    return {"frames": {"total": 100, "free": 90}, "caches": {}, "locks": locks,
            "reclaim": {"calls": 0, "frames": 0}}


def _hist(*values):
    h = Histogram()
    for v in values:
        h.record(v)
    return h.as_dict()


def _collect(before_locks, after_locks, outcome, columns=None):
    cpu0 = {"cpu": 0, "ops": 0, "allocs": 0, "frees": 0, "hits": 0, "misses": 0, "depot": 0,
            "slab": 0, "frames": 0}
    cpu1 = dict(cpu0, ops=100, allocs=50, frees=50, hits=90, misses=10, depot=6, slab=3,
                frames=1)
    result = {"caches_end": {}, "point": {"id": "x", "label": "base", "cpus": 1, "rep": 0,
                                          "workload": {"name": "w"}}}
    collect.collect(result, None, outcome, _stats(before_locks), _stats(after_locks), [cpu0],
                    [cpu1], {"elapsed": 2.0, "cpus": []}, _Sampler(), columns)
    return result


LOCK = {"acquisitions": 10, "contended": 1, "spins": 5}


def test_lock_times_when_the_engine_counts_them():
    before = {"a.slablock": dict(LOCK, wait_ns=1000, hold_ns=5000),
              "b.slablock": dict(LOCK, wait_ns=0, hold_ns=0)}
    after = {"a.slablock": dict(acquisitions=30, contended=3, spins=5, wait_ns=3000,
                                hold_ns=9000),
             "b.slablock": dict(acquisitions=30, contended=1, spins=5, wait_ns=2000,
                                hold_ns=1000)}
    r = _collect(before, after, [{"ops": 100, "seconds": 2.0}])
    a = r["locks"]["a.slablock"]
    assert (a["acquisitions"], a["wait_ns"], a["wait_ns_per_acq"], a["hold_ns_per_acq"]) == \
        (20, 2000, 100.0, 200.0)
    t = r["lock_totals"]
    assert (t["wait_ns"], t["hold_ns"], t["acquisitions"]) == (4000, 5000, 40)
    assert (t["wait_ns_per_op"], t["hold_ns_per_acq"]) == (40.0, 125.0)
    row = tables.summary_row(dict(r, check="ok", host={}, magazines=r["magazines"]))
    assert (row["lock_wait_ns_per_op"], row["lock_hold_ns_per_acq"]) == (40.0, 125.0)
    assert tables.lock_columns(r["locks"]) == ["lock", "acquisitions", "contended", "spins",
                                               "wait_ns", "wait_ns_per_acq", "hold_ns",
                                               "hold_ns_per_acq"]


def test_no_lock_times_no_columns():
    r = _collect({"a.slablock": LOCK}, {"a.slablock": dict(LOCK, acquisitions=20)},
                 [{"ops": 100, "seconds": 2.0}])
    assert r["lock_totals"] == {"acquisitions": 10, "contended": 0, "spins": 0}
    row = tables.summary_row(dict(r, check="ok"))
    assert not any(k.startswith("lock_") for k in row)
    assert tables.lock_columns(r["locks"]) == ["lock", "acquisitions", "contended", "spins"]


def test_latency_of_the_cpus_is_merged_and_taken_out_of_their_results():
    outcome = [{"ops": 100, "seconds": 2.0, "latency": {"kalloc/hit": _hist(10, 20),
                                                         "kfree/slab": _hist(5000)}},
               {"ops": 0, "seconds": 2.0, "latency": {"kalloc/hit": _hist(30)}}]
    r = _collect({}, {}, outcome)
    lat = r["latency"]
    assert list(lat) == ["kalloc/hit", "kfree/slab", "all"]
    assert (lat["kalloc/hit"]["samples"], lat["kalloc/hit"]["max"]) == (3, 30)
    assert (lat["all"]["samples"], lat["all"]["p50"], lat["all"]["max"]) == (4, 20, 5000)
    assert all("latency" not in w for w in r["workers"])
    assert r["magazines"]["misses_by_path"] == {"depot": 6, "slab": 3, "frames": 1}


def test_a_workloads_own_columns():
    outcome = [{"ops": 100, "seconds": 2.0, "waits": 4, "role": "producer", "rate": 0.5,
                "remote_frees": 3}]
    assert _collect({}, {}, outcome)["columns"] == [["waits", "waits"], ["rate", "rate"]]
    assert _collect({}, {}, outcome, [("waits", "queue waits")])["columns"] == [
        ["waits", "queue waits"]]
    assert _collect({}, {}, outcome, [])["columns"] == []
