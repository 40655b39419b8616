"""Sweeps on a Dask cluster: each point (one whole Machine run, its CPU processes forked on the
worker's host) is a Dask task; the result folder, table and plots are those of a local sweep.

Dask (the `distributed` scheduler) is an optional extra, `pip install 'smpsim[cluster]'`, and is
imported only here and only when a cluster is used: `import smpsim` and the command line work
without it.

Workers must not be daemonic. A Dask worker started by a nanny (the default of `dask worker`
and of LocalCluster) runs in a daemonic process unless Dask's setting `distributed.worker.daemon`
is False, and a daemonic process may not have children, so Machine.run could not fork its CPUs.
Start workers as

    DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker tcp://SCHEDULER:8786 --nthreads 1

(or `dask worker --no-nanny ...`, a worker in the command's own process). One thread per worker:
a point's CPUs are processes of their own, and two points forking from threads of one process
would measure each other. `local:N` starts a LocalCluster of N such workers on this host.
connect() refuses a cluster with a daemonic worker, naming it and saying how to start one; a
point that lands on a daemonic worker that joined later fails with the same message.

The generic layer (for any command that maps its own tasks, e.g. a parallel `smpsim explore`):

    conn = connect(address)          # "tcp://host:8786", "host:8786" or "local:N"; a Connection
    with map_tasks(conn.client, fn, items, names=None, retries=1, desc="tasks") as tasks:
        try:
            for o in tasks:          # Outcomes, as tasks finish:
                o.index, o.item      #   which task (items in the order given)
                o.ok, o.value        #   fn(item)'s return value when it returned
                o.error, o.traceback #   else "Type: message" and the remote traceback text
                o.host, o.worker     #   where it ran (last), when known
        except KeyboardInterrupt:
            for o in tasks.interrupt():   # the running tasks, stopped
                ...
            raise
    conn.close()                     # or `with connect(address) as conn:`

`fn` is a module-level function importable on the workers (smpsim installed there), `items` and
return values picklable. Tasks start in the order of `items` (each has a Dask priority below the
one before) and outcomes arrive as tasks finish; a progress bar counts them. Inside a task,
should_stop() turns true once the client asked the tasks to stop, for a long task to end early
(raising KeyboardInterrupt then counts as stopping with nothing to report).

Failures. A task that raises is retried `retries` times (Client.submit's retries, on any worker),
then its outcome carries the exception and the remote traceback; the other tasks go on. A task
whose worker dies (a killed process, a lost host) is rescheduled by the scheduler on another
worker; after `distributed.scheduler.allowed-failures` deaths (Dask's default 3, a setting of the
scheduler's host) its outcome says that its workers died.

Ctrl-C (a KeyboardInterrupt while the caller waits for an outcome or handles one): the caller
calls interrupt(), which asks every task out to stop (should_stop(): one not yet started returns
at once without running; a running sweep point ends its run as a local Ctrl-C does, keeping its
counters as a run with error "interrupted") and returns the outcomes of the tasks that ran,
those that had finished unseen included, waiting up to STOP_WAIT seconds (a second Ctrl-C stops
the wait); close() cancels whatever is still out. Outcomes already taken are the caller's.
The workers of `local:N` ignore the terminal's Ctrl-C and hangup (dask_setup), and while such a
cluster is open a hangup of this process is a KeyboardInterrupt too, so that closing the
terminal still closes the cluster.

Sweeps: run_points(client, scenario, points, out) writes OUT as runner.run_points does (runs/ID/
folders, summary and sweep table after every point, in point order whatever order points finish
in; partial when interrupted) and returns (results, sweep rows, failures); a point that raised or
lost its workers is a Failure, logged with its parameters and written to runs/ID/failure.json.
sweep_on_cluster() is the entry point for Python scenario scripts. Every result's "host" entry
names the host (`name`) and the Dask worker (`worker`) it ran on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import re
import signal
import socket
import threading
import time
import traceback
import uuid
from types import ModuleType
from typing import Any, Callable, Iterable, Sequence

from smpsim.engine.errors import SmpsimError
from smpsim.experiment.scenario import Point, Scenario

__all__ = ["ClusterError", "DaskMissing", "Connection", "Outcome", "Failure", "TaskMap",
           "connect", "map_tasks", "should_stop", "run_points", "sweep_on_cluster",
           "require_dask", "INSTALL", "STOP_WAIT"]

log = logging.getLogger("smpsim.experiment.cluster")

INSTALL: str = "pip install 'smpsim[cluster]'"
STOP_WAIT: float = 15.0  # seconds running tasks get to come back after Ctrl-C
CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler
STOP_POLL = 1.0         # seconds between a task's looks at the stop event
WORKER_SETUP = ("start workers with DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker "
                "SCHEDULER --nthreads 1 (or dask worker --no-nanny)")


class ClusterError(SmpsimError):
    """A cluster that cannot be used: a bad address, a scheduler out of reach, workers that
    cannot run smpsim."""


class DaskMissing(ClusterError, ImportError):
    """Dask is not installed (the optional extra smpsim[cluster])."""


def require_dask() -> ModuleType:
    """Imports distributed; DaskMissing saying how to install it when it is not there."""
    try:
        import distributed
    except ImportError:
        raise DaskMissing(f"Dask is not installed; install it with: {INSTALL}") from None
    return distributed


def parse_address(address: str) -> tuple[str, Any]:
    """("local", N) for "local:N" (N 1..256), else ("remote", "scheme://host:port"); a bare
    "host:port" means tcp. ClusterError naming the address otherwise."""
    text = str(address).strip()
    m = re.fullmatch(r"local:(\d+)", text)
    if m:
        n = int(m.group(1))
        if not 1 <= n <= 256:
            raise ClusterError(f"'{text}': expected local:N with N 1..256 workers")
        return "local", n
    if "://" not in text:
        text = "tcp://" + text
    if not re.fullmatch(r"(tcp|tls|ws|wss)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}", text):
        raise ClusterError(f"'{address}': expected a scheduler address like "
                           f"tcp://host:8786, or local:N")
    return "remote", text


# --- connecting -------------------------------------------------------------------------------

class Connection:
    """A Dask client, and the LocalCluster behind it for "local:N". close() is safe twice."""

    client: Any = None          # a distributed.Client (Dask is optional: not named here)
    cluster: Any = None         # its distributed.LocalCluster for "local:N"
    local: bool = False
    workers: dict[str, dict[str, Any]] | None = None
    address: str
    _config = None
    _sighup = None

    def __init__(self, address: str, *, echo: Callable[[str], object] | None = print,
                 timeout: float = CONNECT_TIMEOUT) -> None:
        distributed = require_dask()
        kind, where = parse_address(address)
        self.address, self.local = address, kind == "local"
        try:
            if self.local:
                import dask
                # Read by each nanny when it starts a worker process, restarts included: workers
                # that may fork, and that leave Ctrl-C to this process (dask_setup below); no
                # statistical profiler, whose thread holds the task's frames for a moment every
                # 10 ms: a Machine closed then finds a view of its segment still alive in them,
                # and the segment's SharedMemory prints a BufferError when it is collected.
                self._config = dask.config.set({"distributed.worker.daemon": False,
                                                "distributed.worker.preload": [__name__],
                                                "distributed.worker.profile.enabled": False})
                self._config.__enter__()
                if threading.current_thread() is threading.main_thread():
                    # A closed terminal ends the sweep as Ctrl-C does, so that the cluster is
                    # closed and the nannies' named semaphores are removed; multiprocessing's
                    # resource tracker, in the terminal's process group too, is started here
                    # ignoring the hangup, so that it is still there to hear of their removal.
                    from multiprocessing import resource_tracker
                    self._sighup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
                    resource_tracker.ensure_running()
                    signal.signal(signal.SIGHUP, _hangup)
                self.cluster = distributed.LocalCluster(
                    n_workers=where, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
                self.client = distributed.Client(self.cluster)
            else:
                try:
                    self.client = distributed.Client(where, timeout=timeout)
                except (OSError, TimeoutError, asyncio.TimeoutError) as e:
                    raise ClusterError(f"cannot reach the Dask scheduler at {where} "
                                       f"({type(e).__name__}: {e})") from None
            self.workers = _check_workers(self.client)
            if echo:
                link = _dashboard(self.client)
                echo(f"Dask scheduler {self.client.scheduler.address}, "
                     f"{len(self.workers)} worker(s); dashboard: {link}")
                if not self.workers:
                    echo("no worker yet: points wait until workers join")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Closes the client and, for "local:N", the cluster; removes segments of CPU machines
        whose worker died on this host."""
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        config, self._config = self._config, None
        if config is not None:
            config.__exit__(None, None, None)
        sighup, self._sighup = self._sighup, None
        if sighup is not None:
            signal.signal(signal.SIGHUP, sighup)
        if self.local:
            from smpsim.engine.machine import sweep_stale_segments
            sweep_stale_segments()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hangup(signum, frame):
    raise KeyboardInterrupt("hangup")


