"""Scenario files: a TOML description of one experiment, loaded and checked before anything runs.

    name = "threadtest"                 # optional; defaults to the file's stem
    description = "..."                 # optional

    [machine]                           # Machine(...) arguments (the table MACHINE_KEYS)
    cpus = 2                            # 1..256
    memory = "64M"                      # bytes, or a string with K/M/G; >= 1M, page multiple
    magazine_size = 4                   # 1..1024
    debug = false
    counters = "shared"                 # or "percpu"
    lock_timeout = 10.0                 # optional, seconds
    time = "simulated"                  # or "host" (the default): docs/time.md
    quantum = 1000                      # optional, cycles >= 0 (simulated time; 0: strict)
    resize_magazines = false            # the options beyond the seed (docs/options.md), each
    colour = false                      #   off by default
    empty_magazines = false
    cpu_magazine_cache = false
    slab_locks = false
    reap_every = 0.5                    # optional, seconds (inf: reaps by hand only)
    resize_threshold = 3                # contended maglock acquisitions per period, then grow
    resize_period = 1.0                 # seconds

    [cost]                              # optional: the cost model of simulated time
    transfer = 300                      # hit, transfer, atomic (cycles), hz (cycles per s)

    [[caches]]                          # created on CPU 0 before the run, destroyed after
    name = "node"
    size = 100
    align = 0                           # 0 or a power of two up to 4096
    flags = ["NOMAGAZINE"]              # NOMAGAZINE, SLINSIDE
    ctor = "smpsim.workloads.objects:construct"   # optional "module:function" constructor
    dtor = "smpsim.workloads.objects:destruct"    # and destructor

    [workload]
    name = "threadtest"                 # bundled, installed, "module:function" or "file.py"
    ops = 20000                         # and the workload's other parameters (its PARAMS)

    [run]
    timeout = 600                       # seconds for one run (Machine.run timeout)
    interval = 0.25                     # seconds between samples / progress updates
    pin = false                         # CPU i on host core i % cores

    [sweep]                             # what `smpsim sweep` varies
    cpus = [1, 2, 4]
    repeat = 1

    [[variants]]                        # optional; each point runs once per variant
    label = "no magazines"
    caches = [{ name = "node", size = 100, flags = ["NOMAGAZINE"] }]   # replaces [[caches]]
    machine = { magazine_size = 8 }     # merged over [machine]
    cost = { transfer = 200 }           # merged over [cost]
    workload = { batch = 10 }           # merged over [workload] (replaces it if `name` differs)

docs/scenarios.md describes every key. Overrides (load's `sets`, the command line's `--set`)
change the parsed file before it is checked, so a bad override is refused exactly as the same
value in the file would be: `workload.batch=8` sets the key in [workload] and in every variant's
workload table that sets it too; `variants[2].machine.cpus=4` one variant's; the run length
(`ops`, `seconds`) and `seed` apply to every workload table of the file.

Time: every variant runs in the same time (host or simulated), so that a table's throughputs
are all in one unit; in simulated time a workload that declares it has no meaning there (its
module's TIMES, as floor's) is refused, and `seconds` are simulated seconds.

Every error is a ScenarioError naming the file, the key (dotted, `variants[2].caches[1].size`)
and what was expected; nothing is run before the whole file (every variant included) is valid.
"""

import os
import re
from typing import Iterable
try:
    import tomllib
except ImportError:              # Python 3.10: the same parser, as a package
    import tomli as tomllib

from smpsim.engine.errors import SmpsimError

__all__ = ["ScenarioError", "Scenario", "Point", "load", "parse_memory", "parse_set",
           "BOOT_CACHES", "MACHINE_KEYS", "COST_KEYS"]

