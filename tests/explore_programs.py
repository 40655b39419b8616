"""Small programs for tests/test_explore.py, as a workload module (registered by the tests in
smpsim.workloads.WORKLOADS): `program` picks what every CPU runs.

    spin       CPU 0 waits for a flag that CPU 1 sets after `ops` increments of its own:
               under PCT, CPU 0 spinning at a higher priority never lets CPU 1 run
    inversion  CPU 0 takes lock a then b, CPU 1 b then a, `ops` times: a deadlock
    raise      CPU 1 raises RuntimeError after `ops` atomic adds, naming the machine's time
    fine       every CPU adds one to a shared word `ops` times with an atomic add
"""

from smpsim.workloads.common import LENGTH, Param, SharedBlock, resolve

PARAMS = {
    **LENGTH,
    "seed": Param("int", 1, lo=0),
    "program": Param("str", "fine", choices=("spin", "inversion", "raise", "fine")),
}


def prepare(k, params, cpus):
    p = resolve(PARAMS, params)
    block = SharedBlock(k, 64 * 3, "prog")
    return {**p, "_block": block.describe()}


def finish(k, params):
    SharedBlock.free_described(k, params["_block"])


def run(k, params):
    p = resolve(PARAMS, params)
    base, n = p["_block"][0], p["ops"] or 10
    word, a, b = base, base + 64, base + 128
    if p["program"] == "spin":
        if k.cpu_id == 0:
            while not k.atomic_load(a):
                pass
        else:
            for _ in range(n):
                k.atomic_add(word, 1)
            k.atomic_store(a, 1)
    elif p["program"] == "inversion":
        first, second = (a, b) if k.cpu_id == 0 else (b, a)
        for _ in range(n):
            k.spin_lock(first)
            k.spin_lock(second)
            k.spin_unlock(second)
            k.spin_unlock(first)
    else:
        for _ in range(n):
            k.atomic_add(word, 1)
        if p["program"] == "raise" and k.cpu_id == 1:
            raise RuntimeError(f"planted in {k.time} time")
    return {"workload": "explore_programs", "cpu": k.cpu_id, "ops": n, "allocs": 0,
            "frees": 0, "failed": 0, "remote_frees": 0, "corrupt": 0, "bytes": 0,
            "seconds": 0.0}
