"""Workloads: each at 2 CPUs with small sizes, through Machine.run; afterwards every object is
freed (the caches' allocated counts are back where they were), Machine.check() is clean, and the
recorded outcomes are what the workload promises (remote frees, roles, determinism). The
allocator's own caches (magazines, external slab descriptors, cache descriptors) keep what the
run left in magazines, so only the caller-facing caches are compared."""

import pytest

import smpsim
from smpsim import workloads as workers
from smpsim.workloads import common, kalloc_mix, larson, xmalloc

pytestmark = pytest.mark.timeout(60)

INTERNAL = {"slab_magazine", "slab_cache", "slab_extern"}


def run(name, params, cpus=2, memory="16M", caches=(), handed=0, **machine):
    """Runs workload `name` on every CPU of a fresh machine; returns (results, stats after).
    `handed`: objects the parent allocated in prepare() for the CPUs to free."""
    mod = workers.module(name)
    with smpsim.Machine(cpus, memory, **machine) as m:
        k = m.cpu(0)
        made = [k.slab_cache_create(n, size, 0, flags) for n, size, flags in caches]
        before = {n: c["allocated"] for n, c in m.stats()["caches"].items()
                  if n not in INTERNAL}
        p = mod.prepare(k, params, cpus) if hasattr(mod, "prepare") else params
        results = m.run(f"{mod.__name__}:run", p, timeout=50)
        if hasattr(mod, "finish"):
            mod.finish(k, p)
        stats = m.stats()
        after = {n: c["allocated"] for n, c in stats["caches"].items() if n in before}
        assert after == before
        m.check()
        for c in made:
            k.slab_cache_destroy(c)
        m.check()
    assert [r["cpu"] for r in results] == list(range(cpus))
    for r in results:
        assert r["allocs"] + r["frees"] == r["ops"]
        assert r["corrupt"] == 0 and r["seconds"] >= 0
    assert sum(r["allocs"] for r in results) + handed == sum(r["frees"] for r in results)
    return results, stats


def test_threadtest_all_local():
    results, _ = run("threadtest", {"ops": 400, "batch": 30, "order": "random"})
    assert [r["ops"] for r in results] == [400, 400]
    assert all(r["remote_frees"] == 0 and r["failed"] == 0 for r in results)


def test_threadtest_on_a_nomagazine_cache():
    results, stats = run("threadtest", {"ops": 200, "batch": 5, "cache": "obj"},
                         caches=[("obj", 100, smpsim.SLAB_CACHE_NOMAGAZINE)])
    assert [r["allocs"] for r in results] == [100, 100]
    assert stats["locks"].get("obj.cpu0") is None
    assert stats["locks"]["obj.slablock"]["acquisitions"] >= 400


def test_larson_hands_objects_between_cpus():
    results, _ = run("larson", {"ops": 400, "slots": 20, "round_ops": 100})
    rounds = {r["rounds"] for r in results}
    assert rounds == {4}
    # after each round the objects move on: many frees are of the other CPU's objects
    assert all(r["remote_frees"] >= 20 for r in results)


def test_xmalloc_every_free_is_remote():
    results, _ = run("xmalloc", {"ops": 300, "capacity": 8})
    producer, consumer = results
    assert (producer["role"], consumer["role"]) == ("producer", "consumer")
    assert producer["allocs"] == 300 and producer["frees"] == 0
    assert consumer["frees"] == 300 and consumer["remote_frees"] == 300


def test_xmalloc_alone_on_one_cpu():
    results, _ = run("xmalloc", {"ops": 100, "capacity": 4}, cpus=1)
    assert results[0]["role"] == "both" and results[0]["frees"] == results[0]["allocs"]


def test_scratch_handoff_is_a_remote_free():
    results, _ = run("scratch", {"ops": 200, "writes": 2, "size": 8}, handed=2)
    for r in results:
        assert r["remote_frees"] == 1 and r["writes"] == 2 * r["allocs"]
        assert r["shared_line_allocs"] >= 1


def test_kalloc_mix_spans_the_malloc_caches():
    results, _ = run("kalloc_mix", {"ops": 600, "live": 40, "seed": 3})
    seen = set().union(*(r["by_cache"] for r in results))
    assert {"malloc-16", "malloc-64", "malloc-128"} <= seen
    assert all(r["live_at_end"] <= 2 * 40 for r in results)


