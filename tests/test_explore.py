"""smpsim/experiment/explore.py, finding.py and explore_cli.py: controlled schedules of a scenario
searched, the first failure shrunk, written and replayed; `smpsim explore` and `smpsim replay`
with their exit statuses and one-line errors. The lost update of racy.py (the issue's first
target) is found within 100 schedules, shrunk to at most 2 preemptions and replayed."""

import json
import os
import sys

import pytest

from smpsim import workloads
from smpsim.engine.sched import Schedule
from smpsim.experiment import cli, explore, explore_cli, finding, scenario

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOST = os.path.join(ROOT, "smpsim", "scenarios", "lost_update.toml")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def programs(monkeypatch):
    """tests/explore_programs.py registered as the workload "explore_programs"."""
    sys.path.insert(0, os.path.dirname(__file__))
    monkeypatch.setitem(workloads.WORKLOADS, "explore_programs", "explore_programs")
    yield
    sys.path.remove(os.path.dirname(__file__))


def _scenario(tmp_path, workload, name="t", extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n[machine]\ncpus = 2\nmemory = "4M"\n{extra}'
                    f'[workload]\n{workload}\n')
    return str(path)


def _point(path, cpus=2, ops=3):
    return explore.configure(scenario.load(path), [cpus], ops)[0]


def _lost(tmp_path, atomic=False):
    return _scenario(tmp_path, f'name = "racy"\natomic = {str(atomic).lower()}', "lost")


# --- one schedule --------------------------------------------------------------------------

def test_a_schedule_is_a_function_of_its_seed_and_replays_exactly(tmp_path):
    point = _point(_lost(tmp_path), ops=5)
    a, b = (explore.run_schedule(point, "random", 4) for _ in range(2))
    assert a.schedule.decisions == b.schedule.decisions and a.message == b.message
    assert a.kind == "finish:AssertionError" and "lost" in a.message
    again = explore.run_schedule(point, a.schedule)
    assert again.kind == a.kind and again.message == a.message and again.strategy == "replay"
    other = explore.run_schedule(point, "random", 5)
    assert other.schedule.decisions != a.schedule.decisions


def test_the_atomic_add_loses_nothing(tmp_path):
    point = _point(_lost(tmp_path, atomic=True), ops=5)
    for seed in range(5):
        o = explore.run_schedule(point, "random", seed)
        assert o.kind is None and not o.failed and o.preemptions > 0


def test_failure_kinds_of_a_run(tmp_path, programs):
    def kind(program, **kw):
        path = _scenario(tmp_path, f'name = "explore_programs"\nprogram = "{program}"')
        return explore.run_schedule(_point(path, ops=4), "random", 1, **kw)
    o = kind("raise")
    assert o.kind == "exception:RuntimeError" and "RuntimeError: planted" in o.message
    assert o.error["cpu"] == 1 and o.error["reason"] == "exception"
    for seed in range(20):                       # some schedule interleaves the two CPUs
        path = _scenario(tmp_path, 'name = "explore_programs"\nprogram = "inversion"')
        o = explore.run_schedule(_point(path, ops=4), "random", seed)
        if o.kind == "deadlock":
            break
    assert o.kind == "deadlock" and o.error["reason"] == "deadlock"
    assert "CPU 0 holds user@" in o.message and "CPU 1 holds user@" in o.message
    assert o.violations                           # the checker says what the stop left
    o = kind("fine")
    assert o.kind is None


def test_a_run_that_spins_past_its_bound_is_unfinished_not_failed(tmp_path, programs):
    path = _scenario(tmp_path, 'name = "explore_programs"\nprogram = "spin"')
    point = _point(path, ops=4)
    # PCT of depth 1 has no change point: when CPU 0 has the higher priority it spins, and a
    # bound below PCT's patience with spinners (1000 reads in a row) ends the run unfinished.
    outcomes = [explore.run_schedule(point, "pct", s, depth=1, max_steps=600)
                for s in range(6)]
    spun = [o for o in outcomes if o.kind == "unfinished"]
    assert spun and all(not o.failed for o in spun)
    assert all(o.kind in (None, "unfinished") for o in outcomes)
    assert explore.run_schedule(point, "random", 0, max_steps=3000).kind is None


