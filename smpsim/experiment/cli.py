"""The `smpsim` command line: run a scenario, sweep it over CPU counts, print a result's caches,
compare two results, list the workloads, and the demo and benchmark of the engine.

    smpsim run SCENARIO [--cpus N] [--live] [OPTIONS]
    smpsim sweep SCENARIO [--cpus 1,2,4,8] [--repeat N] [--cluster ADDRESS] [OPTIONS]
        OPTIONS: --set KEY=VALUE (repeatable) --ops N --seconds S --seed N --pin
                 --time host|simulated --quantum Q --out DIR [--replace] -q -v
    smpsim slabinfo RESULT [--run ID|all] [--at peak|end] [--format both|slabinfo|seed]
    smpsim compare A B                     two result folders side by side
    smpsim workloads                       the bundled and installed workloads, their parameters
    smpsim explore SCENARIO [--schedules N] [--strategy random|pct] [--cpus 2,3] [--ops K] ...
    smpsim replay FILE [--trace]           (smpsim/experiment/explore_cli.py)
    smpsim demo ... / smpsim bench ...

SCENARIO is a TOML file (docs/scenarios.md) or a Python scenario script (script.py), which must
define `run(out_dir)` returning a dict (written to OUT/result.json). Result folders: the default
is a new results/NAME-TIME; --out DIR must be empty or new unless --replace, which removes its old
content only once every point of the new run could be set up (folder.py). Exit status: 0 on
success, 1 when a run failed or Machine.check() found violations (or a script raised), 2 on bad
input (one line naming the file, the key and what was expected; no traceback), 130 on Ctrl-C
and 143 on SIGTERM (what finished is written, marked partial). Log records of every CPU process
go to OUT/run.log tagged with the CPU (multiprocessing-logging), warnings also to stderr.
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading

__all__ = ["main"]

log = logging.getLogger("smpsim.experiment.cli")

_FORMAT = "%(asctime)s %(levelname)-7s cpu=%(cpu)s %(name)s: %(message)s"


class _CpuTag(logging.Filter):
    """Gives records made in the parent the CPU tag "-" (CPU processes set their own)."""

    def filter(self, record):
        if not hasattr(record, "cpu"):
            record.cpu = "-"
        return True


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line ("smpsim run: ..."), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Bad(Exception):
    """Bad input found by a command: its message is printed after "smpsim: ", exit 2."""


def _cpu_list(text):
    parts = text.split(",")
    try:
        cpus = [int(x) for x in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU counts like 1,2,4,8, got {text!r}")
    if any(not 1 <= n <= 256 for n in cpus) or len(set(cpus)) != len(cpus):
        raise argparse.ArgumentTypeError(f"expected distinct CPU counts 1..256 like 1,2,4,8, "
                                         f"got {text!r}")
    return cpus


def time_options(sp):
    """--time and --quantum on subcommand parser `sp`: overrides of machine.time and
    machine.quantum, applied as --set is (time_sets), so a bad value reads as it would in the
    file."""
    sp.add_argument("--time", metavar="host|simulated",
                    help="run in host time or in simulated time (sets machine.time)")
    sp.add_argument("--quantum", metavar="Q",
                    help="simulated time: the largest skew between CPU clocks, in cycles "
                         "(0: strict; sets machine.quantum)")


def time_sets(args):
    """The --set overrides --time and --quantum stand for, after the user's own --set."""
    sets = list(getattr(args, "set", None) or [])
    for key in ("time", "quantum"):
        value = getattr(args, key, None)
        if value is not None:
            sets.append(f"machine.{key}={value}")
    return sets