def connect(address: str, *, echo: Callable[[str], object] | None = print,
            timeout: float = CONNECT_TIMEOUT) -> Connection:
    """A Connection to the scheduler at `address` ("tcp://host:port", "host:port") or to a new
    LocalCluster of N single-threaded, non-daemonic process workers ("local:N"). `echo` (None:
    silent) gets one line naming the scheduler and its dashboard. ClusterError (DaskMissing
    without Dask) for a bad address, a scheduler out of reach within `timeout` seconds, or a
    worker that cannot run smpsim."""
    return Connection(address, echo=echo, timeout=timeout)


def _dashboard(client):
    try:
        return client.dashboard_link or "none"
    except (KeyError, AttributeError):
        return "none (the scheduler serves no dashboard: bokeh is not installed there)"


def _worker_facts():
    """Run on each worker by connect(): where it is and whether it may fork (importing what a
    point needs, which also spares the first point the imports)."""
    import smpsim.experiment.runner  # noqa: F401
    return {"host": socket.gethostname(), "daemon": multiprocessing.current_process().daemon}


def _check_workers(client):
    """{address: facts} of the workers there now; ClusterError for one that cannot run points."""
    try:
        facts = client.run(_worker_facts)
    except Exception as e:                  # noqa: BLE001 - whatever the worker sent back
        raise ClusterError(f"the Dask workers cannot run smpsim ({type(e).__name__}: {e}); "
                           f"install it on every worker host: {INSTALL}") from None
    bad = sorted(f"{a} on {f['host']}" for a, f in facts.items() if f["daemon"])
    if bad:
        raise ClusterError(f"Dask worker {', '.join(bad)} runs tasks in a daemonic process, "
                           f"which cannot fork the simulated CPUs; {WORKER_SETUP}")
    info = client.scheduler_info(**({"n_workers": -1} if _takes_n_workers(client) else {}))
    many = sorted(a for a, w in info.get("workers", {}).items() if w.get("nthreads", 1) > 1)
    if many:
        log.warning("Dask worker(s) %s have more than one thread: their points run side by "
                    "side and measure each other; start workers with --nthreads 1",
                    ", ".join(many))
    return facts


