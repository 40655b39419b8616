"""`smpsim compare A B`: two result folders side by side, one row per (variant, CPU count) found in
either, with A's and B's means, how much each side's runs varied (CV), and the ratio B / A with
a 95 % confidence interval (Welch's t over the two sides' runs; stats.ratio_ci). A ratio whose
interval includes 1 is within the noise of the runs: it is marked "~".

Compared: throughput (ops/s), operations per CPU-second, the magazine hit rate, contended lock
acquisitions per operation, and the p99 latency of all sampled operations. Runs that failed are
left out, as in the sweep table.
"""

import json
import os

from smpsim.experiment import report, stats, tables

__all__ = ["load_runs", "compare", "markdown", "METRICS"]

# (summary row key, heading, ratio with a confidence interval)
METRICS = [("throughput", "ops/s", True), ("ops_per_cpu_s", "ops per CPU-s", True),
           ("hit_rate", "hit rate", False), ("contended_per_op", "contended/op", False),
           ("p99", "p99", True)]


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


def compare(rows_a, rows_b):
    """One row per (variant, CPU count) of either side: for each metric `a_KEY`, `a_KEY_cv`,
    `b_KEY`, `b_KEY_cv`, and for the ratios `ratio_KEY` and `ratio_KEY_ci95`."""
    ga, gb = _groups(rows_a), _groups(rows_b)
    keys = list(ga) + [k for k in gb if k not in ga]
    rank = {}
    for label, _ in keys:
        rank.setdefault(label, len(rank))
    keys.sort(key=lambda k: (rank[k[0]], k[1]))
    out = []
    for key in keys:
        ra, rb = ga.get(key, []), gb.get(key, [])
        row = {"label": key[0], "cpus": key[1], "runs_a": len(ra), "runs_b": len(rb)}
        for m, _, with_ratio in METRICS:
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
    for m, heading, with_ratio in METRICS:
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
    return (f"A = {name_a}, B = {name_b}; ratios B/A with their 95% confidence interval, "
            f"'~' where it includes 1 (within the runs' noise)\n\n" + "\n".join(lines) + "\n")
