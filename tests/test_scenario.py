"""Scenario files: every shipped one loads; bad keys, types and ranges are refused with a message
naming the file, the key and what was expected."""

import glob
import os

import pytest

from smpsim.experiment import scenario
from smpsim.experiment.scenario import ScenarioError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "scenarios", "*.toml")))

GOOD = """
[machine]
cpus = 4
memory = "16M"
[[caches]]
name = "obj"
size = 100
[workload]
name = "threadtest"
cache = "obj"
ops = 100
"""


def write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def error(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as e:
        scenario.load(path)
    return path, str(e.value)


def test_every_shipped_scenario_loads():
    assert len(SHIPPED) >= 7
    for path in SHIPPED:
        s = scenario.load(path)
        assert s.points(s.sweep["cpus"]), path


def test_defaults_and_points(tmp_path):
    s = scenario.load(write(tmp_path, GOOD))
    assert s.name == "s"
    assert s.machine == {"cpus": 4, "memory": 16 << 20, "magazine_size": 4, "debug": False,
                         "counters": "shared", "lock_timeout": None, "time": "host",
                         "quantum": None, "cost": None,
                         "resize_magazines": False, "colour": False, "empty_magazines": False,
                         "cpu_magazine_cache": False, "slab_locks": False, "reap_every": None,
                         "resize_threshold": 3, "resize_period": 1.0}
    assert s.run == {"timeout": 600.0, "interval": 0.25, "pin": False}
    assert s.sweep == {"cpus": [4], "repeat": 1}
    [p] = s.points()
    assert (p.id, p.cpus, p.label) == ("base-c4-r0", 4, "base")
    assert p.caches == [{"name": "obj", "size": 100, "align": 0, "flags": []}]
    assert p.workload == {"name": "threadtest", "cache": "obj", "ops": 100}
    assert [q.id for q in s.points([1, 2], 2)] == ["base-c1-r0", "base-c1-r1", "base-c2-r0",
                                                   "base-c2-r1"]


def test_a_variant_with_another_workload_starts_afresh(tmp_path):
    s = scenario.load(write(tmp_path, GOOD + """
[[variants]]
label = "alloc"
[[variants]]
label = "floor"
workload = { name = "floor", ops = 5 }
"""))
    assert [p.workload for p in s.points()] == [
        {"name": "threadtest", "cache": "obj", "ops": 100}, {"name": "floor", "ops": 5}]


def test_variants_merge_over_the_base(tmp_path):
    s = scenario.load(write(tmp_path, GOOD + """
[[variants]]
label = "mag"
[[variants]]
label = "no mag"
machine = { magazine_size = 8 }
workload = { batch = 3 }
caches = [{ name = "obj", size = 100, flags = ["NOMAGAZINE"] }]
"""))
    a, b = s.points()
    assert (a.label, a.caches[0]["flags"], a.machine["magazine_size"]) == ("mag", [], 4)
    assert (b.id, b.caches[0]["flags"], b.machine["magazine_size"]) == ("no-mag-c4-r0",
                                                                        ["NOMAGAZINE"], 8)
    assert b.workload["batch"] == 3 and a.workload.get("batch") is None


@pytest.mark.parametrize("text, message", [
    ("x = 1\n" + GOOD,
     "unknown key 'x'; expected one of caches, cost, description, machine, name, run, sweep, "
     "variants, workload"),
    (GOOD.replace("ops = 100", "opps = 100"),
     "unknown key 'workload.opps'; expected a parameter of threadtest: batch, cache, ops, "
     "order, sample_every, seconds, seed, size"),
    (GOOD.replace("cpus = 4", "cpus = \"four\""),
     "key 'machine.cpus': expected an integer 1..256, got 'four'"),
    (GOOD.replace("cpus = 4", "cpus = 0"), "key 'machine.cpus': expected an integer 1..256, got 0"),
    (GOOD.replace("cpus = 4", "cpus = 300"),
     "key 'machine.cpus': expected an integer 1..256, got 300"),
    (GOOD.replace("\"16M\"", "\"12K\""),
     "key 'machine.memory': expected bytes or a string like '64M' (>= 1M), a multiple of 4096, "
     "got '12K'"),
    (GOOD.replace("[machine]", "[machine]\nmagazine_size = 2000"),
     "key 'machine.magazine_size': expected an integer 1..1024, got 2000"),
    (GOOD.replace("[machine]", "[machine]\ncounters = \"global\""),
     "key 'machine.counters': expected one of 'shared', 'percpu', got 'global'"),
    (GOOD.replace("[machine]", "[machine]\nspeed = 3"),
     "unknown key 'machine.speed'; expected one of colour, counters, cpu_magazine_cache, cpus, "
     "debug, empty_magazines, lock_timeout, magazine_size, memory, quantum, reap_every, "
     "resize_magazines, resize_period, resize_threshold, slab_locks, time"),
    (GOOD.replace("size = 100", "size = 0"),
     "key 'caches[1].size': expected an integer 1..4194304, got 0"),
    (GOOD.replace("size = 100", "size = 100\nalign = 24"),
     "key 'caches[1].align': expected 0 or a power of two up to 4096, got 24"),
    (GOOD.replace("size = 100", "size = 100\nflags = [\"FAST\"]"),
     "key 'caches[1].flags': expected a list of NOMAGAZINE, SLINSIDE, got ['FAST']"),
    (GOOD.replace("name = \"obj\"", "name = \"malloc-64\""),
     "key 'caches[1].name': expected a name not used by another cache, got 'malloc-64'"),
    (GOOD.replace("name = \"obj\"", "name = \"two words\""),
     "key 'caches[1].name': expected 1..32 printable characters without whitespace, "
     "got 'two words'"),
    (GOOD.replace("size = 100\n", ""),
     "missing key 'caches[1].size'; expected an integer >= 1"),
    (GOOD.replace("name = \"threadtest\"", "name = \"nope\""),
     "key 'workload.name': expected a workload: burst, contend, floor, kalloc_mix, larson, "
     "pressure, racy, scratch, threadtest, walk, xmalloc, 'package.module:function' or a .py "
     "file, got 'nope'"),
    (GOOD.replace("name = \"threadtest\"", "name = \"nowhere.at_all:run\""),
     "key 'workload.name': expected a workload that loads (cannot import 'nowhere.at_all': "
     "No module named 'nowhere'), got 'nowhere.at_all:run'"),
    (GOOD.replace("name = \"threadtest\"", "name = \"smpsim.workloads.larson:walk\""),
     "key 'workload.name': expected a workload that loads (smpsim.workloads.larson has no "
     "function 'walk'), got 'smpsim.workloads.larson:walk'"),
    (GOOD.replace("name = \"threadtest\"\n", ""),
     "missing key 'workload.name'; expected a workload: burst, contend, floor, kalloc_mix, "
     "larson, pressure, racy, scratch, threadtest, walk, xmalloc"),
    (GOOD.replace("ops = 100", "ops = -5"),
     "key 'workload.ops': expected an integer 0..1000000000, got -5"),
    (GOOD.replace("ops = 100", "ops = 1.5"),
     "key 'workload.ops': expected an integer 0..1000000000, got 1.5"),
    (GOOD.replace("ops = 100", "order = \"sideways\""),
     "key 'workload.order': expected one of 'lifo', 'fifo', 'random', got 'sideways'"),
    (GOOD.replace("cache = \"obj\"", "cache = \"other\""),
     "key 'workload.cache': expected a cache declared in [[caches]] or a boot cache, "
     "got 'other'"),
    ("[workload]\nname = \"larson\"\nmin_size = 2000\n",
     "key 'workload.min_size': expected at most max_size, got 2000"),
    ("[workload]\nname = \"kalloc_mix\"\nsizes = [[0, 1]]\n",
     "key 'workload.sizes': expected a list of [size, weight] pairs, sizes 1..131072, "
     "weights > 0, got [[0, 1]]"),
    ("[workload]\nname = \"pressure\"\nfree_fraction = 1.5\n",
     "key 'workload.free_fraction': expected a number 0..1, got 1.5"),
    (GOOD + "[run]\ntimeout = 0\n",
     "key 'run.timeout': expected a number > 0 and <= 86400, got 0"),
    (GOOD + "[sweep]\ncpus = [1, 2, 999]\n",
     "key 'sweep.cpus': expected an integer 1..256, got 999"),
    (GOOD + "[sweep]\ncpus = []\n",
     "key 'sweep.cpus': expected a list of CPU counts 1..256, got []"),
    (GOOD + "[sweep]\nrepeat = true\n", "key 'sweep.repeat': expected an integer 1..100, got True"),
    (GOOD + "[[variants]]\nlabel = \"a\"\nmachine = { cpus = -1 }\n",
     "key 'variants[1].machine.cpus': expected an integer 1..256, got -1"),
    (GOOD + "[[variants]]\nlabel = \"a\"\n[[variants]]\nlabel = \"a\"\n",
     "key 'variants[2].label': expected a label no other variant has (letters and digits "
     "count; its runs' folders are named after it), got 'a'"),
    (GOOD + "[[variants]]\nlabel = \"a b\"\n[[variants]]\nlabel = \"a-b\"\n",
     "key 'variants[2].label': expected a label no other variant has (letters and digits "
     "count; its runs' folders are named after it), got 'a-b'"),
    (GOOD + "[sweep]\ncpus = [1, 2, 1]\n",
     "key 'sweep.cpus': expected a list of CPU counts 1..256, each once, got [1, 2, 1]"),
    (GOOD + "[[variants]]\nmachine = { cpus = 1 }\n",
     "missing key 'variants[1].label'; expected a string"),
    (GOOD + "[[variants]]\nlabel = \"a\"\nworkload = { batch = 0 }\n",
     "key 'variants[1].workload.batch': expected an integer 1..100000, got 0"),
    (GOOD.replace("[machine]", "[machine]\ncolour = 1"),
     "key 'machine.colour': expected true or false, got 1"),
    (GOOD.replace("[machine]", "[machine]\nslab_locks = \"yes\""),
     "key 'machine.slab_locks': expected true or false, got 'yes'"),
    (GOOD.replace("[machine]", "[machine]\nreap_every = 0"),
     "key 'machine.reap_every': expected a number > 0 and <= inf, got 0"),
    (GOOD.replace("[machine]", "[machine]\nresize_threshold = -1"),
     "key 'machine.resize_threshold': expected an integer 0..1000000, got -1"),
    (GOOD.replace("[machine]", "[machine]\nresize_period = 0"),
     "key 'machine.resize_period': expected a number > 0 and <= 86400, got 0"),
    (GOOD.replace("size = 100", "size = 100\nctor = \"nocolon\""),
     "key 'caches[1].ctor': expected a 'module:function' string, got 'nocolon'"),
    (GOOD.replace("size = 100", "size = 100\ndtor = 5"),
     "key 'caches[1].dtor': expected a 'module:function' string, got 5"),
    (GOOD + "[[variants]]\nlabel = \"a\"\nmachine = { empty_magazines = 2 }\n",
     "key 'variants[1].machine.empty_magazines': expected true or false, got 2"),
    ("[machine]\ncpus = 2\n", "missing key 'workload'; expected a table with 'name'"),
    ("workload = 3\n", "key 'workload': expected a table, got 3"),
])
def test_bad_files_are_refused_naming_file_and_key(tmp_path, text, message):
    path, got = error(tmp_path, text)
    assert got == f"{path}: {message}"


def test_not_toml_and_missing_file(tmp_path):
    path, got = error(tmp_path, "[workload\nname = 1\n")
    assert got.startswith(f"{path}: is not valid TOML: ")
    assert "line 1" in got
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match=r"nope\.toml: cannot be read"):
        scenario.load(missing)