def test_pct_puts_a_spinning_cpu_below_the_others(tmp_path, programs):
    """A CPU that only reads, point after point, waits for another: PCT drops it below every
    other CPU, so the run ends instead of spinning to its bound, whichever CPU starts on top."""
    path = _scenario(tmp_path, 'name = "explore_programs"\nprogram = "spin"')
    point = _point(path, ops=4)
    outcomes = [explore.run_schedule(point, "pct", s, depth=1, max_steps=20_000)
                for s in range(6)]
    assert [o.kind for o in outcomes] == [None] * 6


def test_a_kill_at_a_step_is_a_death_the_checker_explains(tmp_path):
    path = _scenario(tmp_path, 'name = "threadtest"\ncache = "obj"\nbatch = 3',
                     extra='[[caches]]\nname = "obj"\nsize = 128\n')
    point = _point(path, ops=6)
    o = explore.run_schedule(point, "random", 2, kill=(1, 40))
    assert o.kind == "died" and o.error["cpu"] == 1 and o.error["inside"]
    assert any("CPU 1 is inside allocator code" in v for v in o.violations)
    again = explore.run_schedule(point, "random", 2, kill=(1, 40))
    assert again.violations == o.violations


def test_configure_sets_the_length_and_drops_time_limits(tmp_path):
    path = _scenario(tmp_path, 'name = "threadtest"\nops = 5000\nseconds = 2.0')
    (p2, p3) = explore.configure(scenario.load(path), [2, 3], 7, 8 << 20)
    assert (p2.cpus, p3.cpus) == (2, 3)
    assert p2.workload["ops"] == 7 and p2.workload["seconds"] == 0.0
    assert p2.machine["memory"] == 8 << 20
    pressure = _scenario(tmp_path, 'name = "pressure"', "p")
    assert explore.configure(scenario.load(pressure), None, 9)[0].workload["limit"] == 9
    with pytest.raises(scenario.ScenarioError, match=r"key 'workload.ops'"):
        explore.configure(scenario.load(path), None, -1)


# --- search and shrinking ------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["pct", "random"])
def test_the_lost_update_is_found_within_100_schedules_and_shrunk_to_2_preemptions(
        tmp_path, strategy):
    point = _point(_lost(tmp_path), ops=3)
    cov = explore.search([point], schedules=100, strategy=strategy)
    found = cov[-1].found
    assert found is not None and cov[-1].schedules <= 100
    assert found.kind == "finish:AssertionError"
    shrunk = explore.shrink(point, found)
    assert shrunk.verified and shrunk.schedule.preemptions <= 2
    assert shrunk.schedule.preemptions <= found.preemptions
    replayed = explore.run_schedule(point, shrunk.schedule)
    assert replayed.kind == found.kind and replayed.preemptions == shrunk.schedule.preemptions


def test_a_search_without_failure_covers_every_schedule(tmp_path):
    point = _point(_lost(tmp_path, atomic=True), ops=2)
    seen = []
    cov = explore.search([point], schedules=6, seed=10, strategy="pct",
                         progress=lambda c, o: seen.append(o.seed))
    assert seen == list(range(10, 16)) and cov[-1].found is None
    assert cov[-1].schedules == 6 and cov[-1].steps > 0 and cov[-1].pct_steps > 0
    with pytest.raises(ValueError, match="search: 'strategy' must be one of random, pct"):
        explore.search([point], strategy="dfs")


def test_switch_events_rebuild_the_schedule_and_drop_what_is_asked():
    d = bytes([0, 0, 1, 1, 1, 0, 1, 1, 0, 0])
    first, events, totals = explore._events(d, 2)
    assert (first, totals) == (0, [5, 5])
    assert events == [(0, 2, 1), (1, 3, 0), (0, 3, 1), (1, 5, 0)]
    assert explore._rebuild(first, events, totals) == d
    assert explore._rebuild(first, [], totals) == bytes([0] * 5 + [1] * 5)
    # Without the first switch, CPU 0 runs on to its own next one (after its 3rd decision);
    # CPU 1's switches stay after its own 3rd and 5th.
    assert explore._rebuild(first, events[1:], totals) == bytes([0, 0, 0, 1, 1, 1, 0, 0, 1, 1])
    assert explore._rebuild(first, [events[0], events[3]], totals) == \
        bytes([0, 0, 1, 1, 1, 1, 1, 0, 0, 0])
    assert explore._drop(d, {2}) == bytes([0, 0, 0, 0, 0, 0, 1, 1, 0, 0])


