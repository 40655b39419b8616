"""Type hints: smpsim ships py.typed, so a user's type checker reads scenario scripts against its
public interface. Every public callable of that interface is annotated (parameters and return),
the annotations evaluate, attributes are declared with types that the objects' values fit, and
mypy, reading the installed package, passes a script written against the interface with
--strict and rejects one that misuses it."""
import inspect
import os
import re
import site
import subprocess
import sys
import textwrap
import types
import typing

import pytest

import smpsim
import smpsim.experiment
from smpsim.engine.options import Options
from smpsim.experiment import cluster, runner, scenario

# The surface: every public name of smpsim (its dir() without a leading underscore, and its
# __all__), the names the experiment package and its cluster module declare public (__all__:
# their namespaces also hold what they import), and for each class every public member and
# every method of its own (dunders included: Machine(...), `with`, len(), ==).
MODULES = {smpsim: "dir", smpsim.experiment: "__all__", cluster: "__all__"}
# Reached through the interface but not named in those modules: m.options (docs/api.md), and
# the experiment layer's entry points that docs/cluster.md and the scenario files lead to.
REACHED_CLASSES = [Options]
REACHED_FUNCTIONS = [runner.run_point, runner.run_points, scenario.load]


def _public_names(module, how):
    names = set(module.__all__)
    if how == "dir":
        names |= {n for n in dir(module) if not n.startswith("_")}
    return sorted(n for n in names if not isinstance(getattr(module, n), types.ModuleType))


def _surface():
    """(classes, functions, constants) of the public surface, each {where: object}."""
    classes, functions, constants = {}, {}, {}
    for module, how in MODULES.items():
        for name in _public_names(module, how):
            obj, where = getattr(module, name), f"{module.__name__}.{name}"
            if isinstance(obj, type):
                classes.setdefault(obj, where)
            elif inspect.isfunction(obj):
                functions.setdefault(obj, where)
            else:
                constants[where] = (module, name, obj)
    for cls in REACHED_CLASSES:
        classes.setdefault(cls, f"{cls.__module__}.{cls.__qualname__}")
    for f in REACHED_FUNCTIONS:
        functions.setdefault(f, f"{f.__module__}.{f.__qualname__}")
    return classes, functions, constants


def _check_function(f, where, problems, *, method):
    """Every parameter (but a method's self or cls) and the return annotated, and evaluable."""
    try:
        hints = typing.get_type_hints(f)
    except Exception as e:              # noqa: BLE001 - any failure to evaluate is the finding
        problems.append(f"{where}: its annotations do not evaluate: {type(e).__name__}: {e}")
        return
    params = list(inspect.signature(f).parameters.values())
    for i, p in enumerate(params):
        if not (method and i == 0) and p.name not in hints:
            problems.append(f"{where}: parameter {p.name!r} has no annotation")
    if "return" not in hints:
        problems.append(f"{where}: no return annotation")


def _members(cls):
    """(name, member) for each public member of cls and each dunder method of its own, from
    the first class of its MRO that defines it, when that class is smpsim's."""
    for name in dir(cls):
        dunder = name.startswith("__") and name.endswith("__")
        if name.startswith("_") and not dunder:
            continue
        owner = next(c for c in cls.__mro__ if name in vars(c))
        if not owner.__module__.startswith("smpsim."):
            continue                    # object's, Exception's
        member = vars(owner)[name]
        if dunder and not isinstance(member, (types.FunctionType, staticmethod, classmethod)):
            continue                    # __slots__, __doc__, __module__, __hash__ = None ...
        yield name, member


def _class_hints(cls, problems):
    try:
        return typing.get_type_hints(cls)
    except Exception as e:              # noqa: BLE001
        problems.append(f"{cls.__qualname__}: its annotations do not evaluate: "
                        f"{type(e).__name__}: {e}")
        return {}


