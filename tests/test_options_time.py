"""The options beyond the seed in simulated time and under controlled schedules: their state is
charged like the seed's (a run with them costs other cycles than one without), a strict run
repeats exactly, a random schedule repeats and replays, and periodic reaping follows simulated
seconds."""

import math
import random

import pytest

from smpsim import SLAB_CACHE_NOMAGAZINE, Machine

from test_options import RUN_DIGEST, run_trace

H = "option_helpers"
ALL = dict(resize_magazines=True, resize_threshold=0, resize_period=1e6, colour=True,
           empty_magazines=True, cpu_magazine_cache=True, slab_locks=True, reap_every=math.inf)


@pytest.mark.parametrize("options", [
    dict(colour=True), dict(empty_magazines=True), dict(cpu_magazine_cache=True),
    dict(slab_locks=True), dict(resize_magazines=True, resize_threshold=0), ALL],
    ids=["colour", "empty", "front", "slab_locks", "resize", "all"])
def test_strict_simulated_time_repeats_with_the_options(options):
    a, b = run_trace(**options), run_trace(**options)
    assert a == b
    assert a != RUN_DIGEST


def churn(k, n):
    caches = [k.cache("a"), k.cache("b"), k.cache("raw")]
    rnd = random.Random(k.cpu_id)
    live = []
    for i in range(n):
        if live and rnd.random() < 0.5:
            c, x = live.pop(rnd.randrange(len(live)))
            k.slab_free(c, x)
        else:
            c = rnd.choice(caches)
            live.append((c, k.slab_alloc(c)))
        if i % 50 == 49 and k.cpu_id == 0:
            k.slab_reap()
    for c, x in live:
        k.slab_free(c, x)
    return n


def _controlled(**kw):
    with Machine(3, "8M", magazine_size=3, **ALL, **kw) as m:
        k = m.cpu(0)
        k.slab_cache_create("a", 64, ctor=f"{H}:construct", dtor=f"{H}:destruct")
        k.slab_cache_create("b", 700)
        k.slab_cache_create("raw", 100, 0, SLAB_CACHE_NOMAGAZINE, ctor=f"{H}:construct",
                            dtor=f"{H}:destruct")
        out = m.run(churn, 150, timeout=120)
        m.check()
        st = m.stats()
        counts = {n: (c["constructed"], c["destructed"], c["magazine_size"])
                  for n, c in st["caches"].items()}
        return out, counts, st["locks"], bytes(k.memory), m.last_schedule


def test_a_random_schedule_with_every_option_repeats_and_replays():
    a = _controlled(schedule="random", seed=5)
    b = _controlled(schedule="random", seed=5)
    assert a[:4] == b[:4]
    assert a[4].decisions == b[4].decisions
    replay = _controlled(schedule=a[4])
    assert replay[:4] == a[:4]


def burst(k, n, rounds):
    c = k.cache("obj")
    objs = [k.slab_alloc(c) for _ in range(n)]
    for x in reversed(objs):
        k.slab_free(c, x)
    for _ in range(rounds):
        objs = [k.slab_alloc(c) for _ in range(12)]
        for x in reversed(objs):
            k.slab_free(c, x)
    return k.cycles


def test_periodic_reaping_follows_simulated_seconds():
    """Reaps come every `reap_every` simulated seconds: a strict run repeats them exactly, and
    a longer period reaps less often."""
    def run(period):
        with Machine(2, "8M", time="simulated", quantum=0, accel="off",
                     reap_every=period) as m:
            m.cpu(0).slab_cache_create("obj", 256)
            cycles = m.run(burst, 400, 200)
            st = m.stats()
            m.check()
            seconds = max(cycles) / st["time"]["hz"]
            return st["reap"]["calls"], st["reap"]["magazines"], seconds
    short, again, longer = run(2e-5), run(2e-5), run(2e-4)
    assert short == again
    calls, magazines, seconds = short
    assert calls >= 2 and magazines > 0
    assert calls <= seconds / 2e-5 + 1
    assert longer[0] < calls


def test_the_simulated_time_scenario_measures_each_option():
    """scenarios/options_simulated.py's measurement on a small machine: the numbers of the
    README's simulated column come out, and an option's effect shows (reaping gives frames
    back)."""
    import os
    import runpy
    path = os.path.join(os.path.dirname(__file__), "..", "smpsim", "scenarios",
                        "options_simulated.py")
    ns = runpy.run_path(path, run_name="test")
    params = {"cache": "obj", "burst": 300, "batch": 12, "ops": 600}
    caches = [("obj", 256, 0, {})]
    off = ns["measure"]("burst", params, {}, caches, cpus=2)
    on = ns["measure"]("burst", params, {"reap_every": 0.00002}, caches, cpus=2)
    assert off["ops"] == on["ops"] == 2 * (600 + 600)
    assert off["throughput"] > 0 and off["reap_frames"] == 0
    assert on["reap_frames"] > 0 and on["frames_held"] < off["frames_held"]
    assert set(ns["COLUMNS"][i][0] for i in range(3, len(ns["COLUMNS"]))) <= set(on)
    row = dict(on, option="reap", variant="on", counters="shared")
    assert "| ops per simulated s |" in ns["table"]([row])         # the table it writes