def _takes_n_workers(client):
    import inspect
    return "n_workers" in inspect.signature(client.scheduler_info).parameters


# --- the worker side --------------------------------------------------------------------------

def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run by each LocalCluster worker of connect("local:N") as it starts:
    the worker ignores Ctrl-C and the terminal's hangup, which reach every process of the
    terminal's process group; the client stops the points (map_tasks) and closes the cluster."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


_task_state = threading.local()


class RemoteError(Exception):
    """A task that raised: its exception as text, the remote traceback, where it ran."""

    def __init__(self, error, tb, host, worker):
        super().__init__(error, tb, host, worker)
        self.error, self.tb, self.host, self.worker = error, tb, host, worker

    def __str__(self):
        return self.error


def should_stop() -> bool:
    """Inside a task of map_tasks: True once the client asked the tasks to stop (Ctrl-C). Looks
    at the scheduler at most once every STOP_POLL seconds; False outside a task."""
    st = getattr(_task_state, "stop", None)
    if st is None:
        return False
    if not st["set"] and time.monotonic() >= st["next"]:
        st["next"] = time.monotonic() + STOP_POLL
        try:
            st["set"] = st["event"].is_set()
        except Exception:                   # noqa: BLE001 - the scheduler went away: stop
            st["set"] = True
    return st["set"]


