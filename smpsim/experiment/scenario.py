"""Scenario files: a TOML description of one experiment, loaded and checked before anything runs.

    name = "threadtest"                 # optional; defaults to the file's stem
    description = "..."                 # optional

    [machine]                           # Machine(...) arguments
    cpus = 2                            # 1..256
    memory = "64M"                      # bytes, or a string with K/M/G; >= 1M, page multiple
    magazine_size = 4                   # 1..1024
    debug = false
    counters = "shared"                 # or "percpu"
    lock_timeout = 10.0                 # optional, seconds
    resize_magazines = false            # the options beyond the seed (docs/options.md), each
    colour = false                      #   off by default
    empty_magazines = false
    cpu_magazine_cache = false
    slab_locks = false
    reap_every = 0.5                    # optional, seconds (inf: reaps by hand only)
    resize_threshold = 3                # contended maglock acquisitions per period, then grow
    resize_period = 1.0                 # seconds

    [[caches]]                          # created on CPU 0 before the run, destroyed after
    name = "node"
    size = 100
    align = 0                           # 0 or a power of two up to 4096
    flags = ["NOMAGAZINE"]              # NOMAGAZINE, SLINSIDE
    ctor = "smpsim.workloads.objects:construct"   # optional "module:function" constructor
    dtor = "smpsim.workloads.objects:destruct"    # and destructor

    [workload]
    name = "threadtest"                 # a module of workers/ (workloads.WORKLOADS)
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
    workload = { batch = 10 }           # merged over [workload] (replaces it if `name` differs)

Every error is a ScenarioError naming the file, the key (dotted, `variants[2].caches[1].size`)
and what was expected; nothing is run before the whole file (every variant included) is valid.
"""

import os
try:
    import tomllib
except ImportError:              # Python 3.10: the same parser, as a package
    import tomli as tomllib

from smpsim.engine.errors import SmpsimError

__all__ = ["ScenarioError", "Scenario", "Point", "load", "parse_memory", "BOOT_CACHES"]

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
        slug = "".join(c if c.isalnum() else "-" for c in self.label).strip("-") or "base"
        return f"{slug}-c{self.cpus}-r{self.rep}"

    def as_dict(self):
        return {"id": self.id, "label": self.label, "cpus": self.cpus, "rep": self.rep,
                "machine": self.machine, "caches": self.caches, "workload": self.workload}


class Scenario:
    """A checked scenario file. `variants` holds (label, machine, caches, workload) each."""

    def __init__(self, path, name, description, variants, run, sweep, text):
        self.path, self.name, self.description = path, name, description
        self.variants, self.run, self.sweep, self.text = variants, run, sweep, text

    @property
    def machine(self):
        return self.variants[0][1]

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

    def table(self, value, key, known, required=()):
        if not isinstance(value, dict):
            self.fail(key, "a table", value)
        for k in value:
            if k not in known:
                self.fail(_join(key, k), "one of " + ", ".join(sorted(known)), unknown=True)
        for k in required:
            if k not in value:
                self.fail(_join(key, k), known[k], missing=True)
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


_MACHINE = {"cpus": "an integer 1..256", "memory": "bytes or a string like '64M' (>= 1M)",
            "magazine_size": "an integer 1..1024", "debug": "true or false",
            "counters": "'shared' or 'percpu'", "lock_timeout": "a number of seconds > 0",
            "resize_magazines": "true or false", "colour": "true or false",
            "empty_magazines": "true or false", "cpu_magazine_cache": "true or false",
            "slab_locks": "true or false", "reap_every": "a number of seconds > 0 (or inf)",
            "resize_threshold": "an integer 0..1000000",
            "resize_period": "a number of seconds > 0"}
# The options beyond the seed that are switches (Machine keywords of the same names).
OPTION_SWITCHES = ("resize_magazines", "colour", "empty_magazines", "cpu_magazine_cache",
                   "slab_locks")
_CACHE = {"name": "a cache name of 1..32 printable characters", "size": "an integer >= 1",
          "align": "0 or a power of two up to 4096", "flags": "a list of NOMAGAZINE, SLINSIDE",
          "ctor": "a 'module:function' string", "dtor": "a 'module:function' string"}
