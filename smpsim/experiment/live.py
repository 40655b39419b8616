"""A slabtop-style live view of a running machine: totals at the top, then the caches sorted by
active objects, redrawn in place from the run's monitor callback (runner.Sampler).

On a terminal each frame goes over the last one without clearing the screen first (no
flicker): the cursor goes home, every line is written and the rest of it cleared, then the rest
of the screen. The header's rate is operations over elapsed seconds, formatted as the result
tables format throughputs, and says its time: in host time "ops / s (host)" over host seconds;
in simulated time "ops / simulated s" over the simulated seconds since the run's start (the
latest CPU clock), with the host seconds beside. The last frame of a run shows the run's own
operations and time (from the CPUs' start to the last one finishing), so it agrees with the
run's row in the final table.

Columns follow slabtop (OBJS ACTIVE USE OBJ SIZE SLABS OBJ/SLAB CACHE SIZE NAME) with CACHED
added: objects sitting in magazines. ACTIVE counts objects out of their slabs (allocated plus
cached), as slabtop counts objects in per-CPU arrays as active. The values are read while the
CPUs run, so they may be a little racy, as /proc/slabinfo's are.
"""

import shutil
import sys
import time

from smpsim.experiment.collect import UNITS
from smpsim.experiment.tables import fmt_number

__all__ = ["render", "LiveView"]

_HOME, _CLEAR_SCREEN = "\x1b[H", "\x1b[2J"
_CLEAR_LINE, _CLEAR_BELOW = "\x1b[K", "\x1b[J"


def _pct(a, b):
    return f"{100.0 * a / b:.1f}%" if b else "0.0%"


def _header(label, elapsed, ops, sim_seconds):
    """The first line: the run, its time so far, its operations and their rate in its time."""
    if sim_seconds is None:
        rate = ops / elapsed if elapsed else 0.0        # as collect.py computes throughput
        return (f" smpsim {label}   {elapsed:7.1f} s   {ops:,} ops   {fmt_number(rate)} "
                f"{UNITS['host']}")
    rate = ops / sim_seconds if sim_seconds else 0.0
    return (f" smpsim {label}   simulated {sim_seconds:.6g} s ({elapsed:.1f} s host)   {ops:,} ops"
            f"   {fmt_number(rate)} {UNITS['simulated']}")


def render(stats, cpu_stats, elapsed, ops, label="", rows=20, page_size=4096, sim_seconds=None):
    """The screen as text for one sample of Machine.stats() and Machine.cpu_stats(); `elapsed`
    host seconds, `sim_seconds` the simulated seconds in simulated time (None in host time)."""
    caches = stats["caches"]
    active = sum(c["allocated"] + c["cached"] for c in caches.values())
    total = sum(c["slabs"] * c["objects"] for c in caches.values())
    slabs = sum(c["slabs"] for c in caches.values())
    used_caches = sum(1 for c in caches.values() if c["slabs"])
    frames = stats["frames"]
    fused = frames["total"] - frames["free"]
    hits = sum(c["hits"] for c in cpu_stats)
    misses = sum(c["misses"] for c in cpu_stats)
    rec = stats.get("reclaim", {})
    lines = [
        _header(label, elapsed, ops, sim_seconds),
        f" Active / Total Objects (% used)    : {active} / {total} ({_pct(active, total)})",
        f" Active / Total Slabs (% used)      : {slabs} / {slabs} ({_pct(slabs, slabs)})",
        f" Active / Total Caches (% used)     : {used_caches} / {len(caches)} "
        f"({_pct(used_caches, len(caches))})",
        f" Frames in use / total              : {fused} / {frames['total']} "
        f"({_pct(fused, frames['total'])})",
        f" Magazine hit rate                  : {_pct(hits, hits + misses)}"
        f"   reclaim: {rec.get('calls', 0)} calls, {rec.get('frames', 0)} frames",
        " CPUs: " + "  ".join(f"{c['cpu']}:{c['ops']:,}" for c in cpu_stats[:16])
        + (" ..." if len(cpu_stats) > 16 else ""),
        "",
        f"{'OBJS':>7} {'ACTIVE':>7} {'USE':>6} {'OBJ SIZE':>8} {'SLABS':>6} {'OBJ/SLAB':>8} "
        f"{'CACHED':>7} {'CACHE SIZE':>10} NAME",
    ]
    order = sorted(caches.items(), key=lambda kv: (-kv[1]["allocated"] - kv[1]["cached"], kv[0]))
    for name, c in order[:rows]:
        objs, act = c["slabs"] * c["objects"], c["allocated"] + c["cached"]
        lines.append(f"{objs:7d} {act:7d} {_pct(act, objs):>6} "
                     f"{c['size'] / 1024:7.2f}K {c['slabs']:6d} {c['objects']:8d} "
                     f"{c['cached']:7d} {c['slabs'] * c['pages'] * page_size // 1024:9d}K "
                     f"{name}")
    return "\n".join(lines) + "\n"


class LiveView:
    """Redraws the screen on `stream` at every sample: in place on a terminal, else appended."""

    def __init__(self, stream=None, every=5.0, tty=None):
        self.stream = stream or sys.stdout
        self.tty = (hasattr(self.stream, "isatty") and self.stream.isatty()) if tty is None else tty
        self.every, self.last, self.frames = (0.0 if self.tty else every), None, 0

    def draw(self, stats, cpu_stats, elapsed, ops, label="", force=False, sim_seconds=None):
        """Draws one sample; off a terminal, at most one every `every` seconds unless `force`.
        `sim_seconds`: in simulated time, the simulated seconds the run has taken so far."""
        now = time.monotonic()
        if not force and self.last is not None and now - self.last < self.every:
            return
        self.last = now
        rows = max(5, shutil.get_terminal_size((100, 30)).lines - 11) if self.tty else 20
        text = render(stats, cpu_stats, elapsed, ops, label, rows, sim_seconds=sim_seconds)
        if self.tty:
            text = ((_CLEAR_SCREEN if not self.frames else "") + _HOME
                    + "".join(line + _CLEAR_LINE + "\n" for line in text.splitlines())
                    + _CLEAR_BELOW)
        else:
            text = "\n" + text
        self.frames += 1
        self.stream.write(text)
        self.stream.flush()