FLAG_NAMES = {"NOMAGAZINE": 1, "SLINSIDE": 2}
BOOT_CACHES = (["slab_magazine", "slab_cache", "slab_extern"]
               + [f"malloc-{s}" for s in ("8", "16", "32", "64", "128", "256", "512", "1K",
                                          "2K", "4K", "8K", "16K", "32K", "64K", "128K")])
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class ScenarioError(SmpsimError, ValueError):
    """A scenario file that cannot be run: `file`, `key` (dotted path) and `expected` say why."""

    def __init__(self, file, key, expected, got=None, *, unknown=False, missing=False):
        self.file, self.key, self.expected = file, key, expected
        if unknown:
            msg = f"{file}: unknown key '{key}'; expected {expected}"
        elif missing:
            msg = f"{file}: missing key '{key}'; expected {expected}"
        elif key:
            msg = f"{file}: key '{key}': expected {expected}, got {got!r}"
        else:
            msg = f"{file}: {expected}"
        super().__init__(msg)


class Point:
    """One configuration to run: a variant of the scenario at a CPU count, one repetition."""

    def __init__(self, scenario, label, cpus, rep, machine, caches, workload):
        self.scenario, self.label, self.cpus, self.rep = scenario, label, cpus, rep
        self.machine = {**machine, "cpus": cpus}
        self.caches, self.workload = caches, workload

    @property
    def id(self):
        return f"{_slug(self.label)}-c{self.cpus}-r{self.rep}"

    def as_dict(self):
        return {"id": self.id, "label": self.label, "cpus": self.cpus, "rep": self.rep,
                "machine": self.machine, "caches": self.caches, "workload": self.workload}

    def __repr__(self):
        return f"<Point {self.id} of {self.scenario.name}>"


class Scenario:
    """A checked scenario file. `variants` holds (label, machine, caches, workload) each, in the
    order the file declares them; `overrides` the overrides it was loaded with, as given."""

    def __init__(self, path, name, description, variants, run, sweep, text, overrides=()):
        self.path, self.name, self.description = path, name, description
        self.variants, self.run, self.sweep, self.text = variants, run, sweep, text
        self.overrides = list(overrides)

    @property
    def labels(self):
        return [v[0] for v in self.variants]

    @property
    def machine(self):
        return self.variants[0][1]

    @property
    def time(self):
        """"host" or "simulated": the time every variant runs in."""
        return self.machine["time"]

    def points(self, cpus=None, repeat=None):
        """Every point, CPU count outermost, then variant, then repetition. `cpus` None: the
        machine's count only (a plain run)."""
        counts = cpus or [None]
        out = []
        for n in counts:
            for label, machine, caches, workload in self.variants:
                for rep in range(repeat or 1):
                    out.append(Point(self, label, n or machine["cpus"], rep, machine, caches,
                                     workload))
        return out


# --- checking ---------------------------------------------------------------------------------

class _Checker:
    """Checks tables of one file, raising ScenarioError with the file's name."""

    def __init__(self, file):
        self.file = file

    def fail(self, key, expected, got=None, **kw):
        raise ScenarioError(self.file, key, expected, got, **kw)

    def table(self, value, key, known, required=None):
        """`value` if it is a table with only `known` keys and every key of `required` (a dict
        key -> what the missing-key message expects)."""
        if not isinstance(value, dict):
            self.fail(key, "a table", value)
        for k in value:
            if k not in known:
                self.fail(_join(key, k), "one of " + ", ".join(sorted(known)), unknown=True)
        for k, expected in (required or {}).items():
            if k not in value:
                self.fail(_join(key, k), expected, missing=True)
        return value

    def int(self, value, key, lo, hi):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(key, f"an integer {lo}..{hi}", value)
        return value

    def number(self, value, key, lo, hi, *, open_lo=False):
        bad = isinstance(value, bool) or not isinstance(value, (int, float))
        if not bad:
            bad = value <= lo if open_lo else value < lo
            bad = bad or value > hi
        if bad:
            self.fail(key, f"a number {'>' if open_lo else '>='} {lo:g} and <= {hi:g}", value)
        return float(value)

    def bool(self, value, key):
        if not isinstance(value, bool):
            self.fail(key, "true or false", value)
        return value

    def str(self, value, key, choices=None):
        if not isinstance(value, str) or (choices and value not in choices):
            self.fail(key, "one of " + ", ".join(map(repr, choices)) if choices else "a string",
                      value)
        return value


def _join(key, sub):
    return f"{key}.{sub}" if key else sub