def _parser():
    p = _Parser(prog="smpsim", description="A multi-process SMP simulator of the HelenOS slab "
                "allocator: experiments and tools.")
    from smpsim import __version__
    p.add_argument("--version", action="version", version=f"smpsim {__version__}",
                   help="print smpsim's version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)

    def common(sp):
        sp.add_argument("scenario", metavar="SCENARIO", help="a scenario .toml or .py file")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the scenario, e.g. workload.batch=8 or "
                             "machine.magazine_size=8 (VALUE read as TOML; repeatable)")
        sp.add_argument("--ops", type=int, metavar="N",
                        help="operations per CPU in every workload (clears `seconds`)")
        sp.add_argument("--seconds", type=float, metavar="S",
                        help="seconds per CPU in every workload (clears `ops`)")
        sp.add_argument("--seed", type=int, metavar="N", help="the seed of every workload")
        time_options(sp)
        sp.add_argument("--pin", action="store_true", help="place CPU i on host core i %% cores")
        sp.add_argument("--out", metavar="DIR",
                        help="result folder, empty or new (default: a new results/NAME-TIME)")
        sp.add_argument("--replace", action="store_true",
                        help="replace --out's content (removed once the new run can start)")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar or tables")
        sp.add_argument("-v", "--verbose", action="store_true", help="log INFO to stderr too")

    r = sub.add_parser("run", help="run a scenario once, write a result folder")
    common(r)
    r.add_argument("--live", action="store_true", help="a slabtop-style view while it runs")
    r.add_argument("--cpus", type=int, metavar="N", help="override machine.cpus")
    s = sub.add_parser("sweep", help="run a scenario at several CPU counts, tables and plots")
    common(s)
    s.add_argument("--cpus", type=_cpu_list, metavar="LIST",
                   help="CPU counts, e.g. 1,2,4,8 (default: the scenario's [sweep] cpus)")
    s.add_argument("--repeat", type=int, metavar="N", help="runs per point (default: [sweep])")
    s.add_argument("--cluster", metavar="ADDRESS",
                   help="run the points on the Dask scheduler at ADDRESS (tcp://host:8786), or "
                        "on a LocalCluster of N workers here (local:N); needs smpsim[cluster]")
    i = sub.add_parser("slabinfo", help="a result's caches in /proc/slabinfo 2.1 and seed format")
    i.add_argument("result", metavar="RESULT", help="a result folder, run folder or result.json")
    i.add_argument("--run", metavar="ID", help="the run of a folder with several ('all': each)")
    i.add_argument("--at", choices=("peak", "end"), default="peak",
                   help="the caches at their fullest during the run (default) or at its end")
    i.add_argument("--format", choices=("both", "slabinfo", "seed"), default="both")
    c = sub.add_parser("compare", help="two result folders side by side, with ratios")
    c.add_argument("a", metavar="A", help="a result folder")
    c.add_argument("b", metavar="B", help="another result folder")
    sub.add_parser("workloads", help="list the workloads and their parameters")
    from smpsim.experiment.explore_cli import add_parsers
    add_parsers(sub)                    # explore, replay
    for name, what in (("demo", "a short demonstration (smpsim.experiment.demo)"),
                       ("bench", "the engine's benchmarks (smpsim.experiment.bench)")):
        d = sub.add_parser(name, help=what, add_help=False)
        d.add_argument("args", nargs=argparse.REMAINDER)
    return p


class _Logging:
    """Logging for one command: OUT/run.log and stderr, wrapped for CPU processes."""

    def __init__(self, out, verbose):
        import multiprocessing_logging
        self.mpl, self.root = multiprocessing_logging, logging.getLogger()
        self.saved = (self.root.level, list(self.root.handlers))
        for h in self.saved[1]:
            self.root.removeHandler(h)
        fmt = logging.Formatter(_FORMAT)
        err = logging.StreamHandler(sys.stderr)
        err.setLevel(logging.INFO if verbose else logging.WARNING)
        handlers = [err]
        if out:
            handlers.append(logging.FileHandler(os.path.join(out, "run.log")))
        for h in handlers:
            h.setFormatter(fmt)
            h.addFilter(_CpuTag())
            self.root.addHandler(h)
        self.root.setLevel(logging.INFO)
        try:
            multiprocessing_logging.install_mp_handler()
        except AssertionError as e:          # a start method other than fork
            log.warning("CPU processes' log records stay in their processes: %s", e)

    def close(self):
        for h in list(self.root.handlers):
            self.root.removeHandler(h)
            h.close()
        level, handlers = self.saved
        self.root.setLevel(level)
        for h in handlers:
            self.root.addHandler(h)


