"""smpsim/engine/options.py and what every option shares: the Machine keywords and their checks,
the header's option bits, the statistics every cache has, and the promise that a machine with
every option off behaves exactly as before the options existed (a recorded digest)."""

import hashlib
import math
import random

import pytest

import smpsim
from smpsim import FRAME_ATOMIC, SLAB_CACHE_NOMAGAZINE, SLAB_RECLAIM_ALL, Machine
from smpsim.engine.layout import FRAME, HEADER, MAX_CACHES, WORD
from smpsim.engine.options import (OPT_COLOUR, OPT_EMPTY, OPT_FRONT, OPT_REAP, OPT_RESIZE,
                                   OPT_SLABLOCKS, Options)

ALL_ON = dict(resize_magazines=True, colour=True, empty_magazines=True, cpu_magazine_cache=True,
              slab_locks=True, reap_every=math.inf)
ALL_OFF = dict(resize_magazines=False, colour=False, empty_magazines=False,
               cpu_magazine_cache=False, slab_locks=False, reap_every=None)


def trace(accel="c", magazine_size=4, **options):
    """A fixed sequence of operations on CPUs 0 and 1 in this process (caches in and out of
    slab, with and without magazines, kalloc, light and full reclaims, a destroy); the digest
    of every address returned and every reclaim count, of simulated memory, the cache-id table,
    the frame table, the object table, every lock's counters and the caches' counts."""
    h = hashlib.sha256()
    with Machine(2, "4M", magazine_size=magazine_size, accel=accel, **options) as m:
        ks = [m.cpu(0), m.cpu(1)]
        rnd = random.Random(7)
        caches = [ks[0].slab_cache_create("t24", 24), ks[0].slab_cache_create("t700", 700, 64),
                  ks[1].slab_cache_create("t5000", 5000),
                  ks[1].slab_cache_create("raw", 100, 0, SLAB_CACHE_NOMAGAZINE)]
        live = []
        for _ in range(6000):
            k = ks[rnd.randrange(2)]
            r = rnd.random()
            if r < 0.55 or not live:
                if rnd.random() < 0.3:
                    a = k.kalloc(rnd.choice([8, 100, 1000, 3000, 20000]), FRAME_ATOMIC)
                    c = None
                else:
                    c = rnd.choice(caches)
                    a = k.slab_alloc(c, FRAME_ATOMIC)
                h.update(str(a).encode())
                if a:
                    live.append((c, a))
            elif r < 0.995:
                c, a = live.pop(rnd.randrange(len(live)))
                k.kfree(a) if c is None else k.slab_free(c, a)
            else:
                h.update(str(k.slab_reclaim(rnd.choice([0, SLAB_RECLAIM_ALL]))).encode())
        for c, a in live:
            ks[0].kfree(a) if c is None else ks[0].slab_free(c, a)
        ks[1].slab_cache_destroy(caches[1])
        h.update(str(ks[0].slab_reclaim(SLAB_RECLAIM_ALL)).encode())
        m.check()
        r = m.regions
        buf = m._shm.buf
        h.update(bytes(buf[0:r.memory]))
        h.update(bytes(buf[r.cache_ids:r.cache_ids + WORD * MAX_CACHES]))
        h.update(bytes(buf[r.frame_table:r.frame_table + FRAME.sizeof * r.nframes]))
        h.update(bytes(buf[r.object_table:r.object_table + 2 * (r.memory // WORD)]))
        st = m.stats()
        h.update(repr(sorted(st["locks"].items())).encode())
        h.update(repr(sorted((n, c["slabs"], c["cached"], c["allocated"])
                             for n, c in st["caches"].items())).encode())
        h.update(repr(st["frames"]).encode())
        h.update(repr(st["time"]).encode())            # every CPU's clock in simulated time
        del buf
    return h.hexdigest()


# Recorded on the engine as it was before the options were added (the same sequence).
SEED_DIGESTS = {
    ("c", 4, ()): "b26d22bec39658ce07d083899958efa247f4bb50cfb4a333ec182d4f625865e0",
    ("off", 3, ()): "f90205251e50d75563d94f64052c004debe4fb6f1eeece4b6d5a91335c1b6c79",
    ("off", 4, (("debug", True),)): "748acd4f0ed1cb812e1789d3165274c08f21988c9fb92123cd37d6789d"
                                    "92834f",
    ("c", 4, (("counters", "percpu"),)): "b01f605bddef22ee62bd1dc345bba00e870d1eea0eb5beef63a22"
                                         "cec3fced550",
    ("c", 4, (("time", "simulated"),)): "19e19d3f489ab7d07917ab686e1a7e63d95eb824138ac8777648837"
                                        "004580ea0",
    ("off", 3, (("time", "simulated"), ("quantum", 0))): "7e8a4a1885b650fd6baf3380f8031a7dd53e8"
                                                         "851f44aebcb25f7cebebe04cc79",
}


def _program(k, n):
    """A fixed mix of allocations and frees on two caches, for run_trace."""
    c, raw = k.cache("t100"), k.cache("raw")
    rnd = random.Random(k.cpu_id)
    live = []
    for _ in range(n):
        if live and rnd.random() < 0.5:
            cc, a = live.pop(rnd.randrange(len(live)))
            k.slab_free(cc, a)
        else:
            cc = c if rnd.random() < 0.7 else raw
            live.append((cc, k.slab_alloc(cc)))
    for cc, a in live:
        k.slab_free(cc, a)
    return k.cycles


def run_trace(**kw):
    """Two CPUs in strict simulated time (quantum 0: deterministic) run _program; the digest of
    their clocks, every lock's counters and cycles, and simulated memory."""
    h = hashlib.sha256()
    with Machine(2, "4M", time="simulated", quantum=0, **kw) as m:
        k = m.cpu(0)
        k.slab_cache_create("t100", 100)
        k.slab_cache_create("raw", 200, 0, SLAB_CACHE_NOMAGAZINE)
        h.update(repr(m.run(_program, 1500)).encode())
        st = m.stats()
        h.update(repr(sorted(st["locks"].items())).encode())
        h.update(repr(st["time"]).encode())
        h.update(bytes(m._shm.buf[0:m.regions.memory]))
        m.check()
    return h.hexdigest()


RUN_DIGEST = "5ff361e98ddf554afecfb1e5eaac3c53b9ba49857ac0e5dfc00153c517d4a2da"


@pytest.mark.parametrize("kw", [{}, ALL_OFF, dict(accel="off")], ids=["default", "off", "python"])
def test_every_option_off_keeps_the_simulated_figures(kw):
    """A run's simulated cycles, lock counts and cycles are those recorded before the options
    existed: the benchmarks in simulated time cannot tell the options were added."""
    assert run_trace(**kw) == RUN_DIGEST


@pytest.mark.parametrize("key", list(SEED_DIGESTS), ids=lambda k: f"{k[0]}-{k[1]}-{dict(k[2])}")
def test_every_option_off_is_the_seed_byte_for_byte(key):
    accel, size, extra = key
    assert trace(accel, size, **dict(extra)) == SEED_DIGESTS[key]


def test_options_given_as_off_are_the_default():
    assert trace("c", 4, **ALL_OFF) == SEED_DIGESTS[("c", 4, ())]


def test_options_on_change_the_trace():
    """The digest does see the options (so the test above can fail)."""
    assert trace("c", 4, colour=True) != SEED_DIGESTS[("c", 4, ())]


@pytest.mark.parametrize("kw,msg", [
    (dict(colour=1), "Machine: 'colour' must be True or False, got 1"),
    (dict(resize_magazines="yes"), "Machine: 'resize_magazines' must be True or False, got 'yes'"),
    (dict(empty_magazines=None), "Machine: 'empty_magazines' must be True or False, got None"),
    (dict(cpu_magazine_cache=0), "Machine: 'cpu_magazine_cache' must be True or False, got 0"),
    (dict(slab_locks=[]), "Machine: 'slab_locks' must be True or False, got []"),
    (dict(reap_every=0), "Machine: 'reap_every' must be a positive number of seconds "
                         "(math.inf: only k.slab_reap()) or None, got 0"),
    (dict(reap_every=-1.5), "Machine: 'reap_every' must be a positive number"),
    (dict(reap_every=True), "Machine: 'reap_every' must be a positive number"),
    (dict(reap_every=math.nan), "Machine: 'reap_every' must be a positive number"),
    (dict(reap_every=2 ** 80), f"Machine: 'reap_every' is {2 ** 80} seconds, past 1e+09, the "
                               f"longest period the timer holds (math.inf: only k.slab_reap())"),
    (dict(resize_threshold=-1), "Machine: 'resize_threshold' must be an int of at least 0, "
                                "got -1"),
    (dict(resize_threshold=2.5), "Machine: 'resize_threshold' must be an int of at least 0"),
    (dict(resize_period=0), "Machine: 'resize_period' must be a positive number of seconds, "
                            "got 0"),
    (dict(resize_period=math.inf), "Machine: 'resize_period' must be a positive number"),
])
def test_bad_option_arguments_name_the_keyword(kw, msg):
    with pytest.raises(ValueError) as e:
        Machine(1, "1M", **kw)
    assert isinstance(e.value, smpsim.BadArgument)
    assert str(e.value).startswith(msg)


@pytest.mark.parametrize("name,value,bit", [
    ("resize_magazines", True, OPT_RESIZE), ("colour", True, OPT_COLOUR),
    ("empty_magazines", True, OPT_EMPTY), ("cpu_magazine_cache", True, OPT_FRONT),
    ("slab_locks", True, OPT_SLABLOCKS), ("reap_every", 2.0, OPT_REAP)])
def test_each_option_has_its_bit_in_the_header(name, value, bit):
    with Machine(1, "1M", **{name: value}) as m:
        k = m.cpu(0)
        assert k._sa.peek(m.regions.header + HEADER.options) == bit
        assert getattr(m.options, name) == value
        m.check()
    with Machine(1, "1M") as m:
        assert m.cpu(0)._sa.peek(m.regions.header + HEADER.options) == 0


def test_all_options_together_in_the_header():
    with Machine(2, "2M", debug=True, counters="percpu", **ALL_ON) as m:
        bits = m.cpu(0)._sa.peek(m.regions.header + HEADER.options)
        assert bits == 1 | 2 | OPT_RESIZE | OPT_COLOUR | OPT_EMPTY | OPT_FRONT | OPT_SLABLOCKS \
            | OPT_REAP
        m.check()


def test_options_object():
    o = Options(colour=True, reap_every=0.5)
    assert o.bits == OPT_COLOUR | OPT_REAP and o.any and o.reap_period_ns == 500_000_000
    assert not Options().any and Options().reap_period_ns is None
    assert Options(reap_every=math.inf).reap_period_ns is None
    assert Options(resize_magazines=True).sized_magazines == (7, 15, 31, 47, 63, 95, 143)
    assert Options(resize_magazines=True, magazine_size=47).sized_magazines == (63, 95, 143)
    assert Options(resize_magazines=True, magazine_size=200).sized_magazines == ()
    assert repr(Options()) == "<Options seed>"
    assert repr(o) == "<Options colour reap_every=0.5>"


def test_every_cache_reports_the_options_statistics():
    for kw in ({}, ALL_ON):
        with Machine(2, "4M", **kw) as m:
            for name, c in m.stats()["caches"].items():
                assert {"constructed", "destructed", "magazine_size", "resizes"} <= set(c), name
                assert c["magazine_size"] == 4 and c["resizes"] == 0
            assert m.stats()["reap"] == {"calls": 0, "frames": 0, "magazines": 0}


def test_the_options_boot_caches_come_after_the_seeds():
    """With every option on, the seed's boot caches keep their addresses and order; the
    magazine caches follow, and cannot be destroyed."""
    with Machine(2, "4M") as plain, Machine(2, "4M", **ALL_ON) as m:
        seed = list(plain.stats()["caches"])
        names = list(m.stats()["caches"])
        assert names[:len(seed)] == seed
        assert names[len(seed):] == ["slab_magazine_cpu"] + [f"slab_magazine_{s}" for s in
                                                             (7, 15, 31, 47, 63, 95, 143)]
        for name in seed:
            assert plain.cpu(0).cache(name)._addr == m.cpu(0).cache(name)._addr
        k = m.cpu(0)
        with pytest.raises(smpsim.BadArgument, match="is a boot cache"):
            k.slab_cache_destroy(k.cache("slab_magazine_cpu"))
        m.check()


def test_slab_reap_needs_a_machine_that_keeps_the_working_set():
    with Machine(1, "1M") as m:
        with pytest.raises(smpsim.SmpsimError, match=r"^slab_reap: this machine does not keep "
                                                     r"its shared lists' working set; make it "
                                                     r"with Machine\(reap_every=seconds\)"):
            m.cpu(0).slab_reap()
        m.check()
    with Machine(1, "1M", reap_every=math.inf) as m:
        assert m.cpu(0).slab_reap() == 0
        assert m.stats()["reap"]["calls"] == 1
