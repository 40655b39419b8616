"""The `smpsim` command line: run a scenario, sweep it over CPU counts, print a result's caches,
and the demo and benchmark of the engine.

    smpsim run SCENARIO [--live] [--pin] [--cpus N] [--out DIR]
    smpsim sweep SCENARIO [--cpus 1,2,4,8] [--repeat N] [--pin] [--out DIR]
    smpsim slabinfo RESULT [--at peak|end] [--format both|slabinfo|seed]
    smpsim workloads                       the workloads and their parameters
    smpsim explore SCENARIO [--schedules N] [--strategy random|pct] [--cpus 2,3] [--ops K] ...
    smpsim replay FILE [--trace]           (smpsim/experiment/explore_cli.py)
    smpsim demo ... / smpsim bench ...

SCENARIO is a TOML file (smpsim/experiment/scenario.py) or a Python scenario script, which must define
`run(out_dir)` returning a dict (written to OUT/result.json). Exit status: 0 on success, 1 when a
run failed or Machine.check() found violations, 2 on bad input (a message naming the file, the
key and what was expected; no traceback), 130 on Ctrl-C (what finished is written, marked
partial). Log records of every CPU process go to OUT/run.log tagged with the CPU
(multiprocessing-logging), warnings also to stderr.
"""

import argparse
import json
import logging
import os
import sys

__all__ = ["main"]

log = logging.getLogger("smpsim.experiment.cli")

_FORMAT = "%(asctime)s %(levelname)-7s cpu=%(cpu)s %(name)s: %(message)s"


class _CpuTag(logging.Filter):
    """Gives records made in the parent the CPU tag "-" (CPU processes set their own)."""

    def filter(self, record):
        if not hasattr(record, "cpu"):
            record.cpu = "-"
        return True


def _cpu_list(text):
    try:
        cpus = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU counts like 1,2,4,8, got {text!r}")
    if not cpus or any(not 1 <= n <= 256 for n in cpus):
        raise argparse.ArgumentTypeError(f"expected CPU counts 1..256 like 1,2,4,8, got {text!r}")
    return cpus


