"""The command line of schedule search: `smpsim explore` and `smpsim replay`.

    smpsim explore SCENARIO [--schedules N] [--seed S] [--strategy random|pct] [--depth d]
                            [--cpus 2,3] [--ops K] [--memory SIZE] [--time host|simulated]
                            [--cluster ADDRESS|local:N] [--out DIR] [--replace] [-q]
    smpsim replay FILE [--time host|simulated] [--trace] [-q]

explore runs the scenario's small configuration (each variant at each CPU count of --cpus,
--ops operations per CPU) under N controlled schedules (smpsim/experiment/explore.py); at the
first failure it shrinks the schedule, writes it with its trace (smpsim/experiment/finding.py)
and exits 1; with none it prints what it covered and exits 0. replay reruns a written failure
exactly: exit 1 when the failure reproduces, 0 when the run passes. Both: 2 on bad input (one
line on stderr), 130 on Ctrl-C (143 on SIGTERM). Result folders follow folder.py: --out must be
new or empty unless --replace, which removes its content once a failure is to be written; the
default is a new results/explore-NAME-TIME, made only then.

--time sets the scenario's machine.time for every schedule (explore.json records it, and replay
runs in it unless given its own --time). --quantum, which run and sweep take, is refused in one
line: a controlled run passes one CPU at a time, the one its schedule picks, so the skew a
quantum allows never arises. --cluster runs the schedules on a Dask cluster
(explore_cluster.py) and finds what the search here finds; shrinking stays here.
"""

import os
import sys

__all__ = ["add_parsers", "explore_main", "replay_main"]


def add_parsers(sub):
    """Add the `explore` and `replay` subcommands to the subparsers `sub`."""
    from smpsim.experiment.explore import DEFAULT_OPS, DEFAULT_SCHEDULES, STRATEGIES
    e = sub.add_parser("explore", help="search controlled schedules of a scenario for a "
                                       "failure; shrink and write the first one found")
    e.add_argument("scenario", metavar="SCENARIO", help="a scenario .toml file")
    e.add_argument("--schedules", type=int, default=DEFAULT_SCHEDULES, metavar="N",
                   help=f"schedules per configuration (default {DEFAULT_SCHEDULES})")
    e.add_argument("--seed", type=int, default=0, metavar="S",
                   help="the first schedule's seed; the others follow (default 0)")
    e.add_argument("--strategy", choices=STRATEGIES, default="pct",
                   help="random: a random CPU at every point; pct: PCT's priorities with "
                        "depth - 1 change points (default pct)")
    e.add_argument("--depth", type=int, default=3, metavar="D", help="PCT's depth (default 3)")
    e.add_argument("--cpus", metavar="LIST",
                   help="CPU counts to try, e.g. 2,3 (default: the scenario's)")
    e.add_argument("--ops", type=int, default=DEFAULT_OPS, metavar="K",
                   help=f"operations per CPU (default {DEFAULT_OPS})")
    e.add_argument("--memory", metavar="SIZE", help="the machine's memory, e.g. 8M (default: "
                                                    "the scenario's)")
    _time_options(e, "every schedule")
    e.add_argument("--cluster", metavar="ADDRESS",
                   help="run the schedules on the Dask scheduler at ADDRESS (tcp://host:8786), "
                        "or on a LocalCluster of N workers here (local:N); needs "
                        "smpsim[cluster]")
    e.add_argument("--out", metavar="DIR", help="where a failure is written (default "
                                                "results/explore-NAME-TIME)")
    e.add_argument("--replace", action="store_true", help="replace --out's content")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    r = sub.add_parser("replay", help="rerun a failing schedule that explore wrote")
    r.add_argument("file", metavar="FILE", help="the folder explore wrote, or its schedule.pkl")
    _time_options(r, "the schedule", "; default: the time explore ran it in")
    r.add_argument("--trace", action="store_true", help="print the run's trace")
    r.add_argument("-q", "--quiet", action="store_true", help="print only the outcome")


def _time_options(parser, what, default=""):
    """--time as run and sweep take it (cli.time_options); --quantum, which they take too, to be
    refused (_no_quantum)."""
    parser.add_argument("--time", metavar="host|simulated",
                        help=f"run {what} in host time or in simulated time (sets "
                             f"machine.time{default})")
    parser.add_argument("--quantum", metavar="Q",
                        help="refused: a controlled run passes one CPU at a time, so a quantum "
                             "has no effect")


def _fail(msg):
    print(f"smpsim: {msg}", file=sys.stderr)
    return 2


def _cpus(text):
    try:
        cpus = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        cpus = []
    if not cpus or any(not 1 <= n <= 256 for n in cpus):
        raise ValueError(f"--cpus: expected CPU counts 1..256 like 2,3, got {text!r}")
    return cpus


def _no_quantum(args):
    """ValueError when --quantum was given: it has no effect on a controlled run."""
    if getattr(args, "quantum", None) is not None:
        raise ValueError(f"--quantum: a controlled run passes one CPU at a time, the one its "
                         f"schedule picks, so a quantum has no effect on {args.command}; "
                         f"leave it out")