def _where():
    from distributed import get_worker
    try:
        return socket.gethostname(), get_worker().address
    except ValueError:
        return socket.gethostname(), None


def _task(fn, item, stop_name, forks):
    """The Dask task around fn(item): ("done", value, host, worker); ("skipped",) when the
    client asked to stop before it started, or fn answered the request with KeyboardInterrupt;
    RemoteError when fn raised."""
    from distributed import Event
    host, worker = _where()
    try:
        if forks and multiprocessing.current_process().daemon:
            raise ClusterError(f"Dask worker {worker} on {host} runs tasks in a daemonic "
                               f"process, which cannot fork the simulated CPUs; {WORKER_SETUP}")
        _task_state.stop = {"event": Event(stop_name), "set": False, "next": 0.0}
        if should_stop():
            return ("skipped",)
        return ("done", fn(item), host, worker)
    except KeyboardInterrupt:
        if should_stop():                   # the task gave up as asked, with nothing to keep
            return ("skipped",)             # (a sweep point stopped before its run began)
        raise
    except Exception as e:                  # noqa: BLE001 - goes back to the client
        raise RemoteError(f"{type(e).__name__}: {e}", traceback.format_exc(), host,
                          worker) from None
    finally:
        _task_state.stop = None


# --- mapping tasks ----------------------------------------------------------------------------

class Outcome:
    """What became of one task of map_tasks (see the module docstring)."""

    index: int
    item: Any
    value: Any
    error: str | None
    traceback: str | None
    host: str | None
    worker: str | None

    def __init__(self, index: int, item: Any, *, value: Any = None, error: str | None = None,
                 tb: str | None = None, host: str | None = None,
                 worker: str | None = None) -> None:
        self.index, self.item, self.value = index, item, value
        self.error, self.traceback, self.host, self.worker = error, tb, host, worker

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        what = "ok" if self.ok else f"error={self.error!r}"
        return f"Outcome({self.index}, {what}, host={self.host!r})"


def _outcome(future, index, item):
    """The Outcome of a finished, erred or cancelled future; None for a task that skipped."""
    from distributed import KilledWorker
    if future.status == "finished":
        r = future.result()
        if r[0] == "skipped":
            return None
        return Outcome(index, item, value=r[1], host=r[2], worker=r[3])
    if future.status != "error":            # cancelled elsewhere, or lost with the scheduler
        return Outcome(index, item, error=f"its task was {future.status} on the scheduler")
    e = future.exception()
    if isinstance(e, RemoteError):
        return Outcome(index, item, error=e.error, tb=e.tb, host=e.host, worker=e.worker)
    if isinstance(e, KilledWorker):
        worker = getattr(e.last_worker, "address", None)
        host = worker.split("://")[-1].rsplit(":", 1)[0] if worker else None
        return Outcome(index, item, host=host, worker=worker,
                       error=f"KilledWorker: every worker that ran it died "
                             f"({e.allowed_failures + 1} times; the last was {worker})")
    tb = future.traceback()
    return Outcome(index, item, error=f"{type(e).__name__}: {e}",
                   tb="".join(traceback.format_tb(tb)) if tb is not None else None)