def test_scenario_error_is_a_value_error_with_fields(tmp_path):
    path = write(tmp_path, GOOD.replace("cpus = 4", "cpus = 0"))
    with pytest.raises(ValueError) as e:
        scenario.load(path)
    assert (e.value.file, e.value.key, e.value.expected) == (path, "machine.cpus",
                                                             "an integer 1..256")


@pytest.mark.parametrize("value, expected", [
    ("64M", 64 << 20), ("1G", 1 << 30), ("2048K", 2 << 20), (1 << 20, 1 << 20),
    ("4MiB", 4 << 20), ("1048576", 1 << 20)])
def test_parse_memory(value, expected):
    assert scenario.parse_memory(value) == expected


@pytest.mark.parametrize("value", ["12K", "1.5M", "lots", 4095, True, 1 << 20 | 8])
def test_parse_memory_refuses(value):
    with pytest.raises(ValueError, match="memory"):
        scenario.parse_memory(value)


# --- the [machine] table, user workloads --------------------------------------------------------

def test_machine_keys_are_one_table(tmp_path, monkeypatch):
    """A key added to MACHINE_KEYS is checked, defaulted and listed with no other change."""
    monkeypatch.setitem(scenario.MACHINE_KEYS, "tint",
                        (lambda c, v, key: c.int(v, key, 0, 7), 0))
    s = scenario.load(write(tmp_path, GOOD))
    assert s.machine["tint"] == 0
    s = scenario.load(write(tmp_path, GOOD.replace("[machine]", "[machine]\ntint = 5")))
    assert s.machine["tint"] == 5
    path, got = error(tmp_path, GOOD.replace("[machine]", "[machine]\ntint = 9"))
    assert got == f"{path}: key 'machine.tint': expected an integer 0..7, got 9"
    path, got = error(tmp_path, GOOD.replace("[machine]", "[machine]\nshade = 1"))
    assert "resize_threshold, slab_locks, time, tint" in got


