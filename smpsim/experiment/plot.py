"""PNG plots of results with matplotlib's Agg backend (no display needed).

sweep_plots: from the sweep rows (tables.aggregate), one line per variant against the CPU count:
throughput on a log scale (error bars: the 95 % confidence interval of the mean over
repetitions), speed-up against 1 CPU, contended lock acquisitions per operation, and the
magazine hit rate; then by the rows' time:

- host time: the throughput's dotted line is the variant's linear scaling up to the host's core
  count (the most the host can give), and operations per second of CPU time used (which other
  load on the host does not lower, and spinning does) get a plot (efficiency.png). Only the
  speed-up plot shows the `floor` workload (plain Python, the host's ceiling): its throughput is
  on another scale and it has no allocator to measure.
- simulated time: the dotted line is linear scaling from the variant's smallest CPU count (the
  simulated machine has as many CPUs as it says), and cost.png shows what an operation costs the
  simulated machine: cycles per operation (with the lock cycles waited per operation, dashed)
  and cache-line transfers per operation.

Every plot's title and throughput axis say which time they show ("ops / simulated s" or
"ops / s (host)"). timeseries_plot: frames and slabs in use and operations done over one run,
against simulated seconds in simulated time. twin_plot: the throughput of a simulated-time sweep
and of a host-time sweep side by side (the magazine experiment's figure), also from the command
line: `python -m smpsim.experiment.plot SIMULATED_RESULT HOST_RESULT OUT.png [TITLE]`.

matplotlib is imported inside the functions: importing this module does no work.
"""

import os

from smpsim.experiment.collect import UNITS

__all__ = ["sweep_plots", "sweep_specs", "timeseries_plot", "twin_plot", "main", "COST_PLOT"]

COST_PLOT = "cost.png"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _by_label(rows):
    out = {}
    for r in rows:
        out.setdefault(r["label"], []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r["cpus"])
    return out


def _time(rows):
    times = {r.get("time", "host") for r in rows}
    return times.pop() if len(times) == 1 else "mixed"


def sweep_specs(rows):
    """(the rows' time, [(file name, y label, row key)]) of the sweep plots for `rows`: which
    plots sweep_plots draws and how their axes read."""
    time = _time(rows)
    unit = UNITS.get(time, "ops/s, each in its own time")
    specs = [("throughput.png", f"throughput ({unit}, all CPUs)", "throughput"),
             ("speedup.png", f"speed-up against 1 CPU ({time} time)", "speedup")]
    if time == "host":
        specs.append(("efficiency.png", "operations per CPU-second (host: user + system)",
                      "ops_per_cpu_s"))
    else:
        specs.append((COST_PLOT, "per operation (simulated)", "cycles_per_op"))
    specs += [("contention.png", "contended lock acquisitions per op", "contended_per_op"),
              ("hit_rate.png", "magazine hit rate", "hit_rate")]
    return time, specs


def _axes(ax, counts, title, ylabel, key):
    ax.set_xlabel("simulated CPUs")
    ax.set_ylabel(ylabel)
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    if key == "hit_rate":
        ax.set_ylim(0, 1.02)
    elif key in ("throughput", "ops_per_cpu_s"):
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)


