"""Mutants: the allocator with one concurrency bug planted, to prove that the schedule search
(smpsim/experiment/explore.py) finds what it is for.

Each mutant is smpsim/engine/slab.py's own text with one textual change (each edit must match
exactly where it is meant to, so a change to slab.py that moves the code fails here loudly),
executed as a module; its SlabAllocator is installed as smpsim.engine.machine.SlabAllocator
before any Machine is made, so the forked CPUs run it (a controlled run always takes the
allocator's Python path, never the C hit path). The planted bugs:

    hit_lock    the magazine hit path of allocation without the CPU's magazine lock
    counter     a shared counter updated with a load and a store instead of an atomic add
    slab_list   a slab moved between lists after slablock is released (on free)
    depot       magazines put on and taken off the shared list without the depot lock
    lock_order  a full reclaim holds the depot lock while it takes each CPU's magazine lock:
                against a CPU that holds its magazine lock and wants the depot lock, a deadlock

For each: explore (PCT, depth 3, seeds from 0) finds a failure within BOUND schedules at 2
CPUs on a variant of scenarios/contend.toml that exercises the path, the shrunk schedule has at
most MAX_PREEMPTIONS preemptions, replaying the written folder reproduces the failure, and the
lock-order mutant is reported as a deadlock naming both CPUs and both locks. The unmutated
allocator passes the same searches.

Run as a script (`python tests/test_mutants.py [SECONDS]`), the file measures the table of
docs/explore.md: for each mutant, what PCT and random search take to find it and shrink it,
and how many free-running runs (the host scheduling the CPU processes) of the same scenario
find it in the same time budget.
"""

import inspect
import os
import sys
import time
import types

import pytest

import smpsim
import smpsim.engine.machine as machine_mod
import smpsim.engine.slab as slab_mod
from smpsim.experiment import explore, finding, scenario

