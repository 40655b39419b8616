"""`smpsim compare A B`: two result folders side by side, one row per (variant, CPU count) found in
either, with A's and B's means, how much each side's runs varied (CV), and the ratio B / A with
a 95 % confidence interval (Welch's t over the two sides' runs; stats.ratio_ci). A ratio whose
interval includes 1 is within the noise of the runs: it is marked "~".

Compared, in host time: throughput (ops / s (host)), operations per CPU-second, the magazine
hit rate, contended lock acquisitions per operation, and the p99 latency of all sampled
operations (ns). In simulated time: throughput (ops / simulated s), cycles, line transfers and
lock wait cycles per operation, the hit rate, contention and the p99 latency (cycles). Runs that
failed are left out, as in the sweep table.

Both folders must be in one time: a host-time folder against a simulated-time one is refused
(ValueError, one line), their throughputs being in different units. Runs in simulated time
repeat exactly for most workloads, so their ratios often come without an interval.
"""

import json
import os

from smpsim.experiment import report, stats, tables
from smpsim.experiment.collect import UNITS

__all__ = ["load_runs", "compare", "markdown", "metrics", "time_of_runs", "METRICS"]

# By time: (summary row key, heading, ratio with a confidence interval)
METRICS = {
    "host": [("throughput", UNITS["host"], True), ("ops_per_cpu_s", "ops per CPU-s", True),
             ("hit_rate", "hit rate", False), ("contended_per_op", "contended/op", False),
             ("p99", "p99 (ns)", True)],
    "simulated": [("throughput", UNITS["simulated"], True),
                  ("cycles_per_op", "cycles/op", True),
                  ("transfers_per_op", "transfers/op", True),
                  ("lock_wait_cycles_per_op", "lock wait cycles/op", True),
                  ("hit_rate", "hit rate", False), ("contended_per_op", "contended/op", False),
                  ("p99", "p99 (cycles)", True)],
}


def time_of_runs(rows):
    """"host" or "simulated": the time of a folder's summary rows (rows written before smpsim
    measured simulated time are host time); "mixed" when they differ."""
    return tables.time_of_rows(rows)


def metrics(time):
    """METRICS of `time` ("host" or "simulated")."""
    return METRICS[time]


def load_runs(path):
    """The summary rows of the runs in result folder `path` (its summary.json, else read from
    its runs); ValueError naming the folder when it holds none."""
    path = os.fspath(path)
    summary = os.path.join(path, "summary.json")
    if os.path.isfile(summary):
        try:
            with open(summary) as f:
                rows = json.load(f)["runs"]
            if isinstance(rows, list) and all(isinstance(r, dict) and "label" in r
                                              for r in rows):
                return rows
        except (OSError, ValueError, KeyError, TypeError):
            pass
        raise ValueError(f"{summary}: not a smpsim summary")
    return [tables.summary_row(r) for r in report.load_results(path)]


def _groups(rows):
    out = {}
    for r in rows:
        if not r.get("error"):
            out.setdefault((r["label"], r["cpus"]), []).append(r)
    return out


def compare(rows_a, rows_b, names=("A", "B")):
    """One row per (variant, CPU count) of either side: for each metric `a_KEY`, `a_KEY_cv`,
    `b_KEY`, `b_KEY_cv`, and for the ratios `ratio_KEY` and `ratio_KEY_ci95`. ValueError (naming
    the sides by `names`) when the sides are not in one time."""
    time = _one_time(rows_a, rows_b, names)
    ga, gb = _groups(rows_a), _groups(rows_b)
    keys = list(ga) + [k for k in gb if k not in ga]
    rank = {}
    for label, _ in keys:
        rank.setdefault(label, len(rank))
    keys.sort(key=lambda k: (rank[k[0]], k[1]))
    out = []
    for key in keys:
        ra, rb = ga.get(key, []), gb.get(key, [])
        row = {"label": key[0], "cpus": key[1], "runs_a": len(ra), "runs_b": len(rb),
               "time": time}
        for m, _, with_ratio in METRICS[time]:
            va = [r[m] for r in ra if isinstance(r.get(m), (int, float))]
            vb = [r[m] for r in rb if isinstance(r.get(m), (int, float))]
            sa, sb = stats.summarize(va), stats.summarize(vb)
            row.update({f"a_{m}": sa["mean"], f"a_{m}_cv": sa["cv"],
                        f"b_{m}": sb["mean"], f"b_{m}_cv": sb["cv"]})
            if with_ratio:
                ratio, ci = stats.ratio_ci(va, vb)
                row[f"ratio_{m}"], row[f"ratio_{m}_ci95"] = ratio, ci
        out.append(row)
    return out


def _one_time(rows_a, rows_b, names):
    """The time both sides are in; ValueError when they differ (or a side mixes times)."""
    ta, tb = time_of_runs(rows_a), time_of_runs(rows_b)
    for t, name in ((ta, names[0]), (tb, names[1])):
        if t == "mixed":
            raise ValueError(f"compare: {name} holds runs in host and in simulated time")
    if ta != tb:
        raise ValueError(f"compare: {names[0]} is in {ta} time and {names[1]} in {tb} time; "
                         f"their throughputs are in different units ({UNITS[ta]}, "
                         f"{UNITS[tb]}): compare results of one time")
    return ta


def _ratio(key):
    def fmt(row):
        r, ci = row.get(f"ratio_{key}"), row.get(f"ratio_{key}_ci95")
        if r is None:
            return ""
        text = f"{r:.3f}"
        if ci is not None:
            text += f" ± {ci:.3f}" + (" ~" if abs(r - 1) <= ci else "")
        return text
    return fmt


def _pct(v):
    return "" if v is None else f"{100 * v:.1f}%"


def markdown(rows, name_a="A", name_b="B"):
    """The comparison as a Markdown table; `name_a`, `name_b` head the sides' columns."""
    cols = [("variant", lambda r: r["label"]), ("CPUs", lambda r: str(r["cpus"])),
            ("runs", lambda r: f"{r['runs_a']} / {r['runs_b']}")]
    time = rows[0]["time"] if rows else "host"
    for m, heading, with_ratio in METRICS[time]:
        if not any(r.get(f"a_{m}") is not None or r.get(f"b_{m}") is not None for r in rows):
            continue
        for side, name in (("a", "A"), ("b", "B")):
            cols.append((f"{heading} {name}",
                         lambda r, k=f"{side}_{m}": tables.fmt_number(r.get(k))))
            if with_ratio:
                cols.append(("CV", lambda r, k=f"{side}_{m}_cv": _pct(r.get(k))))
        if with_ratio:
            cols.append((f"{heading} B/A (95% CI)", _ratio(m)))
    lines = ["| " + " | ".join(h for h, _ in cols) + " |",
             "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(cols))) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(f(r) for _, f in cols) + " |")
    return (f"A = {name_a}, B = {name_b}, both in {time} time; ratios B/A with their 95% "
            f"confidence interval, '~' where it includes 1 (within the runs' noise)\n\n"
            + "\n".join(lines) + "\n")
