"""Variation of repeated runs: Student's t quantiles, mean with CV and 95 % CI, Welch's ratio."""

import math

import pytest

from smpsim.experiment import stats


def t_quantile(df):
    """t(0.975, df) by bisection on the numerically integrated t density (Simpson's rule)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf0(x, n=600):
        h = x / n
        f = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(n + 1)]
        return h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))
    lo, hi = 0.0, 20.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf0(mid) < 0.475 else (lo, mid)
    return lo


def test_t975_against_the_t_distribution():
    for df in list(range(1, 32)) + [45, 100]:
        assert stats.t975(df) == pytest.approx(t_quantile(df), abs=2e-4), df


def test_t975_refuses_no_freedom():
    with pytest.raises(ValueError, match="'df' must be > 0"):
        stats.t975(0)
    assert stats.t975(2.7) == stats.t975(2)


def test_summarize():
    s = stats.summarize([10, 12, 14])
    assert s["mean"] == 12 and s["sd"] == 2 and s["cv"] == pytest.approx(1 / 6)
    assert s["ci95"] == pytest.approx(4.3027 * 2 / math.sqrt(3))
    assert stats.summarize([5]) == {"mean": 5.0, "sd": None, "cv": None, "ci95": None, "n": 1}
    assert stats.summarize([])["mean"] is None
    assert stats.summarize([0, 0])["cv"] is None


def test_ratio_ci():
    r, ci = stats.ratio_ci([100, 110, 90], [200, 220, 180])
    assert r == 2.0
    # Welch: the means' variances 100/3 and 400/3, df = 2.94, rounded down: t = 4.3027;
    # half-width t sqrt(500/3), divided by A's mean
    assert ci == pytest.approx(4.3027 * math.sqrt(500 / 3) / 100)
    assert stats.ratio_ci([100], [150]) == (1.5, None)
    assert stats.ratio_ci([0, 0], [1, 2]) == (None, None)
    assert stats.ratio_ci([], [1]) == (None, None)
