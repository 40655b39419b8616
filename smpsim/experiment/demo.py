"""A short demonstration on the default machine: four CPUs allocate and free from a cache of
their own and from the malloc caches, half of the frees on another CPU than the allocation; then
the invariant checker runs and the seed's table is printed.

    python -m smpsim demo [--cpus N] [--ops N]
"""

import argparse
import random

CACHE = "demo-node"
OBJECT_SIZE = 100
KALLOC_SIZES = (24, 100, 700, 3000)


def _program(k, ops, mailbox):
    """Allocate and free `ops` objects; hand every other object to the next CPU through
    `mailbox`, a word per CPU in simulated memory (a one-slot handoff)."""
    rnd = random.Random(k.cpu_id)
    c = k.cache(CACHE)
    mine = mailbox + 8 * k.cpu_id
    theirs = mailbox + 8 * ((k.cpu_id + 1) % k.cpus)
    live, remote = [], 0
    for i in range(ops):
        got = k.atomic_load(mine)
        if got and k.atomic_cas(mine, got, 0):       # an object another CPU handed us
            k.slab_free(c, got)
            remote += 1
        if rnd.random() < 0.5:
            live.append(("k", k.kalloc(rnd.choice(KALLOC_SIZES))))
        else:
            live.append(("c", k.slab_alloc(c)))
        if len(live) > 8:
            kind, addr = live.pop(rnd.randrange(len(live)))
            if kind == "k":
                k.kfree(addr)
            elif not k.atomic_cas(theirs, 0, addr):  # slot taken: free it here
                k.slab_free(c, addr)
    for kind, addr in live:
        k.kfree(addr) if kind == "k" else k.slab_free(c, addr)
    k.barrier()                                      # every handoff is in its slot by now
    got = k.atomic_load(mine)
    if got:
        k.atomic_store(mine, 0)
        k.slab_free(c, got)
        remote += 1
    return {"ops": ops, "remote_frees": remote}


def main(argv=None):
    from smpsim import Machine
    p = argparse.ArgumentParser(prog="smpsim demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--cpus", type=int, default=4, help="simulated CPUs (default 4)")
    p.add_argument("--ops", type=int, default=20000, help="operations per CPU (default 20000)")
    a = p.parse_args(argv)
    with Machine(cpus=a.cpus, memory="64M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create(CACHE, OBJECT_SIZE)
        mailbox = k.kalloc(8 * a.cpus)
        k.memory[mailbox:mailbox + 8 * a.cpus] = bytes(8 * a.cpus)
        print(f"{m}: cache {c.name!r} of {OBJECT_SIZE} bytes (size {c.size}, "
              f"{c.objects} objects per {1 << c.order}-page slab)")
        results = m.run(_program, a.ops, mailbox, timeout=300)
        k.kfree(mailbox)
        secs = m.last_run["elapsed"]
        total = sum(r["ops"] for r in results) * 2
        print(f"{a.cpus} CPUs did {total} allocations and frees in {secs:.2f} s "
              f"({total / secs / 1e3:.0f} k ops/s); remote frees: "
              f"{sum(r['remote_frees'] for r in results)}")
        hits = sum(s["hits"] for s in m.cpu_stats())
        ops = sum(s["ops"] for s in m.cpu_stats())
        print(f"magazine hit rate {hits / ops:.1%}")
        m.check()
        print("m.check(): every invariant holds\n")
        print(k.slab_print_list(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
