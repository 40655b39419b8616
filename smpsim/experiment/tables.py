"""The result tables: one summary row per run, the sweep table (one row per variant and CPU count,
means over repetitions with how much they varied), and the latency table; their columns, and
their Markdown form.

Variation: every mean over repetitions comes with its coefficient of variation (CV, sd / mean)
and the half-width of its 95 % confidence interval (Student's t; stats.py). With one run per
point both are blank: one run says nothing about how much runs vary.

Rows are in the order the scenario declares its variants (then by CPU count), not sorted by
name. Columns: the common ones, then the lock hold and wait times when the engine measured them
(per operation and per acquisition), then the workload's own (its COLUMNS, e.g. pressure's failed
allocations and reclaim calls, or the numbers a user workload returns), then the host's other
load.

Time: every row says the time its throughput is in (`time`, `throughput_unit`), and the tables'
headings say it: "ops / simulated s" or "ops / s (host)". A simulated-time table adds the cycles
and line transfers per operation after the throughput, and keeps the host's numbers (host
seconds, operations per host second and per CPU-second of the host) at its end, labelled so.
"""

from smpsim.experiment import stats
from smpsim.experiment.collect import LOCK_TIMES, UNITS, time_of
from smpsim.workloads.latency import Histogram

__all__ = ["summary_row", "summary_columns", "aggregate", "sweep_columns", "sweep_csv_columns",
           "sweep_markdown", "latency_rows", "latency_table", "latency_markdown",
           "lock_columns", "markdown_table", "fmt_number", "time_of_rows", "SUMMARY_COLUMNS",
           "LATENCY_CSV", "LATENCY_TABLE_CSV", "PATHS"]

# One row per run (point) in summary.csv; lock times, the workload's columns follow when present.
SUMMARY_COLUMNS = ["id", "label", "workload", "time", "cpus", "rep", "seed", "ops",
                   "throughput_unit", "throughput", "throughput_per_cpu", "sim_seconds",
                   "cycles_per_op", "transfers_per_op", "elapsed", "host_throughput",
                   "ops_per_cpu_s", "hit_rate",
                   "acquisitions", "contended", "contended_per_op", "spins_per_op",
                   "shared_list_ops", "shared_list_per_op", "failed", "remote_frees",
                   "reclaim_calls", "reclaim_frames", "peak_frames", "frames_held",
                   "ctor_per_alloc", "magazine_size", "resizes", "reap_frames", "line_miss_rate",
                   "p50", "p99", "p99.9",
                   "latency_unit", "cpu_user", "cpu_system", "voluntary_cs", "involuntary_cs",
                   "other_cores", "check", "error", "host"]
PATHS = ("hit", "depot", "slab", "frames")
_KINDS = ("all", "slab_alloc", "slab_free", "kalloc", "kfree")


def _lock_times_in(rows):
    """The lock time counters (LOCK_TIMES) that summary or sweep rows carry."""
    return {key for key in LOCK_TIMES for r in rows if f"lock_{key}_per_op" in r}


def _lock_time_keys(present):
    """[(row key, heading)] for the lock time counters in `present`."""
    out = []
    for key in LOCK_TIMES:
        if key in present:
            what, unit = key.split("_")
            out += [(f"lock_{key}_per_op", f"lock {what} {unit}/op"),
                    (f"lock_{key}_per_acq", f"{what} {unit}/acq")]
    return out


