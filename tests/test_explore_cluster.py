"""Schedule search on a Dask cluster (smpsim/experiment/explore_cluster.py, `smpsim explore
--cluster`).

Default suite: without Dask (an import blocker in a subprocess) `--cluster` is one line and
exit 2; ClusterRuns through a stand-in for cluster.map_tasks that hands the tasks back in
reverse order gives search's own answer, stops at a schedule that raised, and hands over what
came back after Ctrl-C. Marker `cluster` (also `slow`): `smpsim explore --cluster local:2`
against the same explore here, on the lost update and on a variant that passes; Ctrl-C to a
search on local:2; a worker of a real `dask scheduler` killed in the middle of a search
(test_cluster.py's scheduler and workers, each in a process group the test kills at the end).
"""

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from smpsim.experiment import cluster, explore, explore_cluster, scenario
from smpsim.experiment.explore_cluster import ClusterRuns, TaskFailed, run_seeds
from test_cluster import (  # noqa: F401 - two_workers is a fixture
    INSTALL_LINE, cpu_processes, dask_procs, no_dask, two_workers)

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOST = os.path.join(ROOT, "smpsim", "scenarios", "lost_update.toml")


def smpsim(*args, timeout=110):
    return subprocess.run([sys.executable, "-m", "smpsim", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def atomic(tmp_path):
    """lost_update.toml with the atomic add: every schedule passes."""
    path = tmp_path / "atomic.toml"
    with open(LOST) as f:
        path.write_text(f.read().replace("atomic = false", "atomic = true"))
    return str(path)


def point(ops=3, path=LOST):
    return explore.configure(scenario.load(path), None, ops)[0]


# --- without Dask -------------------------------------------------------------------------

def test_without_dask_explore_cluster_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "o"
    p = no_dask("explore", LOST, "--ops", "3", "--cluster", "local:2", "--out", str(out))
    assert p.returncode == 2
    assert p.stderr == INSTALL_LINE + "dask modules: []\n"
    assert p.stdout == "" and not out.exists()


# --- ClusterRuns, with a stand-in for the cluster -------------------------------------------

class FakeTasks:
    """cluster.map_tasks without Dask: runs every task here when made and hands the Outcomes
    back in reverse order (the last task first). The tasks in `held` come back only from
    interrupt() (the first `cut` schedules of each, as tasks stopped part way; none: a task
    that had not started); waiting for one of them is a Ctrl-C."""

    made = []

    def __init__(self, client, fn, items, *, held=(), cut=None, **kw):
        self.items, self.closed, self.interrupted = list(items), False, False
        got = [cluster.Outcome(i, item, value=fn(item), host="h", worker="w")
               for i, item in enumerate(self.items)]
        self.held = [o for o in got if o.index in held]
        for o in self.held:
            o.value = o.value[:cut]
        self.left = [o for o in got[::-1] if o.index not in held]
        FakeTasks.made.append(self)

    def __next__(self):
        if not self.left:
            raise KeyboardInterrupt if self.held else StopIteration
        return self.left.pop(0)

    def interrupt(self):
        self.interrupted = True
        return [o for o in self.held if o.value]    # none: it never started

    def close(self):
        self.closed = True


@pytest.fixture
def fake(monkeypatch):
    FakeTasks.made = []
    opts = {}
    monkeypatch.setattr(cluster, "map_tasks", lambda *a, **kw: FakeTasks(*a, **opts, **kw))
    return opts


def search(p, runs=None, schedules=60, progress=None):
    more = {"map_runs": runs, "batch": runs.batch} if runs else {}
    return explore.search([p], schedules=schedules, seed=22, strategy="pct", depth=2,
                          progress=progress, **more)[-1]


def test_cluster_runs_give_the_search_of_this_process(fake):
    """Seeds 22 and on (PCT, depth 2): the first failing seed is 29, the 7th of the first
    task; the second task fails at its 2nd (32) and comes back first. The search finds 29
    after 8 schedules, exactly as here; close() cancels the tasks out."""
    p = point()
    here = search(p)
    runs = ClusterRuns(None, workers=2)
    there = search(p, runs)
    assert (here.found.seed, here.schedules) == (29, 8)
    assert (there.found.seed, there.schedules, there.steps, there.preemptions) == \
        (here.found.seed, here.schedules, here.steps, here.preemptions)
    assert there.found.schedule == here.found.schedule
    [tasks] = FakeTasks.made
    assert [s for _, seeds in tasks.items for s in seeds] == list(range(23, 82))
    assert all(len(seeds) == explore_cluster.CHUNK for _, seeds in tasks.items[:-1])
    assert not tasks.closed                  # until the caller closes them
    runs.close()
    assert tasks.closed and runs.tasks is None


def test_a_task_stops_at_its_first_failure_and_at_a_schedule_that_raises():
    p = point()
    cov = search(p)
    one = functools.partial(explore._seed_run, p, "pct", 2, cov.pct_steps, cov.max_steps)
    got = run_seeds((one, list(range(23, 31))))
    assert [o.seed for o in got] == list(range(23, 30)) and got[-1].failed

    def boom(seed):
        if seed == 3:
            raise OSError("no room in /dev/shm")
        return one(seed + 22)
    got = run_seeds((boom, [1, 2, 3, 4]))
    assert [type(r).__name__ for r in got] == ["Outcome", "Outcome", "Raised"]
    assert got[2].seed == 3 and got[2].error == "OSError: no room in /dev/shm"
    assert "in boom" in got[2].traceback


def test_a_schedule_that_raised_stops_the_search_at_its_seed(fake, monkeypatch):
    """In seed order: a schedule raising in a later task is never reached when an earlier
    schedule fails; one raising before the first failure is TaskFailed with its traceback."""
    p = point()
    real = explore._seed_run

    def raising(at):
        def run(*args):
            if args[-1] == at:
                raise OSError("no room in /dev/shm")
            return real(*args)
        return run
    monkeypatch.setattr(explore, "_seed_run", raising(40))
    assert search(p, ClusterRuns(None)).found.seed == 29
    monkeypatch.setattr(explore, "_seed_run", raising(27))
    with pytest.raises(TaskFailed) as e:
        search(p, ClusterRuns(None))
    assert (e.value.seed, e.value.error, e.value.worker) == (27, "OSError: no room in /dev/shm",
                                                            "w")
    assert "in run" in e.value.traceback and FakeTasks.made[-1].closed
    assert str(e.value) == ("the schedule of seed 27 failed to run on w: OSError: no room in "
                            "/dev/shm")


@pytest.mark.parametrize("held, cut, seeds", [
    ({0, 1}, None, list(range(23, 62))),     # the first two late: all of them, in order
    ({0, 1}, 3, [23, 24, 25]),               # the first stopped after 3: a gap after them
    ({1}, 3, [31, 32, 33]),                  # (the first task came back before Ctrl-C)
    ({0, 1}, 0, []),                         # neither had started
])
def test_after_ctrl_c_what_came_back_is_handed_over_in_seed_order(fake, held, cut, seeds,
                                                                    tmp_path):
    """Ctrl-C while waiting for a task of a search that finds nothing: interrupt() returns
    the schedules that came back after the last one taken, in seed order up to the first
    seed missing, and closes the tasks."""
    fake.update(held=held, cut=cut)
    runs = ClusterRuns(None)
    with pytest.raises(KeyboardInterrupt) as e:
        search(point(path=atomic(tmp_path)), runs, schedules=40)
    tasks = FakeTasks.made[-1]
    assert not tasks.closed                  # left open for interrupt()
    late = runs.interrupt()
    assert [o.seed for o in late] == seeds and not any(o.failed for o in late)
    assert tasks.interrupted and tasks.closed and runs.tasks is None
    assert runs.interrupt() == [] and e.value


def test_after_ctrl_c_in_the_middle_of_a_task_the_rest_of_it_is_handed_over(fake):
    """Ctrl-C while search takes seed 23: the rest of its task, up to the failure (29)."""
    def progress(cov, o):
        if o.seed == 23:
            raise KeyboardInterrupt
    runs = ClusterRuns(None)
    with pytest.raises(KeyboardInterrupt) as e:   # (keeps the search's frames, as the
        search(point(), runs, progress=progress)  # handler of the interrupt does)
    late = runs.interrupt()
    assert [o.seed for o in late] == list(range(24, 30)) and late[-1].failed and e.value


def test_chunk_must_be_positive():
    with pytest.raises(ValueError, match="ClusterRuns: 'chunk' must be an int >= 1, got 0"):
        ClusterRuns(None, chunk=0)
    assert ClusterRuns(None, workers=2).batch == explore_cluster.CHUNK * 64
    assert ClusterRuns(None, workers=100).batch == explore_cluster.CHUNK * 32 * 100


# --- a real cluster -----------------------------------------------------------------------

def explored(out):
    """explore.json without what differs from run to run (times, the command line)."""
    with open(os.path.join(out, "explore.json")) as f:
        doc = json.load(f)
    del doc["written"], doc["command"]
    for c in doc["coverage"]:
        del c["seconds"]
    return doc


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.slow
@pytest.mark.cluster
def test_explore_on_local_2_finds_what_explore_here_finds(tmp_path):
    """The lost update, PCT depth 2 from seed 22: the first failing seed (29) is the 7th of
    the first task, while the second task fails at its 2nd (32) and comes back first. The
    same seed, kind, shrunk schedule, trace and explore.json as explore here."""
    pytest.importorskip("distributed")
    args = [LOST, "--ops", "3", "--depth", "2", "--seed", "22", "--schedules", "60"]
    here, there = str(tmp_path / "here"), str(tmp_path / "there")
    p = smpsim("explore", *args, "--out", here, "-q")
    assert p.returncode == 1, p.stderr
    p = smpsim("explore", *args, "--out", there, "--cluster", "local:2")
    assert p.returncode == 1, p.stderr
    assert p.stdout.startswith("Dask scheduler tcp://127.0.0.1:")
    assert "\non local:2: 8 schedule(s) in " in p.stdout
    doc = explored(there)
    assert (doc["seed"], doc["found"]["schedules"], doc["failure"]["kind"]) == \
        (29, 8, "finish:AssertionError")
    assert doc == explored(here)
    for name in ("schedule.pkl", "trace.tsv"):
        assert read(os.path.join(there, name)) == read(os.path.join(here, name)), name
    assert read(os.path.join(there, "failure.txt")).replace(there.encode(), b"OUT") == \
        read(os.path.join(here, "failure.txt")).replace(here.encode(), b"OUT")


@pytest.mark.slow
@pytest.mark.cluster
def test_a_search_without_failure_on_local_2_covers_what_it_covers_here(tmp_path):
    """200 random schedules of the atomic add, over several tasks per worker: the same
    schedules, scheduling points and preemptions as here."""
    pytest.importorskip("distributed")
    args = [atomic(tmp_path), "--ops", "5", "--strategy", "random", "--schedules", "200"]
    p = smpsim("explore", *args, "-q")
    assert p.returncode == 0, p.stderr
    q = smpsim("explore", *args, "--cluster", "local:2", "-q")
    assert q.returncode == 0, q.stderr
    line = p.stdout.split(" s (")[0].rsplit(",", 1)[0]
    assert line.startswith("lost_update base at 2 CPUs: 200 schedule(s) (random, seeds "
                           "0..199), ")
    assert q.stdout.startswith("on local:2: 200 schedule(s) in ")
    assert q.stdout.splitlines()[1].split(" s (")[0].rsplit(",", 1)[0] == line


@pytest.mark.slow
@pytest.mark.cluster
def test_ctrl_c_on_local_2_reports_what_was_covered(tmp_path):
    """Ctrl-C to the process group: exit 130, the schedules covered (more than the first,
    which runs here), no process or segment left. (Dask's semaphores are test_cluster.py's
    concern: other Dask clusters on the host make them too.)"""
    pytest.importorskip("distributed")
    p = subprocess.Popen([sys.executable, "-m", "smpsim", "explore", atomic(tmp_path),
                          "--ops", "5", "--schedules", "100000", "--cluster", "local:2"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    pids = set()
    try:
        line = p.stdout.readline()
        assert line.startswith("Dask scheduler "), line
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            pids |= {c.pid for c in psutil.Process(p.pid).children(recursive=True)}
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    i = lines.index("smpsim: interrupted; covered so far:")
    covered = lines[i + 1]
    assert covered.startswith("  lost_update base at 2 CPUs: ")
    n = int(covered.split("CPUs: ")[1].split(" ")[0])
    assert 1 < n < 100000 and f"seeds 0..{n - 1})" in covered
    psutil.wait_procs([psutil.Process(q) for q in pids if psutil.pid_exists(q)], timeout=10)
    assert not [q for q in pids if psutil.pid_exists(q)
                and psutil.Process(q).status() != psutil.STATUS_ZOMBIE]
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("smpsim_")
                and int(n.split("_")[1]) in pids]


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("allowed_failures", [None, 0])
def test_a_worker_killed_mid_search(dask_procs, tmp_path, monkeypatch, allowed_failures):
    """w1 (nanny, worker and the CPUs of its schedule) is killed while it runs a schedule.
    By default the scheduler runs its task again on w2, and the search covers what it covers
    here. With no failure allowed (the scheduler's allowed-failures 0) the task is lost: the
    search stops at it in seed order, naming the seed and the dead worker, exit 1."""
    if allowed_failures is not None:
        monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES",
                           str(allowed_failures))
    w1, w2 = two_workers(dask_procs)
    args = [atomic(tmp_path), "--ops", "20", "--strategy", "random", "--schedules", "300"]
    search = subprocess.Popen([sys.executable, "-m", "smpsim", "explore", *args, "--cluster",
                               dask_procs.address, "-q"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline, running = time.monotonic() + 60, []
        while time.monotonic() < deadline and not running:
            running = cpu_processes(w1)      # (its schedule may end before the kill: its
            time.sleep(0.01)                 # task still runs the next seeds)
        assert running, "w1 ran no schedule"
        dead = {q.pid for q in dask_procs.group(w1)}
        dask_procs.kill(w1)
        stdout, stderr = search.communicate(timeout=100)
    finally:
        if search.poll() is None:
            search.kill()
            search.communicate()
    if allowed_failures is None:
        assert search.returncode == 0, stderr
        here = smpsim("explore", *args, "-q")
        assert here.returncode == 0, here.stderr
        covered = stdout.splitlines()[1]
        assert covered.startswith("lost_update base at 2 CPUs: 300 schedule(s) (random, seeds "
                                  "0..299), ")
        assert covered.split(" s (")[0].rsplit(",", 1)[0] == \
            here.stdout.split(" s (")[0].rsplit(",", 1)[0]
    else:
        # The search stopped while w2 ran a schedule: it ends its task at the next seed. The
        # dead w1's segment is left for the next machine on this host to remove, as here.
        deadline, quiet = time.monotonic() + 30, time.monotonic()
        while time.monotonic() < min(deadline, quiet + 2):      # 2 s without a schedule
            if cpu_processes(w2):
                quiet = time.monotonic()
            time.sleep(0.02)
        for name in os.listdir("/dev/shm"):
            if name.startswith("smpsim_") and int(name.split("_")[1]) in dead:
                os.unlink(os.path.join("/dev/shm", name))
        assert search.returncode == 1, stderr
        lines = stderr.splitlines()
        assert re.fullmatch(r"smpsim: base at 2 CPUs: the schedule of seed \d+ failed to run "
                            r"on tcp://127\.0\.0\.1:\d+: KilledWorker: every worker that ran "
                            r"it died \(1 times; the last was tcp://127\.0\.0\.1:\d+\)",
                            lines[0]), lines[0]
        assert lines[1] == "smpsim: the search stopped there; covered so far:"
        assert lines[2].startswith("  lost_update base at 2 CPUs: ") and len(lines) == 3
