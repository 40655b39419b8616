"""Magazine size against the miss rate (Bonwick and Adams 2001, section 3): with a loaded and a
previous magazine of M objects per CPU, at most one operation in M has to go to the shared list.

Covers: the same threadtest loop (batches of BATCH objects allocated, then freed, on every CPU)
on machines whose magazine_size runs through SIZES. A batch that fits in a CPU's two magazines
(2 M >= BATCH) is served from them alone once they are warm; a larger batch moves a magazine
through the shared list every M operations. For each size it records the magazine hit rate, the
shared list lock's acquisitions per operation, and the throughput, and writes them to
OUT/magazine_size.csv and OUT/magazine_size.png.

    smpsim run scenarios/magazine_size.py        (or: python scenarios/magazine_size.py OUT)
    smpsim run scenarios/magazine_size.py --cpus 4 --ops 5000     (run() takes cpus and ops)
"""

import os
import sys

import smpsim

CPUS = 2
MEMORY = "16M"
SIZES = [1, 2, 4, 8, 16, 32, 64]
BATCH = 32
OPS = 20000             # per CPU
OBJ_SIZE = 64
CACHE = "msize"


def measure(size, cpus=CPUS, ops=OPS):
    """One machine with magazine_size `size`: the threadtest loop on every CPU."""
    with smpsim.Machine(cpus, MEMORY, magazine_size=size) as m:
        k = m.cpu(0)
        cache = k.slab_cache_create(CACHE, OBJ_SIZE)
        before, cpu_before = m.stats(), m.cpu_stats()
        m.run("smpsim.workloads.threadtest:run", {"ops": ops, "batch": BATCH, "cache": CACHE},
              timeout=300)
        after, cpu_after = m.stats(), m.cpu_stats()
        k.slab_cache_destroy(cache)
        m.check()
    hits = sum(a["hits"] - b["hits"] for a, b in zip(cpu_after, cpu_before))
    misses = sum(a["misses"] - b["misses"] for a, b in zip(cpu_after, cpu_before))
    ops = hits + misses
    lock = f"{CACHE}.maglock"
    shared = after["locks"][lock]["acquisitions"] - before["locks"][lock]["acquisitions"]
    elapsed = m.last_run["elapsed"]
    return {"magazine_size": size, "ops": ops, "hit_rate": hits / ops,
            "miss_bound": 1 / size, "shared_list_per_op": shared / ops,
            "throughput": ops / elapsed if elapsed else 0.0}


def run(out=None, cpus=CPUS, ops=OPS):
    """Measures every size in SIZES on `cpus` CPUs, `ops` operations each; writes the CSV and the
    plot under `out` when given."""
    rows = [measure(size, cpus, ops) for size in SIZES]
    if out:
        from smpsim.experiment import report
        os.makedirs(out, exist_ok=True)
        report.write_csv(os.path.join(out, "magazine_size.csv"), rows)
        _plot(rows, os.path.join(out, "magazine_size.png"))
    return {"cpus": cpus, "batch": BATCH, "ops_per_cpu": ops, "rows": rows}


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = [r["magazine_size"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    ax.plot(xs, [1 - r["hit_rate"] for r in rows], marker="o", label="miss rate")
    ax.plot(xs, [r["shared_list_per_op"] for r in rows], marker="s",
            label="shared list lock acquisitions / op")
    ax.plot(xs, [min(1.0, r["miss_bound"]) for r in rows], linestyle=":", color="grey",
            label="1 / M")
    ax.axvline(BATCH / 2, color="grey", linewidth=0.8, alpha=0.5)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel(f"magazine size M (batch of {BATCH}: fits two magazines from M = {BATCH // 2})")
    ax.set_ylabel("per operation")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    result = run(sys.argv[1] if len(sys.argv) > 1 else None)
    for r in result["rows"]:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in r.items()))