def _bars(quiet, points):
    """(factory of a run's progress bar, the bar over all points or None). The bar over the
    points sits above the run's, and only shows when there is more than one point."""
    if quiet:
        return None, None
    from tqdm import tqdm
    tqdm.monitor_interval = 0       # no monitor thread: the CPU processes are forked from here

    def make(total, label):
        return tqdm(total=total, desc=label, unit="op", unit_scale=True, leave=False,
                    dynamic_ncols=True, disable=None, position=1 if outer else 0)
    outer = None
    if points > 1:
        outer = tqdm(total=points, desc="points", unit="run", dynamic_ncols=True, disable=None,
                     position=0)
    return make, outer


def _claim(args, name, text, first=None):
    """The result folder of this command (new, or --out), claimed by writing its first file
    (folder.py); _Bad when it cannot be had."""
    from smpsim.experiment import folder
    first = first or folder.CLAIM
    try:
        if not args.out:
            return folder.claim(folder.result_dir(name), text, first)
        if args.replace:
            folder.replace(args.out)
        return folder.claim(args.out, text, first)
    except (folder.FolderError, OSError) as e:
        raise _Bad(str(e)) from None


def _check_out(args):
    from smpsim.experiment import folder
    if args.out:
        try:
            folder.check(args.out, args.replace)
        except folder.FolderError as e:
            raise _Bad(str(e)) from None


