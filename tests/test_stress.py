"""Multi-process stress of the whole kernel through Machine.run: 2 to 8 CPUs on a 2-core machine,
several caches at once, objects freed on another CPU than the one that allocated them, memory
pressure that makes the frame allocator reclaim, and at the end destroys and full reclaims that
bring the free-frame count back to where boot left it.

Objects travel between CPUs through simulated memory, with the kernel's atomics:

- `exchange`: barrier phases. Each round every CPU allocates a batch, tags each object (its
  address and a serial in the first and last word), publishes the batch in its row of a mailbox
  (kalloc'd by the parent), and, after a barrier, frees the batch of a neighbour that changes from
  round to round (distance 1 + round % (n - 1)), so all frees are remote.
- `pipeline`: pairs of CPUs with a single-producer single-consumer ring (head and tail words on
  their own lines, atomic_load / atomic_store): producers allocate, consumers free, concurrently.

Every test checks recorded outcomes (counts, intact tags, failures only under FRAME_ATOMIC),
never a time, and ends with m.check().
"""

import os
import random
import struct

import pytest

import smpsim
from smpsim import FRAME_ATOMIC, SLAB_CACHE_NOMAGAZINE, SLAB_RECLAIM_ALL, Machine

pytestmark = pytest.mark.timeout(120)

WORD = 8
LINE = 64
RUN_TIMEOUT = 90          # seconds a run may take before it is stopped (CPUError)
_Q = struct.Struct("<Q")


# --- what every CPU runs ----------------------------------------------------------------------

def _tag(serial, addr):
    return (serial << 32) ^ addr


def _alloc(k, caches, sizes, rng, flags):
    """One object of a random cache (index < len(caches)) or kalloc size (index len(caches));
    (addr, index, size), addr None when memory ran out under FRAME_ATOMIC."""
    i = rng.randrange(len(caches) + (1 if sizes else 0))
    if i < len(caches):
        c = caches[i]
        return k.slab_alloc(c, flags), i, c.size
    size = rng.choice(sizes)
    return k.kalloc(size, flags), i, size


def _free(k, caches, addr, i):
    if i < len(caches):
        k.slab_free(caches[i], addr)
    else:
        k.kfree(addr)


def _write_tag(mem, addr, size, tag):
    _Q.pack_into(mem, addr, tag)
    _Q.pack_into(mem, addr + size - WORD if size >= 2 * WORD else addr, tag)


def _tag_intact(mem, addr, size, tag):
    end = addr + size - WORD if size >= 2 * WORD else addr
    return _Q.unpack_from(mem, addr)[0] == tag and _Q.unpack_from(mem, end)[0] == tag


def exchange(k, caches, sizes, rounds, batch, mailbox, flags=0, reclaim_every=0):
    """Barrier phases; each CPU frees a neighbour's batch. The mailbox row of CPU c is
    `1 + 3 * batch` words: the count, then (address, cache index, size) per object."""
    n, me = k.cpus, k.cpu_id
    rng = random.Random(1000 + me)
    row = (1 + 3 * batch) * WORD
    mine = mailbox + me * row
    mem = k.memory
    out = {"cpu": me, "allocs": 0, "frees": 0, "remote": 0, "failed": 0, "corrupt": 0,
           "reclaims": 0}
    for r in range(rounds):
        got = 0
        for j in range(batch):
            try:
                addr, i, size = _alloc(k, caches, sizes, rng, flags)
            except smpsim.OutOfMemory:
                if flags & FRAME_ATOMIC:
                    raise                  # FRAME_ATOMIC must return None instead
                addr = None
            if addr is None:
                out["failed"] += 1
                continue
            _write_tag(mem, addr, size, _tag(r * batch + j, addr))
            base = mine + (1 + 3 * got) * WORD
            k.atomic_store(base, addr)
            k.atomic_store(base + WORD, i)
            k.atomic_store(base + 2 * WORD, size | ((r * batch + j) << 32))
            got += 1
        k.atomic_store(mine, got)
        out["allocs"] += got
        if reclaim_every and me == 0 and r % reclaim_every == 0:
            k.slab_reclaim(SLAB_RECLAIM_ALL if r % (2 * reclaim_every) else 0)
            out["reclaims"] += 1
        k.barrier()
        src = (me - 1 - r % (n - 1)) % n if n > 1 else me
        theirs = mailbox + src * row
        for j in range(k.atomic_load(theirs)):
            base = theirs + (1 + 3 * j) * WORD
            addr, i = k.atomic_load(base), k.atomic_load(base + WORD)
            word = k.atomic_load(base + 2 * WORD)
            size, serial = word & 0xFFFFFFFF, word >> 32
            if not _tag_intact(mem, addr, size, _tag(serial, addr)):
                out["corrupt"] += 1
            _free(k, caches, addr, i)
            out["frees"] += 1
            out["remote"] += src != me
        k.barrier()                        # rows are rewritten only after everyone read theirs
    return out


