"""Sweeps on a Dask cluster (smpsim/experiment/cluster.py).

Without Dask (an import blocker on sys.meta_path in a subprocess): `--cluster` is one line and
exit 2, everything else works and imports no Dask. With Dask (marker `cluster`, run by
`make test-slow`): a real scheduler and workers started with Dask's own `dask scheduler` and
`dask worker` on 127.0.0.1, each in a process group of its own that the test kills at the end
whatever happens; the sweeps run as `python -m smpsim` subprocesses, as a user runs them.
"""

import csv
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from smpsim.engine.machine import SHM_DIR, SHM_PREFIX
from smpsim.experiment import cluster

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL_LINE = ("smpsim: --cluster: Dask is not installed; install it with: "
                "pip install 'smpsim[cluster]'\n")

TOML = """
name = "tiny"
[machine]
cpus = 2
memory = "8M"
[[caches]]
name = "obj"
size = 100
[workload]
name = "threadtest"
cache = "obj"
batch = 2
ops = OPS
[run]
interval = 0.05
[sweep]
cpus = [1, 2]
repeat = 2
[[variants]]
label = "mag"
[[variants]]
label = "mag8"
machine = { magazine_size = 8 }
"""

# Columns of summary.csv that do not depend on timing or scheduling: each CPU allocates and frees
# its own batches, which fit its magazines. Lock acquisitions: on 1 CPU every lock's; on more,
# those of the CPUs' magazine locks and of the shared magazine list (the slab layer's and the
# frame allocator's depend on which CPU gets to a new slab first; contended acquisitions and
# spins on how the CPUs overlap).
DETERMINISTIC = ["id", "label", "workload", "cpus", "rep", "ops", "hit_rate", "shared_list_ops",
                 "failed", "remote_frees", "reclaim_calls", "reclaim_frames", "check", "error"]


def scenario_file(tmp_path, ops=3000, name="tiny.toml", text=TOML):
    path = tmp_path / name
    path.write_text(text.replace("OPS", str(ops)))
    return str(path)


