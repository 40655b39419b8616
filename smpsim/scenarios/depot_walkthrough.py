"""The shared magazine list (Bonwick's depot), step by step, driven from one process.

Covers: objects freed on one CPU travel as full magazines through the cache's shared list to
another CPU, which then allocates them without touching the slab layer; light reclaim takes
magazines off the tail of each cache's shared list until one empties a slab; full reclaim
(SLAB_RECLAIM_ALL) also empties every CPU's own magazines. After each step it records what the
machine counts: the cache's slabs, allocated and cached objects, full magazines on the shared
list, frames in use, and the shared list lock's acquisitions.

No CPU process runs here: the script uses m.cpu(0) and m.cpu(1) in turn in this process, which
the interface allows while no Machine.run is under way (docs/api.md, Machine.cpu). Its run()
takes no options (`smpsim run` refuses --cpus and the like for it).

    smpsim run scenarios/depot_walkthrough.py        (or: python scenarios/depot_walkthrough.py)
"""

import sys

import smpsim

CPUS = 2
MEMORY = "8M"
MAGAZINE_SIZE = 4
OBJECTS = 40            # objects moved from CPU 0 to CPU 1
OBJ_SIZE = 96
CACHE = "depot-demo"


def _snapshot(m, step):
    s = m.stats()
    c = s["caches"][CACHE]
    return {"step": step, "slabs": c["slabs"], "allocated": c["allocated"],
            "cached": c["cached"], "shared_magazines": c.get("magazines", 0),
            "frames_used": s["frames"]["total"] - s["frames"]["free"],
            "maglock": s["locks"][f"{CACHE}.maglock"]["acquisitions"],
            "hits": sum(x["hits"] for x in s["cpus"]),
            "misses": sum(x["misses"] for x in s["cpus"])}


def run(out=None):
    """Runs the walkthrough; returns {"steps": [...], "reclaimed": {...}}."""
    steps, reclaimed = [], {}
    with smpsim.Machine(CPUS, MEMORY, magazine_size=MAGAZINE_SIZE) as m:
        k0, k1 = m.cpu(0), m.cpu(1)
        cache = k0.slab_cache_create(CACHE, OBJ_SIZE)
        steps.append(_snapshot(m, "created"))
        objs = [k0.slab_alloc(cache) for _ in range(OBJECTS)]
        steps.append(_snapshot(m, f"CPU 0 allocated {OBJECTS}"))
        for a in objs:
            k0.slab_free(cache, a)
        steps.append(_snapshot(m, f"CPU 0 freed {OBJECTS}"))
        objs = [k1.slab_alloc(cache) for _ in range(OBJECTS)]
        steps.append(_snapshot(m, f"CPU 1 allocated {OBJECTS}"))
        for a in objs[:OBJECTS // 2]:
            k1.slab_free(cache, a)
        steps.append(_snapshot(m, f"CPU 1 freed {OBJECTS // 2}"))
        reclaimed["light"] = k0.slab_reclaim(0)
        steps.append(_snapshot(m, "light reclaim"))
        for a in objs[OBJECTS // 2:]:
            k1.slab_free(cache, a)
        steps.append(_snapshot(m, f"CPU 1 freed the other {OBJECTS - OBJECTS // 2}"))
        reclaimed["all"] = k0.slab_reclaim(smpsim.SLAB_RECLAIM_ALL)
        reclaimed["all, again"] = k0.slab_reclaim(smpsim.SLAB_RECLAIM_ALL)
        steps.append(_snapshot(m, "full reclaim, twice"))
        k0.slab_cache_destroy(cache)
        m.check()
    return {"steps": steps, "reclaimed": reclaimed}


def _print(result):
    cols = list(result["steps"][0])
    print("\t".join(cols))
    for s in result["steps"]:
        print("\t".join(str(s[c]) for c in cols))
    print("frames reclaimed:", result["reclaimed"])


if __name__ == "__main__":
    _print(run(sys.argv[1] if len(sys.argv) > 1 else None))