def _script_options(args):
    """The options given for a Python scenario script, by the name its run() takes them."""
    from smpsim.experiment import scenario
    if args.command == "sweep":
        raise _Bad(f"sweep: {args.scenario} is a Python scenario script, which does its own "
                   f"sweeping; run it with `smpsim run`")
    if args.cpus is not None and not 1 <= args.cpus <= 256:
        raise _Bad(f"--cpus: expected 1..256, got {args.cpus}")
    opts = {}
    for name in ("cpus", "ops", "seconds", "seed"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    for name in ("live", "pin"):
        if getattr(args, name, False):
            opts[name] = True
    if args.time is not None:
        if args.time not in ("host", "simulated"):
            raise _Bad(f"--time: expected 'host' or 'simulated', got {args.time!r}")
        opts["time"] = args.time
    if args.quantum is not None:
        if not args.quantum.isdigit():
            raise _Bad(f"--quantum: expected an integer >= 0 (cycles), got {args.quantum!r}")
        opts["quantum"] = int(args.quantum)
    if args.set:
        try:
            opts["set"] = dict(scenario.parse_set(s) for s in args.set)
        except ValueError as e:
            raise _Bad(f"--set: {e}") from None
    return opts


def _run_script(args):
    from smpsim.experiment import script
    options = _script_options(args)
    _check_out(args)
    try:
        ns = script.load(args.scenario)
        script.check_options(args.scenario, ns, options)
    except script.ScriptError as e:
        raise _Bad(str(e)) from None
    except Exception as e:                 # noqa: BLE001 - the script's own error, shown as such
        sys.stderr.write(script.format_error(e, args.scenario))
        return 1
    base = os.path.basename(args.scenario)
    with open(args.scenario) as f:
        out = _claim(args, os.path.splitext(base)[0], f.read(), base)    # the script as run
    logs = _Logging(out, args.verbose)
    try:
        result = script.call(ns, out, options)
    except KeyboardInterrupt:
        raise
    except Exception as e:                 # noqa: BLE001 - the script's own error, shown as such
        sys.stderr.write(script.format_error(e, args.scenario))
        return 1
    finally:
        logs.close()
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    if not args.quiet:
        print(f"results in {out}")
    return 0 if not (isinstance(result, dict) and result.get("error")) else 1


def _experiment(args):
    from smpsim.experiment import runner, scenario
    try:
        scn = scenario.load(args.scenario, sets=time_sets(args), ops=args.ops,
                            seconds=args.seconds, seed=args.seed)
    except scenario.ScenarioError as e:
        raise _Bad(str(e)) from None
    if args.command == "run":
        if args.cpus is not None and not 1 <= args.cpus <= 256:
            raise _Bad(f"--cpus: expected 1..256, got {args.cpus}")
        points = scn.points([args.cpus] if args.cpus else None)
    else:
        if args.repeat is not None and not 1 <= args.repeat <= 100:
            raise _Bad(f"--repeat: expected 1..100, got {args.repeat}")
        points = scn.points(args.cpus or scn.sweep["cpus"], args.repeat or scn.sweep["repeat"])
    _check_out(args)
    conn = None
    if getattr(args, "cluster", None):
        # The points are set up on the workers' hosts (one that cannot be is reported there).
        from smpsim.experiment import cluster
        try:
            conn = cluster.connect(args.cluster, echo=None if args.quiet else print)
        except cluster.ClusterError as e:
            raise _Bad(f"--cluster: {e}") from None
    else:
        try:
            runner.check_setup(points)     # before the folder is touched
        except scenario.ScenarioError as e:
            raise _Bad(str(e)) from None
    try:
        return _run_experiment(args, scn, points, conn)
    finally:
        if conn is not None:
            conn.close()


def _run_experiment(args, scn, points, conn):
    """Runs the points here, or on the cluster of `conn`; writes the folder, prints the tables."""
    from smpsim.experiment import plot, runner, scenario, tables
    out = _claim(args, scn.name, runner.scenario_text(scn))
    view = None
    if getattr(args, "live", False):
        from smpsim.experiment.live import LiveView
        view = LiveView()
    bars, outer = (None, None) if view or conn else _bars(args.quiet, len(points))
    logs = _Logging(out, args.verbose)
    command = " ".join(["smpsim"] + sys.argv[1:])
    failures = []
    try:
        if conn is not None:
            from smpsim.experiment import cluster
            results, sweep, failures = cluster.run_points(
                conn.client, scn, points, out, pin=args.pin or scn.run["pin"],
                progress=not args.quiet, command=command, claimed=True)
        else:
            results, sweep = runner.run_points(
                scn, points, out, pin=args.pin or scn.run["pin"], bar_factory=bars, view=view,
                command=command, claimed=True,
                on_result=(lambda r: outer.update(1)) if outer else None)
    except KeyboardInterrupt as e:
        how, status = stopped(e)
        print(f"\nsmpsim: {how}; what finished is in {out} (marked partial)", file=sys.stderr)
        return status
    except scenario.ScenarioError as e:
        raise _Bad(str(e)) from None
    finally:
        logs.close()
        if outer is not None:
            outer.close()
    if args.command == "sweep" or len({p.cpus for p in points}) > 1:
        plot.sweep_plots(sweep, os.path.join(out, "plots"), scn.name)
    else:
        for r in results:
            if r["timeseries"]:
                plot.timeseries_plot(r["timeseries"],
                                     os.path.join(out, "runs", r["point"]["id"], "timeseries.png"),
                                     f"{scn.name} {r['point']['id']}")
    if not args.quiet:
        print(tables.sweep_markdown(sweep))
        latency = tables.latency_table(results)
        if latency:
            print(tables.latency_markdown(latency))
        print(f"results in {out}")
    bad = [r for r in results if r["error"] or r["check"] != "ok"]
    for r in bad:
        what = r["error"] or "; ".join(r["check"])
        print(f"smpsim: run {r['point']['id']} failed: {what}", file=sys.stderr)
    for f in failures:
        print(f"smpsim: run {f.point.id} failed on {f.worker or f.host}: {f.error} "
              f"(details in {os.path.join(out, 'runs', f.point.id, 'failure.json')})",
              file=sys.stderr)
    return 1 if bad or failures else 0


def _slabinfo(args):
    from smpsim.experiment import report
    try:
        results = report.load_results(args.result)
    except ValueError as e:
        raise _Bad(str(e)) from None
    ids = [r["point"]["id"] for r in results]
    if args.run not in (None, "all"):
        results = [r for r in results if r["point"]["id"] == args.run]
        if not results:
            raise _Bad(f"{args.result}: no run {args.run!r}; its runs: {', '.join(ids)}")
    elif len(results) > 1 and args.run is None:
        raise _Bad(f"{args.result} holds {len(results)} runs; pick one with --run ID (or "
                   f"--run all): {', '.join(ids)}")
    for r in results:
        caches = r["caches_peak"] if args.at == "peak" else r["caches_end"]
        if len(results) > 1:
            print(f"== {r['point']['id']} ({args.at})")
        if args.format in ("both", "slabinfo"):
            print(report.slabinfo(caches, r["point"]["machine"]["magazine_size"]), end="")
        if args.format == "both":
            print()
        if args.format in ("both", "seed"):
            print(report.seed_table(caches), end="")
    return 0


def _compare(args):
    from smpsim.experiment import compare
    rows = []
    for path in (args.a, args.b):
        try:
            rows.append(compare.load_runs(path))
        except ValueError as e:
            raise _Bad(str(e)) from None
    try:
        table = compare.compare(*rows, names=(args.a, args.b))
    except ValueError as e:
        raise _Bad(str(e)) from None
    print(compare.markdown(table, args.a, args.b), end="")
    return 0


def _workloads():
    """Each workload's description and its [workload] keys, as TOML with their defaults."""
    import textwrap
    from smpsim import workloads
    entries = [(n, None) for n in sorted(workloads.WORKLOADS)]
    entries += sorted(workloads.installed().items())
    for name, where in entries:
        try:
            wl = workloads.find(name)
        except Exception as e:             # noqa: BLE001 - an installed package that is broken
            print(f"# {name} (installed: {where}) cannot be loaded: {type(e).__name__}: {e}\n")
            continue
        print(textwrap.fill(wl.doc or "(no description)", 96, initial_indent="# ",
                            subsequent_indent="# "))
        if where is not None:
            print(f"# installed: {name} = {where!r} (entry point group {workloads.GROUP!r})")
        print(f'name = "{name}"')
        if wl.params is None:
            print("# no PARAMS: its parameters are passed on as given")
        for pname, p in (wl.params or {}).items():
            value = json.dumps(p.default) if p.kind != "bool" else str(p.default).lower()
            line = f"{pname} = {value}"
            print(f"{line:<22}  # {p.expect}: {p.doc}")
        print()
    return 0


def _delegate(module, argv):
    import importlib
    try:
        mod = importlib.import_module(f"smpsim.experiment.{module}")
    except ImportError as e:
        raise _Bad(f"{module} is not available ({e})") from None
    rc = mod.main(argv)
    return rc or 0


def _scenario_command(args):
    path = args.scenario
    if os.path.isdir(path):
        raise _Bad(f"{path}: is a directory, not a scenario file (a .toml or .py file)")
    if not os.path.isfile(path):
        raise _Bad(f"{path}: no such scenario file")
    if path.endswith(".py"):
        return _run_script(args)
    return _experiment(args)


def _main(argv):
    if argv and argv[0] in ("demo", "bench"):
        # Handed over whole: argparse's REMAINDER does not take options that come first
        # ("smpsim bench --quick" would be refused).
        return _delegate(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    if args.command in ("run", "sweep"):
        return _scenario_command(args)
    if args.command == "slabinfo":
        return _slabinfo(args)
    if args.command == "compare":
        return _compare(args)
    if args.command == "workloads":
        return _workloads()
    if args.command in ("explore", "replay"):
        from smpsim.experiment import explore_cli
        run = explore_cli.explore_main if args.command == "explore" else explore_cli.replay_main
        return run(args)
    return _delegate(args.command, args.args)


def _terminated(signum, frame):
    raise KeyboardInterrupt("terminated")


def stopped(e):
    """What stopped a command (a KeyboardInterrupt) and its exit status: Ctrl-C 130, SIGTERM
    143 (128 + the signal, as a shell reports it)."""
    return ("terminated", 143) if e.args == ("terminated",) else ("interrupted", 130)


def _on_sigterm():
    """SIGTERM (kill, a batch system's time limit) stops a command as Ctrl-C does: finished sweep
    points stay, machines close and their segments go. Only where nobody else handles it; the
    handler it replaced (to restore), or None."""
    if (threading.current_thread() is threading.main_thread() and
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        return signal.signal(signal.SIGTERM, _terminated)
    return None


def main(argv=None):
    """Runs the command line; returns the exit status (the console script exits with it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = _on_sigterm()
    try:
        rc = _main(argv)
        sys.stdout.flush()                   # a closed pipe shows here, not at exit
        return rc
    except _Bad as e:
        print(f"smpsim: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        how, status = stopped(e)
        print(f"\nsmpsim: {how}", file=sys.stderr)
        return status
    except BrokenPipeError:                   # `smpsim demo | head`: the reader left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