def test_pressure_runs_out_and_reclaims():
    results, stats = run("pressure", {"rounds": 1, "size_a": 512, "size_b": 4096},
                         memory="1M", magazine_size=8)
    assert all(r["failed"] >= 2 for r in results)
    assert stats["reclaim"]["calls"] >= 1 and stats["reclaim"]["frames"] >= 1
    assert sum(r["filled"] for r in results) > 100 and sum(r["refilled"] for r in results) > 0


def test_deterministic_for_a_seed():
    """One CPU, the same seed: the same allocation sizes, so the same per-cache counts."""
    def counts(seed):
        results, _ = run("kalloc_mix", {"ops": 300, "live": 20, "seed": seed}, cpus=1)
        return results[0]["by_cache"]
    assert counts(5) == counts(5)
    assert counts(5) != counts(6)


def test_bad_parameters_name_the_parameter():
    with pytest.raises(ValueError, match=r"unknown parameter 'nope'; known: "):
        common.resolve(larson.PARAMS, {"nope": 1})
    with pytest.raises(ValueError, match=r"parameter 'live': expected an integer 1..1000000, "
                                         r"got 0"):
        common.resolve(kalloc_mix.PARAMS, {"live": 0})
    with pytest.raises(ValueError, match="xmalloc.run: no queue; call xmalloc.prepare"):
        xmalloc.run(None, {})


def test_malloc_cache_names():
    assert [common.malloc_cache_name(s) for s in (1, 8, 9, 1024, 1025, 131072)] == [
        "malloc-8", "malloc-8", "malloc-16", "malloc-1K", "malloc-2K", "malloc-128K"]


def test_burst_then_a_steady_phase():
    results, stats = run("burst", {"burst": 300, "batch": 12, "ops": 240, "cache": "obj"},
                         caches=[("obj", 256, 0)])
    assert [r["burst_ops"] for r in results] == [600, 600]
    assert [r["ops"] for r in results] == [840, 840]
    assert all(r["rounds"] == 10 and r["remote_frees"] == 0 for r in results)
    # The burst's magazines wait on the shared list: what reaping would give back. (A CPU
    # still in its burst may take magazines the other freed, so at least one burst is there,
    # less what two CPUs' pairs hold.)
    assert stats["caches"]["obj"]["magazines"] >= (300 - 2 * 2 * 4) // 4


@pytest.mark.parametrize("colour,misses", [(False, 1.0), (True, 0.1)])
def test_walk_counts_the_misses_colouring_avoids(colour, misses):
    """150 objects of 640 bytes: uncoloured, their first words fall in 6 sets of 8 lines and
    evict each other on every pass; coloured, in up to 24. One CPU: with two, which slabs (so
    which colours) each gets depends on how their allocations interleave; taking turns, each
    gets every other colour and misses most of the time."""
    results, _ = run("walk", {"count": 150, "passes": 10, "cache": "obj"}, cpus=1,
                     caches=[("obj", 640, smpsim.SLAB_CACHE_NOMAGAZINE)], colour=colour)
    for r in results:
        assert r["line_accesses"] == 1500
        rate = r["line_misses"] / r["line_accesses"]
        assert rate == 1.0 if not colour else rate <= misses


def test_walk_line_cache_model():
    from smpsim.workloads.walk import LineCache
    c = LineCache(sets=2, ways=2, line=64)
    hits = [c.read(a) for a in (0, 128, 0, 256, 128, 0, 64)]
    # set 0 holds lines 0, 2, 4 (LRU, 2 ways): 0 miss, 2 miss, 0 hit, 4 miss (evicts 2),
    # 2 miss (evicts 0), 0 miss; line 1 is in set 1: miss.
    assert hits == [False, False, True, False, False, False, False]
    assert (c.accesses, c.misses) == (7, 6)


def test_the_scenario_constructors_keep_their_header():
    from smpsim.workloads import objects
    with smpsim.Machine(1, "2M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 64, ctor="smpsim.workloads.objects:construct",
                                dtor="smpsim.workloads.objects:destruct")
        a = k.slab_alloc(c)
        assert objects.is_constructed(k, a)
        k.memory[a:a + 8] = b"usertag!"              # the caller's word: the header stays
        k.slab_free(c, a)
        k.slab_reclaim(smpsim.SLAB_RECLAIM_ALL)
        st = m.stats()["caches"]["obj"]
        assert (st["constructed"], st["destructed"], st["dtor_errors"]) == (1, 1, 0)
        assert not objects.is_constructed(k, a)
        m.check()