def test_a_directory_is_not_a_scenario(tmp_path):
    with pytest.raises(ScenarioError) as e:
        scenario.load(str(tmp_path))
    assert str(e.value) == f"{tmp_path}: is a directory, not a scenario file"


def test_a_workload_file_that_is_missing_or_broken(tmp_path):
    path, got = error(tmp_path, "[workload]\nname = \"gone.py\"\n")
    assert got == (f"{path}: key 'workload.name': expected a workload that loads (no workload "
                   f"file {tmp_path}/gone.py), got 'gone.py'")
    (tmp_path / "broken.py").write_text("def run(k, p):\n    return {\n")
    path, got = error(tmp_path, "[workload]\nname = \"broken.py\"\n")
    assert got.startswith(f"{path}: key 'workload.name': expected a workload that loads "
                          f"(SyntaxError: ")
    (tmp_path / "norun.py").write_text("X = 1\n")
    path, got = error(tmp_path, "[workload]\nname = \"norun.py:go\"\n")
    assert got == (f"{path}: key 'workload.name': expected a workload that loads "
                   f"({tmp_path}/norun.py has no function 'go'), got 'norun.py:go'")


# --- overrides ----------------------------------------------------------------------------------

VARIANTS = GOOD + """
[[variants]]
label = "a"
[[variants]]
label = "b"
machine = { magazine_size = 16 }
workload = { batch = 7 }
[[variants]]
label = "floor"
workload = { name = "floor", seconds = 2.0 }
"""