def _options(args):
    """The checked options of explore: (cpus, memory); ValueError naming the bad one."""
    _no_quantum(args)
    from smpsim.engine.machine import parse_memory
    from smpsim.engine.sched import PCT_DEPTH_MAX
    from smpsim.experiment import folder
    if not 1 <= args.schedules <= 10**7:
        raise ValueError(f"--schedules: expected 1..10000000, got {args.schedules}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")
    if not 1 <= args.depth <= PCT_DEPTH_MAX:
        raise ValueError(f"--depth: expected 1..{PCT_DEPTH_MAX}, got {args.depth}")
    if not 1 <= args.ops <= 10**9:
        raise ValueError(f"--ops: expected 1..1000000000, got {args.ops}")
    cpus = _cpus(args.cpus) if args.cpus is not None else None
    memory = None
    if args.memory is not None:
        try:
            memory = parse_memory(args.memory)
        except ValueError:
            raise ValueError(f"--memory: expected a size like 8M (at least 1M, a multiple of "
                             f"4096), got {args.memory!r}") from None
    if args.out is not None:
        folder.check(args.out, args.replace)      # the rule of every result folder
    return cpus, memory


def _bars(quiet):
    """make(total, label, unit): a new progress bar; None when quiet."""
    if quiet:
        return None
    from tqdm import tqdm
    return lambda total, label, unit: tqdm(total=total, desc=label, unit=unit, leave=False,
                                           dynamic_ncols=True, disable=None)


def _covered(c, strategy, seed):
    rate = c.schedules / c.elapsed if c.elapsed else 0.0
    text = (f"{c.point.scenario.name} {c.point.label} at {c.point.cpus} CPUs: {c.schedules} "
            f"schedule(s) ({strategy}, seeds {seed}..{seed + c.schedules - 1}), {c.steps:,} "
            f"scheduling points, {c.preemptions:,} preemptions, {c.elapsed:.1f} s "
            f"({rate:.1f} schedules/s)")
    if c.unfinished:
        text += (f"; {c.unfinished} run(s) did not end within {c.max_steps:,} decisions "
                 f"(a CPU spinning, not counted as failures)")
    return text


def _search(args, points, conn):
    """explore.search of `points`, here or on the cluster of `conn`, with the progress bars;
    (exit status, None) when it did not end (Ctrl-C: 130, SIGTERM: 143, what was covered
    printed; a variant the machine cannot hold: 2; a schedule that failed to run on the
    cluster: 1), else (None, the Coverage list)."""
    import time
    from smpsim.experiment import explore
    bars = _bars(args.quiet)
    state = {"bar": None, "point": None, "coverage": []}

    def progress(cov, outcome):
        if cov not in state["coverage"]:
            state["coverage"].append(cov)
        if bars is None:
            return
        if state["point"] is not cov.point:
            if state["bar"] is not None:
                state["bar"].close()
            state["point"] = cov.point
            state["bar"] = bars(args.schedules, f"{cov.point.label} c{cov.point.cpus}",
                                "schedule")
        state["bar"].update(1)

    def close_bar():
        if state["bar"] is not None:
            state["bar"].close()
            state["bar"] = None

    def covered(title):
        print(f"smpsim: {title}; covered so far:", file=sys.stderr)
        for c in state["coverage"]:
            print("  " + _covered(c, args.strategy, args.seed), file=sys.stderr)

    from smpsim.experiment.explore_cluster import ClusterRuns, TaskFailed
    runs, more = None, {}
    if conn is not None:
        runs = ClusterRuns(conn.client, workers=len(conn.workers))
        more = {"map_runs": runs, "batch": runs.batch}
    t0 = time.perf_counter()
    try:
        try:
            coverage = explore.search(points, schedules=args.schedules, seed=args.seed,
                                      strategy=args.strategy, depth=args.depth,
                                      progress=progress, **more)
        finally:
            close_bar()
    except KeyboardInterrupt as e:
        from smpsim.experiment.cli import stopped
        how, status = stopped(e)
        late = runs.interrupt() if runs is not None else []
        print(file=sys.stderr)
        _late(state["coverage"], runs, late)
        covered(how)
        return status, None
    except TaskFailed as e:
        cov = next((c for c in state["coverage"] if c.point is runs.point), None)
        where = f"{cov.point.label} at {cov.point.cpus} CPUs: " if cov else ""
        print(f"smpsim: {where}{e}", file=sys.stderr)
        if e.traceback:
            print(e.traceback.rstrip(), file=sys.stderr)
        covered("the search stopped there")
        return 1, None
    except ValueError as e:              # a variant the machine cannot hold
        return _fail(str(e)), None
    finally:
        if runs is not None:
            runs.close()
    if conn is not None:
        n = sum(c.schedules for c in coverage)
        print(f"on {args.cluster}: {n} schedule(s) in {time.perf_counter() - t0:.1f} s of wall "
              f"time" + ("" if coverage[-1].found else " (the seconds below are the "
                                                       "schedules' own, summed)"))
    return None, coverage