pytestmark = [pytest.mark.slow, pytest.mark.mutants, pytest.mark.timeout(300)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTEND = os.path.join(ROOT, "smpsim", "scenarios", "contend.toml")
BOUND = 200              # schedules within which each mutant must be found
MAX_PREEMPTIONS = 5      # "a handful"
OPS = 40                 # operations per CPU


# --- planting the bugs ------------------------------------------------------------------------

def _edit(src, function, old, new, count=1):
    """src with `old` replaced by `new` inside method `function` only; it must occur `count`
    times there."""
    start = src.index(f"    def {function}(")
    end = src.find("\n    def ", start + 1)
    end = len(src) if end < 0 else end
    body = src[start:end]
    assert body.count(old) == count, f"{function}: {old!r} occurs {body.count(old)} times"
    return src[:start] + body.replace(old, new) + src[end:]


def _hit_lock(s):
    s = _edit(s, "_magazine_obj_get", "        self.lock(mags + CPU_MAGS.lock)\n", "")
    s = _edit(s, "_magazine_obj_get", "self.unlock(mags + CPU_MAGS.lock)", "pass", count=2)
    return _edit(s, "_get_full_current_mag", "        assert self.holds(mags + CPU_MAGS.lock)\n",
                 "")


def _counter(s):
    return _edit(s, "_count", "            self.fetch_add(cache + shared_field, delta)",
                 "            old = self.ld(cache + shared_field)\n"
                 "            self.st(cache + shared_field, (old + delta) % (1 << 64))")


def _slab_list(s):
    s = _edit(s, "_slab_obj_destroy", "        frames = 0\n",
              "        frames = 0\n        self.unlock(lock)\n")
    return _edit(s, "_slab_obj_destroy", "        self.unlock(lock)\n        return frames",
                 "        return frames")


def _depot(s):
    for function in ("_put_mag_to_cache", "_get_mag_from_cache"):
        s = _edit(s, function, "        self.lock(lock)\n", "")
        s = _edit(s, function, "        self.unlock(lock)\n", "")
    return s


def _lock_order(s):
    s = _edit(s, "_slab_reclaim", "        if flags & SLAB_RECLAIM_ALL:               # also every "
              "CPU's magazine pair\n",
              "        if flags & SLAB_RECLAIM_ALL:\n            self.lock(cache + CACHE.maglock)\n")
    return _edit(s, "_slab_reclaim",
                 "                self.unlock(mags + CPU_MAGS.lock)\n        return frames",
                 "                self.unlock(mags + CPU_MAGS.lock)\n"
                 "            self.unlock(cache + CACHE.maglock)\n        return frames")


# name -> (the edit, the variant of contend.toml that exercises it)
MUTANTS = {
    "hit_lock": (_hit_lock, "magazines"),
    "counter": (_counter, "magazines"),
    "slab_list": (_slab_list, "slabs"),
    "depot": (_depot, "depot"),
    "lock_order": (_lock_order, "magazines"),
}


def mutant(name):
    """The SlabAllocator class of mutant `name`."""
    src = MUTANTS[name][0](inspect.getsource(slab_mod))
    mod = types.ModuleType(f"smpsim.engine._mutant_{name}")
    mod.__package__ = "smpsim.engine"           # its relative imports are slab.py's
    exec(compile(src, f"<slab.py, mutant {name}>", "exec"), mod.__dict__)
    return mod.SlabAllocator


def point(variant, cpus=2, ops=OPS):
    return next(p for p in explore.configure(scenario.load(CONTEND), [cpus], ops)
                if p.label == variant)


# --- the tests --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_explore_finds_shrinks_and_replays_each_mutant(name, monkeypatch, tmp_path):
    monkeypatch.setattr(machine_mod, "SlabAllocator", mutant(name))
    p = point(MUTANTS[name][1])
    cov = explore.search([p], schedules=BOUND, strategy="pct")[-1]
    found = cov.found
    assert found is not None, f"{name}: no failure in {BOUND} schedules"
    shrunk = explore.shrink(p, found)
    assert shrunk.verified and shrunk.schedule.preemptions <= MAX_PREEMPTIONS
    out = str(tmp_path / "found")
    finding.write(out, p, {"ops": OPS, "seed": 0, "depth": 3}, found, shrunk, [cov])
    replayed, cfg, _ = finding.replay(out)
    assert replayed.kind == cfg["failure"]["kind"] == shrunk.outcome.kind
    assert replayed.schedule.decisions == shrunk.schedule.decisions
    if name == "lock_order":
        assert found.kind == replayed.kind == "deadlock"
        msg = replayed.message
        held = {0: "obj.cpu0", 1: "obj.cpu1"}
        assert any(f"CPU {a} holds {held[a]} and waits for obj.maglock" in msg
                   and f"CPU {b} holds slab_cache_lock, obj.maglock and waits for {held[a]}"
                   in msg for a, b in ((0, 1), (1, 0))), msg


@pytest.mark.parametrize("variant", ["magazines", "slabs", "depot"])
def test_the_allocator_as_it_is_passes_the_same_search(variant):
    cov = explore.search([point(variant)], schedules=60, strategy="pct")[-1]
    assert cov.found is None and cov.schedules == 60 and cov.unfinished == 0


def test_every_mutant_changes_the_allocator():
    original = inspect.getsource(slab_mod)
    texts = {name: edit(original) for name, (edit, _) in MUTANTS.items()}
    assert all(t != original for t in texts.values()) and len(set(texts.values())) == 5


# --- the measurement (run as a script) ------------------------------------------------------

def free_runs(p, seconds, ops, accel):
    """Free-running runs of point p (the host schedules the CPU processes) with workload seeds
    1, 2, ... for `seconds`, on the accelerator `accel` ("c", as every run but a controlled one
    uses; "off": the allocator's Python path, so the mutated code runs on hits too);
    (runs, seconds, the first failure's text or None)."""
    mc = p.machine
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        runs += 1
        with smpsim.Machine(p.cpus, mc["memory"], magazine_size=mc["magazine_size"],
                            accel=accel, lock_timeout=2.0) as m:
            k = m.cpu(0)
            q = type(p)(p.scenario, p.label, p.cpus, 0, mc, p.caches,
                        dict(p.workload, ops=ops, seed=runs))
            wl, params = explore.workload_of(q)
            caches, params = explore._set_up(q, k, wl, params)
            try:
                m.run(wl.program, params, timeout=60)
                m.check()
                kind, message = explore._finish(wl, k, params, caches)
            except (smpsim.CPUError, smpsim.InvariantError) as e:
                kind, message = "failed", str(e)
            if kind:
                return runs, time.perf_counter() - t0, message.splitlines()[0]
    return runs, time.perf_counter() - t0, None


def measure(seconds=30.0):
    """The table of docs/explore.md, printed as Markdown (progress on stderr)."""
    rows = []
    for name in sorted(MUTANTS):
        machine_mod.SlabAllocator = mutant(name)
        p = point(MUTANTS[name][1])
        row = [name, p.label]
        for strategy in ("pct", "random"):
            t0 = time.perf_counter()
            cov = explore.search([p], schedules=BOUND, strategy=strategy)[-1]
            t1 = time.perf_counter()
            if cov.found is None:
                row += [f"not in {BOUND} ({t1 - t0:.1f} s)", "-"]
                continue
            shrunk = explore.shrink(p, cov.found)
            t2 = time.perf_counter()
            row += [f"{cov.schedules} ({t1 - t0:.1f} s, {cov.found.kind})",
                    f"{cov.found.preemptions} -> {shrunk.schedule.preemptions} "
                    f"({shrunk.runs} runs, {t2 - t1:.1f} s)"
                    + ("" if shrunk.verified else ", not verified")]
        for ops, accel in ((2000, "c"), (2000, "off"), (OPS, "off")):
            runs, took, failure = free_runs(p, seconds, ops, accel)
            row.append(f"found in {runs} ({took:.1f} s)" if failure else f"not in {runs}")
        rows.append(row)
        machine_mod.SlabAllocator = slab_mod.SlabAllocator
        print(" | ".join(row), file=sys.stderr)
    head = ["mutant", "variant", "PCT: schedules to find", "PCT: preemptions found -> shrunk",
            "random: schedules to find", "random: preemptions found -> shrunk",
            "free runs, 2000 ops, accel c", "free runs, 2000 ops, accel off",
            f"free runs, {OPS} ops, accel off"]
    print(f"Free runs: at most {seconds:g} s each column.\n")
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    measure(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0)
