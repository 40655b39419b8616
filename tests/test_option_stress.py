"""The million-operation stress run of tests/test_stress.py with the options beyond the seed:
8 CPUs on 2 cores, a million allocations and frees, all frees remote, full and light reclaims on
CPU 0 meanwhile, each option alone and all of them together (with constructors and destructors
on two of the caches): zero invariant violations after the run and after the destroys and
reclaims, every frame back, and every object handed out as its constructor left it. Slow: `make
test-slow`; the default suite runs the same with 2 and 4 CPUs and fewer operations."""

import pytest

from smpsim import SLAB_CACHE_NOMAGAZINE, SLAB_RECLAIM_ALL, Machine

from test_stress import SIZES, WORD, exchange

H = "option_helpers"
CACHES = [("small", 24, 0, 0, True), ("node", 100, 8, 0, False),
          ("page", 1000, 64, SLAB_CACHE_NOMAGAZINE, True), ("big", 5000, 4096, 0, False)]
OPTIONS = {
    "constructors": {},
    "resize": dict(resize_magazines=True, resize_threshold=0, resize_period=0.5),
    "colour": dict(colour=True),
    "empty": dict(empty_magazines=True),
    "front": dict(cpu_magazine_cache=True),
    "slab_locks": dict(slab_locks=True),
    "reap": dict(reap_every=0.02),
    "all": dict(resize_magazines=True, resize_threshold=1, colour=True, empty_magazines=True,
                cpu_magazine_cache=True, slab_locks=True, reap_every=0.02),
}


def run_exchange(cpus, memory, rounds, batch, options, *, reclaim_every, timeout, active=False):
    """`exchange` on a fresh machine with `options`; checks what every exchange run promises,
    then destroys and reclaims back to the frames boot left. Returns the operations done.
    `active`: also require that periodic reaps ran and magazines grew, if those are on."""
    with Machine(cpus, memory, magazine_size=4, **options) as m:
        k = m.cpu(0)
        boot_free = m.stats()["frames"]["free"]
        made = [k.slab_cache_create(n, s, a, f, ctor=f"{H}:construct" if fn else None,
                                    dtor=f"{H}:destruct" if fn else None)
                for n, s, a, f, fn in CACHES]
        mailbox = k.kalloc(cpus * (1 + 3 * batch) * WORD)
        results = m.run(exchange, made, SIZES, rounds, batch, mailbox, 0, reclaim_every,
                        timeout=timeout)
        m.check()
        assert sum(r["corrupt"] for r in results) == 0
        if active and options.get("reap_every"):
            assert m.stats()["reap"]["calls"] > 0
        if active and options.get("resize_magazines"):
            assert sum(c["resizes"] for c in m.stats()["caches"].values()) > 0
        assert sum(r["allocs"] for r in results) == sum(r["frees"] for r in results)
        stats = m.stats()["caches"]
        for name, *_, fn in CACHES:
            st = stats[name]
            assert st["allocated"] == 0 and st["dtor_errors"] == 0, (name, st)
            if fn:          # every object out of its slab was constructed once, not destructed
                assert st["constructed"] - st["destructed"] == st["cached"] and \
                    st["constructed"] > 0, (name, st)
            else:
                assert st["constructed"] == st["destructed"] == 0
        k.kfree(mailbox)
        for c in made:
            k.slab_cache_destroy(c)
        m.check()
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        k.slab_reclaim(SLAB_RECLAIM_ALL)
        assert m.stats()["frames"]["free"] == boot_free
        m.check()
        return sum(r["allocs"] + r["frees"] for r in results)


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("cpus", [2, 4])
def test_exchange_with_each_option(name, cpus):
    assert run_exchange(cpus, "16M", 12, 40, OPTIONS[name], reclaim_every=4,
                        timeout=100) == 2 * cpus * 12 * 40


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", list(OPTIONS))
def test_million_operations_on_eight_cpus_with_option(name):
    assert run_exchange(8, "64M", 250, 250, OPTIONS[name], reclaim_every=25,
                        timeout=800, active=True) == 1_000_000
