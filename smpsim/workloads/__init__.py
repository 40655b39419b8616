"""Workloads for smpsim: classic multi-threaded allocator benchmarks, one module each, and how a
scenario finds a workload, bundled or the user's own.

Every workload module offers the same surface, used by the experiment layer
(smpsim/experiment/runner.py) and usable directly from scenario scripts:

    run(k, params)                runs on one CPU inside Machine.run; returns a dict of what it did
                                  (at least "ops" and "seconds" for the tables)
    PARAMS                        optional: its parameters, name -> smpsim.workloads.common.Param
                                  (kind, default, range); a scenario's values are checked against
                                  them. Without PARAMS the parameters are passed on as given.
    prepare(k, params, cpus)      optional; runs in the parent on CPU 0's Kernel before Machine.run,
                                  allocates the shared structures the CPUs meet in (a queue, an
                                  exchange area) and returns the parameters with their addresses
    finish(k, params)             optional; runs in the parent after Machine.run, frees what prepare
                                  allocated
    COLUMNS                       optional: [(key, heading)] of numbers the result tables show for
                                  this workload (a key of its result dicts, summed over the CPUs,
                                  or of the run's summary row such as reclaim_calls)
    TIMES                         optional: the times it has a meaning in, ("host", "simulated")
                                  when absent; floor's ("host",): plain Python has no cost in the
                                  simulated machine, so a simulated-time scenario refuses it

A workload is named in a scenario's `[workload] name` by

    a bundled name                "threadtest" (the table below)
    an installed name             a package's entry point in the group "smpsim.workloads"
                                  (name = "package.module" or "package.module:function")
    "package.module:function"     a module importable from the current sys.path
    "path/to/file.py[:function]"  a file, relative to the scenario file; loaded by path in every
                                  process that runs it (no import path needed)

The function defaults to `run`. `find()` returns a Workload, which the experiment layer uses
whatever the kind: its parameters checked when it has PARAMS, its prepare and finish called when
it has them, its `program` handed to Machine.run.

A run's length, `seconds`, is measured in the machine's time (common.Budget): host seconds, or in
simulated time simulated seconds (the CPU's cycles over k.hz).

`run` is deterministic for a given `seed`: each CPU seeds its own generator from (seed, cpu id).
Every object a bundled workload allocates is freed before `run` returns, so `Machine.check()`
passes after it and the caches' allocated-minus-cached counts return to where they were.
Workloads use only the public interface of smpsim (docs/api.md), the kernel atomics on simulated
memory words included.

| module       | models                                                                     |
| ------------ | -------------------------------------------------------------------------- |
| threadtest   | each CPU allocates and frees its own batches (Hoard's threadtest)          |
| larson       | random sizes, objects handed from CPU to CPU between rounds (Larson)        |
| xmalloc      | producers allocate, consumers free, through a shared bounded queue          |
| scratch      | small objects written after allocation: false sharing (cache-scratch)      |
| kalloc_mix   | a working set over a size distribution spanning the malloc caches          |
| pressure     | fill memory until allocation fails, free part, allocate elsewhere: reclaim  |
| burst        | a burst freed at once, then a small steady working set: what reaping frees  |
| walk         | objects read through a model of a hardware cache: what colouring is for     |
| floor        | plain Python list operations, no allocator: the host's scaling ceiling      |
| contend      | allocs, frees, remote frees and reclaims that make every path meet another |
| racy         | a deliberate lost update (load then store), for `smpsim explore` to find    |

smpsim/workloads/objects.py is no workload: it holds the constructor and destructor the
scenarios give their caches (slab_cache_create(..., ctor=, dtor=)).
"""

import hashlib
import importlib
import importlib.util
import os
import sys

__all__ = ["WORKLOADS", "GROUP", "Workload", "FileProgram", "find", "installed", "module",
           "short_name"]

# Workload name -> module path. Importing this package imports none of them.
WORKLOADS = {
    "threadtest": "smpsim.workloads.threadtest",
    "larson": "smpsim.workloads.larson",
    "xmalloc": "smpsim.workloads.xmalloc",
    "scratch": "smpsim.workloads.scratch",
    "kalloc_mix": "smpsim.workloads.kalloc_mix",
    "pressure": "smpsim.workloads.pressure",
    "burst": "smpsim.workloads.burst",
    "walk": "smpsim.workloads.walk",
    "floor": "smpsim.workloads.floor",
    "contend": "smpsim.workloads.contend",
    "racy": "smpsim.workloads.racy",
}
GROUP = "smpsim.workloads"          # the entry-point group of installed workloads

_loaded = {}                        # (pid, path) -> module loaded from a file in that process