# --- the command line -------------------------------------------------------------------

@pytest.fixture(scope="module")
def lost_found(tmp_path_factory):
    """A folder `smpsim explore` wrote for the lost update (made once per module)."""
    out = str(tmp_path_factory.mktemp("explore") / "found")
    assert cli.main(["explore", LOST, "--ops", "3", "--out", out, "-q"]) == 1
    return out


def _copy(folder, tmp_path):
    import shutil
    return shutil.copytree(folder, str(tmp_path / "copy"))


def _json(out):
    with open(os.path.join(out, "explore.json")) as f:
        return json.load(f)


def test_explore_writes_the_lost_update_and_replay_reproduces_it(tmp_path, capsys):
    out = str(tmp_path / "found")
    rc = cli.main(["explore", LOST, "--ops", "3", "--schedules", "100", "--out", out, "-q"])
    text = capsys.readouterr().out
    assert rc == 1 and "found: finish:AssertionError" in text and f"smpsim replay {out}" in text
    assert sorted(os.listdir(out)) == ["explore.json", "failure.txt", "scenario.toml",
                                       "schedule.pkl", "trace.tsv", "trace.txt"]
    doc = _json(out)
    assert doc["found"]["schedules"] <= 100 and doc["schedule"]["preemptions"] <= 2
    assert (doc["cpus"], doc["ops"], doc["variant"]) == (2, 3, "base")
    assert doc["failure"]["kind"] == "finish:AssertionError" and doc["shrink"]["verified"]
    s = Schedule.load(os.path.join(out, "schedule.pkl"))
    assert s.preemptions == doc["schedule"]["preemptions"]
    trace = open(os.path.join(out, "trace.txt")).read()
    assert trace.count(">> CPU") == s.preemptions and "racy.run" in trace
    tsv = open(os.path.join(out, "trace.tsv")).read().splitlines()
    assert tsv[0] == "step\tcpu\tfunction\twhat\tnext" and len(tsv) == s.steps + 1
    for target in (out, os.path.join(out, "schedule.pkl")):
        assert cli.main(["replay", target]) == 1
        assert "reproduced: finish:AssertionError" in capsys.readouterr().out
    assert cli.main(["replay", out, "--trace"]) == 1
    printed = capsys.readouterr().out
    assert printed.count(">> CPU") == s.preemptions and "reproduced" in printed


