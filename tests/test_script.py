"""Python scenario scripts: which options a script's run() takes, and its errors shown from its
own frames."""

import pytest

from smpsim.experiment import script


def ns(source, tmp_path):
    path = tmp_path / "s.py"
    path.write_text(source)
    return str(path), script.load(str(path))


def test_options_run_declares_or_takes_as_keywords(tmp_path):
    path, n = ns("def run(out, cpus=1, *, ops=0):\n    return {'cpus': cpus, 'ops': ops}\n",
                 tmp_path)
    script.check_options(path, n, {"cpus": 2, "ops": 5})
    assert script.call(n, "o", {"cpus": 2, "ops": 5}) == {"cpus": 2, "ops": 5}
    with pytest.raises(script.ScriptError, match=r"^--seed: s.py's run\(\) takes no 'seed' "):
        script.check_options(path, n, {"cpus": 2, "seed": 1})
    path, n = ns("def run(out, **options):\n    return options\n", tmp_path)
    script.check_options(path, n, {"live": True, "set": {}})


def test_a_script_without_run(tmp_path):
    with pytest.raises(script.ScriptError, match="must define run"):
        ns("run = 3\n", tmp_path)


def test_errors_are_shown_from_the_script_on(tmp_path):
    path, n = ns("def run(out):\n    raise KeyError('x')\n", tmp_path)
    try:
        script.call(n, "o", {})
    except KeyError as e:
        text = script.format_error(e, path)
    assert text.splitlines() == ["Traceback (most recent call last):",
                                 f'  File "{path}", line 2, in run',
                                 "    raise KeyError('x')", "KeyError: 'x'"]