_RUN = {"timeout": "seconds > 0", "interval": "seconds 0.01..60", "pin": "true or false"}
_SWEEP = {"cpus": "a list of CPU counts 1..256", "repeat": "an integer 1..100"}
_TOP = {"name": "a string", "description": "a string", "machine": "a table",
        "caches": "an array of tables", "workload": "a table with 'name'", "run": "a table",
        "sweep": "a table", "variants": "an array of tables"}
_VARIANT = {"label": "a string", "machine": "a table", "caches": "an array of tables",
            "workload": "a table"}


def _machine(c, t, key):
    c.table(t, key, _MACHINE)
    m = {"cpus": 2, "memory": 64 << 20, "magazine_size": 4, "debug": False,
         "counters": "shared", "lock_timeout": None, **dict.fromkeys(OPTION_SWITCHES, False),
         "reap_every": None, "resize_threshold": 3, "resize_period": 1.0}
    if "cpus" in t:
        m["cpus"] = c.int(t["cpus"], f"{key}.cpus", 1, 256)
    if "memory" in t:
        try:
            m["memory"] = parse_memory(t["memory"])
        except ValueError:
            c.fail(f"{key}.memory", _MACHINE["memory"] + ", a multiple of 4096", t["memory"])
    if "magazine_size" in t:
        m["magazine_size"] = c.int(t["magazine_size"], f"{key}.magazine_size", 1, 1024)
    if "debug" in t:
        m["debug"] = c.bool(t["debug"], f"{key}.debug")
    if "counters" in t:
        m["counters"] = c.str(t["counters"], f"{key}.counters", ("shared", "percpu"))
    if "lock_timeout" in t:
        m["lock_timeout"] = c.number(t["lock_timeout"], f"{key}.lock_timeout", 0, 3600,
                                     open_lo=True)
    for name in OPTION_SWITCHES:
        if name in t:
            m[name] = c.bool(t[name], f"{key}.{name}")
    if "reap_every" in t:
        m["reap_every"] = c.number(t["reap_every"], f"{key}.reap_every", 0, float("inf"),
                                   open_lo=True)
    if "resize_threshold" in t:
        m["resize_threshold"] = c.int(t["resize_threshold"], f"{key}.resize_threshold", 0,
                                      1000000)
    if "resize_period" in t:
        m["resize_period"] = c.number(t["resize_period"], f"{key}.resize_period", 0, 86400,
                                      open_lo=True)
    return m


def _caches(c, arr, key, memory):
    if not isinstance(arr, list):
        c.fail(key, "an array of tables ([[caches]])", arr)
    out, seen = [], set()
    for i, t in enumerate(arr):
        k = f"{key}[{i + 1}]"
        c.table(t, k, _CACHE, required=("name", "size"))
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
        for fn in ("ctor", "dtor"):
            if fn in t:
                if not isinstance(t[fn], str) or t[fn].count(":") != 1:
                    c.fail(f"{k}.{fn}", _CACHE[fn], t[fn])
                entry[fn] = t[fn]
        out.append(entry)
    return out


def _workload(c, t, key, caches):
    from smpsim import workloads
    if not isinstance(t, dict):
        c.fail(key, "a table", t)
    if "name" not in t:
        c.fail(f"{key}.name", "a workload: " + ", ".join(sorted(workloads.WORKLOADS)), missing=True)
    name = t["name"]
    if not isinstance(name, str) or name not in workloads.WORKLOADS:
        c.fail(f"{key}.name", "one of " + ", ".join(sorted(workloads.WORKLOADS)), name)
    spec = workloads.module(name).PARAMS
    params = {"name": name}
    for k, v in t.items():
        if k == "name":
            continue
        if k not in spec:
            c.fail(f"{key}.{k}", f"a parameter of {name}: " + ", ".join(sorted(spec)),
                   unknown=True)
        try:
            params[k] = spec[k].check(v)
        except ValueError:
            c.fail(f"{key}.{k}", spec[k].expect, v)
    known = {x["name"] for x in caches} | set(BOOT_CACHES)
    for k in ("cache", "cache_b"):
        if params.get(k) and params[k] not in known:
            c.fail(f"{key}.{k}", "a cache declared in [[caches]] or a boot cache", params[k])
    for lo, hi in (("min_size", "max_size"),):
        if lo in spec and params.get(lo, spec[lo].default) > params.get(hi, spec[hi].default):
            c.fail(f"{key}.{lo}", f"at most {hi}", params.get(lo, spec[lo].default))
    return params


