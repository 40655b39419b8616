"""Latency of sampled operations: an HDR-style histogram, and the clock a CPU measures with.

Histogram keeps counts in log-linear buckets, as HdrHistogram does: values below 2**BITS are
counted exactly; above, every power of two is split into 2**(BITS - 1) buckets of equal width,
so a bucket is at most 1/2**(BITS - 1) of its lower bound wide. A percentile is reported as the
middle of its bucket (rounded down; clamped to the smallest and largest value recorded), so it
is within half a bucket, 1/2**BITS = 0.8 % with BITS = 7, of a value that was recorded.
Histograms of one unit merge by adding counts, so per-CPU histograms become a run's and runs'
become a sweep point's without losing anything; as_dict() is their compact JSON form (non-empty
buckets only).

The clock: latencies are host nanoseconds (time.perf_counter_ns) around the Kernel call; on a
machine that runs in simulated time, the CPU's cycle counter (k.cycles) instead. `clock(k)`
returns the function and its unit; which one applies is decided in `_simulated`, in one line.
"""

import math
import time

__all__ = ["Histogram", "BITS", "clock"]

BITS = 7                     # exact below 2**BITS; 2**(BITS - 1) buckets per power of two above
_HALF = 1 << (BITS - 1)


def _simulated(k):
    """Whether k's machine runs in simulated time (its clock is then k.cycles)."""
    return getattr(k, "time", "host") == "simulated"


def clock(k):
    """(function returning the time now as an int, its unit) for CPU `k`'s latency samples."""
    if _simulated(k):
        return (lambda: k.cycles), "cycles"
    return time.perf_counter_ns, "ns"


def _index(v):
    b = v.bit_length()
    if b <= BITS:
        return v
    s = b - BITS
    return (s << (BITS - 1)) + (v >> s)


def _bounds(i):
    """(lowest value, width) of bucket i."""
    if i < (1 << BITS):
        return i, 1
    s = i // _HALF - 1
    return (i - s * _HALF) << s, 1 << s


class Histogram:
    """Counts of non-negative integer values (latencies in `unit`) in log-linear buckets."""

    __slots__ = ("unit", "counts", "count", "min", "max", "total")

    def __init__(self, unit="ns"):
        self.unit = unit
        self.counts = {}             # bucket index -> count
        self.count = self.total = self.max = 0
        self.min = None

    def record(self, value, n=1):
        """Counts `value` (an int >= 0) `n` times; ValueError for a negative or non-int value."""
        if type(value) is not int or value < 0:
            raise ValueError(f"Histogram.record: 'value' must be an int >= 0, got {value!r}")
        b = value.bit_length()
        i = value if b <= BITS else ((b - BITS) << (BITS - 1)) + (value >> (b - BITS))
        counts = self.counts
        counts[i] = counts.get(i, 0) + n
        self.count += n
        self.total += value * n
        if value > self.max:
            self.max = value
        if self.min is None or value < self.min:
            self.min = value

    def merge(self, other):
        """Adds `other`'s counts to this one (same unit, else ValueError); returns self."""
        if other.unit != self.unit:
            raise ValueError(f"Histogram.merge: units differ ({self.unit} and {other.unit})")
        for i, n in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + n
        if other.count:
            self.min = other.min if self.min is None else min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total
        return self

    def percentile(self, q):
        """The value below or at which q percent of the recorded values lie (q in 0..100),
        within half a bucket; None when nothing was recorded."""
        if not 0 <= q <= 100:
            raise ValueError(f"Histogram.percentile: 'q' must be 0..100, got {q!r}")
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                lo, width = _bounds(i)
                return min(max(lo + (width - 1) // 2, self.min), self.max)
        return self.max

    def mean(self):
        return self.total / self.count if self.count else None

    def summary(self):
        """samples, p50, p99, p99.9, mean and max: what the tables show."""
        return {"unit": self.unit, "samples": self.count, "p50": self.percentile(50),
                "p99": self.percentile(99), "p99.9": self.percentile(99.9),
                "mean": self.mean(), "max": self.max if self.count else None}

    def as_dict(self):
        """The compact, JSON-ready form: buckets as a flat [index, count, ...] list."""
        flat = []
        for i in sorted(self.counts):
            flat += (i, self.counts[i])
        return {"unit": self.unit, "bits": BITS, "count": self.count, "min": self.min,
                "max": self.max, "total": self.total, "buckets": flat}

    @classmethod
    def from_dict(cls, d):
        """The histogram as_dict() described; ValueError for another bucket layout."""
        if d.get("bits", BITS) != BITS:
            raise ValueError(f"Histogram.from_dict: {d.get('bits')}-bit buckets, expected {BITS}")
        h = cls(d["unit"])
        flat = d["buckets"]
        h.counts = {flat[j]: flat[j + 1] for j in range(0, len(flat), 2)}
        h.count, h.min, h.max, h.total = d["count"], d["min"], d["max"], d["total"]
        return h

    def __eq__(self, other):
        return isinstance(other, Histogram) and self.as_dict() == other.as_dict()

    def __repr__(self):
        return f"<Histogram {self.count} values in {self.unit}, p50 {self.percentile(50)}>"