def summary_row(result):
    """The summary.csv row of one run's result dict (runner.run_point)."""
    p, mags, rec = result["point"], result["magazines"], result["reclaim"]
    cpus = result["cpus"]
    cpu_s = sum((c.get("user") or 0.0) + (c.get("system") or 0.0) for c in cpus)
    lat = result.get("latency", {}).get("all", {})
    totals = result["lock_totals"]
    time = time_of(result)
    row = {
        "id": p["id"], "label": p["label"],
        "workload": result.get("workload", {}).get("name", p["workload"]["name"]),
        "time": time, "cpus": p["cpus"], "rep": p["rep"], "seed": result.get("seed"),
        "ops": result["ops"], "throughput_unit": UNITS[time],
        "throughput": result["throughput"],
        "throughput_per_cpu": result["throughput"] / p["cpus"],
        "sim_seconds": result.get("sim_seconds"), "cycles_per_op": result.get("cycles_per_op"),
        "transfers_per_op": result.get("transfers_per_op"), "elapsed": result["elapsed"],
        "host_throughput": result.get("host_throughput", result["throughput"]),
        "ops_per_cpu_s": result["ops"] / cpu_s if cpu_s else 0.0,
        "hit_rate": mags["hit_rate"],
        "acquisitions": totals["acquisitions"], "contended": totals["contended"],
        "contended_per_op": result["contended_per_op"], "spins_per_op": result["spins_per_op"],
        "shared_list_ops": mags["shared_list_ops"],
        "shared_list_per_op": mags["shared_list_ops"] / result["ops"] if result["ops"] else 0.0,
        "failed": sum(c.get("failed") or 0 for c in cpus),
        "remote_frees": sum(c.get("remote_frees") or 0 for c in cpus),
        "reclaim_calls": rec["calls"], "reclaim_frames": rec["frames"],
        "peak_frames": result["frames"]["peak_used"],
        "p50": lat.get("p50"), "p99": lat.get("p99"), "p99.9": lat.get("p99.9"),
        "latency_unit": lat.get("unit"),
        "cpu_user": sum(c.get("user") or 0.0 for c in cpus),
        "cpu_system": sum(c.get("system") or 0.0 for c in cpus),
        "voluntary_cs": sum(c.get("voluntary") or 0 for c in cpus),
        "involuntary_cs": sum(c.get("involuntary") or 0 for c in cpus),
        "other_cores": result.get("host", {}).get("interference", {}).get("other_cores"),
        "check": result["check"] if isinstance(result["check"], str) else "violations",
        "error": result.get("error") or "",
        "host": result.get("host", {}).get("name", ""),
    }
    for key, _ in _lock_time_keys(totals):
        row[key] = totals[key.removeprefix("lock_")]
    row.update(_option_row(result))
    columns = [list(c) for c in result.get("columns", [])]
    for key, _ in columns:
        if key not in row:
            row[key] = sum(c.get(key) or 0 for c in cpus
                           if isinstance(c.get(key), (int, float)))
    row["columns"] = columns
    return row


# The options beyond the seed (docs/options.md): frames held when the run ended (always), and,
# when some run of the table has them, constructor calls per allocation, the largest magazine
# size the scenario's caches reached, and line misses per access of a workload that models a
# hardware cache (walk).
OPTION_COLUMNS = [("frames_held", "frames held"), ("ctor_per_alloc", "ctor calls/alloc"),
                  ("magazine_size", "magazine size"), ("line_miss_rate", "line misses/access")]


def _option_row(result):
    o = result.get("options") or {}
    sizes = [v for v in (o.get("magazine_sizes") or {}).values() if v]
    accesses = sum(c.get("line_accesses") or 0 for c in result["cpus"])
    misses = sum(c.get("line_misses") or 0 for c in result["cpus"])
    return {"frames_held": result["frames"]["used_after"],
            "ctor_per_alloc": o.get("ctor_per_alloc"),
            "magazine_size": max(sizes) if o.get("resizes") else None,
            "resizes": o.get("resizes", 0), "reap_frames": o.get("reap_frames", 0),
            "line_miss_rate": misses / accesses if accesses else None}


def _option_keys(rows):
    """[(key, heading)] of OPTION_COLUMNS some row has a value for."""
    return [(k, h) for k, h in OPTION_COLUMNS if any(r.get(k) is not None for r in rows)]


def _extra_keys(rows):
    """[(key, heading)] of the workloads' own columns among `rows`, first seen first."""
    seen, out = set(), []
    for r in rows:
        for key, heading in r.get("columns", []):
            if key not in seen:
                seen.add(key)
                out.append((key, heading))
    return out


def summary_columns(rows):
    """summary.csv's columns for `rows`: SUMMARY_COLUMNS, lock times, the workloads' own."""
    cols = list(SUMMARY_COLUMNS)
    cols += [key for key, _ in _lock_time_keys(_lock_times_in(rows))]
    cols += [k for k, _ in _extra_keys(rows) if k not in cols]
    return cols


def _order(rows):
    """Label -> its rank, in the order the labels first appear (the scenario's order)."""
    rank = {}
    for r in rows:
        rank.setdefault(r["label"], len(rank))
    return rank


def _mean(rs, key):
    vals = [r[key] for r in rs if isinstance(r.get(key), (int, float))]
    return sum(vals) / len(vals) if vals else None