def pipeline(k, caches, sizes, count, ring, capacity):
    """Even CPUs produce `count` objects into the ring of their pair, odd CPUs free them.
    Ring: head (written by the producer) on one line, tail (by the consumer) on the next, then
    `capacity` slots of one word: address << 8 | cache index."""
    me = k.cpu_id
    base = ring + (me // 2) * (2 * LINE + capacity * WORD)
    head, tail, slots = base, base + LINE, base + 2 * LINE
    rng = random.Random(2000 + me)
    mem = k.memory
    out = {"cpu": me, "allocs": 0, "frees": 0, "corrupt": 0, "local": 0, "waits": 0}
    if me % 2 == 0:
        for n in range(count):
            while n - k.atomic_load(tail) >= capacity:
                out["waits"] += 1
                os.sched_yield()
            addr, i, size = _alloc(k, caches, sizes, rng, 0)
            size = size if i < len(caches) else WORD    # kalloc: tag the first word only
            _write_tag(mem, addr, size, _tag(size, addr))
            k.atomic_store(slots + (n % capacity) * WORD, addr << 8 | i)
            k.atomic_store(head, n + 1)
            out["allocs"] += 1
    else:
        for n in range(count):
            while k.atomic_load(head) <= n:
                out["waits"] += 1
                os.sched_yield()
            word = k.atomic_load(slots + (n % capacity) * WORD)
            addr, i = word >> 8, word & 0xFF
            size = caches[i].size if i < len(caches) else WORD
            if not _tag_intact(mem, addr, size, _tag(size, addr)):
                out["corrupt"] += 1
            _free(k, caches, addr, i)
            k.atomic_store(tail, n + 1)
            out["frees"] += 1
            # Some local traffic of the consumer's own, to mix with the remote frees.
            if n % 3 == 0:
                addr, i, size = _alloc(k, caches, sizes, rng, 0)
                _free(k, caches, addr, i)
                out["local"] += 1
    return out


# --- the parent's side ------------------------------------------------------------------------

CACHES = [("small", 24, 0, 0), ("node", 100, 8, 0), ("page", 1000, 64, SLAB_CACHE_NOMAGAZINE),
          ("big", 5000, 4096, 0)]
SIZES = [8, 100, 700, 3000]


def _user_allocated(m, names):
    return {n: c["allocated"] for n, c in m.stats()["caches"].items() if n in names}


def _finish(m, k, caches, boot_free, scratch=()):
    """Destroy the caches, free the scratch memory, two full reclaims: frames back to boot."""
    for a in scratch:
        k.kfree(a)
    for c in caches:
        k.slab_cache_destroy(c)
    m.check()
    k.slab_reclaim(SLAB_RECLAIM_ALL)
    k.slab_reclaim(SLAB_RECLAIM_ALL)
    stats = m.stats()
    assert stats["frames"]["free"] == boot_free
    assert all(c["allocated"] == 0 for n, c in stats["caches"].items()
               if n not in ("slab_magazine", "slab_cache", "slab_extern"))
    m.check()


def _exchange(cpus, memory, rounds, batch, *, caches=CACHES, sizes=SIZES, flags=0,
              reclaim_every=0, magazine_size=4, timeout=RUN_TIMEOUT, **machine):
    """Runs `exchange` on a fresh machine and checks what every exchange run promises; returns
    (results, stats after the run)."""
    with Machine(cpus, memory, magazine_size=magazine_size, **machine) as m:
        k = m.cpu(0)
        boot_free = m.stats()["frames"]["free"]
        made = [k.slab_cache_create(name, size, align, fl) for name, size, align, fl in caches]
        mailbox = k.kalloc(cpus * (1 + 3 * batch) * WORD)
        before = _user_allocated(m, {"malloc-8", "malloc-128", "malloc-1K", "malloc-4K"})
        results = m.run(exchange, made, sizes, rounds, batch, mailbox, flags, reclaim_every,
                        timeout=timeout)
        stats = m.stats()
        m.check()
        assert [r["cpu"] for r in results] == list(range(cpus))
        assert sum(r["corrupt"] for r in results) == 0
        assert sum(r["allocs"] for r in results) == sum(r["frees"] for r in results)
        assert all(r["allocs"] + r["failed"] == rounds * batch for r in results)
        if cpus > 1:
            assert all(r["remote"] == r["frees"] for r in results)
        assert all(stats["caches"][name]["allocated"] == 0 for name, *_ in caches)
        assert _user_allocated(m, set(before)) == before
        _finish(m, k, made, boot_free, [mailbox])
    return results, stats


def test_exchange_two_cpus_every_free_remote():
    results, stats = _exchange(2, "16M", 40, 30)
    assert sum(r["frees"] for r in results) == 2 * 40 * 30
    assert all(r["failed"] == 0 for r in results)
    # Both CPUs used their own magazines and the shared lists of the magazine caches.
    assert all(stats["locks"][f"node.cpu{i}"]["acquisitions"] > 0 for i in (0, 1))
    assert "page.cpu0" not in stats["locks"]


@pytest.mark.parametrize("accel", ["c", "off"])
def test_exchange_eight_cpus_on_two_cores(accel):
    results, _ = _exchange(8, "32M", 30, 40, magazine_size=7, accel=accel)
    assert sum(r["frees"] for r in results) == 8 * 30 * 40
    # Over the rounds each CPU freed objects of several different neighbours.
    assert all(r["remote"] == r["frees"] > 0 for r in results)


def test_exchange_in_debugging_mode():
    """Debugging mode (its own hooks on every allocation and free) under the same traffic."""
    results, _ = _exchange(3, "8M", 6, 20, debug=True)
    assert sum(r["frees"] for r in results) == 3 * 6 * 20


def test_exchange_with_concurrent_reclaims():
    results, stats = _exchange(4, "8M", 20, 20, reclaim_every=2)
    assert results[0]["reclaims"] == 10
    assert stats["reclaim"]["calls"] >= 10


def test_memory_pressure_forces_reclaim():
    """4 CPUs on 2M, objects up to 32K: allocations fail under FRAME_ATOMIC (None, never
    OutOfMemory) and the frame allocator reclaims while the others allocate and free."""
    caches = [("small", 40, 0, 0), ("mid", 3000, 0, 0), ("large", 9000, 0, 0)]
    results, stats = _exchange(4, "2M", 10, 80, caches=caches, sizes=[16384, 32768, 512],
                               flags=FRAME_ATOMIC)
    assert sum(r["failed"] for r in results) > 0
    assert sum(r["allocs"] for r in results) > 0
    assert stats["reclaim"]["calls"] > 0


def test_memory_pressure_out_of_memory_without_frame_atomic():
    caches = [("mid", 3000, 0, 0), ("large", 12000, 64, SLAB_CACHE_NOMAGAZINE)]
    results, _ = _exchange(3, "2M", 6, 60, caches=caches, sizes=[32768], flags=0)
    assert sum(r["failed"] for r in results) > 0


@pytest.mark.parametrize("cpus,accel", [(2, "c"), (6, "c"), (4, "python")])
def test_pipeline_producers_to_consumers(cpus, accel):
    count, capacity = 3000, 16
    with Machine(cpus, "16M", magazine_size=4, accel=accel) as m:
        k = m.cpu(0)
        boot_free = m.stats()["frames"]["free"]
        made = [k.slab_cache_create(name, size, align, fl) for name, size, align, fl in CACHES]
        ring = k.kalloc((cpus // 2) * (2 * LINE + capacity * WORD))
        for a in range(ring, ring + (cpus // 2) * (2 * LINE + capacity * WORD), WORD):
            k.atomic_store(a, 0)
        results = m.run(pipeline, made, SIZES, count, ring, capacity, timeout=RUN_TIMEOUT)
        m.check()
        producers, consumers = results[0::2], results[1::2]
        assert [r["allocs"] for r in producers] == [count] * (cpus // 2)
        assert [r["frees"] for r in consumers] == [count] * (cpus // 2)
        assert sum(r["corrupt"] for r in results) == 0
        assert all(m.stats()["caches"][name]["allocated"] == 0 for name, *_ in CACHES)
        _finish(m, k, made, boot_free, [ring])


def _million(accel, timeout):
    """The engine's promise: an 8-CPU run of a million operations (allocations plus frees, all
    frees remote, full and light reclaims on CPU 0 meanwhile) ends with zero invariant
    violations: _exchange runs m.check() after the run and after the destroys and reclaims."""
    rounds, batch = 250, 250
    results, _ = _exchange(8, "64M", rounds, batch, reclaim_every=25, timeout=timeout,
                           accel=accel)
    ops = sum(r["allocs"] + r["frees"] for r in results)
    assert ops == 2 * 8 * rounds * batch == 1_000_000


@pytest.mark.timeout(300)
def test_million_operations_on_eight_cpus():
    """With the C accelerator of the magazine hit path (the default): 5 to 9 s here."""
    _million("c", timeout=240)


@pytest.mark.timeout(300)
def test_million_operations_on_eight_cpus_python_path():
    """The same through the Python allocator alone (accel="off"): about 8 s here."""
    _million("off", timeout=240)