def parse_memory(value):
    """Bytes from an int or a string like "64M"; ValueError naming what was wrong."""
    if isinstance(value, bool):
        raise ValueError("memory must be an integer or a string like '64M'")
    if isinstance(value, str):
        s = value.strip().upper().removesuffix("B").removesuffix("I")
        unit = s[-1:] if s[-1:] in "KMG" else ""
        digits = s[:-1] if unit else s
        if not digits.isdigit():
            raise ValueError(f"memory {value!r} is not an integer or a string like '64M'")
        value = int(digits) * _UNITS[unit]
    if not isinstance(value, int):
        raise ValueError("memory must be an integer or a string like '64M'")
    if value < (1 << 20) or value % 4096:
        raise ValueError(f"memory {value} is not a multiple of 4096 of at least 1M")
    return value


# Checkers: (checker, value, dotted key) -> the value to use, or ScenarioError.
def _int(lo, hi):
    return lambda c, v, key: c.int(v, key, lo, hi)


def _seconds(hi):
    return lambda c, v, key: c.number(v, key, 0, hi, open_lo=True)


def _number(lo, hi):
    return lambda c, v, key: c.number(v, key, lo, hi)


def _choice(*choices):
    return lambda c, v, key: c.str(v, key, choices)


def _bool(c, v, key):
    return c.bool(v, key)


def _memory(c, v, key):
    try:
        return parse_memory(v)
    except ValueError:
        c.fail(key, "bytes or a string like '64M' (>= 1M), a multiple of 4096", v)


def _cycles(c, v, key):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        c.fail(key, "an integer >= 0 (cycles)", v)
    return v


def _cpu_counts(c, v, key):
    if not isinstance(v, list) or not v:
        c.fail(key, "a list of CPU counts 1..256", v)
    counts = [c.int(n, key, 1, 256) for n in v]
    if len(set(counts)) != len(counts):
        c.fail(key, "a list of CPU counts 1..256, each once", v)
    return counts


# [machine]: key -> (checker, default). Every key is passed to Machine() as a keyword argument
# (cpus positionally), so a new Machine option is one line here.
MACHINE_KEYS = {
    "cpus": (_int(1, 256), 2),
    "memory": (_memory, 64 << 20),
    "magazine_size": (_int(1, 1024), 4),
    "debug": (_bool, False),
    "counters": (_choice("shared", "percpu"), "shared"),
    "lock_timeout": (_seconds(3600), None),
    "time": (_choice("host", "simulated"), "host"),
    "quantum": (_cycles, None),
    # The options beyond the seed (docs/options.md).
    "resize_magazines": (_bool, False),
    "colour": (_bool, False),
    "empty_magazines": (_bool, False),
    "cpu_magazine_cache": (_bool, False),
    "slab_locks": (_bool, False),
    "reap_every": (_seconds(float("inf")), None),
    "resize_threshold": (_int(0, 1000000), 3),
    "resize_period": (_seconds(86400), 1.0),
}
# [cost], and a variant's `cost`: entries of the cost model of simulated time over its defaults
# (Machine(cost=...)), each a positive integer; passed on as the machine's `cost`.
COST_KEYS = {"hit": "cycles", "transfer": "cycles", "atomic": "cycles",
             "hz": "cycles per second"}
_COST_MAX = 10 ** 12
# [run] and [sweep], the same way (a sweep's cpus default to the machine's count).
RUN_KEYS = {
    "timeout": (_seconds(86400), 600.0),
    "interval": (_number(0.01, 60), 0.25),
    "pin": (_bool, False),
}
SWEEP_KEYS = {
    "cpus": (_cpu_counts, None),
    "repeat": (_int(1, 100), 1),
}
_CACHE = {"name": "a cache name of 1..32 printable characters", "size": "an integer >= 1",
          "align": "0 or a power of two up to 4096", "flags": "a list of NOMAGAZINE, SLINSIDE",
          "ctor": "a 'module:function' string", "dtor": "a 'module:function' string"}
_TOP = {"name": "a string", "description": "a string", "machine": "a table",
        "caches": "an array of tables", "workload": "a table with 'name'", "run": "a table",
        "sweep": "a table", "variants": "an array of tables", "cost": "a table"}