class TaskMap:
    """The tasks of one map_tasks call: an iterator of Outcomes as tasks finish; interrupt()
    stops the rest; close() (or leaving a `with` block) cancels what is left."""

    client: Any
    items: list[Any]
    stop_wait: float
    stop: Any                   # the distributed.Event that asks the tasks to stop
    index: dict[Any, int]
    pending: set[Any]
    bar: Any

    def __init__(self, client: Any, fn: Callable[[Any], Any], items: list[Any],
                 names: Sequence[str] | None, retries: int, desc: str, unit: str,
                 progress: bool, forks: bool, stop_wait: float) -> None:
        from distributed import Event, as_completed
        from tqdm import tqdm
        self.client, self.items, self.stop_wait = client, items, stop_wait
        token = uuid.uuid4().hex[:8]
        self.stop = Event(f"smpsim-stop-{token}", client=client)
        self.index, self.pending = {}, set()
        self.bar = tqdm(total=len(items), desc=desc, unit=unit, dynamic_ncols=True,
                        disable=None if progress else True)
        try:
            for i, item in enumerate(items):
                name = re.sub(r"[^A-Za-z0-9_.-]", "-", names[i] if names else desc)
                # Earlier items first: without priorities Dask's order among tasks submitted
                # together is its own.
                f = client.submit(_task, fn, item, self.stop.name, forks,
                                  key=f"{name}-{token}-{i}", retries=retries, pure=False,
                                  priority=len(items) - i)
                self.index[f] = i
                self.pending.add(f)
        except BaseException:
            self.close()
            raise
        self._done = as_completed(list(self.index))

    def __iter__(self) -> TaskMap:
        return self

    def __next__(self) -> Outcome:
        while True:
            try:
                f = next(self._done)
            except StopIteration:           # every task is back
                self.bar.close()
                raise
            self.pending.discard(f)
            self.bar.update(1)
            o = self._outcome(f)
            if o is not None:
                return o

    def _outcome(self, f):
        i = self.index[f]
        return _outcome(f, i, self.items[i])

    def interrupt(self) -> list[Outcome]:
        """After Ctrl-C: asks every task out to stop (should_stop(): a running one ends early,
        one not yet started returns at once without running) and returns the outcomes of the
        tasks that ran, finished or stopped, within stop_wait seconds (a second Ctrl-C ends
        the wait); close() cancels the rest. Nothing is cancelled before the wait: a task
        whose result is on its way would be lost."""
        from distributed import wait
        self.stop.set()
        waiting = list(self.pending)
        try:
            wait(waiting, timeout=self.stop_wait)
        except (KeyboardInterrupt, Exception):  # noqa: BLE001 - a timeout (its class differs
            pass                                 # across Python versions), a second Ctrl-C
        outcomes = []
        for f in sorted((f for f in waiting if f.done()), key=self.index.get):
            self.pending.discard(f)
            o = self._outcome(f)
            if o is not None:
                outcomes.append(o)
        return outcomes

    def close(self) -> None:
        """Cancels the tasks not yet back (asking running ones to stop); safe twice."""
        self.bar.close()
        if self.pending:
            try:
                self.stop.set()
                self.client.cancel(list(self.pending))
            except Exception as e:          # noqa: BLE001 - the scheduler may be gone
                log.warning("could not cancel the remaining tasks: %s", e)
            self.pending = set()

    def __enter__(self) -> TaskMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def map_tasks(client: Any, fn: Callable[[Any], Any], items: Iterable[Any], *,
              names: Sequence[str] | None = None, retries: int = 1, desc: str = "tasks",
              unit: str = "task", progress: bool = True, forks: bool = True,
              stop_wait: float = STOP_WAIT) -> TaskMap:
    """Submits fn(item) for every item to the cluster of `client`; returns the TaskMap that
    yields an Outcome for each as it finishes (see the module docstring). `names` (one per
    item) name the tasks on the dashboard; `forks` (the default) refuses to run on a daemonic
    worker, where a Machine could not start its CPUs. ValueError for bad names or retries."""
    items = list(items)
    if names is not None and len(names) != len(items):
        raise ValueError(f"map_tasks: 'names' must name each of the {len(items)} items, "
                         f"got {len(names)}")
    if type(retries) is not int or retries < 0:
        raise ValueError(f"map_tasks: 'retries' must be an int >= 0, got {retries!r}")
    return TaskMap(client, fn, items, names, retries, desc, unit, progress, forks, stop_wait)


