"""racy: a program with a data race on purpose, for `smpsim explore` to find. Every CPU adds
one to a shared word of simulated memory `ops` times with an atomic load followed by an atomic
store (each access atomic, the increment not), so a CPU that runs between another's load and
store makes that store lose an update. finish() asserts the word's final value: every CPU's
increments, no more and no less.

Under `smpsim run` (the host schedules the CPU processes) the loss shows only when the host
happens to interleave the two accesses; under controlled schedules a search finds it within a
few schedules, and shrinking leaves one preemption: a CPU preempted between its load and its
store while another increments. With `atomic` true the increment is one atomic add, and the
program is correct.
"""

from smpsim.workloads.common import LENGTH, Param, SharedBlock, log, now, resolve

__all__ = ["PARAMS", "COLUMNS", "prepare", "run", "finish"]

COLUMNS = []          # nothing beyond the common columns of the result tables

PARAMS = {
    **LENGTH,
    "seed": Param("int", 1, lo=0, doc="unused; accepted like every workload's"),
    "atomic": Param("bool", False, doc="increment with one atomic add (the fixed program)"),
}


def prepare(k, params, cpus):
    """The shared word, zeroed; the parameters with its description and the CPU count."""
    p = resolve(PARAMS, params)
    block = SharedBlock(k, 8, "racy")
    k.atomic_store(block.addr, 0)
    return {**p, "_block": block.describe(), "_cpus": cpus}


def _ops(p):
    return p["ops"] or 10000


def run(k, params=None, **overrides):
    """`ops` increments of the shared word (`seconds` is not used: the count must be known)."""
    p = resolve(PARAMS, params, overrides)
    if "_block" not in p:
        raise ValueError("racy.run: no shared word; call racy.prepare in the parent first")
    word, n = p["_block"][0], _ops(p)
    start = now(k)
    for _ in range(n):
        if p["atomic"]:
            k.atomic_add(word, 1)
        else:
            k.atomic_store(word, k.atomic_load(word) + 1)     # the race: load, then store
    seconds = now(k) - start
    log.info("racy done: %d increments in %.3f s", n, seconds)
    return {"workload": "racy", "cpu": k.cpu_id, "ops": n, "allocs": 0, "frees": 0,
            "failed": 0, "remote_frees": 0, "corrupt": 0, "bytes": 0, "seconds": seconds}


def finish(k, params):
    """Frees the word after asserting it holds every increment (AssertionError otherwise)."""
    word = params["_block"][0]
    total, expected = k.atomic_load(word), params["_cpus"] * _ops(params)
    SharedBlock.free_described(k, params["_block"])
    assert total == expected, (f"racy: the shared word holds {total}, not {expected} "
                               f"({params['_cpus']} CPUs x {_ops(params)} increments): "
                               f"{expected - total} lost")
