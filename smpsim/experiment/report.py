"""The caches of a result in Linux's /proc/slabinfo 2.1 format and in the seed's slab_print_list
format, CSV files, and reading results back (the summary and sweep tables are tables.py's).

A cache snapshot is the "caches" dict of Machine.stats() ({name: {size, pages, objects, slabs,
cached, allocated, inside}}), optionally with "has_magazines" (bool: the cache has per-CPU
magazines) and "shared" (full magazines on its shared list), which collect.py adds. As in the
seed, `allocated` counts objects held by callers and `cached` objects sitting in magazines.

Mapping onto slabinfo 2.1 (Linux's SLAB allocator, whose per-CPU arrays are Bonwick's
magazines): active_objs = allocated + cached (objects out of their slabs: Linux counts objects in
per-CPU arrays as active); num_objs = slabs * objects per slab; limit = objects one CPU can hold
(two magazines), batchcount = a magazine (what moves to and from the shared list at once),
sharedfactor = 1 for caches with a shared list, all 0 for NOMAGAZINE caches; sharedavail =
objects in full magazines on the shared list. The seed frees an empty slab at once, so every slab
is active: active_slabs = num_slabs.
"""

import csv
import io
import json
import os

__all__ = ["slabinfo", "seed_table", "write_csv", "load_results"]

SLABINFO_HEADER = ("slabinfo - version: 2.1\n"
                   "# name            <active_objs> <num_objs> <objsize> <objperslab> "
                   "<pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata "
                   "<active_slabs> <num_slabs> <sharedavail>\n")


def slabinfo(caches, magazine_size):
    """The caches as /proc/slabinfo 2.1 text (Linux's own column widths)."""
    out = [SLABINFO_HEADER]
    for name, c in caches.items():
        mags = c.get("has_magazines", True)
        limit, batch, factor = (2 * magazine_size, magazine_size, 1) if mags else (0, 0, 0)
        shared = c.get("shared", 0) * magazine_size if mags else 0
        active = c["allocated"] + c["cached"]
        out.append(f"{name:<17} {active:6d} {c['slabs'] * c['objects']:6d} "
                   f"{c['size']:6d} {c['objects']:4d} {c['pages']:4d}"
                   f" : tunables {limit:4d} {batch:4d} {factor:4d}"
                   f" : slabdata {c['slabs']:6d} {c['slabs']:6d} {shared:6d}\n")
    return "".join(out)


def seed_table(caches):
    """The caches as the seed's slab_print_list prints them: tab separated, header first."""
    out = ["SLAB name\tOsize\tPages\tObj/pg\tSlabs\tCached\tAllocobjs\tCtl\n"]
    for name, c in caches.items():
        out.append(f"{name}\t{c['size']}\t{c['pages']}\t{c['objects']}\t{c['slabs']}\t"
                   f"{c['cached']}\t{c['allocated']}\t\t{'In' if c['inside'] else 'Out'}\n")
    return "".join(out)


def write_csv(path, rows, columns=None):
    """Writes `rows` (dicts) to CSV; `columns` (keys) defaults to the first row's keys."""
    columns = columns or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in columns})
    with open(path, "w", newline="") as f:
        f.write(buf.getvalue())


def _bad(f, why):
    return ValueError(f"{f}: not a smpsim run result ({why})")


def _check_result(f, r):
    """ValueError naming file `f` unless `r` holds what slabinfo and the tables read."""
    if not isinstance(r, dict):
        raise _bad(f, f"a JSON {type(r).__name__}, not an object")
    for key in ("caches_end", "caches_peak", "point"):
        if not isinstance(r.get(key), dict):
            raise _bad(f, f"no {key!r}")
    p = r["point"]
    if not isinstance(p.get("id"), str) or not isinstance(p.get("machine"), dict) or \
            not isinstance(p["machine"].get("magazine_size"), int):
        raise _bad(f, "its 'point' lacks the id or the machine's magazine_size")
    for name, c in list(r["caches_end"].items()) + list(r["caches_peak"].items()):
        if not isinstance(c, dict) or not all(isinstance(c.get(k), int) for k in (
                "size", "pages", "objects", "slabs", "cached", "allocated")):
            raise _bad(f, f"cache {name!r} lacks its counts")


def load_results(path):
    """The run results under `path`: a result folder (every run in it), a run's folder, or a
    run's result.json. ValueError naming the path, or the file, when there is none or a file
    is not a smpsim run result."""
    path = os.fspath(path)
    if os.path.isfile(path):
        files = [path]
    elif os.path.isfile(os.path.join(path, "result.json")):
        files = [os.path.join(path, "result.json")]
    elif os.path.isdir(os.path.join(path, "runs")):
        runs = os.path.join(path, "runs")
        files = [os.path.join(runs, d, "result.json") for d in sorted(os.listdir(runs))
                 if os.path.isfile(os.path.join(runs, d, "result.json"))]
    elif not os.path.exists(path):
        raise ValueError(f"{path}: no such file or folder")
    else:
        files = []
    if not files:
        raise ValueError(f"{path}: no result here (expected a result folder, a run folder or "
                         f"a result.json)")
    out = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                r = json.loads(fh.read().decode("utf-8"))
        except OSError as e:
            raise ValueError(f"{f}: cannot be read ({e.strerror or e})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{f}: not a readable result (not JSON: {e})") from None
        _check_result(f, r)
        out.append(r)
    return out