def installed():
    """Installed workloads: {name: "module" or "module:function"} from the entry points of the
    group "smpsim.workloads" (bundled names win over installed ones)."""
    from importlib.metadata import entry_points
    return {ep.name: ep.value for ep in entry_points(group=GROUP) if ep.name not in WORKLOADS}


def _load_file(path):
    """The module of workload file `path`, loaded by path once in this process."""
    key = (os.getpid(), path)
    mod = _loaded.get(key)
    if mod is None:
        stem = "".join(c if c.isalnum() else "_" for c in os.path.basename(path)[:-3])
        name = f"smpsim_file_{stem}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod              # pickling and dataclasses find it by name
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        _loaded[key] = mod
    return mod


class FileProgram:
    """The function of a workload file, for Machine.run: it loads the file by path in the process
    that calls it (every CPU process), so the file needs no import path, and it pickles by path."""

    def __init__(self, path, function="run"):
        self.path, self.function = path, function

    def __call__(self, k, *args):
        return getattr(_load_file(self.path), self.function)(k, *args)

    def __repr__(self):
        return f"<FileProgram {self.path}:{self.function}>"


class Workload:
    """A workload found by find(): `ref` (what names it again, in any process: a bundled or
    installed name, "module:function", or an absolute "file.py:function"), `name` (short, for
    tables), `kind` ("bundled", "installed", "module" or "file"), its `module` and `function`."""

    def __init__(self, ref, name, kind, mod, function, program):
        self.ref, self.name, self.kind, self.module = ref, name, kind, mod
        self.function, self.program = function, program
        if not callable(getattr(mod, function, None)):
            raise ValueError(f"{mod.__name__ if kind != 'file' else mod.__file__} has no "
                             f"function {function!r}")

    @property
    def params(self):
        """Its PARAMS, or None when it declares none (parameters are then passed as given)."""
        return getattr(self.module, "PARAMS", None)

    @property
    def columns(self):
        """Its COLUMNS as [(key, heading)], or None when it declares none."""
        cols = getattr(self.module, "COLUMNS", None)
        return None if cols is None else [tuple(c) for c in cols]

    @property
    def times(self):
        """The times it has a meaning in: its TIMES, else ("host", "simulated")."""
        return tuple(getattr(self.module, "TIMES", ("host", "simulated")))

    @property
    def doc(self):
        """The first paragraph of its module's docstring, on one line."""
        text = (self.module.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(text.split())

    def prepare(self, k, params, cpus):
        fn = getattr(self.module, "prepare", None)
        return fn(k, params, cpus) if fn else params

    def finish(self, k, params):
        fn = getattr(self.module, "finish", None)
        if fn:
            fn(k, params)

    def __repr__(self):
        return f"<Workload {self.ref} ({self.kind})>"


def _from_module(spec, kind, name=None):
    """The Workload of "module[:function]" `spec`; `name` (bundled and installed ones) names it."""
    modname, _, function = spec.partition(":")
    function = function or "run"
    try:
        mod = importlib.import_module(modname)
    except ImportError as e:
        raise ValueError(f"cannot import {modname!r}: {e}") from None
    ref = name or f"{modname}:{function}"
    return Workload(ref, ref, kind, mod, function, f"{modname}:{function}")


def find(ref, base=None):
    """The Workload named `ref` (see the module docstring); a relative file path is taken from
    folder `base` (default: the current one). KeyError for an unknown name, ValueError for a
    module or file that cannot be loaded or lacks the function; an exception raised while the
    user's module is imported goes on to the caller."""
    if not isinstance(ref, str) or not ref:
        raise KeyError(f"a workload name must be a non-empty string, got {ref!r}")
    path, sep, function = ref.rpartition(":") if ".py:" in ref else (ref, "", "")
    if path.endswith(".py"):
        if not os.path.isabs(path):
            path = os.path.join(base or os.getcwd(), path)
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise ValueError(f"no workload file {path}")
        function = function or "run"
        mod = _load_file(path)
        return Workload(f"{path}:{function}", short_name(path), "file", mod, function,
                        FileProgram(path, function))
    if ref in WORKLOADS:
        return _from_module(WORKLOADS[ref], "bundled", ref)
    if ":" in ref:
        return _from_module(ref, "module")
    inst = installed()
    if ref in inst:
        return _from_module(inst[ref], "installed", ref)
    known = sorted(WORKLOADS) + sorted(inst)
    raise KeyError(f"no workload {ref!r}; known: {', '.join(known)}")


def short_name(ref):
    """A workload reference as the tables show it: a file by its name without folder."""
    path = ref.rpartition(":")[0] if ".py:" in ref else ref
    if path.endswith(".py"):
        return os.path.basename(path)[:-3]
    return ref


def module(name):
    """The module of bundled or installed workload `name`; KeyError naming the known workloads
    if there is none."""
    return find(name).module