def test_set_overrides_keys_as_toml_values(tmp_path):
    path = write(tmp_path, VARIANTS)
    s = scenario.load(path, sets=["workload.batch=8", "machine.magazine_size=8",
                                  "workload.order=fifo", "run.pin=true",
                                  "sweep.cpus=[1, 2]", "variants[1].machine.cpus=1",
                                  'caches[1].flags=["NOMAGAZINE"]', "description=plain words"])
    a, b, floor = s.points()
    assert (a.cpus, a.machine["magazine_size"], a.workload["batch"], a.workload["order"]) == \
        (1, 8, 8, "fifo")
    # a key a variant sets itself is overridden there too
    assert (b.machine["magazine_size"], b.workload["batch"]) == (8, 8)
    assert "batch" not in floor.workload and a.caches[0]["flags"] == ["NOMAGAZINE"]
    assert s.run["pin"] is True and s.sweep["cpus"] == [1, 2]
    assert s.description == "plain words"
    assert s.overrides[0] == "--set workload.batch=8"
    assert scenario.parse_set("x.y = [1, 2]") == ("x.y", [1, 2])


@pytest.mark.parametrize("sets, message", [
    (["workload.batch=0"], "key 'workload.batch': expected an integer 1..100000, got 0"),
    (["workload.opps=1"], "unknown key 'workload.opps'; expected a parameter of threadtest: "
                          "batch, cache, ops, order, sample_every, seconds, seed, size"),
    (["machine.magazine_size=big"],
     "key 'machine.magazine_size': expected an integer 1..1024, got 'big'"),
    (["machine.speed=3"], "unknown key 'machine.speed'; expected one of colour, counters, "
                          "cpu_magazine_cache, cpus, debug, empty_magazines, lock_timeout, "
                          "magazine_size, memory, quantum, reap_every, resize_magazines, "
                          "resize_period, resize_threshold, slab_locks, time"),
    (["variants[9].machine.cpus=1"],
     "key 'variants': expected an array with an element [9], got None"),
    (["workload"], "--set: expected KEY=VALUE with a dotted KEY like workload.batch=8 or "
                   "variants[2].machine.cpus=4, got 'workload'"),
    (["work load.x=1"], "--set: expected KEY=VALUE with a dotted KEY like workload.batch=8 or "
                        "variants[2].machine.cpus=4, got 'work load.x=1'"),
])
def test_a_bad_override_is_refused_as_the_file_would_be(tmp_path, sets, message):
    path = write(tmp_path, GOOD)
    with pytest.raises(ScenarioError) as e:
        scenario.load(path, sets=sets)
    assert str(e.value) == f"{path}: {message}"


