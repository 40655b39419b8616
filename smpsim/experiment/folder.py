"""Result folders that never mix two runs' data.

A run writes only into a folder it has claimed. The default folder, results/NAME-YYYYmmdd-HHMMSS,
is made with os.mkdir, which succeeds for one process only: a second run started in the same
second gets NAME-...-2 (and so on), never the first one's folder. A folder the user names
(`--out`) must be empty or not exist yet; it is claimed by creating its first file (the scenario
as run: CLAIM, or a script's copy) with O_EXCL, which again only one process can do, so two runs
started into one empty folder at once cannot both write there. A folder with content is refused
unless the user asks to replace it; the old content is then removed by `replace()` only once the
new run is known to be able to start (the caller checks everything first), and the folder is
claimed as above.
"""

import datetime
import os
import shutil

__all__ = ["FolderError", "result_dir", "check", "claim", "replace", "CLAIM"]

CLAIM = "scenario.toml"          # the first file of a scenario's result folder; its creator owns it


class FolderError(ValueError):
    """A result folder that cannot be used: the message names it and says why."""


def result_dir(name, base="results", now=None):
    """Creates and returns a new folder BASE/NAME-YYYYmmdd-HHMMSS (with -2, -3, ... when that
    is taken, by another run started in the same second or earlier). `now`: the time to stamp
    (default: now)."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    os.makedirs(base, exist_ok=True)
    n = 1
    while True:
        path = os.path.join(base, f"{name}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            n += 1


def _content(out):
    try:
        return sorted(os.listdir(out))
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise FolderError(f"{out}: is a file, not a result folder") from None
    except OSError as e:
        raise FolderError(f"{out}: cannot be read ({e.strerror or e})") from None


def check(out, replace_it=False):
    """Raises FolderError unless `out` can take a new run: missing, empty, or (with
    `replace_it`) holding content to replace. Changes nothing."""
    content = _content(out)
    if content and not replace_it:
        shown = ", ".join(content[:4]) + (", ..." if len(content) > 4 else "")
        raise FolderError(f"{out}: not empty ({shown}); pass --replace to replace its content, "
                          f"or another --out")


def claim(out, text, name=CLAIM):
    """Makes `out` (and its parents) if needed and claims it by creating file `name` in it with
    `text`; FolderError when another run holds or claimed it first."""
    try:
        os.makedirs(out, exist_ok=True)
        fd = os.open(os.path.join(out, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise FolderError(f"{out}: another run writes here (it holds {name})") from None
    except OSError as e:
        raise FolderError(f"{out}: cannot be written ({e.strerror or e})") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return out


def replace(out):
    """Removes everything inside `out` (the folder itself stays)."""
    for name in _content(out) or []:
        path = os.path.join(out, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
