"""The folders show the architecture: the engine (smpsim.engine) imports nothing of the
experiment layer (smpsim.experiment) or of the bundled workloads (smpsim.workloads). And what
pyproject.toml builds from them: every package, the package data, the version, the license."""
import fnmatch
import os
import re
import subprocess
import sys

import smpsim


def test_engine_imports_no_experiment_layer():
    code = ("import sys, smpsim, smpsim.engine.machine, smpsim.engine.check, smpsim.engine.debug\n"
            "m = smpsim.Machine(1, '4M'); k = m.cpu(0); k.slab_free(k.cache('malloc-64'),\n"
            "    k.slab_alloc(k.cache('malloc-64'))); m.check(); m.close()\n"
            "print(sorted(n for n in sys.modules if n.startswith(('smpsim.experiment',\n"
            "                                                      'smpsim.workloads'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:          # Python 3.10
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_every_package_is_built():
    """A folder of smpsim with Python files or scenario files that pyproject.toml does not list
    would be missing from an installed smpsim."""
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set()
    for d, dirs, files in os.walk(os.path.join(ROOT, "smpsim")):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        if any(f.endswith((".py", ".toml")) for f in files):
            found.add(os.path.relpath(d, ROOT).replace(os.sep, "."))
    assert found == listed


def test_package_data_covers_the_scenarios_and_the_typing_marker():
    data = _pyproject()["tool"]["setuptools"]["package-data"]
    assert os.path.isfile(os.path.join(ROOT, "smpsim", "py.typed"))
    assert "py.typed" in data["smpsim"]
    shipped = os.listdir(os.path.join(ROOT, "smpsim", "scenarios"))
    uncovered = [f for f in shipped if f != "__pycache__" and f != "__init__.py"
                 and not any(fnmatch.fnmatch(f, g) for g in data["smpsim.scenarios"])]
    assert not uncovered, f"scenario files not installed: {uncovered}"


def test_the_version_is_written_once():
    """pyproject.toml takes the version from smpsim.__version__; the command line prints it."""
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "smpsim.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", smpsim.__version__)
    out = subprocess.run([sys.executable, "-m", "smpsim", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"smpsim {smpsim.__version__}\n", "")


def test_license_and_metadata():
    project = _pyproject()["project"]
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert "the smpsim authors" in text and "Redistribution and use" in text
    claimed = {c.rsplit(" ", 1)[1] for c in project["classifiers"]
               if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    assert claimed == {"3.10", "3.11", "3.12", "3.13"}
    assert project["requires-python"] == ">=3.10"