def _parser():
    p = argparse.ArgumentParser(prog="smpsim", description="A multi-process SMP simulator of "
                                "the HelenOS slab allocator: experiments and tools.")
    from smpsim import __version__
    p.add_argument("--version", action="version", version=f"smpsim {__version__}",
                   help="print smpsim's version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp):
        sp.add_argument("scenario", metavar="SCENARIO", help="a scenario .toml or .py file")
        sp.add_argument("--pin", action="store_true", help="place CPU i on host core i %% cores")
        sp.add_argument("--out", metavar="DIR", help="result folder (default results/NAME-TIME)")
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
    i = sub.add_parser("slabinfo", help="a result's caches in /proc/slabinfo 2.1 and seed format")
    i.add_argument("result", metavar="RESULT", help="a result folder, run folder or result.json")
    i.add_argument("--at", choices=("peak", "end"), default="peak",
                   help="the caches at their fullest during the run (default) or at its end")
    i.add_argument("--format", choices=("both", "slabinfo", "seed"), default="both")
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


def _bar_factory(quiet):
    if quiet:
        return None
    from tqdm import tqdm

    def make(total, label):
        return tqdm(total=total, desc=label, unit="op", unit_scale=True, leave=False,
                    dynamic_ncols=True, disable=None)
    return make


def _run_script(args):
    import runpy
    from smpsim.experiment.runner import result_dir
    name = os.path.splitext(os.path.basename(args.scenario))[0]
    out = args.out or result_dir(name)
    ns = runpy.run_path(args.scenario, run_name="smpsim_scenario")
    if not callable(ns.get("run")):
        print(f"smpsim: {args.scenario}: a scenario script must define run(out_dir)",
              file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    logs = _Logging(out, args.verbose)
    try:
        result = ns["run"](out)
    finally:
        logs.close()
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    if not args.quiet:
        print(f"results in {out}")
    return 0 if not (isinstance(result, dict) and result.get("error")) else 1


def _experiment(args):
    from smpsim.experiment import plot, report, runner, scenario
    try:
        scn = scenario.load(args.scenario)
    except scenario.ScenarioError as e:
        print(f"smpsim: {e}", file=sys.stderr)
        return 2
    if args.command == "run":
        if args.cpus is not None and not 1 <= args.cpus <= 256:
            print(f"smpsim: --cpus: expected 1..256, got {args.cpus}", file=sys.stderr)
            return 2
        points = scn.points([args.cpus] if args.cpus else None)
    else:
        if args.repeat is not None and not 1 <= args.repeat <= 100:
            print(f"smpsim: --repeat: expected 1..100, got {args.repeat}", file=sys.stderr)
            return 2
        points = scn.points(args.cpus or scn.sweep["cpus"], args.repeat or scn.sweep["repeat"])
    out = args.out or runner.result_dir(scn.name)
    os.makedirs(out, exist_ok=True)
    view = None
    if getattr(args, "live", False):
        from smpsim.experiment.live import LiveView
        view = LiveView()
    bars = None if view else _bar_factory(args.quiet)
    logs = _Logging(out, args.verbose)
    command = " ".join(["smpsim"] + sys.argv[1:])
    try:
        results, sweep = runner.run_points(scn, points, out, pin=args.pin or scn.run["pin"],
                                               bar_factory=bars, view=view, command=command)
    except KeyboardInterrupt:
        print(f"\nsmpsim: interrupted; what finished is in {out} (marked partial)",
              file=sys.stderr)
        return 130
    except scenario.ScenarioError as e:
        print(f"smpsim: {e}", file=sys.stderr)
        return 2
    finally:
        logs.close()
    if args.command == "sweep" or len({p.cpus for p in points}) > 1:
        plot.sweep_plots(sweep, os.path.join(out, "plots"), scn.name)
    else:
        for r in results:
            if r["timeseries"]:
                plot.timeseries_plot(r["timeseries"],
                                     os.path.join(out, "runs", r["point"]["id"], "timeseries.png"),
                                     f"{scn.name} {r['point']['id']}")
    if not args.quiet:
        print(report.markdown_table(sweep, report.SWEEP_COLUMNS))
        print(f"results in {out}")
    bad = [r for r in results if r["error"] or r["check"] != "ok"]
    for r in bad:
        what = r["error"] or "; ".join(r["check"])
        print(f"smpsim: run {r['point']['id']} failed: {what}", file=sys.stderr)
    return 1 if bad else 0


def _slabinfo(args):
    from smpsim.experiment import report
    try:
        results = report.load_results(args.result)
    except ValueError as e:
        print(f"smpsim: {e}", file=sys.stderr)
        return 2
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


def _workloads():
    """Each workload's description and its [workload] keys, as TOML with their defaults."""
    import textwrap
    from smpsim import workloads
    for name in sorted(workloads.WORKLOADS):
        mod = workloads.module(name)
        first = " ".join(mod.__doc__.strip().split("\n\n")[0].split())
        print(textwrap.fill(first, 96, initial_indent="# ", subsequent_indent="# "))
        print(f'name = "{name}"')
        for pname, p in mod.PARAMS.items():
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
        print(f"smpsim: {module} is not available ({e})", file=sys.stderr)
        return 2
    rc = mod.main(argv)
    return rc or 0


def main(argv=None):
    """Runs the command line; returns the exit status (the console script exits with it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("demo", "bench"):
        # Handed over whole: argparse's REMAINDER does not take options that come first
        # ("smpsim bench --quick" would be refused).
        try:
            return _delegate(argv[0], argv[1:])
        except KeyboardInterrupt:
            print("\nsmpsim: interrupted", file=sys.stderr)
            return 130
    args = _parser().parse_args(argv)
    try:
        if args.command in ("run", "sweep"):
            path = args.scenario
            if not os.path.isfile(path):
                print(f"smpsim: {path}: no such scenario file", file=sys.stderr)
                return 2
            if path.endswith(".py"):
                return _run_script(args)
            return _experiment(args)
        if args.command == "slabinfo":
            return _slabinfo(args)
        if args.command == "workloads":
            return _workloads()
        if args.command in ("explore", "replay"):
            from smpsim.experiment import explore_cli
            run = explore_cli.explore_main if args.command == "explore" else \
                explore_cli.replay_main
            return run(args)
        return _delegate(args.command, args.args)
    except KeyboardInterrupt:
        print("\nsmpsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                   # `smpsim slabinfo R | head`: the reader left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
