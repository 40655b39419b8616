"""The latency histogram: exact below 128, within 0.8 % above, merging loses nothing, the compact
form round-trips; the clock is host nanoseconds unless the machine runs in simulated time."""

import math
import random

import pytest

from smpsim.workloads import latency
from smpsim.workloads.latency import Histogram


def exact(values, q):
    """The q-th percentile as Histogram defines it: the value at rank ceil(q/100 * n)."""
    s = sorted(values)
    return s[max(1, math.ceil(q / 100 * len(s))) - 1]


def test_small_values_are_exact():
    h = Histogram()
    for v in [0, 1, 5, 5, 127, 64, 3]:
        h.record(v)
    assert [h.percentile(q) for q in (0, 50, 100)] == [0, 5, 127]
    assert (h.count, h.min, h.max, h.total) == (7, 0, 127, 205)


def test_percentiles_within_the_relative_error_bound():
    rnd = random.Random(7)
    values = [int(rnd.lognormvariate(8, 2)) for _ in range(20000)] + [10 ** 9, 2 ** 40 + 3]
    h = Histogram()
    for v in values:
        h.record(v)
    for q in (1, 10, 50, 90, 99, 99.9, 99.99, 100):
        want, got = exact(values, q), h.percentile(q)
        assert abs(got - want) <= want / 2 ** latency.BITS, (q, want, got)
    assert h.percentile(100) == max(values) and h.percentile(0) == min(values)


def test_merge_is_recording_everything_in_one():
    rnd = random.Random(3)
    a_vals = [rnd.randrange(10 ** 6) for _ in range(3000)]
    b_vals = [rnd.randrange(10 ** 4) for _ in range(500)]
    a, b, both = Histogram(), Histogram(), Histogram()
    for v in a_vals:
        a.record(v)
        both.record(v)
    for v in b_vals:
        b.record(v)
        both.record(v)
    assert a.merge(b) == both
    assert a.merge(Histogram()) == both
    assert Histogram().merge(both) == both
    with pytest.raises(ValueError, match="units differ"):
        a.merge(Histogram("cycles"))


def test_compact_form_round_trips():
    h = Histogram("cycles")
    for v in (3, 300, 30000, 3000000, 300):
        h.record(v, 2)
    d = h.as_dict()
    assert d["unit"] == "cycles" and len(d["buckets"]) == 8     # 4 buckets, index and count
    assert Histogram.from_dict(d) == h
    # 300 lies in the bucket 300..303, whose middle (rounded down) is reported
    assert h.summary() == {"unit": "cycles", "samples": 10, "p50": 301, "p99": h.percentile(99),
                           "p99.9": h.percentile(99.9), "mean": h.total / 10, "max": 3000000}
    with pytest.raises(ValueError, match="8-bit buckets"):
        Histogram.from_dict(dict(d, bits=8))


def test_empty_and_bad_values():
    h = Histogram()
    assert h.percentile(50) is None and h.mean() is None
    assert h.summary()["max"] is None
    for bad in (-1, 1.5, "3"):
        with pytest.raises(ValueError, match="'value' must be an int >= 0"):
            h.record(bad)
    with pytest.raises(ValueError, match="'q' must be 0..100"):
        h.percentile(101)


class _Kernel:
    cycles = 1234


def test_the_clock():
    fn, unit = latency.clock(_Kernel())
    assert unit == "ns" and fn is latency.time.perf_counter_ns
    k = _Kernel()
    k.time = "simulated"
    fn, unit = latency.clock(k)
    assert unit == "cycles" and fn() == 1234