def smpsim(*args, timeout=100, **kw):
    return subprocess.run([sys.executable, "-m", "smpsim", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, **kw)


def table(out, name="summary.csv", columns=DETERMINISTIC):
    with open(os.path.join(out, name)) as f:
        return [{k: r[k] for k in columns} for r in csv.DictReader(f)]


def lock_counts(out):
    """{run id: {lock: acquisitions}} from every run's locks.csv, the deterministic ones."""
    runs = {}
    for rid in sorted(os.listdir(os.path.join(out, "runs"))):
        with open(os.path.join(out, "runs", rid, "locks.csv")) as f:
            runs[rid] = {r["lock"]: r["acquisitions"] for r in csv.DictReader(f)
                         if "-c1-" in rid or r["lock"].endswith(".maglock")
                         or r["lock"].rpartition(".")[2].startswith("cpu")}
    return runs


# --- without Dask -------------------------------------------------------------------------

NO_DASK = """
import sys
class NoDask:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("dask", "distributed"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoDask())
import smpsim, smpsim.experiment
from smpsim.experiment import sweep_on_cluster
from smpsim.experiment.cli import main
rc = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("dask", "distributed"))
print("dask modules:", loaded, file=sys.stderr)
sys.exit(rc)
"""


def no_dask(*args):
    return subprocess.run([sys.executable, "-c", NO_DASK, *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=100)


def test_without_dask_cluster_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "o"
    p = no_dask("sweep", scenario_file(tmp_path), "--cluster", "local:2", "--out", str(out))
    assert p.returncode == 2
    assert p.stderr == INSTALL_LINE + "dask modules: []\n"
    assert p.stdout == "" and not out.exists()


def test_without_dask_a_local_sweep_runs_and_imports_no_dask(tmp_path):
    out = tmp_path / "o"
    p = no_dask("sweep", scenario_file(tmp_path), "--cpus", "1", "--repeat", "1", "--out",
                str(out), "-q")
    assert (p.returncode, p.stderr) == (0, "dask modules: []\n")
    assert [r["id"] for r in table(str(out))] == ["mag-c1-r0", "mag8-c1-r0"]


def test_the_default_install_has_no_dask():
    try:
        import tomllib
    except ImportError:
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert not [d for d in project["dependencies"] if "dask" in d or "distributed" in d]
    extra = project["optional-dependencies"]["cluster"]
    assert any(d.startswith("dask[distributed") for d in extra)
    assert cluster.INSTALL == "pip install 'smpsim[cluster]'"


@pytest.mark.parametrize("address, message", [
    ("foo://x:1", "'foo://x:1': expected a scheduler address like tcp://host:8786, or local:N"),
    ("local:0", "'local:0': expected local:N with N 1..256 workers"),
    ("tcp://host", "'tcp://host': expected a scheduler address like tcp://host:8786, or local:N"),
])
def test_a_bad_address_is_one_line_and_exit_2(tmp_path, address, message):
    pytest.importorskip("distributed")
    out = tmp_path / "o"
    p = smpsim("sweep", scenario_file(tmp_path), "--cluster", address, "--out", str(out))
    assert (p.returncode, p.stderr, p.stdout) == (2, f"smpsim: --cluster: {message}\n", "")
    assert not out.exists()


def test_parse_address():
    assert cluster.parse_address("local:3") == ("local", 3)
    assert cluster.parse_address("10.0.0.1:8786") == ("remote", "tcp://10.0.0.1:8786")
    assert cluster.parse_address("tls://[::1]:8786") == ("remote", "tls://[::1]:8786")
    with pytest.raises(cluster.ClusterError, match="expected local:N with N 1..256"):
        cluster.parse_address("local:300")


# --- a real scheduler and workers ---------------------------------------------------------

DASK = os.path.join(os.path.dirname(sys.executable), "dask")
NOT_DAEMONIC = {"DASK_DISTRIBUTED__WORKER__DAEMON": "False"}


class DaskProcesses:
    """`dask scheduler` and `dask worker` processes, each the leader of its own process group;
    stop() kills every group and reaps every process, and says which smpsim segments their
    processes left."""

    def __init__(self, tmp_path):
        self.dir, self.procs, self.pids, self.address = tmp_path, [], set(), None

    def _start(self, name, args, env=None):
        log = open(self.dir / f"{name}.log", "w")
        p = subprocess.Popen([DASK, *args], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, env={**os.environ, **(env or {})},
                             cwd=str(self.dir))
        log.close()
        self.procs.append(p)
        return p

    def scheduler(self):
        path = self.dir / "scheduler.json"
        self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--dashboard-address", "127.0.0.1:0",
                                  "--scheduler-file", str(path)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.address = json.loads(path.read_text())["address"]
                return self.address
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        raise AssertionError("the scheduler did not start: " + self.log("scheduler"))

    def worker(self, name, env=NOT_DAEMONIC):
        return self._start(name, ["worker", self.address, "--host", "127.0.0.1",
                                  "--nthreads", "1", "--name", name, "--no-dashboard",
                                  "--death-timeout", "60",
                                  "--local-directory", str(self.dir / name)], env)

    def wait_for_workers(self, n):
        code = ("import sys, distributed; c = distributed.Client(sys.argv[1], timeout=30); "
                "c.wait_for_workers(int(sys.argv[2]), timeout=60); c.close()")
        subprocess.run([sys.executable, "-c", code, self.address, str(n)], check=True,
                       timeout=90, capture_output=True)

    def worker_address(self, name):
        for line in self.log(name).splitlines():
            if "Start worker at:" in line:
                return line.split("Start worker at:")[1].strip()
        raise AssertionError(f"{name} has not started: " + self.log(name))

    def log(self, name):
        return (self.dir / f"{name}.log").read_text()

    def group(self, p):
        """The processes of `p`'s process group, `p` first."""
        try:
            procs = [psutil.Process(p.pid)]
            procs += procs[0].children(recursive=True)
        except psutil.Error:
            return []
        self.pids |= {q.pid for q in procs}
        return procs

    def kill(self, p):
        """SIGKILL for every process of `p`'s group but multiprocessing's resource tracker,
        which outlives them to remove their semaphores, as when a worker is killed on a host
        that stays up."""
        for q in self.group(p):
            try:
                if "resource_tracker" not in " ".join(q.cmdline()):
                    q.kill()
            except psutil.Error:
                pass
        p.wait(30)

    def stop(self):
        """SIGTERM for every group (Dask's processes close on it), SIGKILL for what is left
        after 20 s; returns the smpsim segments that processes of the groups left."""
        procs = [q for p in self.procs for q in self.group(p)]
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        _, alive = psutil.wait_procs(procs, timeout=20)
        for q in alive:
            try:
                q.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=10)
        for p in self.procs:
            p.wait(10)
        return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(SHM_PREFIX)
                      and int(n[len(SHM_PREFIX):].split("_")[0]) in self.pids)


