"""Schedule search on a Dask cluster (`smpsim explore --cluster`): the seeds of explore.search
run as tasks of cluster.map_tasks, several schedules at once, and come back in seed order, so
that the search finds what a search in this process finds.

    with ClusterRuns(client, workers=n) as runs:
        try:
            coverage = explore.search(points, ..., map_runs=runs, batch=runs.batch)
        except KeyboardInterrupt:
            late = runs.interrupt()     # in the handler: what came back meanwhile

After each point's first run (made in this process: it measures the run's bound and PCT's k),
search hands the seeds over `batch` at a time. A batch is cut into tasks of CHUNK consecutive
seeds, submitted together (earlier seeds first), and the Outcomes are yielded in seed order as
the tasks come back: search counts every schedule before the first failing one and stops there,
as it does here. A task runs its seeds one after another on its worker and stops at its first
failing schedule (the later ones could not be the first failure), at a schedule that raised, or
when the client asks the tasks to stop. When search returns (a failure found), the caller calls
close(), which cancels the tasks still out; a running one stops between two of its schedules.

What is identical to a search in this process: the seeds run, the first failing seed, its
Outcome and schedule, and the coverage counted up to it (schedules, scheduling points,
decisions, preemptions); only the times differ (Coverage.elapsed is the sum of the schedules'
own times, on whichever worker they ran). A schedule is a function of the point, the strategy
and its seed, wherever it runs.

Failures of the harness, not of a schedule: a schedule that raises on its worker (run_schedule
raising, not a failing run) or a task whose workers all died (Dask reschedules a task whose
worker dies on another worker; after the scheduler's allowed-failures it gives up) stops the
search at that seed, in seed order, with TaskFailed carrying the error, the remote traceback
and where it ran. A task that raises outside its schedules (the worker cannot unpickle it, a
daemonic worker) is retried once first, as cluster.map_tasks does.

Ctrl-C (a KeyboardInterrupt out of search): the caller calls interrupt(), which stops the tasks
(cluster.TaskMap.interrupt) and returns the Outcomes that came back after the last one search
took, in seed order and without a gap (what else ran is not a covered prefix of the seeds), and
cancels what is left.

Dask is imported only through cluster.py, when a ClusterRuns maps its first batch.
"""

import traceback

from smpsim.experiment import cluster

__all__ = ["ClusterRuns", "TaskFailed", "Raised", "run_seeds", "CHUNK"]

CHUNK = 8                # seeds per task
TASKS_PER_WORKER = 32    # tasks per worker in one batch (MIN_TASKS at least): the batch's
MIN_TASKS = 64           # last tasks leave workers idle while they finish


class Raised:
    """A schedule that raised on its worker instead of returning its Outcome."""

    def __init__(self, seed, error, tb):
        self.seed, self.error, self.traceback = seed, error, tb


class TaskFailed(Exception):
    """The search cannot go on: the schedule of `seed` raised on its worker (`error`, the
    remote `traceback`), or every worker that ran it died (`traceback` None). `host` and
    `worker` say where it ran last, when known."""

    def __init__(self, seed, error, tb, host, worker):
        super().__init__(seed, error, tb, host, worker)
        self.seed, self.error, self.traceback = seed, error, tb
        self.host, self.worker = host, worker

    def __str__(self):
        where = self.worker or self.host
        return f"the schedule of seed {self.seed} failed to run" + \
            (f" on {where}" if where else "") + f": {self.error}"


def run_seeds(item):
    """The task: item = (function, seeds); function(seed) for each seed in order (a
    functools.partial of explore.run_schedule), until a schedule fails or raises, or the
    client asks to stop (cluster.should_stop, looked at between schedules). Returns the
    Outcomes, and a Raised last for a schedule that raised."""
    function, seeds = item
    done = []
    for seed in seeds:
        if done and cluster.should_stop():
            break
        try:
            o = function(seed)
        except Exception as e:              # noqa: BLE001 - reported by the client, in order
            done.append(Raised(seed, f"{type(e).__name__}: {e}", traceback.format_exc()))
            break
        done.append(o)
        if o.failed:
            break
    return done


