"""The command line: run, sweep, slabinfo and compare on a tiny scenario, exit statuses, messages
for bad input in one line without a traceback, overrides, result folders never mixed, the log
tagged by CPU, progress bars, the live view, and Python scenario scripts (options passed or
refused, their own tracebacks)."""

import json
import os
import subprocess
import sys

import pytest

from smpsim.experiment import cli

pytestmark = pytest.mark.timeout(90)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOML = """
name = "tiny"
[machine]
cpus = 2
memory = "8M"
[workload]
name = "larson"
slots = 10
round_ops = 50
ops = 200
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TOML)
    return str(path)


def test_run_writes_a_result_folder(tiny, tmp_path, capsys):
    out = str(tmp_path / "res")
    assert cli.main(["run", tiny, "--out", out]) == 0
    stdout = capsys.readouterr().out
    assert "| variant | CPUs |" in stdout and f"results in {out}" in stdout
    assert os.path.isfile(os.path.join(out, "runs", "base-c2-r0", "result.json"))
    assert os.path.isfile(os.path.join(out, "runs", "base-c2-r0", "timeseries.png"))
    # the log holds records of both CPU processes, tagged with their CPU, and of the parent
    log = open(os.path.join(out, "run.log")).read()
    assert "cpu=0 smpsim.workloads: larson done" in log
    assert "cpu=1 smpsim.workloads: larson done" in log
    assert "cpu=- smpsim.experiment.runner: run base-c2-r0" in log

    assert cli.main(["slabinfo", out]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == "slabinfo - version: 2.1"
    assert text[1].startswith("# name            <active_objs> <num_objs> <objsize>")
    seed = text.index("SLAB name\tOsize\tPages\tObj/pg\tSlabs\tCached\tAllocobjs\tCtl")
    names = [line.split()[0] for line in text[2:seed - 1]]
    assert names[:3] == ["slab_magazine", "slab_cache", "slab_extern"] and "malloc-1K" in names
    assert [line.split("\t")[0] for line in text[seed + 1:]] == names

    assert cli.main(["slabinfo", os.path.join(out, "runs", "base-c2-r0", "result.json"),
                     "--format", "seed", "--at", "end"]) == 0
    assert capsys.readouterr().out.startswith("SLAB name\tOsize")


def test_sweep_writes_table_and_plots(tiny, tmp_path, capsys):
    out = str(tmp_path / "sw")
    assert cli.main(["sweep", tiny, "--cpus", "1,2", "--repeat", "2", "--out", out, "-q"]) == 0
    assert capsys.readouterr().out == ""
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert [(r["cpus"], r["rep"]) for r in summary["runs"]] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert [(r["cpus"], r["runs"]) for r in summary["sweep"]] == [(1, 2), (2, 2)]
    assert sorted(os.listdir(os.path.join(out, "plots"))) == [
        "contention.png", "efficiency.png", "hit_rate.png", "speedup.png", "throughput.png"]


@pytest.mark.parametrize("argv, message", [
    (["run", "{dir}/nope.toml"], "smpsim: {dir}/nope.toml: no such scenario file\n"),
    (["run", "{dir}"], "smpsim: {dir}: is a directory, not a scenario file (a .toml or .py "
                       "file)\n"),
    (["run", "{bad}"], "smpsim: {bad}: key 'machine.cpus': expected an integer 1..256, got 0\n"),
    (["sweep", "{bad}"], "smpsim: {bad}: key 'machine.cpus': expected an integer 1..256, got 0\n"),
    (["run", "{tiny}", "--cpus", "0"], "smpsim: --cpus: expected 1..256, got 0\n"),
    (["sweep", "{tiny}", "--repeat", "0"], "smpsim: --repeat: expected 1..100, got 0\n"),
    (["slabinfo", "{dir}"], "smpsim: {dir}: no result here (expected a result folder, a run "
                            "folder or a result.json)\n"),
])
def test_bad_input_exits_2_with_a_message(tiny, tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(TOML.replace("cpus = 2", "cpus = 0"))
    fill = {"dir": str(tmp_path), "bad": str(bad), "tiny": tiny}
    assert cli.main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err == message.format(**fill)


@pytest.mark.parametrize("argv, message", [
    (["sweep", "{tiny}", "--cpus", "1,x"], "smpsim sweep: argument --cpus: expected CPU counts "
                                           "like 1,2,4,8, got '1,x' (see smpsim sweep --help)"),
    (["sweep", "{tiny}", "--cpus", "1,,2"], "smpsim sweep: argument --cpus: expected CPU counts "
                                            "like 1,2,4,8, got '1,,2' (see smpsim sweep --help)"),
    (["sweep", "{tiny}", "--cpus", "2,1,2"],
     "smpsim sweep: argument --cpus: expected distinct CPU counts 1..256 like 1,2,4,8, got "
     "'2,1,2' (see smpsim sweep --help)"),
    (["fly"], "smpsim: argument COMMAND: invalid choice: 'fly' (choose from *) (see smpsim "
              "--help)"),
    ([], "smpsim: the following arguments are required: COMMAND (see smpsim --help)"),
])
def test_usage_errors_exit_2_in_one_line(tiny, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        cli.main([a.format(tiny=tiny) for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    head, _, tail = message.partition("*")     # the list of choices is worded per Python version
    assert err.startswith(head) and err.endswith(tail + "\n") and err.count("\n") == 1


def test_console_entry_bad_file_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[workload]\nname = \"threadtest\"\nbatch = \"big\"\n")
    p = subprocess.run([sys.executable, "-m", "smpsim", "run", str(bad)], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 2
    assert p.stderr == (f"smpsim: {bad}: key 'workload.batch': expected an integer "
                        f"1..100000, got 'big'\n")


def test_python_scenario_script(tmp_path, capsys):
    script = tmp_path / "script.py"
    script.write_text(
        '"""A scenario script: boots a machine and reports its caches."""\n'
        "import smpsim\n"
        "CPUS = 2\n"
        "def run(out):\n"
        "    with smpsim.Machine(CPUS, '4M') as m:\n"
        "        return {'cpus': m.cpus, 'caches': len(m.stats()['caches'])}\n")
    out = str(tmp_path / "o")
    assert cli.main(["run", str(script), "--out", out, "-q"]) == 0
    assert json.load(open(os.path.join(out, "result.json"))) == {"cpus": 2, "caches": 18}
    assert sorted(os.listdir(out)) == ["result.json", "run.log", "script.py"]   # the script too
    script.write_text("X = 1\n")
    assert cli.main(["run", str(script), "--out", str(tmp_path / "o2")]) == 2
    assert capsys.readouterr().err == (f"smpsim: {script}: a scenario script must define "
                                       f"run(out_dir)\n")


def test_workloads_lists_each_with_defaults_that_validate(tmp_path, capsys):
    from smpsim.experiment import scenario
    from smpsim import workloads as workers
    assert cli.main(["workloads"]) == 0
    blocks = [b for b in capsys.readouterr().out.split("\n\n") if b.strip()]
    assert len(blocks) == len(workers.WORKLOADS)
    for block in blocks:
        path = tmp_path / "w.toml"
        path.write_text("[workload]\n" + block + "\n")
        s = scenario.load(str(path))
        assert s.points()[0].workload["name"] in workers.WORKLOADS


# lost_update.toml is racy on purpose (smpsim explore finds its lost updates,
# tests/test_explore.py): a plain run of it fails whenever the host interleaves its CPUs there.
SHIPPED = sorted(f for f in os.listdir(os.path.join(ROOT, "scenarios"))
                 if f.endswith((".toml", ".py")) and f != "lost_update.toml")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_runs(name, tmp_path, capsys):
    """Each shipped scenario as a user runs it: exit 0, a result written, the machine clean."""
    out = str(tmp_path / "out")
    assert cli.main(["run", os.path.join(ROOT, "scenarios", name), "--out", out, "-q"]) == 0
    if name.endswith(".toml"):
        summary = json.load(open(os.path.join(out, "summary.json")))
        assert summary["runs"] and all(r["check"] == "ok" and not r["error"]
                                       for r in summary["runs"])
    else:
        assert os.path.isfile(os.path.join(out, "result.json"))


def test_a_workload_its_machine_cannot_hold_exits_2(tmp_path, capsys):
    """larson's exchange area for 100000 objects per CPU does not fit in 1 MiB."""
    path = tmp_path / "big.toml"
    path.write_text(TOML.replace("slots = 10", "slots = 100000").replace('"8M"', '"1M"'))
    assert cli.main(["run", str(path), "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"smpsim: {path}: cannot be set up on 2 CPUs: ")
    assert "Traceback" not in err


# --- overrides ----------------------------------------------------------------------------------

def test_overrides_on_the_command_line(tiny, tmp_path, monkeypatch, capsys):
    _no_plots(monkeypatch)
    out = str(tmp_path / "o")
    assert cli.main(["run", tiny, "--out", out, "-q", "--set", "workload.slots=5",
                     "--set", "machine.magazine_size=8", "--ops", "100", "--seed", "3"]) == 0
    r = json.load(open(os.path.join(out, "runs", "base-c2-r0", "result.json")))
    assert r["point"]["workload"]["ops"] == 100 and r["seed"] == 3
    assert r["point"]["workload"]["slots"] == 5 and r["point"]["machine"]["magazine_size"] == 8
    assert open(os.path.join(out, "scenario.toml")).readline() == (
        "# run with: --set workload.slots=5 --set machine.magazine_size=8 --ops 100 --seed 3\n")
    assert json.load(open(os.path.join(out, "summary.json")))["overrides"][-1] == "--seed 3"


def test_a_bad_override_says_what_the_file_would(tiny, tmp_path, capsys):
    assert cli.main(["run", tiny, "--set", "workload.slots=0", "--out", str(tmp_path / "a")]) == 2
    from_set = capsys.readouterr().err
    with open(tiny) as f:
        text = f.read()
    with open(tiny, "w") as f:
        f.write(text.replace("slots = 10", "slots = 0"))
    assert cli.main(["run", tiny, "--out", str(tmp_path / "b")]) == 2
    from_file = capsys.readouterr().err
    assert from_set == from_file == (f"smpsim: {tiny}: key 'workload.slots': expected an "
                                     f"integer 1..100000, got 0\n")
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


class _Loaded(Exception):
    """Raised in place of the setup check: the scenario loaded, with these points."""


@pytest.mark.parametrize("option, as_set", [(["--time", "simulated"], "machine.time=simulated"),
                                             (["--time", "virtual"], "machine.time=virtual"),
                                             (["--quantum", "0"], "machine.quantum=0"),
                                             (["--quantum", "-1"], "machine.quantum=-1"),
                                             (["--quantum", "many"], "machine.quantum=many")])
def test_time_options_are_overrides_like_set(tiny, tmp_path, monkeypatch, capsys, option,
                                             as_set):
    """--time and --quantum are --set machine.time=... and machine.quantum=...: on run and sweep
    the same machine, or the same one-line refusal (exit 2)."""
    from smpsim.experiment import runner

    def loaded(points):
        raise _Loaded(points[0].machine)
    monkeypatch.setattr(runner, "check_setup", loaded)
    for command in ("run", "sweep"):
        outcomes = []
        for argv in (option, ["--set", as_set]):
            try:
                outcomes.append((cli.main([command, tiny, "-q"] + argv),
                                 capsys.readouterr().err))
            except _Loaded as e:
                outcomes.append(e.args[0])
        assert outcomes[0] == outcomes[1], command
        if isinstance(outcomes[0], tuple):
            code, err = outcomes[0]
            assert code == 2 and err.count("\n") == 1 and f"key 'machine.{option[0][2:]}'" in err
        else:
            assert outcomes[0][option[0][2:]] == (int(option[1]) if option[1].isdigit()
                                                  else option[1])


def test_a_run_in_simulated_time_from_the_command_line(tiny, tmp_path, monkeypatch, capsys):
    _no_plots(monkeypatch)
    out = str(tmp_path / "o")
    assert cli.main(["run", tiny, "--out", out, "--time", "simulated", "--quantum", "0",
                     "--ops", "100"]) == 0
    text = capsys.readouterr().out
    assert "| variant | CPUs | runs | ops / simulated s |" in text
    r = json.load(open(os.path.join(out, "runs", "base-c2-r0", "result.json")))
    assert (r["time"]["mode"], r["time"]["quantum"]) == ("simulated", 0)
    assert open(os.path.join(out, "scenario.toml")).readline() == (
        "# run with: --set machine.time=simulated --set machine.quantum=0 --ops 100\n")


# --- result folders -------------------------------------------------------------------------------

def test_a_folder_with_content_is_refused_and_replaced_only_when_asked(tiny, tmp_path, monkeypatch, capsys):
    _no_plots(monkeypatch)
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("earlier run")
    assert cli.main(["run", tiny, "--out", str(out), "-q"]) == 2
    assert capsys.readouterr().err == (f"smpsim: {out}: not empty (old.txt); pass --replace to "
                                       f"replace its content, or another --out\n")
    # a run that cannot start does not remove anything, --replace or not
    bad = tmp_path / "big.toml"
    bad.write_text(TOML.replace("slots = 10", "slots = 100000").replace('"8M"', '"1M"'))
    assert cli.main(["run", str(bad), "--out", str(out), "--replace", "-q"]) == 2
    assert "cannot be set up on 2 CPUs" in capsys.readouterr().err
    assert os.listdir(out) == ["old.txt"]
    assert cli.main(["run", tiny, "--out", str(out), "--replace", "-q"]) == 0
    assert "old.txt" not in os.listdir(out) and (out / "summary.json").exists()


def _no_plots(monkeypatch):
    """Tests about something else skip the plots (matplotlib is the slow part of a short run)."""
    from smpsim.experiment import plot
    monkeypatch.setattr(plot, "sweep_plots", lambda *a, **kw: [])
    monkeypatch.setattr(plot, "timeseries_plot", lambda *a, **kw: None)


def test_the_default_folder_is_new_for_every_run(tiny, tmp_path, monkeypatch, capsys):
    _no_plots(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", tiny, "-q", "--ops", "50"]) == 0
    assert cli.main(["run", tiny, "-q", "--ops", "50"]) == 0
    a, b = sorted(os.listdir(tmp_path / "results"))
    assert a.startswith("tiny-") and b.startswith("tiny-") and a != b
    for d in (a, b):
        assert os.listdir(tmp_path / "results" / d / "runs") == ["base-c2-r0"]


# --- slabinfo of a sweep, compare -----------------------------------------------------------------

def test_slabinfo_picks_a_run_of_a_sweep(tiny, tmp_path, monkeypatch, capsys):
    _no_plots(monkeypatch)
    out = str(tmp_path / "sw")
    assert cli.main(["sweep", tiny, "--cpus", "1,2", "--out", out, "-q", "--ops", "50"]) == 0
    assert cli.main(["slabinfo", out]) == 2
    assert capsys.readouterr().err == (f"smpsim: {out} holds 2 runs; pick one with --run ID "
                                       f"(or --run all): base-c1-r0, base-c2-r0\n")
    assert cli.main(["slabinfo", out, "--run", "base-c2-r0", "--format", "seed"]) == 0
    assert capsys.readouterr().out.startswith("SLAB name\tOsize")
    assert cli.main(["slabinfo", out, "--run", "base-c4-r0"]) == 2
    assert capsys.readouterr().err == (f"smpsim: {out}: no run 'base-c4-r0'; its runs: "
                                       f"base-c1-r0, base-c2-r0\n")
    assert cli.main(["slabinfo", out, "--run", "all", "--format", "seed"]) == 0
    text = capsys.readouterr().out
    assert "== base-c1-r0 (peak)" in text and "== base-c2-r0 (peak)" in text


def _summary(path, runs):
    path.mkdir()
    (path / "summary.json").write_text(json.dumps({"runs": runs}))
    return str(path)


def _row(label, cpus, tp):
    return {"label": label, "cpus": cpus, "throughput": tp, "ops_per_cpu_s": tp * 2,
            "hit_rate": 0.9, "contended_per_op": 0.0, "p99": 500, "error": ""}


def test_compare_two_result_folders(tmp_path, capsys):
    a = _summary(tmp_path / "a", [_row("mag", 1, 100.0), _row("mag", 1, 110.0),
                                  _row("mag", 1, 90.0), _row("old", 2, 5.0)])
    b = _summary(tmp_path / "b", [_row("mag", 1, 200.0), _row("mag", 1, 220.0),
                                  _row("mag", 1, 180.0), _row("new", 2, 7.0)])
    assert cli.main(["compare", a, b]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"A = {a}, B = {b}, both in host time; ratios B/A")
    assert lines[2].startswith("| variant | CPUs | runs | ops / s (host) A | CV | "
                               "ops / s (host) B | CV | ops / s (host) B/A (95% CI) |")
    assert lines[4].startswith("| mag | 1 | 3 / 3 | 100 | 10.0% | 200 | 10.0% | 2.000 ± 0.555 |")
    assert lines[5].startswith("| old | 2 | 1 / 0 | 5 |  |  |  |  |")
    assert lines[6].startswith("| new | 2 | 0 / 1 |  |  | 7 |  |  |")
    assert cli.main(["compare", a, str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"smpsim: {tmp_path}: no result here (expected a result "
                                       f"folder, a run folder or a result.json)\n")


def test_compare_in_simulated_time_and_refusing_mixed_times(tmp_path, capsys):
    """Simulated-time folders compare on ops / simulated s and the cycles and transfers per
    operation; a host-time folder against a simulated-time one is refused in one line."""
    def sim(label, tp, cycles):
        return dict(_row(label, 2, tp), time="simulated", cycles_per_op=cycles,
                    transfers_per_op=0.5, lock_wait_cycles_per_op=2.0)
    a = _summary(tmp_path / "a", [sim("mag", 100.0, 50.0), sim("mag", 100.0, 50.0)])
    b = _summary(tmp_path / "b", [sim("mag", 150.0, 40.0), sim("mag", 150.0, 40.0)])
    h = _summary(tmp_path / "h", [_row("mag", 2, 100.0)])
    assert cli.main(["compare", a, b]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"A = {a}, B = {b}, both in simulated time; ratios B/A")
    head = lines[2].split(" | ")
    assert head[3:6] == ["ops / simulated s A", "CV", "ops / simulated s B"]
    assert "cycles/op B/A (95% CI)" in head and "transfers/op A" in head
    assert "ops per CPU-s A" not in head
    cells = lines[4].split(" | ")
    assert cells[head.index("ops / simulated s B/A (95% CI)")] == "1.500"
    assert cells[head.index("cycles/op B/A (95% CI)")] == "0.800"
    assert cli.main(["compare", h, a]) == 2
    assert capsys.readouterr().err == (
        f"smpsim: compare: {h} is in host time and {a} in simulated time; their throughputs "
        f"are in different units (ops / s (host), ops / simulated s): compare results of one "
        f"time\n")


def test_compare_marks_ratios_within_the_noise():
    from smpsim.experiment import compare
    rows = compare.compare([_row("m", 1, v) for v in (100.0, 120.0, 80.0)],
                           [_row("m", 1, v) for v in (105.0, 125.0, 85.0)])
    assert compare.markdown(rows).splitlines()[4].split(" | ")[7].endswith(" ~")


# --- the command line's manners ---------------------------------------------------------------

@pytest.mark.parametrize("argv", [["demo", "--cpus", "2", "--ops", "100"], ["workloads"]])
def test_a_closed_pipe_ends_quietly(tmp_path, argv):
    """`smpsim demo | head`: the reader leaves early; no BrokenPipeError traceback, whether the
    pipe breaks while the command runs or when its output is flushed at the end."""
    p = subprocess.Popen([sys.executable, "-m", "smpsim"] + argv,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 1
    assert err == ""


class _Bar:
    made = []

    def __init__(self, total=None, desc="", position=0, **kw):
        self.total, self.desc, self.position, self.n = total, desc, position, 0
        _Bar.made.append(self)

    def update(self, n=1):
        self.n += n

    def close(self):
        pass


def test_a_sweep_has_a_bar_over_its_points(tiny, tmp_path, monkeypatch, capsys):
    import tqdm
    _no_plots(monkeypatch)
    monkeypatch.setattr(tqdm, "tqdm", _Bar)
    _Bar.made = []
    assert cli.main(["sweep", tiny, "--cpus", "1,2", "--repeat", "2", "--out",
                     str(tmp_path / "o"), "--ops", "50"]) == 0
    outer, *runs = _Bar.made
    assert (outer.desc, outer.total, outer.n, outer.position) == ("points", 4, 4, 0)
    assert [(b.desc, b.position) for b in runs] == [
        ("base-c1-r0", 1), ("base-c1-r1", 1), ("base-c2-r0", 1), ("base-c2-r1", 1)]
    assert all(b.n > 0 for b in runs)


def test_the_live_header_agrees_with_the_table(tiny, tmp_path, monkeypatch, capsys):
    _no_plots(monkeypatch)
    assert cli.main(["run", tiny, "--live", "--out", str(tmp_path / "o"), "--ops", "400"]) == 0
    out = capsys.readouterr().out
    header = [line for line in out.splitlines() if line.startswith(" smpsim base-c2-r0")][-1]
    rate = header.split("ops   ")[1].removesuffix(" ops / s (host)")
    row = [line for line in out.splitlines() if line.startswith("| base | 2 |")][0]
    assert row.split(" | ")[3] == rate


# --- Python scenario scripts -------------------------------------------------------------------

SCRIPT = '''"""Options it takes are passed; others are refused."""
def run(out, cpus=2, ops=10, set=None):
    return {"cpus": cpus, "ops": ops, "set": set}
'''


def test_script_options_are_passed_or_refused(tmp_path, capsys):
    script = tmp_path / "opts.py"
    script.write_text(SCRIPT)
    out = str(tmp_path / "o")
    assert cli.main(["run", str(script), "--out", out, "-q", "--cpus", "3", "--ops", "7",
                     "--set", "x.y=[1, 2]"]) == 0
    assert json.load(open(os.path.join(out, "result.json"))) == {
        "cpus": 3, "ops": 7, "set": {"x.y": [1, 2]}}
    for argv, opt in ((["--live"], "live"), (["--seed", "4"], "seed"), (["--pin"], "pin"),
                      (["--time", "simulated"], "time"), (["--quantum", "0"], "quantum")):
        assert cli.main(["run", str(script), "--out", str(tmp_path / opt)] + argv) == 2
        assert capsys.readouterr().err == (f"smpsim: --{opt}: opts.py's run() takes no "
                                           f"'{opt}' parameter, so the option would be "
                                           f"ignored\n")
        assert not os.path.exists(tmp_path / opt)
    timed = tmp_path / "timed.py"
    timed.write_text("def run(out, time='host', quantum=None):\n"
                     "    return {'time': time, 'quantum': quantum}\n")
    assert cli.main(["run", str(timed), "--out", str(tmp_path / "t"), "-q", "--time",
                     "simulated", "--quantum", "0"]) == 0
    assert json.load(open(tmp_path / "t" / "result.json")) == {"time": "simulated", "quantum": 0}
    assert cli.main(["run", str(timed), "--quantum", "-5"]) == 2
    assert capsys.readouterr().err == ("smpsim: --quantum: expected an integer >= 0 (cycles), "
                                       "got '-5'\n")
    assert cli.main(["sweep", str(script), "--cpus", "1,2"]) == 2
    assert capsys.readouterr().err == (f"smpsim: sweep: {script} is a Python scenario script, "
                                       f"which does its own sweeping; run it with `smpsim run`\n")


@pytest.mark.parametrize("body, last", [
    ("def helper(n):\n    return 1 / n\n\ndef run(out):\n    return helper(0)\n",
     "ZeroDivisionError: division by zero"),
    ("import nosuchmodule_here\n\ndef run(out):\n    return {}\n",
     "ModuleNotFoundError: No module named 'nosuchmodule_here'"),
])
def test_a_script_error_shows_the_scripts_own_traceback(tmp_path, capsys, body, last):
    script = tmp_path / "oops.py"
    script.write_text(body)
    assert cli.main(["run", str(script), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert err[1].startswith(f'  File "{script}", line ')
    assert not any("smpsim/experiment" in line or "runpy" in line for line in err)
    assert err[-1] == last


def test_a_script_that_does_not_compile(tmp_path, capsys):
    script = tmp_path / "bad.py"
    script.write_text("def run(out):\n    return {\n")
    assert cli.main(["run", str(script), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'  File "{script}", line 2') and "SyntaxError" in err
    assert "Traceback" not in err


def test_sigterm_stops_a_sweep_as_ctrl_c_does(tmp_path):
    """`kill` (or a batch system's time limit) in the middle of a sweep: exit 143, the finished
    points kept, the CPU processes and the machine's segment gone."""
    import signal
    import time

    import psutil
    from smpsim.engine.machine import SHM_DIR
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "smpsim", "sweep", "scenarios/threadtest.toml",
                          "--cpus", "1,2", "--seconds", "20", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        segments = []
        while not segments and time.monotonic() < deadline:
            segments = [s for s in os.listdir(SHM_DIR) if s.startswith(f"smpsim_{p.pid}_")]
            time.sleep(0.05)
        assert segments, "the sweep never made its machine"
        time.sleep(0.5)                                  # its CPUs are running
        cpus = [c for c in psutil.Process(p.pid).children(recursive=True)
                if "resource_tracker" not in " ".join(c.cmdline())]   # it leaves on its own
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 143, err
    assert "smpsim: terminated" in err and "Traceback" not in err
    assert cpus and not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in cpus)
    assert not [s for s in os.listdir(SHM_DIR) if s.startswith(f"smpsim_{p.pid}_")]
    assert (out / "scenario.toml").exists()