# --- sweeps -----------------------------------------------------------------------------------

class _StopView:
    """The view hook of runner.Sampler (called every sample): raises KeyboardInterrupt once
    should_stop() turns true, which ends the run as Ctrl-C ends a local one (the samples are
    taken while the CPUs run; the frame drawn after the run never raises)."""

    def __init__(self):
        self.fired = False

    def draw(self, *args, force=False, **frame):
        """As LiveView.draw (the frame's keywords, e.g. sim_seconds, are not drawn)."""
        if force or self.fired:             # the last frame, drawn after the run: too late
            return
        if should_stop():
            self.fired = True
            raise KeyboardInterrupt


def run_one(point_and_pin: tuple[Point, bool]) -> dict[str, Any]:
    """The task of a sweep point on a worker: runner.run_point, the result with the worker's
    address; a run stopped by the client comes back as the local Ctrl-C keeps it."""
    from smpsim.experiment import runner
    point, pin = point_and_pin
    try:
        r = runner.run_point(point, pin=pin, interval=point.scenario.run["interval"],
                             timeout=point.scenario.run["timeout"], view=_StopView())
    except runner.Interrupted as e:
        r = e.result
    r["host"]["worker"] = _where()[1]
    return r


class Failure:
    """A point that produced no result: it raised, or every worker running it died."""

    point: Point
    error: str
    traceback: str | None
    host: str | None
    worker: str | None

    def __init__(self, point: Point, error: str, tb: str | None, host: str | None,
                 worker: str | None) -> None:
        self.point, self.error, self.traceback = point, error, tb
        self.host, self.worker = host, worker

    def as_dict(self) -> dict[str, Any]:
        return {"point": self.point.as_dict(), "error": self.error, "traceback": self.traceback,
                "host": self.host, "worker": self.worker}


def run_points(client: Any, scenario: Scenario, points: Sequence[Point], out: str, *,
               pin: bool = False, retries: int = 1, progress: bool = True, command: str = "",
               on_result: Callable[[dict[str, Any]], object] | None = None,
               claimed: bool = False
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Failure]]:
    """Runs `points` on the cluster of `client`, writing OUT as runner.run_points does (see the
    module docstring). Returns (results, sweep rows, failures), both lists in point order.
    Unless `claimed` (the caller has claimed `out` with folder.claim), `out` is claimed here: a
    folder with content raises folder.FolderError, changing nothing. The points' setup is not
    checked here: they are set up on the workers' hosts, and one that cannot be is a failure.
    On KeyboardInterrupt the summary is written marked partial and the interrupt re-raised."""
    from smpsim.experiment import folder, runner
    if not claimed:
        folder.check(out)
        folder.claim(out, runner.scenario_text(scenario))
    done, failures = {}, []

    def ordered():
        return [done[i] for i in sorted(done)]

    def take(o):
        point = points[o.index]
        if not o.ok:
            failures.append((o.index, _failed(out, Failure(point, o.error, o.traceback,
                                                           o.host, o.worker))))
            return
        r = done[o.index] = o.value
        runner.write_run(out, r)
        runner.write_summary(out, scenario, ordered(), partial=True, command=command)
        log.info("run %s on %s: %.0f %s, hit rate %.3f, check %s", point.id, o.host,
                 r["throughput"], r.get("throughput_unit", "ops/s"), r["magazines"]["hit_rate"],
                 r["check"] if r["check"] == "ok" else "FAILED")
        if on_result:
            on_result(r)

    tasks = map_tasks(client, run_one, [(p, pin) for p in points], names=[p.id for p in points],
                      retries=retries, desc=scenario.name, unit="point", progress=progress)
    try:
        try:
            for o in tasks:
                take(o)
        except KeyboardInterrupt:           # while waiting, or while writing a point
            for o in tasks.interrupt():
                take(o)
            raise
    except KeyboardInterrupt:
        runner.write_summary(out, scenario, ordered(), partial=True, command=command)
        raise
    finally:
        tasks.close()
    interrupted = any(r["error"] == "interrupted" for r in done.values())
    sweep = runner.write_summary(out, scenario, ordered(), partial=interrupted, command=command)
    return ordered(), sweep, [f for _, f in sorted(failures, key=lambda x: x[0])]