def semaphores():
    """multiprocessing's named semaphores in /dev/shm (Dask's nannies make them)."""
    return {n for n in os.listdir(SHM_DIR) if n.startswith("sem.mp-")}


@pytest.fixture
def dask_procs(tmp_path):
    pytest.importorskip("distributed")
    procs, sems = DaskProcesses(tmp_path), semaphores()
    try:
        yield procs
    finally:
        left = procs.stop()
    assert not left, f"segments of Dask's processes outlived the test: {left}"
    assert not semaphores() - sems, "semaphores of Dask's processes outlived the test"


def two_workers(dask_procs):
    dask_procs.scheduler()
    workers = [dask_procs.worker("w1"), dask_procs.worker("w2")]
    dask_procs.wait_for_workers(2)
    return workers


@pytest.mark.slow
@pytest.mark.cluster
def test_a_sweep_on_dask_workers_gives_the_local_table(dask_procs, tmp_path):
    """Done 1: the same points, in the same order, the same deterministic columns and lock
    acquisitions, as the same sweep run here; every run names its host and worker."""
    two_workers(dask_procs)
    scn = scenario_file(tmp_path)
    here, there = str(tmp_path / "here"), str(tmp_path / "there")
    p = smpsim("sweep", scn, "--out", here, "-q")
    assert p.returncode == 0, p.stderr
    p = smpsim("sweep", scn, "--cluster", dask_procs.address, "--out", there)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"Dask scheduler {dask_procs.address}, 2 worker(s); "
                               f"dashboard: http://127.0.0.1:")
    assert len(table(there)) == 8
    assert table(there) == table(here)
    assert lock_counts(there) == lock_counts(here)
    ones = [r for r in table(there, columns=["cpus", "acquisitions"]) if r["cpus"] == "1"]
    assert len(ones) == 4 and ones == [r for r in table(here, columns=["cpus", "acquisitions"])
                                       if r["cpus"] == "1"]
    assert sorted(os.listdir(there)) == sorted(os.listdir(here))
    assert sorted(os.listdir(os.path.join(there, "plots"))) == sorted(
        os.listdir(os.path.join(here, "plots")))
    assert json.load(open(os.path.join(there, "summary.json")))["partial"] is False
    with open(os.path.join(there, "sweep.csv")) as f, open(os.path.join(here, "sweep.csv")) as g:
        assert ([(r["label"], r["cpus"], r["runs"]) for r in csv.DictReader(f)]
                == [(r["label"], r["cpus"], r["runs"]) for r in csv.DictReader(g)])
    workers = set()
    for rid in os.listdir(os.path.join(there, "runs")):
        host = json.load(open(os.path.join(there, "runs", rid, "result.json")))["host"]
        assert host["name"] == os.uname().nodename
        workers.add(host["worker"])
    assert workers and all(w.startswith("tcp://127.0.0.1:") for w in workers)


