"""The live view: totals and caches sorted by active objects, as slabtop shows them."""

import io

from smpsim.experiment import live

STATS = {
    "frames": {"total": 1024, "free": 1000},
    "caches": {
        "a": {"size": 64, "pages": 1, "objects": 63, "slabs": 1, "cached": 4, "allocated": 10,
              "inside": True},
        "b": {"size": 4096, "pages": 1, "objects": 1, "slabs": 20, "cached": 0,
              "allocated": 20, "inside": False},
        "idle": {"size": 8, "pages": 1, "objects": 506, "slabs": 0, "cached": 0,
                 "allocated": 0, "inside": True},
    },
    "reclaim": {"calls": 2, "frames": 7},
}
CPU = [{"cpu": 0, "ops": 1000, "hits": 90, "misses": 10},
       {"cpu": 1, "ops": 500, "hits": 90, "misses": 10}]


def test_render():
    text = live.render(STATS, CPU, 2.0, 1500, "run-1")
    lines = text.splitlines()
    assert lines[0].split() == ["smpsim", "run-1", "2.0", "s", "1,500", "ops", "750", "ops", "/",
                                "s", "(host)"]
    assert "Active / Total Objects (% used)    : 34 / 83 (41.0%)" in lines[1]
    assert "Active / Total Caches (% used)     : 2 / 3 (66.7%)" in lines[3]
    assert "Frames in use / total              : 24 / 1024 (2.3%)" in lines[4]
    assert "90.0%" in lines[5] and "2 calls, 7 frames" in lines[5]
    assert lines[6] == " CPUs: 0:1,000  1:500"
    assert lines[8].split() == ["OBJS", "ACTIVE", "USE", "OBJ", "SIZE", "SLABS", "OBJ/SLAB",
                                "CACHED", "CACHE", "SIZE", "NAME"]
    assert [ln.split()[-1] for ln in lines[9:]] == ["b", "a", "idle"]
    assert lines[9].split() == ["20", "20", "100.0%", "4.00K", "20", "1", "0", "80K", "b"]


def test_live_view_off_a_terminal_throttles():
    out = io.StringIO()
    view = live.LiveView(out, every=60)
    view.draw(STATS, CPU, 1.0, 10)
    view.draw(STATS, CPU, 1.2, 20)
    assert out.getvalue().count("OBJ/SLAB") == 1
    view.draw(STATS, CPU, 1.3, 30, force=True)
    assert out.getvalue().count("OBJ/SLAB") == 2


def test_a_terminal_is_redrawn_in_place():
    """The screen is cleared once; later frames go over the last one line by line (cursor home,
    each line cleared to its end, the rest of the screen cleared): no blank screen between."""
    out = io.StringIO()
    view = live.LiveView(out, tty=True)
    view.draw(STATS, CPU, 1.0, 10)
    first = out.getvalue()
    view.draw(STATS, CPU, 2.0, 20)
    second = out.getvalue()[len(first):]
    assert first.startswith("\x1b[2J\x1b[H")
    assert "\x1b[2J" not in second and second.startswith("\x1b[H")
    lines = second[len("\x1b[H"):].split("\n")
    assert all(line.endswith("\x1b[K") for line in lines[:-1]) and lines[-1] == "\x1b[J"
    assert lines[0] == live.render(STATS, CPU, 2.0, 20).splitlines()[0] + "\x1b[K"


def test_the_header_rate_is_formatted_as_the_tables_are():
    from smpsim.experiment.tables import fmt_number
    for ops, secs in ((1500, 2.0), (123456789, 3.7), (10, 3.0)):
        header = live.render(STATS, CPU, secs, ops).splitlines()[0]
        assert header.endswith(f" {fmt_number(ops / secs)} ops / s (host)")


def test_a_simulated_run_shows_simulated_seconds_and_rate():
    """In simulated time the header's rate is operations per simulated second (the host's
    seconds beside, labelled), so the last frame agrees with the simulated table's row."""
    header = live.render(STATS, CPU, 2.0, 1500, "run-1", sim_seconds=0.0005).splitlines()[0]
    assert header.split() == ["smpsim", "run-1", "simulated", "0.0005", "s", "(2.0", "s",
                              "host)", "1,500", "ops", "3,000,000", "ops", "/", "simulated", "s"]
