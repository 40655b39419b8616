"""Tables out of results: the caches in Linux's /proc/slabinfo 2.1 format and in the seed's
slab_print_list format, per-run summary rows, the sweep table (CSV and Markdown), and reading a
result folder back.

A cache snapshot is the "caches" dict of Machine.stats() ({name: {size, pages, objects, slabs,
cached, allocated, inside}}), optionally with "has_magazines" (bool: the cache has per-CPU
magazines) and "shared" (full magazines on its shared list), which experiment.py adds. As in the
seed, `allocated` counts objects held by callers and `cached` objects sitting in magazines.

Mapping onto slabinfo 2.1 (Linux's SLAB allocator, whose per-CPU arrays are Bonwick's
magazines): active_objs = allocated + cached (objects out of their slabs: Linux counts objects in
per-CPU arrays as active); num_objs = slabs * objects per slab; limit = objects one CPU can hold
(two magazines), batchcount = a magazine (what moves to and from the shared list at once),
sharedfactor = 1 for caches with a shared list, all 0 for NOMAGAZINE caches; sharedavail =
objects in full magazines on the shared list. The seed frees an empty slab at once, so every slab
is active: active_slabs = num_slabs.
"""

import csv
import io
import json
import os
import statistics

__all__ = ["slabinfo", "seed_table", "markdown_table", "write_csv", "summary_row",
           "aggregate", "load_results", "SUMMARY_COLUMNS", "SWEEP_COLUMNS"]

SLABINFO_HEADER = ("slabinfo - version: 2.1\n"
                   "# name            <active_objs> <num_objs> <objsize> <objperslab> "
                   "<pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata "
                   "<active_slabs> <num_slabs> <sharedavail>\n")


def slabinfo(caches, magazine_size):
    """The caches as /proc/slabinfo 2.1 text (Linux's own column widths)."""
    out = [SLABINFO_HEADER]
    for name, c in caches.items():
        mags = c.get("has_magazines", True)
        limit, batch, factor = (2 * magazine_size, magazine_size, 1) if mags else (0, 0, 0)
        shared = c.get("shared", 0) * magazine_size if mags else 0
        active = c["allocated"] + c["cached"]
        out.append(f"{name:<17} {active:6d} {c['slabs'] * c['objects']:6d} "
                   f"{c['size']:6d} {c['objects']:4d} {c['pages']:4d}"
                   f" : tunables {limit:4d} {batch:4d} {factor:4d}"
                   f" : slabdata {c['slabs']:6d} {c['slabs']:6d} {shared:6d}\n")
    return "".join(out)


def seed_table(caches):
    """The caches as the seed's slab_print_list prints them: tab separated, header first."""
    out = ["SLAB name\tOsize\tPages\tObj/pg\tSlabs\tCached\tAllocobjs\tCtl\n"]
    for name, c in caches.items():
        out.append(f"{name}\t{c['size']}\t{c['pages']}\t{c['objects']}\t{c['slabs']}\t"
                   f"{c['cached']}\t{c['allocated']}\t\t{'In' if c['inside'] else 'Out'}\n")
    return "".join(out)


def _cell(v):
    if isinstance(v, float):
        if v != v:
            return ""
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def markdown_table(rows, columns):
    """A Markdown table of `rows` (dicts) with `columns` [(key, heading)]."""
    lines = ["| " + " | ".join(h for _, h in columns) + " |",
             "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(columns))) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(k)) for k, _ in columns) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path, rows, columns=None):
    """Writes `rows` (dicts) to CSV; `columns` (keys) defaults to the first row's keys."""
    columns = columns or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in columns})
    with open(path, "w", newline="") as f:
        f.write(buf.getvalue())


# One row per run (point) in summary.csv.
SUMMARY_COLUMNS = ["id", "label", "workload", "cpus", "rep", "ops", "elapsed", "throughput",
                   "throughput_per_cpu", "ops_per_cpu_s", "hit_rate", "acquisitions", "contended",
                   "contended_per_op", "spins_per_op", "shared_list_ops", "shared_list_per_op",
                   "failed", "remote_frees", "reclaim_calls", "reclaim_frames", "peak_frames",
                   "cpu_user", "cpu_system", "voluntary_cs", "involuntary_cs", "check",
                   "error", "host"]