def test_every_public_callable_and_attribute_is_annotated():
    classes, functions, constants = _surface()
    assert smpsim.Machine in classes and smpsim.Schedule in classes
    assert smpsim.geometry in functions and cluster.sweep_on_cluster in functions
    problems = []
    for f, where in functions.items():
        _check_function(f, where, problems, method=False)
    for cls, where in classes.items():
        hints = _class_hints(cls, problems)
        for name, member in _members(cls):
            at = f"{where}.{name}"
            if isinstance(member, staticmethod):
                _check_function(member.__func__, at, problems, method=False)
            elif isinstance(member, classmethod):
                _check_function(member.__func__, at, problems, method=True)
            elif isinstance(member, property):
                _check_function(member.fget, at, problems, method=True)
            elif isinstance(member, types.FunctionType):
                _check_function(member, at, problems, method=True)
            elif name not in hints:
                problems.append(f"{at}: a class attribute without an annotation")
    for where, (module, name, value) in constants.items():
        hint = _module_hint(name, value)
        if hint is None:
            problems.append(f"{where}: not annotated where it is defined")
        elif isinstance(value, int) and where.startswith("smpsim.") and \
                where.count(".") == 1 and hint != typing.Final[int]:
            problems.append(f"{where}: annotated {hint}, not Final[int]")
    if typing.get_type_hints(smpsim).get("__version__") is not str:
        problems.append("smpsim.__version__: not annotated as str")
    assert not problems, "\n".join(problems)


def _module_hint(name, value):
    """The annotation of `name` in the smpsim module that defines it (holds `value` under it)."""
    for mod_name, mod in sorted(sys.modules.items()):
        if mod_name.startswith("smpsim") and name in getattr(mod, "__annotations__", {}) and \
                vars(mod).get(name) is value:
            return typing.get_type_hints(mod)[name]
    return None


# --- the values agree with the annotations --------------------------------------------------