_VARIANT = {"label": "a string", "machine": "a table", "caches": "an array of tables",
            "workload": "a table", "cost": "a table"}


def _keyed(c, t, key, keys):
    """Table `t` checked against `keys` (key -> (checker, default)), defaults filled in."""
    c.table(t, key, keys)
    return {k: check(c, t[k], f"{key}.{k}") if k in t else default
            for k, (check, default) in keys.items()}


def _caches(c, arr, key, memory):
    if not isinstance(arr, list):
        c.fail(key, "an array of tables ([[caches]])", arr)
    out, seen = [], set()
    for i, t in enumerate(arr):
        k = f"{key}[{i + 1}]"
        c.table(t, k, _CACHE, required={"name": _CACHE["name"], "size": _CACHE["size"]})
        name = t["name"]
        if (not isinstance(name, str) or not 1 <= len(name) <= 32 or not name.isprintable()
                or any(ch.isspace() for ch in name)):
            c.fail(f"{k}.name", "1..32 printable characters without whitespace", name)
        if name in seen or name in BOOT_CACHES:
            c.fail(f"{k}.name", "a name not used by another cache", name)
        seen.add(name)
        size = c.int(t["size"], f"{k}.size", 1, memory // 4)
        align = t.get("align", 0)
        if (isinstance(align, bool) or not isinstance(align, int) or align < 0
                or align > 4096 or align & (align - 1)):
            c.fail(f"{k}.align", _CACHE["align"], align)
        flags = t.get("flags", [])
        if not isinstance(flags, list) or any(f not in FLAG_NAMES for f in flags):
            c.fail(f"{k}.flags", _CACHE["flags"], flags)
        entry = {"name": name, "size": size, "align": align, "flags": list(flags)}
        for fn in ("ctor", "dtor"):            # the constructor and destructor, by name
            if fn in t:
                if not isinstance(t[fn], str) or t[fn].count(":") != 1:
                    c.fail(f"{k}.{fn}", _CACHE[fn], t[fn])
                entry[fn] = t[fn]
        out.append(entry)
    return out


def _find_workload(c, name, key, base):
    """The Workload `name` names, or ScenarioError saying why it cannot be had."""
    from smpsim import workloads
    known = sorted(workloads.WORKLOADS) + sorted(workloads.installed())
    what = (f"a workload: {', '.join(known)}, 'package.module:function' or a .py file")
    if not isinstance(name, str) or not name:
        c.fail(key, what, name)
    try:
        return workloads.find(name, base)
    except KeyError:
        c.fail(key, what, name)
    except ValueError as e:
        c.fail(key, f"a workload that loads ({e})", name)
    except Exception as e:                    # noqa: BLE001 - the user's module failed to import
        c.fail(key, f"a workload that loads ({type(e).__name__}: {e})", name)


def _cost(c, t, key):
    """A cost table's entries, each checked (a positive integer)."""
    c.table(t, key, COST_KEYS)
    for k, v in t.items():
        c.int(v, f"{key}.{k}", 1, _COST_MAX)
    return dict(t)


def _workload(c, t, key, caches, base, time="host"):
    if not isinstance(t, dict):
        c.fail(key, "a table", t)
    if "name" not in t:
        from smpsim import workloads
        c.fail(f"{key}.name", "a workload: " + ", ".join(sorted(workloads.WORKLOADS)),
               missing=True)
    wl = _find_workload(c, t["name"], f"{key}.name", base)
    if time not in wl.times:
        c.fail(f"{key}.name", f"a workload with a meaning in {time} time ({wl.name} runs in "
               f"{' or '.join(wl.times)} time only: run it in a scenario with machine.time = "
               f"{wl.times[0]!r})", t["name"])
    spec = wl.params
    params = {"name": wl.ref}
    for k, v in t.items():
        if k == "name":
            continue
        if spec is None:                      # no PARAMS: its parameters as given
            params[k] = v
            continue
        if k not in spec:
            c.fail(f"{key}.{k}", f"a parameter of {wl.name}: " + ", ".join(sorted(spec)),
                   unknown=True)
        try:
            params[k] = spec[k].check(v)
        except ValueError:
            c.fail(f"{key}.{k}", spec[k].expect, v)
    if spec is None:
        return params
    known = {x["name"] for x in caches} | set(BOOT_CACHES)
    for k in ("cache", "cache_b"):
        if k in spec and params.get(k) and params[k] not in known:
            c.fail(f"{key}.{k}", "a cache declared in [[caches]] or a boot cache", params[k])
    for lo, hi in (("min_size", "max_size"),):
        if lo in spec and hi in spec and \
                params.get(lo, spec[lo].default) > params.get(hi, spec[hi].default):
            c.fail(f"{key}.{lo}", f"at most {hi}", params.get(lo, spec[lo].default))
    return params


def _mixed_time(c, variants, i, time, first):
    """ScenarioError for variant i (0-based) whose time differs from the first variant's: at
    the key of the variant that sets its own time (this one, else the first)."""
    own = "time" in variants[i].get("machine", {})
    j = i if own else 0
    c.fail(f"variants[{j + 1}].machine.time", "the time of every other variant (one table's "
           "throughputs are all in host or all in simulated time)", time if own else first)


def _slug(label):
    return "".join(c if c.isalnum() else "-" for c in label).strip("-") or "base"


def _variant(c, doc, v, key, base):
    c.table(v, key, _VARIANT, required={"label": _VARIANT["label"]})
    label = c.str(v["label"], f"{key}.label")
    mt = dict(doc.get("machine", {}))
    if "machine" in v:
        c.table(v["machine"], f"{key}.machine", MACHINE_KEYS)
        mt.update(v["machine"])
    machine = _keyed(c, mt, f"{key}.machine" if "machine" in v else "machine", MACHINE_KEYS)
    cost = _cost(c, doc.get("cost", {}), "cost")
    if "cost" in v:
        cost.update(_cost(c, v["cost"], f"{key}.cost"))
    machine["cost"] = cost or None
    ckey = f"{key}.caches" if "caches" in v else "caches"
    caches = _caches(c, v.get("caches", doc.get("caches", [])), ckey, machine["memory"])
    wt = dict(doc["workload"])
    if "workload" in v:
        if not isinstance(v["workload"], dict):
            c.fail(f"{key}.workload", "a table", v["workload"])
        if v["workload"].get("name", wt.get("name")) != wt.get("name"):
            wt = {}                       # another workload: its parameters start afresh
        wt.update(v["workload"])
    workload = _workload(c, wt, f"{key}.workload" if "workload" in v else "workload", caches,
                         base, machine["time"])
    return (label, machine, caches, workload)


# --- overrides --------------------------------------------------------------------------------

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)(?:\[([1-9][0-9]*)\])?")