def test_length_and_seed_apply_to_every_workload(tmp_path):
    path = write(tmp_path, VARIANTS)
    a, b, floor = scenario.load(path, seconds=1.5, seed=9).points()
    assert (a.workload["ops"], a.workload["seconds"], a.workload["seed"]) == (0, 1.5, 9)
    assert (b.workload["ops"], b.workload["seconds"]) == (0, 1.5)
    assert (floor.workload["seconds"], floor.workload["seed"]) == (1.5, 9)
    a, b, floor = scenario.load(path, ops=500).points()
    assert (a.workload["ops"], floor.workload["ops"], floor.workload["seconds"]) == (500, 500, 0)
    a, b, floor = scenario.load(path, ops=500, seconds=3.0).points()   # whichever ends first
    assert (a.workload["ops"], a.workload["seconds"], floor.workload["ops"],
            floor.workload["seconds"]) == (500, 3.0, 500, 3.0)
    with pytest.raises(ScenarioError, match=r"key 'workload.ops': expected an integer "
                                            r"0..1000000000, got -1"):
        scenario.load(path, ops=-1)
    path = write(tmp_path, "[workload]\nname = \"pressure\"\n")
    with pytest.raises(ScenarioError, match=r"unknown key 'workload.seconds'; expected a "
                                            r"parameter of pressure"):
        scenario.load(path, seconds=1.0)


# --- the format's documentation -----------------------------------------------------------------

DOC = os.path.join(ROOT, "docs", "scenarios.md")


def test_docs_describe_every_key():
    """docs/scenarios.md has a row for every key the checker knows and every bundled workload's
    parameters."""
    from smpsim import workloads
    text = open(DOC).read()
    keys = (set(scenario.MACHINE_KEYS) | set(scenario.RUN_KEYS) | set(scenario.SWEEP_KEYS)
            | set(scenario._CACHE) | set(scenario._VARIANT)
            | {k for k in scenario._TOP if k not in ("machine", "caches", "workload", "run",
                                                      "sweep", "variants")})
    for name in workloads.WORKLOADS:
        keys |= set(workloads.find(name).params)
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"docs/scenarios.md does not describe {missing}"


