"""Python scenario scripts: `smpsim run SCRIPT.py` loads the script, calls its `run(out_dir)` and
writes what it returns to OUT/result.json.

Options: the command line's options that change a run (--cpus, --live, --pin, --set, --ops,
--seconds, --seed, --time, --quantum) are passed to `run` as keyword arguments of the same name
(`set` as a dict of dotted keys to values, `quantum` an int) when `run` declares a parameter of
that name (or **options); an option the script's `run` does not take is refused before the
script runs, in one line naming it, so no option is silently ignored. A sweep is the script's own business: `smpsim sweep SCRIPT.py` is
refused the same way.

Errors in the script (while it loads or runs) are shown as Python shows them, but from the
script's own frames on: the traceback starts at the script, not inside smpsim.
"""

import inspect
import os
import runpy
import traceback

__all__ = ["ScriptError", "load", "check_options", "call", "format_error"]


class ScriptError(ValueError):
    """A script that cannot be run as asked (no run(), an option it does not take)."""


def load(path):
    """The namespace of script `path`, run as module "smpsim_scenario"; its own exceptions go
    on to the caller (format them with format_error)."""
    ns = runpy.run_path(path, run_name="smpsim_scenario")
    if not callable(ns.get("run")):
        raise ScriptError(f"{path}: a scenario script must define run(out_dir)")
    return ns


def check_options(path, ns, options):
    """ScriptError naming the first of `options` that the script's run() does not take as a
    keyword argument (and has no **options to take it)."""
    params = inspect.signature(ns["run"]).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for opt in options:
        if opt not in names:
            raise ScriptError(f"--{opt}: {os.path.basename(path)}'s run() takes no '{opt}' "
                              f"parameter, so the option would be ignored")


def call(ns, out, options):
    """The script's run(out, **options) (options checked with check_options first)."""
    return ns["run"](out, **options)


def format_error(exc, path):
    """The traceback of `exc`, raised while script `path` loaded or ran, from the script's first
    frame on (only the exception, with its location, when no frame is the script's: a syntax
    error)."""
    path = os.path.realpath(path)
    tb = exc.__traceback__
    while tb is not None and os.path.realpath(tb.tb_frame.f_code.co_filename) != path:
        tb = tb.tb_next
    if tb is None:
        return "".join(traceback.format_exception_only(type(exc), exc))
    return "".join(traceback.format_exception(type(exc), exc, tb))
