"""Workloads for smpsim: classic multi-threaded allocator benchmarks, one module each.

Every workload module offers the same surface, used by the experiment layer (smpsim/experiment/runner.py)
and usable directly from scenario scripts:

    PARAMS                        its parameters: name -> workers.common.Param (kind, default,
                                  range)
    prepare(k, params, cpus)      optional; runs in the parent on CPU 0's Kernel before Machine.run,
                                  allocates the shared structures the CPUs meet in (a queue, an
                                  exchange area) and returns the parameters with their addresses
    run(k, params)                runs on one CPU inside Machine.run; returns a dict of what it did
    finish(k, params)             optional; runs in the parent after Machine.run, frees what prepare
                                  allocated

`run` is deterministic for a given `seed`: each CPU seeds its own generator from (seed, cpu id).
Every object a workload allocates is freed before `run` returns, so `Machine.check()` passes after
it and the caches' allocated-minus-cached counts return to where they were. Workloads use only the
public interface of smpsim (docs/api.md), the kernel atomics on simulated memory words included.

| module       | models                                                                     |
| ------------ | -------------------------------------------------------------------------- |
| threadtest   | each CPU allocates and frees its own batches (Hoard's threadtest)          |
| larson       | random sizes, objects handed from CPU to CPU between rounds (Larson)        |
| xmalloc      | producers allocate, consumers free, through a shared bounded queue          |
| scratch      | small objects written after allocation: false sharing (cache-scratch)      |
| kalloc_mix   | a working set over a size distribution spanning the malloc caches          |
| pressure     | fill memory until allocation fails, free part, allocate elsewhere: reclaim  |
| floor        | plain Python list operations, no allocator: the host's scaling ceiling      |
| contend      | allocs, frees, remote frees and reclaims that make every path meet another |
| racy         | a deliberate lost update (load then store), for `smpsim explore` to find    |
"""

__all__ = ["WORKLOADS", "module"]

# Workload name -> module path. Importing this package imports none of them.
WORKLOADS = {
    "threadtest": "smpsim.workloads.threadtest",
    "larson": "smpsim.workloads.larson",
    "xmalloc": "smpsim.workloads.xmalloc",
    "scratch": "smpsim.workloads.scratch",
    "kalloc_mix": "smpsim.workloads.kalloc_mix",
    "pressure": "smpsim.workloads.pressure",
    "floor": "smpsim.workloads.floor",
    "contend": "smpsim.workloads.contend",
    "racy": "smpsim.workloads.racy",
}


def module(name):
    """The module of workload `name`; KeyError naming the known workloads if there is none."""
    import importlib
    try:
        path = WORKLOADS[name]
    except KeyError:
        raise KeyError(f"no workload {name!r}; known: {', '.join(sorted(WORKLOADS))}") from None
    return importlib.import_module(path)