def test_explore_of_a_correct_program_says_what_it_covered(tmp_path, capsys):
    path = _lost(tmp_path, atomic=True)
    rc = cli.main(["explore", path, "--cpus", "2,3", "--ops", "2", "--schedules", "4",
                   "--out", str(tmp_path / "none"), "-q"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(lines) == 2
    assert lines[0].startswith("lost base at 2 CPUs: 4 schedule(s) (pct, seeds 0..3)")
    assert lines[1].startswith("lost base at 3 CPUs: 4 schedule(s)")
    assert all(line.endswith("no failure") for line in lines)
    assert not os.path.exists(tmp_path / "none")          # nothing to write


def test_replay_of_a_schedule_that_passes_exits_0(tmp_path, capsys, lost_found):
    """The folder's schedule replaced by the non-preemptive one (every CPU in turn)."""
    out = _copy(lost_found, tmp_path)
    _, _, s, point = finding.load(out)
    calm = explore.run_schedule(point, Schedule(b"", cpus=2), replay="lenient")
    assert calm.kind is None and calm.preemptions == 0
    calm.schedule.save(os.path.join(out, "schedule.pkl"))
    capsys.readouterr()
    assert cli.main(["replay", out]) == 0
    assert "the run passed (it failed with finish:AssertionError" in capsys.readouterr().out


def test_replay_of_a_changed_program_exits_2(tmp_path, capsys, lost_found):
    out = _copy(lost_found, tmp_path)
    toml = os.path.join(out, "scenario.toml")
    with open(toml) as f:
        text = f.read()
    with open(toml, "w") as f:          # an atomic add: one scheduling point, not two
        f.write(text.replace("atomic = false", "atomic = true"))
    capsys.readouterr()
    assert cli.main(["replay", out]) == 2
    err = capsys.readouterr().err
    assert "the schedule does not match the program any more" in err and err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["explore", "missing.toml"], "missing.toml: no such scenario file"),
    (["explore", "{script}"], "explore needs a scenario .toml file"),
    (["explore", "{lost}", "--schedules", "0"], "--schedules: expected 1..10000000, got 0"),
    (["explore", "{lost}", "--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
    (["explore", "{lost}", "--depth", "0"], "--depth: expected 1..65, got 0"),
    (["explore", "{lost}", "--ops", "0"], "--ops: expected 1..1000000000, got 0"),
    (["explore", "{lost}", "--cpus", "2,x"], "--cpus: expected CPU counts 1..256 like 2,3"),
    (["explore", "{lost}", "--memory", "12"], "--memory: expected a size like 8M"),
    (["explore", "{lost}", "--time", "later"], "key 'machine.time': expected one of 'host', "
                                               "'simulated', got 'later'"),
    (["explore", "{bad}"], "key 'workload.name'"),
    (["replay", "{tmp}/nothing"], "nothing: no such folder or schedule file"),
    (["replay", "{tmp}"], "no explore.json there (not a folder smpsim explore wrote)"),
    (["replay", "{junk}"], "is not a saved schedule"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "s.py").write_text("def run(out):\n    return {}\n")
    (tmp_path / "bad.toml").write_text('[workload]\nname = "nope"\n')
    junk = tmp_path / "j"
    junk.mkdir()
    (junk / "explore.json").write_text(json.dumps({"variant": "base", "cpus": 2, "ops": 3,
                                                  "memory": 4 << 20, "seed": 0}))
    (junk / "schedule.pkl").write_bytes(b"no pickle")
    subs = {"{script}": str(tmp_path / "s.py"), "{lost}": LOST, "{tmp}": str(tmp_path),
            "{bad}": str(tmp_path / "bad.toml"), "{junk}": str(junk / "schedule.pkl")}
    argv = [subs.get(a, a.replace("{tmp}", str(tmp_path))) for a in args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("smpsim: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_time_reaches_the_machine_in_explore_and_replay(tmp_path, capsys, programs):
    """--time simulated: every schedule runs on a Machine in simulated time (the program's
    exception names the time its CPU sees), explore.json records it, replay runs in it, and
    replay's own --time overrides it."""
    path = _scenario(tmp_path, 'name = "explore_programs"\nprogram = "raise"')
    out, host = str(tmp_path / "sim"), str(tmp_path / "host")
    argv = ["explore", path, "--ops", "2", "--schedules", "3", "-q"]
    assert cli.main(argv + ["--time", "simulated", "--out", out]) == 1
    doc = _json(out)
    assert doc["time"] == "simulated"
    assert "RuntimeError: planted in simulated time" in doc["failure"]["message"]
    capsys.readouterr()
    assert cli.main(["replay", out]) == 1
    text = capsys.readouterr().out
    assert "2 operations per CPU, in simulated time:" in text
    assert "reproduced: exception:RuntimeError" in text and "planted in simulated time" in text
    assert cli.main(["replay", out, "--time", "host"]) == 1
    assert "planted in host time" in capsys.readouterr().out
    assert cli.main(argv + ["--out", host]) == 1
    assert "planted in host time" in _json(host)["failure"]["message"]


@pytest.mark.parametrize("command", ["explore", "replay"])
def test_quantum_is_refused_in_one_line(tmp_path, capsys, lost_found, command):
    """A controlled run passes one CPU at a time whatever the quantum: --quantum is refused
    rather than ignored."""
    out = tmp_path / "o"
    argv = ([command, LOST, "--out", str(out)] if command == "explore" else
            [command, lost_found])
    assert cli.main(argv + ["--quantum", "1000"]) == 2
    assert capsys.readouterr().err == (
        f"smpsim: --quantum: a controlled run passes one CPU at a time, the one its schedule "
        f"picks, so a quantum has no effect on {command}; leave it out\n")
    assert not out.exists()


def test_a_full_out_folder_is_refused_unless_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli.main(["explore", LOST, "--ops", "3", "--out", str(out), "-q"]) == 2
    assert "not empty (keep.txt); pass --replace" in capsys.readouterr().err
    assert os.listdir(out) == ["keep.txt"]
    assert cli.main(["explore", LOST, "--ops", "3", "--out", str(out), "--replace", "-q"]) == 1
    assert "keep.txt" not in os.listdir(out) and "schedule.pkl" in os.listdir(out)


def test_ctrl_c_while_searching_exits_130_with_what_was_covered(tmp_path, capsys, monkeypatch):
    real, calls = explore.run_schedule, []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(explore, "run_schedule", interrupted)
    path = _lost(tmp_path, atomic=True)
    assert cli.main(["explore", path, "--ops", "2", "--out", str(tmp_path / "o"), "-q"]) == 130
    err = capsys.readouterr().err
    assert "interrupted; covered so far:" in err and "2 schedule(s)" in err
    assert not os.path.exists(tmp_path / "o")


def test_ctrl_c_while_shrinking_writes_the_schedule_as_found(tmp_path, capsys, monkeypatch):
    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(explore, "shrink", interrupted)
    out = str(tmp_path / "o")
    assert cli.main(["explore", LOST, "--ops", "3", "--out", out, "-q"]) == 130
    assert "interrupted while shrinking" in capsys.readouterr().err
    doc = _json(out)
    assert doc["shrink"] is None and doc["schedule"]["preemptions"] == doc["found"]["preemptions"]
    assert cli.main(["replay", out, "-q"]) == 1


def test_format_trace_marks_and_lists_preemptions():
    tsv = ("step\tcpu\tfunction\twhat\tnext\n1\t0\tracy.run\tload w\t-> CPU 1 (preempted)\n"
           "2\t1\tracy.run\tload w\t\n3\t1\t-\tend\t-> CPU 0\n4\t0\t-\tend\t-> nobody\n")
    text = finding.format_trace(tsv, ["title"])
    assert text.startswith("# title\n")
    assert "#   step 1: CPU 0 in racy.run, before load w, -> CPU 1" in text
    rows = [line for line in text.splitlines() if line[:7].strip().isdigit()]
    assert len(rows) == 4 and rows[0].endswith(">> CPU 1") and rows[2].endswith("-> CPU 0")
    assert rows[1].endswith("load w")


def test_bench_schedules_counts_points():
    r = explore.bench_schedules(count=2, ops=10)
    assert r["schedules"] == 2 and r["points"] > 0
    assert r["us_per_point_overall"] >= r["us_per_point_in_run"] > 0


def test_explore_cli_parsers_are_registered():
    assert explore_cli.add_parsers.__doc__
    args = cli._parser().parse_args(["explore", LOST])
    assert (args.strategy, args.schedules, args.ops, args.depth) == ("pct", 100, 100, 3)


SHIPPED = sorted(f for f in os.listdir(os.path.join(ROOT, "smpsim", "scenarios"))
                 if f.endswith(".toml") and f != "lost_update.toml")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("strategy", ["pct", "random"])
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_passes_explore(name, strategy, tmp_path, capsys):
    """No false failures: the allocator as it is, under a few schedules of each variant of
    every shipped scenario (spinning runs that PCT never lets end are not failures)."""
    path = os.path.join(ROOT, "smpsim", "scenarios", name)
    rc = cli.main(["explore", path, "--ops", "10", "--schedules", "3", "--strategy", strategy,
                   "--out", str(tmp_path / "o"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("no failure") == len(scenario.load(path).variants)


class _FakeRuns:
    """A stand-in for run_schedule in shrink's unit test: two CPUs of 12 decisions each; a
    candidate runs its decisions where the CPU named has some left, else goes on without a
    preemption (as lenient replay does). The run fails when CPU 0 is preempted right after
    its 4th to 6th decision (a window, like a load before its store)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, point, schedule, seed, **kw):
        self.calls += 1
        left, ran, cur = [12, 12], bytearray(), None
        for i in range(24):
            want = schedule.decisions[i] if i < len(schedule.decisions) else cur
            if want is None or want > 1 or not left[want]:
                want = cur if cur is not None and left[cur] else (0 if left[0] else 1)
            ran.append(want)
            left[want] -= 1
            cur = want
        pre = sum(1 for i in range(1, 24) if ran[i] != ran[i - 1]
                  and ran[:i].count(ran[i - 1]) < 12)
        o = explore.Outcome("replay", seed)
        o.schedule = Schedule(bytes(ran), preemptions=pre, steps=24, cpus=2)
        o.preemptions, o.decisions = pre, 24
        fails = any(ran[i - 1] == 0 and ran[i] == 1 and 4 <= ran[:i].count(0) <= 6
                    for i in range(1, 24))
        o.kind = "finish:AssertionError" if fails else None
        return o


def test_shrink_keeps_only_smaller_failing_runs_and_ends_minimal():
    import random
    rng = random.Random(3)
    fake = _FakeRuns()
    while True:                                  # a noisy failing schedule to start from
        found = fake(None, Schedule(bytes(rng.randrange(2) for _ in range(24)), cpus=2), 0)
        if found.failed and found.preemptions >= 8:
            break
    seen, fake.calls = [], 0
    shrunk = explore.shrink(None, found, run=fake,
                            progress=lambda r: seen.append(r.schedule.preemptions))
    assert seen == sorted(seen, reverse=True) and seen[0] <= found.preemptions
    assert shrunk.verified and shrunk.complete and shrunk.outcome.kind == found.kind
    assert shrunk.schedule.preemptions == 1 and shrunk.runs == fake.calls
    budget = explore.shrink(None, found, run=_FakeRuns(), max_runs=3)
    assert budget.runs == 4 and not budget.complete        # 3 candidates, then the check


def test_shrink_refuses_failing_runs_that_are_not_smaller():
    """Every candidate fails the same way but preempts more: the schedule found stays."""
    found = explore.Outcome("random", 0)
    found.kind, found.schedule = "check", Schedule(bytes([0, 0, 1, 1]), preemptions=1, cpus=2)

    def worse(point, schedule, seed, **kw):
        o = explore.Outcome("replay", seed)
        o.kind = "check"
        o.schedule = Schedule(bytes([0, 1, 0, 1, 0, 1]), preemptions=5, cpus=2)
        return o
    shrunk = explore.shrink(None, found, run=worse, max_runs=20)
    assert shrunk.schedule is found.schedule and shrunk.verified
    assert shrunk.outcome.kind == "check"


def test_a_schedule_run_pickles_for_a_cluster_map(tmp_path):
    """run_schedule's arguments and result pickle: a cluster can run seeds elsewhere."""
    import pickle
    point = _point(_lost(tmp_path), ops=3)
    o = explore.run_schedule(*pickle.loads(pickle.dumps((point, "pct", 2))))
    back = pickle.loads(pickle.dumps(o))
    assert (back.kind, back.message, back.schedule) == (o.kind, o.message, o.schedule)
    assert explore.run_schedule(point, back.schedule).kind == o.kind


def test_headline_of_violations_shows_each_kind_once():
    o = explore.Outcome("pct", 0)
    o.kind, o.message = "check", "3 invariant violation(s):\n  - ..."
    o.violations = ["cache obj: object 0x40 is lost", "cache obj: object 0x80 is lost",
                    "lock frames is held by CPU 1"]
    assert explore.headline(o) == ("3 invariant violation(s): cache obj: object 0x40 is lost; "
                                   "lock frames is held by CPU 1")
    o.kind, o.message = "deadlock", "CPU 0 is deadlocked: ...\nmore"
    assert explore.headline(o) == "CPU 0 is deadlocked: ..."


def test_a_search_through_a_map_of_batches_reports_the_first_failing_seed(tmp_path):
    """What a cluster's map does: a batch of seeds at once; the failure reported is the
    lowest failing seed, as without batches."""
    import pickle
    point = _point(_lost(tmp_path), ops=3)
    batches = []

    def cluster_map(function, seeds):
        batches.append(list(seeds))
        function = pickle.loads(pickle.dumps(function))      # it travels to the workers
        return [function(s) for s in seeds]
    plain = explore.search([point], schedules=40, seed=20, strategy="pct")[-1]
    mapped = explore.search([point], schedules=40, seed=20, strategy="pct",
                            map_runs=cluster_map, batch=8)[-1]
    assert plain.found is not None and plain.found.seed > 20    # not the measuring run
    assert mapped.found.seed == plain.found.seed and mapped.schedules == plain.schedules
    assert mapped.found.schedule == plain.found.schedule
    assert batches[0] == list(range(21, 29)) and all(len(b) == 8 for b in batches)