def parse_set(text):
    """(dotted key, value) of an override "KEY=VALUE": VALUE is read as a TOML value (8, 1.5,
    true, "lifo", [1, 2]); one that is not TOML is taken as a string (lifo). ValueError when
    there is no '=' or the key is not a dotted key (workload.batch, variants[2].machine.cpus)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not all(_SEGMENT.fullmatch(s) for s in key.split(".")):
        raise ValueError(f"expected KEY=VALUE with a dotted KEY like workload.batch=8 or "
                         f"variants[2].machine.cpus=4, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def _set(c, doc, key, value):
    """Sets dotted `key` in the parsed file `doc` (see the module docstring)."""
    segs = [_SEGMENT.fullmatch(s).groups() for s in key.split(".")]
    t, path = doc, ""
    for i, (name, idx) in enumerate(segs):
        path = _join(path, name)
        last = i == len(segs) - 1
        if idx is None and last:
            t[name] = value
            break
        if idx is None:
            t = t.setdefault(name, {})
            if not isinstance(t, dict):
                c.fail(path, "a table", t)
            continue
        arr, n = t.get(name), int(idx)
        if not isinstance(arr, list) or len(arr) < n:
            c.fail(path, f"an array with an element [{n}]", arr)
        path = f"{path}[{n}]"
        if last:
            arr[n - 1] = value
            break
        t = arr[n - 1]
        if not isinstance(t, dict):
            c.fail(path, "a table", t)
    if len(segs) == 2 and segs[0] in (("machine", None), ("workload", None), ("cost", None)):
        table, k = segs[0][0], segs[1][0]
        for v in doc.get("variants") or []:
            if isinstance(v, dict) and isinstance(v.get(table), dict) and k in v[table]:
                v[table][k] = value


def _set_length(doc, ops, seconds, seed):
    """The run length and seed in every workload table: [workload], and each variant's that
    names its own workload or sets the key itself."""
    base = doc.get("workload")
    tables = [base] if isinstance(base, dict) else []
    for v in doc.get("variants") or []:
        w = v.get("workload") if isinstance(v, dict) else None
        if isinstance(w, dict):
            tables.append(w)
    for t in tables:
        own = t is base or ("name" in t and isinstance(base, dict)
                            and t["name"] != base.get("name"))
        if ops is not None and (own or "ops" in t or "seconds" in t):
            t["ops"] = ops
            if "seconds" in t and seconds is None:
                t["seconds"] = 0.0
        if seconds is not None and (own or "ops" in t or "seconds" in t):
            t["seconds"] = seconds
            if "ops" in t and ops is None:
                t["ops"] = 0
        if seed is not None and (own or "seed" in t):
            t["seed"] = seed


def load(path: str | os.PathLike[str], *, sets: Iterable[str] = (), ops: int | None = None,
         seconds: float | None = None, seed: int | None = None) -> Scenario:
    """The checked Scenario in TOML file `path`; ScenarioError naming the file, key and what was
    expected when it cannot be run. `sets` are overrides "KEY=VALUE" (parse_set); `ops`,
    `seconds` and `seed` set the run length and seed of every workload (`ops` alone clears a
    `seconds` the file sets and the other way round; both: whichever ends first)."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except IsADirectoryError:
        raise ScenarioError(file, "", "is a directory, not a scenario file") from None
    except OSError as e:
        raise ScenarioError(file, "", f"cannot be read ({e.strerror or e})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ScenarioError(file, "", f"is not valid TOML: {e}") from None
    c = _Checker(file)
    overrides = []
    for text in sets:
        try:
            key, value = parse_set(text)
        except ValueError as e:
            raise ScenarioError(file, "", f"--set: {e}") from None
        _set(c, doc, key, value)
        overrides.append(f"--set {text}")
    _set_length(doc, ops, seconds, seed)
    overrides += [f"--{k} {v}" for k, v in (("ops", ops), ("seconds", seconds), ("seed", seed))
                  if v is not None]
    c.table(doc, "", _TOP, required={"workload": _TOP["workload"]})
    name = c.str(doc.get("name", os.path.splitext(os.path.basename(file))[0]), "name")
    description = c.str(doc.get("description", ""), "description")
    if not isinstance(doc["workload"], dict):
        c.fail("workload", "a table", doc["workload"])
    base_dir = os.path.dirname(os.path.abspath(file))
    base = _variant(c, doc, {"label": ""}, "", base_dir)
    variants = doc.get("variants")
    if variants is None:
        resolved = [("base",) + base[1:]]
    else:
        if not isinstance(variants, list) or not variants:
            c.fail("variants", "a non-empty array of tables ([[variants]])", variants)
        resolved, slugs = [], set()
        for i, v in enumerate(variants):
            r = _variant(c, doc, v, f"variants[{i + 1}]", base_dir)
            if _slug(r[0]) in slugs:
                c.fail(f"variants[{i + 1}].label", "a label no other variant has (letters and "
                       "digits count; its runs' folders are named after it)", r[0])
            slugs.add(_slug(r[0]))
            if resolved and r[1]["time"] != resolved[0][1]["time"]:
                _mixed_time(c, variants, i, r[1]["time"], resolved[0][1]["time"])
            resolved.append(r)
    run = _keyed(c, doc.get("run", {}), "run", RUN_KEYS)
    sweep = _keyed(c, doc.get("sweep", {}), "sweep", SWEEP_KEYS)
    sweep["cpus"] = sweep["cpus"] or [base[1]["cpus"]]
    return Scenario(file, name, description, resolved, run, sweep, raw.decode("utf-8"),
                    overrides)