def _failed(out, failure):
    """Logs a failed point with its parameters and writes runs/ID/failure.json."""
    p = failure.point
    log.error("run %s failed on %s: %s\n  parameters: %s\n%s", p.id,
              failure.worker or failure.host or "an unknown worker", failure.error,
              json.dumps({k: v for k, v in p.as_dict().items() if k != "id"}),
              (failure.traceback or "").rstrip())
    d = os.path.join(out, "runs", p.id)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "failure.json"), "w") as f:
        json.dump(failure.as_dict(), f, indent=1)
    return failure


class SweepResult:
    """What sweep_on_cluster did: the result folder, the results (point order), the sweep
    table's rows and the failures."""

    out: str
    results: list[dict[str, Any]]
    sweep: list[dict[str, Any]]
    failures: list[Failure]

    def __init__(self, out: str, results: list[dict[str, Any]], sweep: list[dict[str, Any]],
                 failures: list[Failure]) -> None:
        self.out, self.results, self.sweep, self.failures = out, results, sweep, failures

    @property
    def ok(self) -> bool:
        return not self.failures and all(r["error"] is None and r["check"] == "ok"
                                         for r in self.results)


def sweep_on_cluster(scenario: Scenario | str | os.PathLike[str], cluster: Any,
                     out: str | None = None, *, cpus: Sequence[int] | None = None,
                     repeat: int | None = None, pin: bool | None = None, retries: int = 1,
                     progress: bool = True, plots: bool = True) -> SweepResult:
    """Sweeps `scenario` (a Scenario or the path of a TOML scenario) on `cluster`: a
    distributed.Client, or an address for connect() (then connected and closed here). `cpus`
    and `repeat` default to the scenario's [sweep]; `out` to results/NAME-TIME. Writes the
    result folder of `smpsim sweep` (plots included unless `plots` is false) and returns a
    SweepResult. Raises ScenarioError for a bad scenario, folder.FolderError for an `out` with
    content and ClusterError for a cluster that cannot be used, before anything runs;
    KeyboardInterrupt as run_points does."""
    from smpsim.experiment import folder, plot, scenario as scenarios
    scn = scenario if isinstance(scenario, scenarios.Scenario) else scenarios.load(scenario)
    points = scn.points(cpus or scn.sweep["cpus"], repeat or scn.sweep["repeat"])
    if out is not None:
        folder.check(out)
    conn = None
    if isinstance(cluster, str):
        conn = connect(cluster, echo=print if progress else None)
        client = conn.client
    else:
        client = cluster
    try:
        out = out or folder.result_dir(scn.name)
        results, sweep, failures = run_points(
            client, scn, points, out, pin=scn.run["pin"] if pin is None else pin,
            retries=retries, progress=progress, command="sweep_on_cluster")
    finally:
        if conn is not None:
            conn.close()
    if plots:
        plot.sweep_plots(sweep, os.path.join(out, "plots"), scn.name)
    return SweepResult(out, results, sweep, failures)
