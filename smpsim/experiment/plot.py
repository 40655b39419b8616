"""PNG plots of results with matplotlib's Agg backend (no display needed).

sweep_plots: from the sweep rows (tables.aggregate), one line per variant against the CPU count:
throughput on a log scale (error bars: the 95 % confidence interval of the mean over repetitions;
with the variant's linear scaling up to the host's core count, the most the host can give), speed-up against
1 CPU, operations per second of CPU time used (which other load on the host does not lower,
and spinning does), contended lock acquisitions per operation, and the magazine hit rate. Only the speed-up
plot shows the `floor` workload (plain Python, the host's ceiling): its throughput is on another
scale and it has no allocator to measure. timeseries_plot: frames and slabs in use
and operations done over one run.

matplotlib is imported inside the functions: importing this module does no work.
"""

import os

__all__ = ["sweep_plots", "timeseries_plot"]


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


def sweep_plots(rows, out_dir, title=""):
    """Writes throughput.png, speedup.png, efficiency.png, contention.png and hit_rate.png
    under `out_dir`; returns their paths (none when there are no rows)."""
    if not rows:
        return []
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    groups = _by_label(rows)
    counts = sorted({r["cpus"] for r in rows})
    cores = os.cpu_count() or 1
    specs = [
        ("throughput.png", "throughput (ops/s, all CPUs)", "throughput", True),
        ("speedup.png", "speed-up against 1 CPU", "speedup", True),
        ("efficiency.png", "operations per CPU-second (user + system)", "ops_per_cpu_s", False),
        ("contention.png", "contended lock acquisitions per op", "contended_per_op", False),
        ("hit_rate.png", "magazine hit rate", "hit_rate", False),
    ]
    paths = []
    for fname, ylabel, key, ideal in specs:
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
            if ideal and key == "throughput" and rs[0]["throughput"]:
                b = rs[0]
                ax.plot(xs, [b["throughput"] * min(x, cores) / min(b["cpus"], cores)
                             for x in xs], linestyle=":", color=color, alpha=0.6,
                        label=f"{label}: linear up to {cores} cores")
        if key == "speedup":
            ax.plot(counts, counts, linestyle=":", color="grey", label="linear")
            ax.axhline(cores, color="grey", linewidth=0.8, alpha=0.5)
            ax.text(counts[0], cores, f" {cores} host cores", va="bottom", fontsize=8,
                    color="grey")
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
        ax.set_title(f"{title}: {ylabel}" if title else ylabel, fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, fname)
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def timeseries_plot(series, path, title=""):
    """Frames and slabs in use, and operations done, over one run's samples; returns `path`."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5), dpi=100, sharex=True)
    ts = [s["t"] for s in series]
    top.plot(ts, [s["frames_used"] for s in series], label="frames in use")
    top.plot(ts, [s["slabs"] for s in series], label="slabs")
    top.set_ylabel("count")
    top.legend(fontsize=8)
    top.grid(True, alpha=0.3)
    bottom.plot(ts, [s["ops"] for s in series], color="tab:green")
    bottom.set_ylabel("operations done")
    bottom.set_xlabel("seconds")
    bottom.grid(True, alpha=0.3)
    if title:
        top.set_title(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
