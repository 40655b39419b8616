"""Plots: the sweep and time-series PNGs are written and are PNGs."""

from smpsim.experiment import plot

ROWS = [{"label": lab, "cpus": n, "throughput": tp * n, "throughput_ci95": sd, "hit_rate": hr,
         "contended_per_op": c, "speedup": float(n), "ops_per_cpu_s": tp,
         "workload": "threadtest"}
        for lab, tp, sd, hr, c in (("magazines", 100.0, 5.0, 0.99, 0.001),
                                   ("no magazines", 60.0, 0.0, 0.0, 0.2))
        for n in (1, 2, 4)]


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_sweep_plots(tmp_path):
    paths = plot.sweep_plots(ROWS, tmp_path / "plots", "test")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["throughput.png", "speedup.png",
                                                    "efficiency.png", "contention.png",
                                                    "hit_rate.png"]
    assert all(is_png(p) for p in paths)
    assert plot.sweep_plots([], tmp_path / "none") == []


def test_timeseries_plot(tmp_path):
    series = [{"t": t / 4, "ops": 100 * t, "frames_used": 10 + t, "slabs": t} for t in range(8)]
    assert is_png(plot.timeseries_plot(series, str(tmp_path / "ts.png"), "ts"))
