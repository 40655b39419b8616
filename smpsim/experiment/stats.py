"""How much repeated runs vary: the mean of a measurement over repetitions with its coefficient
of variation and a 95 % confidence interval of the mean (Student's t), and the same for the
ratio of two such means (Welch's t, for `smpsim compare`).

The t quantiles: t(0.975, df) from a table for 1..30 degrees of freedom (computed by numerical
integration of the t density, 4 decimals) and Fisher and Cornish's expansion around the normal
quantile above 30, which agrees with the table at 30 to 4 decimals.
"""

import math
import statistics

__all__ = ["t975", "summarize", "ratio_ci"]

_T975 = [12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423]
_Z975 = 1.959963984540054


def t975(df):
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (df > 0; a fractional df,
    as Welch's gives, is rounded down: the wider interval)."""
    if not df > 0:
        raise ValueError(f"t975: 'df' must be > 0, got {df!r}")
    n = max(1, int(df))
    if n <= 30:
        return _T975[n - 1]
    z = _Z975
    return (z + (z ** 3 + z) / (4 * n) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * n ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * n ** 3))


def summarize(values):
    """{"mean", "sd", "cv", "ci95", "n"} of `values` (numbers): `cv` = sd / mean, `ci95` the
    half-width of the 95 % confidence interval of the mean (t(0.975, n - 1) sd / sqrt(n)); sd,
    cv and ci95 are None with fewer than two values (cv also for a mean of 0)."""
    values = [float(v) for v in values]
    n = len(values)
    if not n:
        return {"mean": None, "sd": None, "cv": None, "ci95": None, "n": 0}
    mean = statistics.fmean(values)
    if n < 2:
        return {"mean": mean, "sd": None, "cv": None, "ci95": None, "n": 1}
    sd = statistics.stdev(values)
    return {"mean": mean, "sd": sd, "cv": sd / abs(mean) if mean else None,
            "ci95": t975(n - 1) * sd / math.sqrt(n), "n": n}


def ratio_ci(a, b):
    """(ratio mean(b) / mean(a), half-width of its 95 % confidence interval) for two samples:
    Welch's interval of the difference of the means, divided by mean(a). The half-width is None
    when either side has fewer than two values or both have no spread; (None, None) when
    mean(a) is 0 or a side is empty."""
    if not a or not b:
        return None, None
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    if not ma:
        return None, None
    if len(a) < 2 or len(b) < 2:
        return mb / ma, None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if not va + vb:
        return mb / ma, None
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return mb / ma, t975(df) * math.sqrt(va + vb) / abs(ma)