def aggregate(rows):
    """Sweep rows from summary rows: grouped by (label, cpus) in the scenario's order, means over
    repetitions with CV and 95 % CI of throughput and ops per CPU-second, speed-up against the
    same variant on 1 CPU (None without a 1-CPU point). Failed runs are left out."""
    groups = {}
    for r in rows:
        if not r.get("error"):
            groups.setdefault((r["label"], r["cpus"]), []).append(r)
    out = []
    for (label, cpus), rs in groups.items():
        tp = stats.summarize(r["throughput"] for r in rs)
        eff = stats.summarize(r.get("ops_per_cpu_s") or 0.0 for r in rs)
        time = rs[0].get("time", "host")
        row = {"label": label, "workload": rs[0].get("workload", ""), "cpus": cpus,
               "runs": len(rs), "time": time, "throughput_unit": UNITS[time],
               "throughput": tp["mean"], "throughput_sd": tp["sd"] or 0.0,
               "throughput_ci95": tp["ci95"], "throughput_cv": tp["cv"],
               "throughput_per_cpu": tp["mean"] / cpus,
               "ops_per_cpu_s": eff["mean"], "ops_per_cpu_s_cv": eff["cv"],
               "check": "ok" if all(r["check"] == "ok" for r in rs) else "violations",
               "columns": _extra_keys(rs)}
        for key in ("hit_rate", "contended_per_op", "spins_per_op", "shared_list_per_op",
                    "other_cores", "sim_seconds", "cycles_per_op", "transfers_per_op",
                    "elapsed", "host_throughput"):
            row[key] = _mean(rs, key)
        for key, _ in _lock_time_keys(_lock_times_in(rs)):
            row[key] = _mean(rs, key)
        for key, _ in OPTION_COLUMNS:
            row[key] = _mean(rs, key)
        for key, _ in row["columns"]:
            row[key] = _mean(rs, key)
        out.append(row)
    rank = _order(rows)
    out.sort(key=lambda r: (rank[r["label"]], r["cpus"]))
    one = {r["label"]: r["throughput"] for r in out if r["cpus"] == 1}
    for r in out:
        r["speedup"] = r["throughput"] / one[r["label"]] if one.get(r["label"]) else None
    return out


def _pct(v):
    return "" if v is None else f"{100 * v:.1f}%"


def _pm(v):
    return "" if v is None else "± " + fmt_number(v)


def fmt_number(v):
    """A number as the tables show it: 4 significant digits, thousands grouped from 1000."""
    if isinstance(v, float):
        if v != v:
            return ""
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}" if abs(v) >= 1000 else str(v)
    return "" if v is None else str(v)


# The sweep table's columns: (key, heading, format). The throughput's heading says its time;
# in simulated time the cycles and transfers per operation follow it, and the host's numbers
# move to the end. Lock times and the workloads' own columns come before the host's numbers.
_SWEEP_LEAD = [("label", "variant", None), ("cpus", "CPUs", None), ("runs", "runs", None)]
_SWEEP_RATE = [("throughput_ci95", "95% CI", _pm), ("throughput_cv", "CV", _pct),
               ("throughput_per_cpu", "per CPU", None), ("speedup", "speed-up", None)]
_SWEEP_SIM = [("cycles_per_op", "cycles/op", None), ("transfers_per_op", "transfers/op", None)]
_SWEEP_HOST_EFF = [("ops_per_cpu_s", "ops per CPU-s (host)", None),
                   ("ops_per_cpu_s_cv", "CV", _pct)]
_SWEEP_MAGS = [("hit_rate", "hit rate", None), ("contended_per_op", "contended/op", None),
               ("shared_list_per_op", "shared list/op", None)]
_SWEEP_HOST = [("elapsed", "host s", None), ("host_throughput", UNITS["host"], None),
               ("ops_per_cpu_s", "ops per CPU-s (host)", None)]
_SWEEP_TAIL = [("other_cores", "other load (cores)", None), ("check", "check", None)]


def time_of_rows(rows):
    """"host" or "simulated" when every row is in that time (rows without `time`: host), else
    "mixed"."""
    times = {r.get("time", "host") for r in rows}
    return times.pop() if len(times) == 1 else ("mixed" if times else "host")


def sweep_columns(rows):
    """[(key, heading, format)] of the sweep table for `rows`."""
    time = time_of_rows(rows)
    lead = _SWEEP_LEAD + ([("time", "time", None)] if time == "mixed" else [])
    rate = [("throughput", UNITS.get(time, "ops/s (in its time)"), None)] + _SWEEP_RATE
    extra = [(k, h, None) for k, h in _lock_time_keys(_lock_times_in(rows))]
    extra += [(k, h, None) for k, h in _option_keys(rows)]
    extra += [(k, h, None) for k, h in _extra_keys(rows)]
    if time == "host":
        return lead + rate + _SWEEP_HOST_EFF + _SWEEP_MAGS + extra + _SWEEP_TAIL
    return lead + rate + _SWEEP_SIM + extra + _SWEEP_MAGS + _SWEEP_HOST + _SWEEP_TAIL


def sweep_csv_columns(rows):
    """sweep.csv's columns: every key of the table, with the time, sd and spins per op (and in
    simulated time the simulated seconds of a run)."""
    keys = [c[0] for c in sweep_columns(rows) if c[0] != "time"]
    i = keys.index("throughput")
    out = keys[:i] + ["time", "throughput_unit"] + keys[i:i + 2] + ["throughput_sd"]
    out += keys[i + 2:] + ["workload", "spins_per_op"]
    if time_of_rows(rows) != "host":
        out.append("sim_seconds")
    return out