class ClusterRuns:
    """explore.search's `map_runs` on the cluster of a distributed.Client (module docstring).
    `workers` (how many the cluster has) sizes `batch`, the seeds to hand over at once; `chunk`
    is the seeds per task, `retries` as for cluster.map_tasks. One batch is out at a time;
    close() it when search returns or raises (safe twice; a `with` block does it)."""

    tasks = None
    point = None            # the point of the seeds being mapped

    def __init__(self, client, *, workers=1, chunk=CHUNK, retries=1):
        if type(chunk) is not int or chunk < 1:
            raise ValueError(f"ClusterRuns: 'chunk' must be an int >= 1, got {chunk!r}")
        self.client, self.chunk, self.retries = client, chunk, retries
        self.batch = chunk * max(MIN_TASKS, TASKS_PER_WORKER * max(1, workers))
        self._chunks, self._back, self._next, self._pending = [], {}, 0, []

    def __call__(self, function, seeds):
        """The Outcomes of function(seed) for `seeds`, in their order, as they come back (a
        generator: the tasks are submitted at its first step)."""
        return self._outcomes(function, list(seeds))

    def _outcomes(self, function, seeds):
        self._close_tasks()                 # (none: search maps a batch after the last)
        point = self.point = function.args[0] if getattr(function, "args", None) else None
        self._chunks = [seeds[i:i + self.chunk] for i in range(0, len(seeds), self.chunk)]
        self._back, self._next, self._pending = {}, 0, []
        names = [f"{getattr(point, 'label', 'schedules')}-c{getattr(point, 'cpus', 0)}-s{c[0]}"
                 for c in self._chunks]
        self.tasks = cluster.map_tasks(self.client, run_seeds,
                                       [(function, c) for c in self._chunks], names=names,
                                       retries=self.retries, desc="explore", unit="task",
                                       progress=False)
        try:
            while True:
                while self._pending:
                    yield self._pending.pop(0)
                if self._next == len(self._chunks):
                    break
                while self._next not in self._back:
                    o = next(self.tasks, None)
                    if o is None:           # its task gave up unasked (should not happen)
                        raise TaskFailed(self._chunks[self._next][0], "its task came back "
                                         "with nothing", None, None, None)
                    self._back[o.index] = o
                self._pending = self._take()
        except TaskFailed:
            self._close_tasks()
            raise
        # Ctrl-C, or search stopped taking outcomes (GeneratorExit: a failure found, or a
        # Ctrl-C in search's own code): the tasks are left out for interrupt() or close().
        self._close_tasks()

    def _take(self):
        """The Outcomes of the next task in seed order; TaskFailed for a task, or a schedule
        of it, that failed to run."""
        o = self._back.pop(self._next)
        self._next += 1
        if not o.ok:
            raise TaskFailed(o.item[1][0], o.error, o.traceback, o.host, o.worker)
        for r in o.value:
            if isinstance(r, Raised):
                raise TaskFailed(r.seed, r.error, r.traceback, o.host, o.worker)
        return list(o.value)

    def interrupt(self):
        """After Ctrl-C: stops the tasks out (cluster.TaskMap.interrupt) and returns the
        Outcomes that came back after the last one yielded, in seed order, up to the first
        seed that did not run or the first failing schedule; [] when no task is out."""
        if self.tasks is None:
            return []
        for o in self.tasks.interrupt():
            self._back[o.index] = o
        late, self._pending = self._pending, []
        while not (late and late[-1].failed) and self._next in self._back:
            o = self._back.pop(self._next)
            chunk = self._chunks[self._next]
            self._next += 1
            if not o.ok:
                break
            ran = [r for r in o.value if not isinstance(r, Raised)]
            late += ran
            if len(ran) < len(chunk) and not (ran and ran[-1].failed):
                break                        # stopped part way: its next seeds did not run
        self._close_tasks()
        return late

    def _close_tasks(self):
        tasks, self.tasks = self.tasks, None
        if tasks is not None:
            tasks.close()

    def close(self):
        """Cancels the tasks still out."""
        self._close_tasks()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