def _run(c, t, key):
    c.table(t, key, _RUN)
    r = {"timeout": 600.0, "interval": 0.25, "pin": False}
    if "timeout" in t:
        r["timeout"] = c.number(t["timeout"], f"{key}.timeout", 0, 86400, open_lo=True)
    if "interval" in t:
        r["interval"] = c.number(t["interval"], f"{key}.interval", 0.01, 60)
    if "pin" in t:
        r["pin"] = c.bool(t["pin"], f"{key}.pin")
    return r


def _sweep(c, t, key, default_cpus):
    c.table(t, key, _SWEEP)
    s = {"cpus": [default_cpus], "repeat": 1}
    if "cpus" in t:
        cpus = t["cpus"]
        if not isinstance(cpus, list) or not cpus:
            c.fail(f"{key}.cpus", _SWEEP["cpus"], cpus)
        s["cpus"] = [c.int(n, f"{key}.cpus", 1, 256) for n in cpus]
    if "repeat" in t:
        s["repeat"] = c.int(t["repeat"], f"{key}.repeat", 1, 100)
    return s


def _variant(c, doc, v, key):
    c.table(v, key, _VARIANT, required=("label",))
    label = c.str(v["label"], f"{key}.label")
    mt = dict(doc.get("machine", {}))
    if "machine" in v:
        c.table(v["machine"], f"{key}.machine", _MACHINE)
        mt.update(v["machine"])
    machine = _machine(c, mt, f"{key}.machine" if "machine" in v else "machine")
    ckey = f"{key}.caches" if "caches" in v else "caches"
    caches = _caches(c, v.get("caches", doc.get("caches", [])), ckey, machine["memory"])
    wt = dict(doc["workload"])
    if "workload" in v:
        if not isinstance(v["workload"], dict):
            c.fail(f"{key}.workload", "a table", v["workload"])
        if v["workload"].get("name", wt.get("name")) != wt.get("name"):
            wt = {}                       # another workload: its parameters start afresh
        wt.update(v["workload"])
    workload = _workload(c, wt, f"{key}.workload" if "workload" in v else "workload", caches)
    return (label, machine, caches, workload)


def load(path):
    """The checked Scenario in TOML file `path`; ScenarioError naming the file, key and what was
    expected when it cannot be run."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ScenarioError(file, "", f"cannot be read ({e.strerror or e})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ScenarioError(file, "", f"is not valid TOML: {e}") from None
    c = _Checker(file)
    c.table(doc, "", _TOP, required=("workload",))
    name = c.str(doc.get("name", os.path.splitext(os.path.basename(file))[0]), "name")
    description = c.str(doc.get("description", ""), "description")
    if not isinstance(doc["workload"], dict):
        c.fail("workload", "a table", doc["workload"])
    base = _variant(c, doc, {"label": ""}, "")
    variants = doc.get("variants")
    if variants is None:
        resolved = [("base",) + base[1:]]
    else:
        if not isinstance(variants, list) or not variants:
            c.fail("variants", "a non-empty array of tables ([[variants]])", variants)
        resolved, labels = [], set()
        for i, v in enumerate(variants):
            r = _variant(c, doc, v, f"variants[{i + 1}]")
            if r[0] in labels:
                c.fail(f"variants[{i + 1}].label", "a label no other variant has", r[0])
            labels.add(r[0])
            resolved.append(r)
    run = _run(c, doc.get("run", {}), "run")
    sweep = _sweep(c, doc.get("sweep", {}), "sweep", base[1]["cpus"])
    return Scenario(file, name, description, resolved, run, sweep, raw.decode("utf-8"))