def test_the_docs_example_workload_runs(tmp_path):
    from smpsim.experiment import runner
    text = open(DOC).read()
    code = text.split('```python\n"""burst:')[1].split("```")[0]
    (tmp_path / "burst.py").write_text('"""burst:' + code)
    path = write(tmp_path, '[machine]\nmemory = "4M"\n[workload]\nname = "burst.py"\n'
                           'burst = 20\nops = 200\n')
    r = runner.run_point(scenario.load(path).points()[0])
    assert r["error"] is None and r["check"] == "ok" and r["ops"] == 400
    assert r["columns"] == [["bursts", "bursts"]] and [c["bursts"] for c in r["cpus"]] == [5, 5]


def test_the_options_keys_reach_the_points(tmp_path):
    text = GOOD.replace("size = 100", "size = 100\nctor = \"smpsim.workloads.objects:construct\"")
    text += ("[[variants]]\nlabel = \"seed\"\n[[variants]]\nlabel = \"all\"\nmachine = { "
             "resize_magazines = true, colour = true, empty_magazines = true, "
             "cpu_magazine_cache = true, slab_locks = true, reap_every = inf, "
             "resize_threshold = 0, resize_period = 0.5 }\n")
    s = scenario.load(write(tmp_path, text))
    seed, all_on = s.points()
    assert seed.machine["colour"] is False and seed.machine["reap_every"] is None
    assert all_on.machine["colour"] is True and all_on.machine["reap_every"] == float("inf")
    assert (all_on.machine["resize_threshold"], all_on.machine["resize_period"]) == (0, 0.5)
    assert seed.caches[0]["ctor"] == "smpsim.workloads.objects:construct"
    assert "dtor" not in seed.caches[0]


# --- simulated time ------------------------------------------------------------------------------

SIM = GOOD.replace("[machine]", "[machine]\ntime = \"simulated\"")