def markdown_table(rows, columns):
    """A Markdown table of `rows` (dicts) with `columns` [(key, heading[, format])]: columns of
    numbers right-aligned (the first column never), a format function (value -> text) where
    given."""
    def numeric(key):
        return all(isinstance(r.get(key), (int, float, type(None))) for r in rows)
    lines = ["| " + " | ".join(c[1] for c in columns) + " |",
             "|" + "|".join(" ---: " if i and numeric(c[0]) else " --- "
                            for i, c in enumerate(columns)) + "|"]
    for r in rows:
        cells = [(c[2] if len(c) > 2 and c[2] else fmt_number)(r.get(c[0])) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_markdown(rows):
    return markdown_table(rows, sweep_columns(rows))


# --- latency ----------------------------------------------------------------------------------

LATENCY_CSV = ["kind", "path", "unit", "samples", "p50", "p99", "p99.9", "mean", "max"]
LATENCY_TABLE_CSV = ["label", "cpus", "kind", "path", "runs", "unit", "samples", "p50",
                     "p50_cv", "p99", "p99_cv", "p99.9", "mean", "max"]
_LATENCY_LEAD = [("label", "variant", None), ("cpus", "CPUs", None),
                 ("kind", "operation", None), ("path", "path", None), ("runs", "runs", None),
                 ("samples", "samples", None)]
# A latency's unit as the tables say it: a CPU's simulated cycles, or host nanoseconds.
_UNIT_WORDS = {"cycles": "simulated cycles", "ns": "host ns"}


def _split(key):
    kind, _, path = key.partition("/")
    return kind, path


def _latency_key(kind, path):
    return (_KINDS.index(kind) if kind in _KINDS else len(_KINDS), kind,
            PATHS.index(path) if path in PATHS else len(PATHS), path)


def latency_rows(result):
    """One run's latency percentiles, a row per (kind, path), "all" first."""
    out = []
    for key, s in result.get("latency", {}).items():
        kind, path = _split(key)
        out.append(dict({k: s.get(k) for k in LATENCY_CSV[2:]}, kind=kind, path=path))
    out.sort(key=lambda r: _latency_key(r["kind"], r["path"]))
    return out


def latency_table(results):
    """Latency per (variant, CPU count, kind, path): the runs' histograms merged, with the CV
    of the runs' own p50 and p99. Failed runs are left out."""
    groups = {}
    for r in results:
        if r.get("error"):
            continue
        p = r["point"]
        for key, s in r.get("latency", {}).items():
            groups.setdefault((p["label"], p["cpus"], key), []).append(s)
    rank = _order([{"label": r["point"]["label"]} for r in results])
    out = []
    for (label, cpus, key), ss in groups.items():
        h = Histogram.from_dict(ss[0]["histogram"])
        for s in ss[1:]:
            h.merge(Histogram.from_dict(s["histogram"]))
        kind, path = _split(key)
        row = dict(h.summary(), label=label, cpus=cpus, kind=kind, path=path, runs=len(ss))
        row["p50_cv"] = stats.summarize(s["p50"] for s in ss)["cv"]
        row["p99_cv"] = stats.summarize(s["p99"] for s in ss)["cv"]
        out.append(row)
    out.sort(key=lambda r: (rank[r["label"]], r["cpus"]) + _latency_key(r["kind"], r["path"]))
    return out


def latency_markdown(rows):
    """The latency table in Markdown, its unit and sampling said in the heading and, with one
    unit, in the percentiles' headings ("p50 (cycles)", "p50 (ns)")."""
    units = sorted({r["unit"] for r in rows})
    unit = f" ({units[0]})" if len(units) == 1 else ""
    cols = _LATENCY_LEAD + [("p50", f"p50{unit}", None), ("p50_cv", "CV", _pct),
                            ("p99", f"p99{unit}", None), ("p99_cv", "CV", _pct),
                            ("p99.9", f"p99.9{unit}", None)]
    if not unit:
        cols.insert(len(_LATENCY_LEAD), ("unit", "unit", None))
    words = ", ".join(_UNIT_WORDS.get(u, u) for u in units)
    return f"## Latency ({words}; sampled operations)\n\n" + markdown_table(rows, cols)


def lock_columns(locks):
    """locks.csv's columns for the locks of one run: the counts, and the time counters present
    (total and per acquisition)."""
    cols = ["lock", "acquisitions", "contended", "spins"]
    for key in LOCK_TIMES:
        if any(key in d for d in locks.values()):
            cols += [key, f"{key}_per_acq"]
    return cols