def cpu_processes(worker):
    """The simulated CPUs running under a `dask worker` (nanny -> worker process -> CPUs)."""
    found = []
    for w in psutil.Process(worker.pid).children():
        for c in w.children():
            try:
                if "resource_tracker" not in " ".join(c.cmdline()):
                    found.append(c)
            except psutil.Error:
                pass
    return found


@pytest.mark.slow
@pytest.mark.cluster
def test_a_worker_killed_mid_sweep_loses_no_point(dask_procs, tmp_path):
    """Done 2: w1 (nanny, worker and CPUs) is killed while it runs a point, after points have
    finished; the sweep completes on w2 and every finished point is kept as it was."""
    w1, w2 = two_workers(dask_procs)
    out = str(tmp_path / "o")
    sweep = subprocess.Popen([sys.executable, "-m", "smpsim", "sweep", scenario_file(
        tmp_path, ops=300_000), "--repeat", "3", "--cluster", dask_procs.address, "--out", out,
        "-q"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        runs = os.path.join(out, "runs")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = [d for d in os.listdir(runs)] if os.path.isdir(runs) else []
            if done and cpu_processes(w1):
                break
            time.sleep(0.02)
        else:
            raise AssertionError("w1 ran no point after another had finished")
        before = {d: open(os.path.join(runs, d, "result.json")).read() for d in os.listdir(runs)
                  if os.path.isfile(os.path.join(runs, d, "result.json"))}
        killed_at = time.time()
        dask_procs.kill(w1)
        stdout, stderr = sweep.communicate(timeout=100)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
    assert sweep.returncode == 0, stderr
    rows = table(out)
    assert [r["id"] for r in rows] == [f"{v}-c{c}-r{r}" for c in (1, 2) for v in ("mag", "mag8")
                                       for r in range(3)]
    assert all(r["error"] == "" and r["check"] == "ok" for r in rows)
    for d, text in before.items():
        assert open(os.path.join(runs, d, "result.json")).read() == text
    # Every point that started after the kill (the one w1 was running among them) ran on w2.
    # (A point w1 finished just before the kill may still have been on its way then.)
    later = set()
    for d in os.listdir(runs):
        r = json.load(open(os.path.join(runs, d, "result.json")))
        if datetime.datetime.fromisoformat(r["started"]).timestamp() >= killed_at + 1:
            later.add(r["host"]["worker"])
    assert len(before) < len(rows) and later == {dask_procs.worker_address("w2")}


@pytest.mark.slow
@pytest.mark.cluster
def test_a_daemonic_worker_is_refused_saying_how_to_start_one(dask_procs, tmp_path):
    dask_procs.scheduler()
    dask_procs.worker("w1", env={"DASK_DISTRIBUTED__WORKER__DAEMON": "True"})
    dask_procs.wait_for_workers(1)
    out = tmp_path / "o"
    p = smpsim("sweep", scenario_file(tmp_path), "--cluster", dask_procs.address, "--out",
               str(out))
    assert p.returncode == 2 and not out.exists()
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith("smpsim: --cluster: Dask worker tcp://127.0.0.1:")
    assert p.stderr.endswith(" runs tasks in a daemonic process, which cannot fork the "
                             "simulated CPUs; start workers with "
                             "DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker SCHEDULER "
                             "--nthreads 1 (or dask worker --no-nanny)\n")


SCRIPT = """
from smpsim.experiment import sweep_on_cluster

def run(out):
    r = sweep_on_cluster(SCENARIO, ADDRESS, out + "/sweep", cpus=[1], progress=False)
    return {"ok": r.ok, "error": None if r.ok else f"{len(r.failures)} point(s) failed",
            "ids": [x["point"]["id"] for x in r.results],
            "failed": [(f.point.id, f.error, f.traceback) for f in r.failures],
            "table": [(s["label"], s["cpus"], s["runs"]) for s in r.sweep]}
"""


@pytest.mark.slow
@pytest.mark.cluster
def test_a_point_that_raises_is_reported_and_the_sweep_goes_on(dask_procs, tmp_path):
    """Through the Python entry point in a scenario script: a variant whose workload does not
    fit its machine raises on the worker (run_point's ScenarioError); it is reported with the
    remote traceback, in runs/ID/failure.json and on stderr, and the other variant runs."""
    two_workers(dask_procs)
    scn = scenario_file(tmp_path, text=TOML + """
[[variants]]
label = "too big"
machine = { memory = "1M" }
workload = { name = "larson", slots = 100000 }
""")
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.replace("SCENARIO", repr(scn)).replace("ADDRESS",
                                                                     repr(dask_procs.address)))
    out = str(tmp_path / "o")
    p = smpsim("run", str(script), "--out", out, "-q")
    assert p.returncode == 1, p.stderr
    res = json.load(open(os.path.join(out, "result.json")))
    assert res["ok"] is False
    assert res["ids"] == ["mag-c1-r0", "mag-c1-r1", "mag8-c1-r0", "mag8-c1-r1"]
    assert [(i, e.split(":")[0]) for i, e, _ in res["failed"]] == [
        ("too-big-c1-r0", "ScenarioError"), ("too-big-c1-r1", "ScenarioError")]
    assert all("cannot be set up on 1 CPUs" in e for _, e, _ in res["failed"])
    assert all("in run_point" in tb for _, _, tb in res["failed"])
    assert res["table"] == [["mag", 1, 2], ["mag8", 1, 2]]
    failure = json.load(open(os.path.join(out, "sweep", "runs", "too-big-c1-r0",
                                          "failure.json")))
    assert failure["point"]["workload"]["slots"] == 100000
    assert failure["worker"].startswith("tcp://127.0.0.1:") and failure["host"]
    assert "run too-big-c1-r0 failed on tcp://127.0.0.1:" in p.stderr
    assert '"slots": 100000' in p.stderr and "Traceback" in p.stderr


@pytest.mark.slow
@pytest.mark.cluster
def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("distributed")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed again: nothing listens there
    out = tmp_path / "o"
    p = smpsim("sweep", scenario_file(tmp_path), "--cluster", f"tcp://127.0.0.1:{port}",
               "--out", str(out))
    assert p.returncode == 2 and not out.exists()
    assert p.stderr.startswith(f"smpsim: --cluster: cannot reach the Dask scheduler at "
                               f"tcp://127.0.0.1:{port} (")
    assert p.stderr.count("\n") == 1


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_on_a_local_cluster_keeps_the_finished_points(tmp_path, sig):
    """Ctrl-C (or the terminal's hangup) reaches the whole process group: the points that
    finished are kept, running ones end as "interrupted" runs with their counters, the rest
    never start; exit 130, summary partial, no process, segment or semaphore left."""
    pytest.importorskip("distributed")
    sems = semaphores()
    out = str(tmp_path / "o")
    sweep = subprocess.Popen([sys.executable, "-m", "smpsim", "sweep",
                              scenario_file(tmp_path, ops=3_000_000), "--cpus", "1",
                              "--repeat", "3", "--cluster", "local:2", "--out", out],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    pids = set()
    try:
        runs = os.path.join(out, "runs")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not os.path.isdir(runs):
            pids |= {c.pid for c in psutil.Process(sweep.pid).children(recursive=True)}
            time.sleep(0.05)
        time.sleep(0.5)
        pids |= {c.pid for c in psutil.Process(sweep.pid).children(recursive=True)}
        os.killpg(sweep.pid, sig)
        stdout, stderr = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.communicate()
    assert sweep.returncode == 130, stderr
    assert f"smpsim: interrupted; what finished is in {out} (marked partial)" in stderr.split(
        "\n"), stderr
    assert "Traceback" not in stderr, stderr
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["partial"] is True
    runs = {r["id"]: r for r in summary["runs"]}
    finished = [i for i, r in runs.items() if not r["error"]]
    interrupted = [i for i, r in runs.items() if r["error"] == "interrupted"]
    assert finished and interrupted and len(runs) < 6, runs
    assert all(0 < runs[i]["ops"] < 3_000_000 for i in interrupted)
    assert all(runs[i]["ops"] == 3_000_000 for i in finished)
    psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
    assert not [p for p in pids if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not [n for n in os.listdir(SHM_DIR) if n.startswith(SHM_PREFIX)
                and int(n[len(SHM_PREFIX):].split("_")[0]) in pids]
    assert not semaphores() - sems


MAP_SCRIPT = """
import json, os, sys, time
from smpsim.experiment import cluster
from mapped_tasks import die, flaky, stops

with cluster.connect("local:2", echo=None) as conn:
    for retries in (0, 1):
        items = [(sys.argv[1], retries, i) for i in range(5)]
        got = sorted(cluster.map_tasks(conn.client, flaky, items, retries=retries,
                                       names=[f"t{i}" for i in range(5)], progress=False),
                     key=lambda o: o.index)
        print(json.dumps([[o.index, o.ok, o.value, o.error, "in flaky" in (o.traceback or ""),
                           o.host == os.uname().nodename, (o.worker or "")[:16]]
                          for o in got]))
    [o] = cluster.map_tasks(conn.client, die, [None], progress=False)
    print(json.dumps([o.ok, o.error, o.host]))
    conn.client.wait_for_workers(2)
    workers = sorted(conn.client.scheduler_info()["workers"])
    with cluster.map_tasks(conn.client, stops, range(4), progress=False) as tasks:
        time.sleep(1)
        print(json.dumps([[o.value for o in tasks.interrupt()],
                          sorted(conn.client.scheduler_info()["workers"]) == workers]))
"""

MAPPED = '''
import os
import time

def flaky(item):
    """Raises the first time it runs for an odd i; a file in `d` counts the attempts."""
    d, retries, i = item
    mark = os.path.join(d, f"{retries}-{i}")
    first = not os.path.exists(mark)
    open(mark, "a").close()
    if i % 2 and first:
        raise RuntimeError(f"first attempt at {i}")
    return i * i


def die(item):
    """Kills the worker process that runs it."""
    os.kill(os.getpid(), 9)


def stops(item):
    """Answers the client's request to stop with KeyboardInterrupt (as a sweep point that is
    asked before its run began), else returns after 5 s."""
    from smpsim.experiment import cluster
    for _ in range(50):
        if cluster.should_stop():
            raise KeyboardInterrupt
        time.sleep(0.1)
    return item
'''


@pytest.mark.slow
@pytest.mark.cluster
def test_map_tasks_retries_and_reports_each_task(tmp_path):
    """The generic layer: a task that raises once is retried with retries=1 and reported with
    its remote traceback with retries=0; outcomes carry index, value, host and worker. A task
    that kills every worker that runs it is reported once Dask gave up (after its default
    allowed-failures, 3: four workers died), and the LocalCluster's nanny restarts them. Tasks
    that answer interrupt() with KeyboardInterrupt come back as nothing, not as failures."""
    pytest.importorskip("distributed")
    sems = semaphores()
    (tmp_path / "mapped_tasks.py").write_text(MAPPED)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    p = subprocess.run([sys.executable, "-c", MAP_SCRIPT, str(marks)], capture_output=True,
                       text=True, cwd=str(tmp_path), timeout=100, env=env)
    assert p.returncode == 0, p.stderr
    no_retry, retry, killed, stopped = (json.loads(line) for line in p.stdout.splitlines())
    assert stopped == [[], True]    # the running tasks gave up as asked; no worker died
    w = "tcp://127.0.0.1:"
    assert no_retry == [[0, True, 0, None, False, True, w], [1, False, None,
                         "RuntimeError: first attempt at 1", True, True, w],
                        [2, True, 4, None, False, True, w], [3, False, None,
                         "RuntimeError: first attempt at 3", True, True, w],
                        [4, True, 16, None, False, True, w]]
    assert retry == [[i, True, i * i, None, False, True, w] for i in range(5)]
    assert killed[0] is False and killed[2] == "127.0.0.1"
    assert re.fullmatch(r"KilledWorker: every worker that ran it died \(4 times; the last was "
                        r"tcp://127\.0\.0\.1:\d+\)", killed[1])
    assert not semaphores() - sems


@pytest.mark.slow
@pytest.mark.cluster
def test_the_cluster_benchmark_runs(tmp_path):
    """`smpsim bench --cluster local:2 --quick`: the numbers are there (not meaningful)."""
    pytest.importorskip("distributed")
    p = smpsim("bench", "--cluster", "local:2", "--quick", "--out", str(tmp_path), "-q")
    assert p.returncode == 0, p.stderr
    res = json.load(open(tmp_path / "bench-cluster.json"))
    assert res["address"] == "local:2" and res["points"] == 4 and len(res["rounds"]) == 1
    r = res["rounds"][0]
    assert r["here_s"] > 0 and r["cluster_s"] > r["cluster_points_s"] > 0
    assert 1 <= len(r["hosts"]) <= 2
    assert "## Sweep on a cluster: 4 single-CPU points" in p.stdout


INTERRUPT_SCRIPT = """
import json, sys, time
from smpsim.experiment import cluster, scenario

scn = scenario.load(sys.argv[1])
points = scn.points([1], 3)

def finished(dask_scheduler):
    return sorted(k.split("-")[0] + "-" + "-".join(k.split("-")[1:3])
                  for k, ts in dask_scheduler.tasks.items() if ts.state == "memory")

taken = []

def first(result):
    # Ctrl-C lands while the first point is written, once the second has finished too (its
    # outcome not yet taken) and the next two have run for a while.
    taken.append(result["point"]["id"])
    if len(taken) == 1:
        while len(conn.client.run_on_scheduler(finished)) < 2:
            time.sleep(0.05)
        time.sleep(1.5)
        print(json.dumps(conn.client.run_on_scheduler(finished)))
        raise KeyboardInterrupt

with cluster.connect("local:2", echo=None) as conn:
    try:
        cluster.run_points(conn.client, scn, points, sys.argv[2], progress=False,
                           on_result=first)
    except KeyboardInterrupt:
        print("interrupted")
"""


@pytest.mark.slow
@pytest.mark.cluster
def test_ctrl_c_while_a_point_is_written_still_stops_and_keeps_the_running_ones(tmp_path):
    """The KeyboardInterrupt lands in run_points' own handling of an outcome, not in Dask's
    wait: the point that finished meanwhile is kept, the points still running are stopped and
    kept as "interrupted" runs, the rest never runs."""
    pytest.importorskip("distributed")
    out = str(tmp_path / "o")
    p = subprocess.run([sys.executable, "-c", INTERRUPT_SCRIPT,
                        scenario_file(tmp_path, ops=3_000_000), out], capture_output=True,
                       text=True, cwd=ROOT, timeout=100)
    assert p.returncode == 0 and p.stdout.endswith("interrupted\n"), p.stderr
    done_then = json.loads(p.stdout.splitlines()[0])      # finished when Ctrl-C came
    summary = json.load(open(os.path.join(out, "summary.json")))
    runs = {r["id"]: (r["error"], r["ops"]) for r in summary["runs"]}
    assert summary["partial"] is True, runs
    assert len(done_then) >= 2 and all(runs[i] == ("", 3_000_000) for i in done_then), runs
    stopped = {i for i, (e, _) in runs.items() if e == "interrupted"}
    assert stopped and all(0 < runs[i][1] < 3_000_000 for i in stopped), runs
    assert all(runs[i] == ("", 3_000_000) for i in set(runs) - stopped) and len(runs) < 6, runs