def test_time_quantum_and_cost_reach_every_variant(tmp_path):
    """machine.time and machine.quantum are machine keys; [cost] is checked and lands in every
    variant's machine as `cost`, a variant's own cost merged over it."""
    path = SIM.replace("time = ", "quantum = 0\ntime = ") + (
        "[cost]\ntransfer = 300\nhz = 1000000\n"
        "[[variants]]\nlabel = \"a\"\n"
        "[[variants]]\nlabel = \"b\"\ncost = { transfer = 50, atomic = 7 }\n")
    s = scenario.load(write(tmp_path, path))
    a, b = (v[1] for v in s.variants)
    assert (a["time"], a["quantum"], a["cost"]) == ("simulated", 0,
                                                    {"transfer": 300, "hz": 1000000})
    assert b["cost"] == {"transfer": 50, "hz": 1000000, "atomic": 7}
    assert s.time == "simulated"
    assert [p.machine["cost"] for p in s.points()] == [a["cost"], b["cost"]]
    plain = scenario.load(write(tmp_path, GOOD, "plain.toml"))
    assert (plain.time, plain.machine["quantum"], plain.machine["cost"]) == ("host", None, None)


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("[machine]", "[machine]\ntime = \"virtual\""),
     "key 'machine.time': expected one of 'host', 'simulated', got 'virtual'"),
    (SIM.replace("[machine]", "[machine]\nquantum = -1"),
     "key 'machine.quantum': expected an integer >= 0 (cycles), got -1"),
    (SIM.replace("[machine]", "[machine]\nquantum = 1.5"),
     "key 'machine.quantum': expected an integer >= 0 (cycles), got 1.5"),
    (SIM + "[cost]\nspeed = 3\n",
     "unknown key 'cost.speed'; expected one of atomic, hit, hz, transfer"),
    (SIM + "[cost]\nhit = 0\n", "key 'cost.hit': expected an integer 1..1000000000000, got 0"),
    (SIM + "[cost]\nhz = true\n",
     "key 'cost.hz': expected an integer 1..1000000000000, got True"),
    (SIM + "[cost]\ntransfer = 1.5\n",
     "key 'cost.transfer': expected an integer 1..1000000000000, got 1.5"),
    ("cost = 3\n" + SIM, "key 'cost': expected a table, got 3"),
    (SIM + "[[variants]]\nlabel = \"a\"\ncost = { atomic = -2 }\n",
     "key 'variants[1].cost.atomic': expected an integer 1..1000000000000, got -2"),
    (SIM + "[[variants]]\nlabel = \"a\"\n[[variants]]\nlabel = \"b\"\n"
           "machine = { time = \"host\" }\n",
     "key 'variants[2].machine.time': expected the time of every other variant (one table's "
     "throughputs are all in host or all in simulated time), got 'host'"),
    (SIM + "[[variants]]\nlabel = \"a\"\nmachine = { time = \"host\" }\n"
           "[[variants]]\nlabel = \"b\"\n",
     "key 'variants[1].machine.time': expected the time of every other variant (one table's "
     "throughputs are all in host or all in simulated time), got 'host'"),
    (SIM + "[[variants]]\nlabel = \"a\"\n[[variants]]\nlabel = \"floor\"\n"
           "workload = { name = \"floor\", ops = 10 }\n",
     "key 'variants[2].workload.name': expected a workload with a meaning in simulated time "
     "(floor runs in host time only: run it in a scenario with machine.time = 'host'), "
     "got 'floor'"),
    ("[machine]\ntime = \"simulated\"\n[workload]\nname = \"floor\"\n",
     "key 'workload.name': expected a workload with a meaning in simulated time (floor runs in "
     "host time only: run it in a scenario with machine.time = 'host'), got 'floor'"),
])
def test_bad_time_and_cost_are_refused_naming_the_key(tmp_path, text, message):
    path, got = error(tmp_path, text)
    assert got == f"{path}: {message}"


def test_time_overrides_read_as_the_file_would(tmp_path):
    """--set machine.time=... (what --time does) applies to the file before it is checked: the
    shipped magazine experiment's floor-free variants accept host time; a variant that sets its
    own time keeps the variants consistent; cost.KEY reaches the variants that set it."""
    path = write(tmp_path, SIM + "[[variants]]\nlabel = \"a\"\n"
                                 "[[variants]]\nlabel = \"b\"\nmachine = { time = \"simulated\" }\n"
                                 "cost = { hit = 2 }\n")
    s = scenario.load(path, sets=["machine.time=host", "machine.quantum=5", "cost.hit=9"])
    assert [(v[1]["time"], v[1]["quantum"], v[1]["cost"]) for v in s.variants] == [
        ("host", 5, {"hit": 9}), ("host", 5, {"hit": 9})]
    with pytest.raises(ScenarioError) as e:
        scenario.load(path, sets=["machine.quantum=-3"])
    assert str(e.value) == (f"{path}: key 'machine.quantum': expected an integer >= 0 (cycles), "
                            f"got -3")


def test_the_magazine_experiment_runs_in_simulated_time_beside_its_host_twin():
    sim = scenario.load(os.path.join(ROOT, "scenarios", "magazines.toml"))
    host = scenario.load(os.path.join(ROOT, "scenarios", "magazines_host.toml"))
    assert sim.time == "simulated" and host.time == "host"
    assert sim.sweep["cpus"] == [1, 2, 4, 8, 16, 32]
    assert sim.labels == ["magazines", "magazines, shared counters", "no magazines"]
    assert host.labels == sim.labels + ["python floor"]
    assert [v[1]["counters"] for v in sim.variants] == ["percpu", "shared", "shared"]
    assert [c["flags"] for v in sim.variants for c in v[2]] == [[], [], ["NOMAGAZINE"]]
    assert sim.variants[0][3]["seconds"] <= 0.01          # simulated seconds, not host ones
