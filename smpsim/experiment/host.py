"""What a result records about where it was measured: the smpsim version, the host's CPU model
and core counts, the Python version, the load, and how much of the host other processes took
while the run went on (its interference).

Interference: psutil reads the host's busy CPU time (all cores, every process) before and after
a run; what the run's own CPU processes and this process used (their user + system time) is
subtracted, and the rest, divided by the wall-clock time between the two readings, is
`other_cores`: how many cores' worth of other work shared the host with the run. On a 2-core host, 0.9 means the simulated CPUs
had about one core between them, whatever the CPU count.
"""

import os
import platform
import socket
import time

import psutil

__all__ = ["version", "cpu_model", "describe", "Interference"]


def version():
    """smpsim's version: smpsim.__version__, else the installed distribution's, else "unknown"."""
    import smpsim
    v = getattr(smpsim, "__version__", None)
    if v:
        return v
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version
        return dist_version("smpsim")
    except PackageNotFoundError:
        return "unknown"


def cpu_model():
    """The host CPU's model name (/proc/cpuinfo on Linux, else platform's), or "unknown"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe():
    """The host and software a run is measured on, as result.json records it."""
    return {"name": socket.gethostname(), "smpsim": version(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False), "loadavg": _loadavg()}


def _busy(t):
    """Busy CPU seconds (all cores) in a psutil.cpu_times() sample."""
    return t.user + t.system + sum(getattr(t, f, 0.0) for f in ("nice", "irq", "softirq",
                                                                 "steal"))


class Interference:
    """Measures the host's CPU time around a run (start() before it, stop() after)."""

    def __init__(self):
        self.me = psutil.Process()
        self.start()

    def start(self):
        self.t0 = time.perf_counter()
        self.busy0, self.own0 = _busy(psutil.cpu_times()), sum(self.me.cpu_times()[:2])

    def stop(self, cpu_seconds):
        """{"busy_cores", "other_cores", "loadavg"} since start(), the run's CPU processes having
        used `cpu_seconds` of CPU time between them."""
        wall = time.perf_counter() - self.t0
        busy = _busy(psutil.cpu_times()) - self.busy0
        own = sum(self.me.cpu_times()[:2]) - self.own0 + cpu_seconds
        if wall <= 0:
            return {"busy_cores": None, "other_cores": None, "loadavg": _loadavg()}
        return {"busy_cores": round(busy / wall, 3),
                "other_cores": round(max(0.0, busy - own) / wall, 3), "loadavg": _loadavg()}
