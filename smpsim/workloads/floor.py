"""floor: the host's own ceiling, no allocator involved. Each CPU does `ops` operations of plain
Python, a list append or pop each (the floor the benchmark compares the hit path with), so a
sweep that runs it next to an allocator workload shows how far the host itself lets N forked
Python processes scale (2 cores: a 2-CPU speed-up anywhere from 1.2 to 2.75). Judge the
allocator's scaling against this, measured in the same sweep.

It runs in host time only (TIMES): plain Python charges nothing to a simulated clock, so in
simulated time it would do its operations in no time at all. A scenario in simulated time that
names it is refused, and run() raises ValueError on such a machine.
"""

from smpsim.workloads.common import LENGTH, Budget, Param, log, resolve

__all__ = ["PARAMS", "COLUMNS", "TIMES", "run"]

COLUMNS = []          # nothing beyond the common columns of the result tables
TIMES = ("host",)     # no meaning in simulated time

PARAMS = {
    **LENGTH,
    "seed": Param("int", 1, lo=0, doc="unused; accepted like every workload's"),
}


def run(k, params=None, **overrides):
    """`ops` list operations (append + pop pairs), or as many as fit in `seconds`."""
    if k.time != "host":
        raise ValueError(f"floor.run: the host's ceiling has no meaning in {k.time} time "
                         f"(plain Python charges no cycles); run it in host time")
    budget = Budget(k, resolve(PARAMS, params, overrides))
    stack, done = [], 0
    while budget.more(done):
        for _ in range(500):
            stack.append(done)
            stack.pop()
        done += 1000
    seconds = budget.elapsed()
    log.info("floor done: %d ops in %.3f s", done, seconds)
    return {"workload": "floor", "cpu": k.cpu_id, "ops": done, "allocs": 0, "frees": 0,
            "failed": 0, "remote_frees": 0, "corrupt": 0, "bytes": 0, "seconds": seconds}