def _late(coverage, runs, late):
    """Counts the schedules that came back from the cluster after Ctrl-C (in seed order, no
    gap) in the coverage of their point; says so when the last of them failed."""
    cov = next((c for c in coverage if runs is not None and c.point is runs.point), None)
    if cov is None or not late:
        return
    from smpsim.experiment import explore
    for o in late:
        cov.add(o)
    o = late[-1]
    if o.failed:
        print(f"smpsim: schedule {cov.schedules} ({o.strategy} seed {o.seed}) failed with "
              f"{o.kind} as the search was interrupted (not shrunk, not written): "
              f"{explore.headline(o)}", file=sys.stderr)


def explore_main(args):
    """`smpsim explore`: the exit status."""
    from smpsim.experiment import explore, finding, folder, scenario
    from smpsim.experiment.cli import time_sets
    if not os.path.isfile(args.scenario):
        return _fail(f"{args.scenario}: no such scenario file")
    if not args.scenario.endswith(".toml"):
        return _fail(f"{args.scenario}: explore needs a scenario .toml file")
    try:
        cpus, memory = _options(args)
        scn = scenario.load(args.scenario, sets=time_sets(args))
        points = explore.configure(scn, cpus, args.ops, memory)
    except ValueError as e:              # the options, ScenarioError
        return _fail(str(e))
    conn = None
    if args.cluster:
        from smpsim.experiment import cluster
        try:
            conn = cluster.connect(args.cluster, echo=None if args.quiet else print)
        except cluster.ClusterError as e:
            return _fail(f"--cluster: {e}")
    try:
        rc, coverage = _search(args, points, conn)
    finally:
        if conn is not None:             # shrinking runs here: the cluster's work is done
            conn.close()
    if rc is not None:
        return rc
    last = coverage[-1] if coverage else None
    if last is None or last.found is None:
        for c in coverage:
            print(_covered(c, args.strategy, args.seed) + ": no failure")
        return 0
    found, point = last.found, last.point
    print(f"found: {found.kind} at schedule {last.schedules} ({found.strategy} seed "
          f"{found.seed}) of {point.label} at {point.cpus} CPUs, {found.preemptions} "
          f"preemption(s): {explore.headline(found)}")
    shrunk, interrupted = None, False
    bars = _bars(args.quiet)
    sbar = bars(explore.SHRINK_RUNS, "shrinking", "run") if bars else None
    box = {}

    def shrink_progress(s):
        box["s"] = s
        if sbar is not None:
            sbar.update(1)
            sbar.set_postfix(preemptions=s.schedule.preemptions)
    try:
        shrunk = explore.shrink(point, found, progress=shrink_progress)
    except KeyboardInterrupt as e:
        from smpsim.experiment.cli import stopped
        interrupted = stopped(e)
    finally:
        if sbar is not None:
            sbar.close()
    if args.out and args.replace:
        folder.replace(args.out)
    out = args.out or folder.result_dir(f"explore-{scn.name}")
    config = {"ops": args.ops, "seed": args.seed, "depth": args.depth}
    command = " ".join(["smpsim"] + sys.argv[1:])
    if interrupted:
        print(f"\nsmpsim: {interrupted[0]} while shrinking; writing the schedule as found",
              file=sys.stderr)
        try:
            finding.write(out, point, config, found, None, coverage, command)
        except folder.FolderError as e:
            return _fail(str(e))
        print(f"written to {out} (smpsim replay {out})", file=sys.stderr)
        return interrupted[1]
    print(f"shrunk: {found.preemptions} -> {shrunk.schedule.preemptions} preemption(s), "
          f"{len(found.schedule)} -> {len(shrunk.schedule)} decisions in {shrunk.runs} runs"
          + ("" if shrunk.verified else " (the shrunk schedule did not replay the same way: "
                                        "the schedule as found is written)"))
    try:
        finding.write(out, point, config, found, shrunk, coverage, command)
    except folder.FolderError as e:      # another run took the folder meanwhile
        return _fail(str(e))
    print(f"written to {out}; replay with: smpsim replay {out}")
    return 1


def replay_main(args):
    """`smpsim replay`: the exit status."""
    from smpsim.experiment import finding
    from smpsim.experiment.cli import time_sets
    try:
        _no_quantum(args)
    except ValueError as e:
        return _fail(str(e))
    try:
        o, cfg, text = finding.replay(args.file, trace=args.trace, sets=time_sets(args))
    except finding.FindingError as e:
        return _fail(str(e))
    if text and not args.quiet:
        print(text, end="")
    if not args.quiet:
        print(f"replayed {cfg['scenario'].get('name', '?')} {cfg['variant']} at {cfg['cpus']} "
              f"CPUs, {cfg['ops']} operations per CPU, in {cfg['time']} time: {o.decisions} "
              f"decisions, {o.preemptions} preemption(s), {o.steps} scheduling points")
    if not o.failed:
        print(f"the run passed (it failed with {cfg['failure']['kind']} when it was found)"
              if o.kind is None else f"the run did not end: {o.message}")
        return 0
    same = "reproduced" if o.kind == cfg["failure"]["kind"] else \
        f"failed differently (found as {cfg['failure']['kind']})"
    print(f"{same}: {o.kind}: {o.message}")
    return 1
