"""Plots: the sweep and time-series PNGs are written and are PNGs."""

import pytest

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


SIM_ROWS = [dict(r, time="simulated", cycles_per_op=100.0 * r["cpus"], transfers_per_op=0.1,
                 lock_wait_cycles_per_op=5.0) for r in ROWS]


def test_sweep_plots_say_their_time():
    """Host time: throughput in ops / s (host), efficiency on the host's CPU time. Simulated
    time: ops / simulated s, and cost.png (cycles and transfers per operation) in place of the
    host's efficiency."""
    time, specs = plot.sweep_specs(ROWS)
    assert time == "host" and specs[0][1] == "throughput (ops / s (host), all CPUs)"
    assert [s[0] for s in specs] == ["throughput.png", "speedup.png", "efficiency.png",
                                     "contention.png", "hit_rate.png"]
    time, specs = plot.sweep_specs(SIM_ROWS)
    assert time == "simulated" and specs[0][1] == "throughput (ops / simulated s, all CPUs)"
    assert specs[1][1] == "speed-up against 1 CPU (simulated time)"
    assert [s[0] for s in specs] == ["throughput.png", "speedup.png", "cost.png",
                                     "contention.png", "hit_rate.png"]


def test_simulated_sweep_plots_are_written(tmp_path):
    paths = plot.sweep_plots(SIM_ROWS, tmp_path / "plots", "test")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["throughput.png", "speedup.png", "cost.png",
                                                    "contention.png", "hit_rate.png"]
    assert all(is_png(p) for p in paths)


def test_a_simulated_timeseries_is_against_simulated_seconds(tmp_path, monkeypatch):
    labels = []
    import matplotlib.axes
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel",
                        lambda ax, text, *a, **kw: labels.append(text))
    series = [{"t": t / 4, "sim_t": t / 1000, "ops": 100 * t, "frames_used": 10 + t,
               "slabs": t} for t in range(8)]
    assert is_png(plot.timeseries_plot(series, str(tmp_path / "ts.png"), "ts"))
    plot.timeseries_plot([{k: v for k, v in s.items() if k != "sim_t"} for s in series],
                         str(tmp_path / "host.png"))
    assert [t for t in labels if t] == ["simulated seconds", "seconds (host)"]


def test_twin_plot_puts_the_two_times_side_by_side(tmp_path, capsys):
    import json
    assert is_png(plot.twin_plot(SIM_ROWS, ROWS, str(tmp_path / "twin.png"), "t"))
    with pytest.raises(ValueError, match=r"^twin_plot: expected the rows of a simulated-time "
                                         r"sweep, got host time$"):
        plot.twin_plot(ROWS, ROWS, str(tmp_path / "bad.png"))
    folders = []
    for name, rows in (("sim", SIM_ROWS), ("host", ROWS)):
        d = tmp_path / name
        d.mkdir()
        runs = [dict(r, check="ok", error="") for r in rows]
        (d / "summary.json").write_text(json.dumps({"runs": runs}))
        folders.append(str(d))
    assert plot.main(folders + [str(tmp_path / "cli.png")]) == 0 and is_png(tmp_path / "cli.png")
    assert plot.main(folders[::-1] + [str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err == ("smpsim: twin_plot: expected the rows of a simulated-time "
                                       "sweep, got host time\n")