def _conforms(value, hint):
    """value is of type hint, as far as a look at the value can tell (containers shallowly)."""
    if hint is typing.Any or isinstance(hint, typing.TypeVar):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Final, typing.ClassVar):
        return _conforms(value, args[0])
    if origin is typing.Union or origin is types.UnionType:
        return any(_conforms(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is not None:              # list[int], dict[str, Any], Sequence[...], Callable
        return isinstance(value, origin)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


def _noop(k):
    return k.cpu_id


def _fails(k):
    if k.cpu_id == 1:
        raise RuntimeError("a deliberate failure on CPU 1")
    return 0


def _samples():
    """Real objects of the public classes: machines after runs, a kernel, a cache handle, a
    recorded schedule, a CPUError from a failed run, the options, the cluster's results."""
    out = []
    with smpsim.Machine(2, "1M", schedule="random", seed=3) as m:
        m.run(_noop)
        out.append(m.last_schedule)
    with smpsim.Machine(2, "1M", time="simulated") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("typed", 100)
        k.slab_free(c, k.slab_alloc(c))
        m.run(_noop)
        try:
            m.run(_fails)
        except smpsim.CPUError as e:
            out.append(e)
        out += [m, k, c, m.options]
        out += _values(m) + _values(k) + _values(c) + _values(m.options)
        m.check()
    point = scenario.Point(None, "base", 1, 0, {}, [], {"name": "threadtest"})
    out += [smpsim.InvariantError(["a violation"]),
            smpsim.LockTimeout("frames", 1, 0.5, "its holder died"),
            smpsim.DebugError("corrupt", kind="red zone", obj=4096, cache="typed", cpu=0,
                              offset=8),
            cluster.Outcome(0, "item", value=1, host="h", worker="tcp://h:1"),
            cluster.Failure(point, "RuntimeError: x", "Traceback ...", "h", None),
            cluster.SweepResult("out", [], [], [])]
    return out


def _values(obj):
    """(where, value, hint) of obj's public properties, read while its machine is open."""
    return [(f"{type(obj).__qualname__}.{name}", getattr(obj, name),
             typing.get_type_hints(member.fget).get("return"))
            for name, member in _members(type(obj)) if isinstance(member, property)]


# Classes no sample is made of here: a Dask cluster would be needed.
NO_SAMPLE = {cluster.Connection, cluster.TaskMap}


def test_attributes_and_properties_hold_what_their_annotations_say():
    classes, _, _ = _surface()
    samples = _samples()
    objects = [s for s in samples if not isinstance(s, tuple)]
    problems = []
    for cls in classes:
        if cls in NO_SAMPLE:
            continue
        if not any(type(o) is cls for o in objects):
            own_init = any("__init__" in vars(c) for c in cls.__mro__
                           if c.__module__.startswith("smpsim."))
            if issubclass(cls, BaseException) and not own_init:
                objects.append(cls(f"a {cls.__name__}"))    # an error class without fields
            else:
                problems.append(f"{cls.__qualname__}: no sample here to check its attributes")
    for obj in objects:
        cls = type(obj)
        hints = typing.get_type_hints(cls)
        names = set(vars(obj)) if hasattr(obj, "__dict__") else set()
        names |= {n for c in cls.__mro__ for n in getattr(c, "__slots__", ())}
        for name in sorted(n for n in names if not n.startswith("_")):
            if callable(getattr(cls, name, None)):
                continue                # a method the instance carries a faster copy of
            if name not in hints:
                problems.append(f"{cls.__qualname__}.{name}: an attribute without a "
                                f"class-level annotation")
            elif not _conforms(getattr(obj, name), hints[name]):
                problems.append(f"{cls.__qualname__}.{name} = {getattr(obj, name)!r} is not "
                                f"{hints[name]}")
    for where, value, hint in (s for s in samples if isinstance(s, tuple)):
        if not _conforms(value, hint):
            problems.append(f"{where} = {value!r} is not {hint}")
    assert not problems, "\n".join(problems)


# --- mypy reads the installed package ---------------------------------------------------------

GOOD = '''
    """A scenario script written against smpsim's public interface only."""
    from __future__ import annotations

    import os
    import sys
    from typing import Any

    import smpsim
    from smpsim import Kernel, Machine, Schedule, SlabCache
    from smpsim.experiment import sweep_on_cluster
    from smpsim.experiment.scenario import load

    OBJECT = 100


    def program(k: Kernel, n: int) -> tuple[int, int]:
        """On every CPU: n objects allocated, written and freed; its id and simulated clock."""
        c: SlabCache = k.cache("node")
        objs = [k.slab_alloc(c) for _ in range(n)]
        k.barrier()
        for a in objs:
            if a is not None:
                k.memory[a:a + c.size] = bytes(c.size)
                k.slab_free(c, a)
        k.compute(1000)
        return k.cpu_id, k.cycles


    def failing(k: Kernel) -> None:
        raise RuntimeError(f"CPU {k.cpu_id} fails on purpose")


    def sweep(path: str) -> bool:
        """Not called here: a sweep on a Dask cluster, as docs/cluster.md shows."""
        r = sweep_on_cluster(load(path), "local:2", cpus=[1, 2], repeat=1)
        return r.ok and not [f.as_dict() for f in r.failures]


    def main(out: str) -> dict[str, Any]:
        with Machine(cpus=2, memory="4M", time="simulated", quantum=0,
                     cost={"transfer": 200}) as m:
            k = m.cpu(0)
            c = k.slab_cache_create("node", OBJECT, 0, smpsim.SLAB_CACHE_SLINSIDE)
            a = k.slab_alloc(c, smpsim.FRAME_ATOMIC | smpsim.FRAME_NO_RECLAIM)
            if a is None:
                raise smpsim.OutOfMemory("no object left")
            k.slab_free(c, a)
            k.kfree(k.kalloc(64))
            clocks: list[tuple[int, int]] = m.run(program, 50, cpus=[0, 1], timeout=60.0)
            named = m.run("smpsim.workloads.threadtest:run", {"cache": "node", "ops": 100})
            failure: tuple[int, str, bool, list[str]] | None = None
            try:
                m.run(failing, cpus=[1])
            except smpsim.CPUError as e:
                failure = (e.cpu, e.reason, e.inside, e.locks)
            stats = m.stats()
            free: int = stats["frames"]["free"]
            m.check()
            k.slab_cache_destroy(c)
            freed = k.slab_reclaim(smpsim.SLAB_RECLAIM_ALL)
            seconds = k.cycles / k.hz
            table = k.slab_print_list()
            last = m.last_run["elapsed"] if m.last_run else None
        with Machine(2, 4 << 20, schedule="random", seed=7) as m:
            m.cpu(0).slab_cache_create("node", OBJECT)
            m.run(program, 5)
            recorded = m.last_schedule
        if recorded is None:
            raise SystemExit("a controlled run records its schedule")
        path = os.path.join(out, "run.schedule")
        recorded.save(path)
        again: Schedule = Schedule.load(path)
        with Machine(2, "4M", schedule=again) as m:
            m.cpu(0).slab_cache_create("node", OBJECT)
            replayed = m.run(program, 5)
        return {"clocks": clocks, "ops": sum(r["ops"] for r in named), "failure": failure,
                "free": free, "freed": freed, "seconds": seconds, "rows": table.count("\\n"),
                "elapsed": last, "decisions": len(again), "replayed": replayed,
                "geometry": smpsim.geometry(OBJECT), "page": smpsim.PAGE_SIZE,
                "version": smpsim.__version__}


    if __name__ == "__main__":
        print(main(sys.argv[1]))
'''

# Each line marked `# E: code` must get mypy's error of that code, and no other line an error.
BAD = '''
    import smpsim
    from smpsim import Kernel, Machine
    from smpsim.experiment import sweep_on_cluster


    def program(k: Kernel) -> int:
        return k.cpu_id


    with Machine(cpus="4") as m:                        # E: arg-type
        k = m.cpu(0)
        c = k.slab_cache_create("node", 100)
        k.slab_free(c, "x")                             # E: arg-type
        a = k.slab_alloc(c)
        k.memory[a:a + 100] = bytes(100)                # E: operator
        k.compute(1.5)                                  # E: arg-type
        names: list[str] = m.run(program)               # E: arg-type
        m.stats().frames                                # E: attr-defined
    Machine(2, time="simulate")                         # E: arg-type
    smpsim.PAGE_SIZE = 8192                             # E: misc
    smpsim.CPUError(1, "died").cpu.upper()              # E: attr-defined
    smpsim.Schedule.load(3)                             # E: arg-type
    sweep_on_cluster("s.toml", "local:2", repeat="3")   # E: arg-type
'''


THIRD_PARTY = [f"{m}{tail}" for m in ("distributed", "dask", "matplotlib", "psutil", "tqdm",
                                     "multiprocessing_logging", "tomli") for tail in ("", ".*")]


@pytest.fixture(scope="module")
def mypy_run(tmp_path_factory):
    """mypy --strict on a script in a folder outside the repository, finding smpsim as the
    interpreter imports it: from site-packages, or for an editable install (an import hook
    mypy cannot follow) from a folder that links to the same package directory; either way a
    package path, where mypy reads a package only when it carries py.typed."""
    tmp = tmp_path_factory.mktemp("typing")
    package = os.path.dirname(os.path.abspath(smpsim.__file__))
    assert os.path.isfile(os.path.join(package, "py.typed")), "smpsim/py.typed is missing"
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    sites = {os.path.realpath(p) for p in site.getsitepackages() + [site.getusersitepackages()]}
    if os.path.realpath(os.path.dirname(package)) not in sites:
        (tmp / "installed").mkdir()
        os.symlink(package, tmp / "installed" / "smpsim")
        env["PYTHONPATH"] = str(tmp / "installed")
    # The libraries smpsim uses inside (none is part of its interface) are not followed:
    # Dask and matplotlib alone would bring a thousand modules and 15 s more.
    (tmp / "mypy.ini").write_text(f"[mypy]\n\n[mypy-{','.join(THIRD_PARTY)}]\n"
                                  f"follow_imports = skip\n")

    def run(name, text):
        (tmp / name).write_text(textwrap.dedent(text).lstrip())
        out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--config-file",
                              str(tmp / "mypy.ini"), "--cache-dir", str(tmp / "cache"),
                              "--no-color-output", "--no-error-summary", name],
                             cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
        return out, tmp
    return run


def test_mypy_strict_passes_a_script_written_against_the_interface(mypy_run):
    out, tmp = mypy_run("good.py", GOOD)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", ""), out.stdout + out.stderr
    # ... and the script is a real program: it runs as written.
    ran = subprocess.run([sys.executable, "good.py", str(tmp)], cwd=tmp, capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "'failure': (1, 'exception', False, [])" in ran.stdout
    assert "'page': 4096" in ran.stdout


def test_mypy_rejects_a_script_that_misuses_the_interface(mypy_run):
    out, _ = mypy_run("bad.py", BAD)
    expected = {i: m.group(1)
                for i, line in enumerate(textwrap.dedent(BAD).lstrip().splitlines(), 1)
                for m in [re.search(r"# E: ([\w-]+)", line)] if m}
    found = {}
    for line in out.stdout.splitlines():
        m = re.match(r"bad\.py:(\d+): error: .*\[([\w-]+)\]$", line)
        if m:
            found.setdefault(int(m.group(1)), set()).add(m.group(2))
    assert out.returncode == 1, out.stdout + out.stderr
    assert set(found) == set(expected), out.stdout
    wrong = {i: (code, found[i]) for i, code in expected.items() if code not in found[i]}
    assert not wrong, out.stdout