def summary_row(result):
    """The summary.csv row of one run's result dict (experiment.py)."""
    p, mags, rec = result["point"], result["magazines"], result["reclaim"]
    cpus = result["cpus"]
    cpu_s = sum((c.get("user") or 0.0) + (c.get("system") or 0.0) for c in cpus)
    return {
        "id": p["id"], "label": p["label"], "workload": p["workload"]["name"],
        "cpus": p["cpus"], "rep": p["rep"],
        "ops": result["ops"], "elapsed": result["elapsed"],
        "throughput": result["throughput"],
        "throughput_per_cpu": result["throughput"] / p["cpus"],
        "ops_per_cpu_s": result["ops"] / cpu_s if cpu_s else 0.0,
        "hit_rate": mags["hit_rate"],
        "acquisitions": result["lock_totals"]["acquisitions"],
        "contended": result["lock_totals"]["contended"],
        "contended_per_op": result["contended_per_op"], "spins_per_op": result["spins_per_op"],
        "shared_list_ops": mags["shared_list_ops"],
        "shared_list_per_op": mags["shared_list_ops"] / result["ops"] if result["ops"] else 0.0,
        "failed": sum(c.get("failed") or 0 for c in cpus),
        "remote_frees": sum(c.get("remote_frees") or 0 for c in cpus),
        "reclaim_calls": rec["calls"], "reclaim_frames": rec["frames"],
        "peak_frames": result["frames"]["peak_used"],
        "cpu_user": sum(c.get("user") or 0.0 for c in cpus),
        "cpu_system": sum(c.get("system") or 0.0 for c in cpus),
        "voluntary_cs": sum(c.get("voluntary") or 0 for c in cpus),
        "involuntary_cs": sum(c.get("involuntary") or 0 for c in cpus),
        "check": result["check"] if isinstance(result["check"], str) else "violations",
        "error": result.get("error") or "",
        "host": result.get("host", {}).get("name", ""),
    }


# The sweep table: one row per (variant, CPU count), means over repetitions. "ops per CPU-s" is
# operations per second of CPU time the CPU processes used (user + system): unlike ops/s it does
# not fall when other work on the host takes the cores, and it does fall when CPUs spin.
SWEEP_COLUMNS = [("label", "variant"), ("cpus", "CPUs"), ("runs", "runs"),
                 ("throughput", "ops/s"), ("throughput_sd", "± sd"),
                 ("throughput_per_cpu", "ops/s per CPU"), ("speedup", "speed-up"),
                 ("ops_per_cpu_s", "ops per CPU-s"),
                 ("hit_rate", "hit rate"), ("contended_per_op", "contended/op"),
                 ("shared_list_per_op", "shared list/op"), ("check", "check")]


def aggregate(rows):
    """Sweep rows from summary rows: grouped by (label, cpus), means over repetitions, speed-up
    against the same variant on 1 CPU (None without a 1-CPU point)."""
    groups = {}
    for r in rows:
        if r.get("error"):
            continue
        groups.setdefault((r["label"], r["cpus"]), []).append(r)
    out = []
    for (label, cpus), rs in groups.items():
        tp = [r["throughput"] for r in rs]
        out.append({
            "label": label, "workload": rs[0].get("workload", ""), "cpus": cpus,
            "runs": len(rs),
            "throughput": statistics.fmean(tp),
            "throughput_sd": statistics.stdev(tp) if len(tp) > 1 else 0.0,
            "throughput_per_cpu": statistics.fmean(tp) / cpus,
            "ops_per_cpu_s": statistics.fmean(r.get("ops_per_cpu_s") or 0.0 for r in rs),
            "hit_rate": statistics.fmean(r["hit_rate"] for r in rs),
            "contended_per_op": statistics.fmean(r["contended_per_op"] for r in rs),
            "spins_per_op": statistics.fmean(r["spins_per_op"] for r in rs),
            "shared_list_per_op": statistics.fmean(r["shared_list_per_op"] for r in rs),
            "check": "ok" if all(r["check"] == "ok" for r in rs) else "violations",
        })
    out.sort(key=lambda r: (r["label"], r["cpus"]))
    one = {r["label"]: r["throughput"] for r in out if r["cpus"] == 1}
    for r in out:
        r["speedup"] = r["throughput"] / one[r["label"]] if one.get(r["label"]) else None
    return out


def load_results(path):
    """The run results under `path`: a result folder (every run in it), a run's folder, or a
    run's result.json. ValueError naming the path when there is none."""
    path = os.fspath(path)
    if os.path.isfile(path):
        files = [path]
    elif os.path.isfile(os.path.join(path, "result.json")):
        files = [os.path.join(path, "result.json")]
    elif os.path.isdir(os.path.join(path, "runs")):
        runs = os.path.join(path, "runs")
        files = [os.path.join(runs, d, "result.json") for d in sorted(os.listdir(runs))
                 if os.path.isfile(os.path.join(runs, d, "result.json"))]
    else:
        files = []
    if not files:
        raise ValueError(f"{path}: no result here (expected a result folder, a run folder or "
                         f"a result.json)")
    out = []
    for f in files:
        try:
            with open(f) as fh:
                r = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{f}: not a readable result ({e})") from None
        if not isinstance(r, dict) or "caches_end" not in r:
            raise ValueError(f"{f}: not a smpsim run result (no 'caches_end')")
        out.append(r)
    return out