def _save(plt, fig, path):
    """Lays out fig, writes it to path (making its folder) and closes it; returns path."""
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _cost_plot(plt, groups, counts, title, path):
    """cycles/op (lock wait cycles/op dashed) above, transfers/op below."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), dpi=100, sharex=True)
    for label, rs in groups.items():
        rs = [r for r in rs if r.get("cycles_per_op") is not None]
        if not rs:
            continue
        xs = [r["cpus"] for r in rs]
        color = top.plot(xs, [r["cycles_per_op"] for r in rs], marker="o",
                         label=f"{label}: cycles/op")[0].get_color()
        waits = [(r["cpus"], r.get("lock_wait_cycles_per_op")) for r in rs]
        waits = [(x, w) for x, w in waits if w]            # a log scale has no 0
        if waits:
            top.plot([x for x, _ in waits], [w for _, w in waits], marker=".", linestyle="--",
                     color=color, label=f"{label}: lock wait cycles/op")
        bottom.plot(xs, [r.get("transfers_per_op") or 0 for r in rs], marker="o",
                    color=color, label=label)
    top.set_yscale("log")
    top.set_ylabel("simulated cycles per operation")
    top.grid(True, alpha=0.3)
    top.legend(fontsize=7, loc="best")
    top.set_title(f"{title}: cycles and line transfers per operation" if title
                  else "cycles and line transfers per operation", fontsize=10)
    _axes(bottom, counts, None, "cache-line transfers per operation", "transfers_per_op")
    _save(plt, fig, path)


def sweep_plots(rows, out_dir, title=""):
    """Writes the plots sweep_specs names under `out_dir` (host time: throughput.png,
    speedup.png, efficiency.png, contention.png, hit_rate.png; simulated time cost.png in place
    of efficiency.png); returns their paths (none when there are no rows)."""
    if not rows:
        return []
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    groups = _by_label(rows)
    counts = sorted({r["cpus"] for r in rows})
    cores = os.cpu_count() or 1
    time, specs = sweep_specs(rows)
    head = f"{title} ({time} time)" if title else f"{time} time"
    paths = []
    for fname, ylabel, key in specs:
        path = os.path.join(out_dir, fname)
        paths.append(path)
        if fname == COST_PLOT:
            _cost_plot(plt, groups, counts, head, path)
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
        for label, rs in groups.items():
            if key != "speedup" and rs[0].get("workload") == "floor":
                continue
            rs = [r for r in rs if r.get(key) is not None]
            if not rs:
                continue
            xs = [r["cpus"] for r in rs]
            ys = [r[key] for r in rs]
            if key == "throughput" and any(r.get("throughput_ci95") for r in rs):
                line = ax.errorbar(xs, ys, yerr=[r.get("throughput_ci95") or 0 for r in rs],
                                   marker="o", capsize=3, label=label)
                color = line[0].get_color()
            else:
                color = ax.plot(xs, ys, marker="o", label=label)[0].get_color()
            if key == "throughput" and rs[0]["throughput"]:
                b = rs[0]
                if time == "host":
                    ideal = [b["throughput"] * min(x, cores) / min(b["cpus"], cores) for x in xs]
                    what = f"linear up to {cores} cores"
                else:
                    ideal, what = [b["throughput"] * x / b["cpus"] for x in xs], "linear"
                ax.plot(xs, ideal, linestyle=":", color=color, alpha=0.6,
                        label=f"{label}: {what}")
        if key == "speedup":
            ax.plot(counts, counts, linestyle=":", color="grey", label="linear")
            if time == "host":
                ax.axhline(cores, color="grey", linewidth=0.8, alpha=0.5)
                ax.text(counts[0], cores, f" {cores} host cores", va="bottom", fontsize=8,
                        color="grey")
        _axes(ax, counts, f"{head}: {ylabel}", ylabel, key)
        _save(plt, fig, path)
    return paths


def timeseries_plot(series, path, title=""):
    """Frames and slabs in use, and operations done, over one run's samples (against their
    simulated seconds when every sample has them: a simulated-time run); returns `path`."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5), dpi=100, sharex=True)
    simulated = bool(series) and all("sim_t" in s for s in series)
    ts = [s["sim_t"] if simulated else s["t"] for s in series]
    top.plot(ts, [s["frames_used"] for s in series], label="frames in use")
    top.plot(ts, [s["slabs"] for s in series], label="slabs")
    top.set_ylabel("count")
    top.legend(fontsize=8)
    top.grid(True, alpha=0.3)
    bottom.plot(ts, [s["ops"] for s in series], color="tab:green")
    bottom.set_ylabel("operations done")
    bottom.set_xlabel("simulated seconds" if simulated else "seconds (host)")
    bottom.grid(True, alpha=0.3)
    if title:
        top.set_title(title, fontsize=10)
    return _save(plt, fig, path)


def _throughput_panel(ax, rows, time):
    """One panel of twin_plot: a line per variant (error bars: 95 % CI), and in simulated time
    linear scaling from the first variant's smallest CPU count."""
    groups = _by_label(rows)
    counts = sorted({r["cpus"] for r in rows})
    for i, (label, rs) in enumerate(groups.items()):
        floor = rs[0].get("workload") == "floor"
        xs, ys = [r["cpus"] for r in rs], [r["throughput"] for r in rs]
        ax.errorbar(xs, ys, yerr=[r.get("throughput_ci95") or 0 for r in rs], marker="o",
                    capsize=3, linestyle="--" if floor else "-",
                    label=f"{label} (no allocator)" if floor else label)
        if time == "simulated" and i == 0 and ys[0]:
            ax.plot(xs, [ys[0] * x / xs[0] for x in xs], linestyle=":", color="grey",
                    label=f"linear from {label} on {xs[0]} CPU{'s' if xs[0] > 1 else ''}")
    _axes(ax, counts, f"{time} time", f"throughput ({UNITS[time]}, all CPUs)", "throughput")
    ax.legend(fontsize=8, loc="best")


def twin_plot(sim_rows, host_rows, path, title=""):
    """Writes `path`: throughput against CPUs of a simulated-time sweep (left) and of a host-time
    sweep (right), one line per variant, each panel's axis in its own time; returns `path`.
    ValueError when a side's rows are not in its time."""
    for rows, time in ((sim_rows, "simulated"), (host_rows, "host")):
        if _time(rows) != time:
            raise ValueError(f"twin_plot: expected the rows of a {time}-time sweep, got "
                             f"{_time(rows)} time")
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=100)
    _throughput_panel(left, sim_rows, "simulated")
    _throughput_panel(right, host_rows, "host")
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(plt, fig, path)


def main(argv=None):
    """`python -m smpsim.experiment.plot SIMULATED_RESULT HOST_RESULT OUT.png [TITLE]`: twin_plot
    of two result folders' sweeps. Returns the exit status (2, one line, on bad input)."""
    import sys
    from smpsim.experiment import compare, tables
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) not in (3, 4):
        print("usage: python -m smpsim.experiment.plot SIMULATED_RESULT HOST_RESULT OUT.png "
              "[TITLE]", file=sys.stderr)
        return 2
    try:
        sim, host = (tables.aggregate(compare.load_runs(p)) for p in argv[:2])
        twin_plot(sim, host, argv[2], argv[3] if len(argv) > 3 else "")
    except ValueError as e:
        print(f"smpsim: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
