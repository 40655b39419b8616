"""Property-based, stateful test of the whole kernel (hypothesis RuleBasedStateMachine).

Random sequences of cache creation, allocation (slab_alloc and kalloc, every flag), frees on the
allocating CPU or another one, invalid frees, reclaim (light and SLAB_RECLAIM_ALL), destroys
(refused while objects are live, real otherwise) and exhaustion of a small machine (1M to 4M, so
that OutOfMemory and FRAME_ATOMIC's None happen). Everything runs in this process through
m.cpu(i) for several i, so that a failure shrinks to a short sequence.

The model knows every live object: its cache, the bytes it holds (a pattern unique to it, which
must stay intact until it is freed), and the CPU that allocated it. After every step:
m.check() holds, every live object's pattern is intact, and each cache's `allocated` count in
m.stats() is what the model says. A refused call (InvalidFree, CacheNotEmpty) must leave the
simulated memory, the frame table and the object table byte for byte as they were.
Teardown frees everything, destroys the test's caches, runs two full reclaims and finds the
free-frame count where boot left it.
"""

import struct

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, initialize, invariant,
                                 multiple, precondition, rule)

import smpsim
from smpsim import (FRAME_ATOMIC, FRAME_NO_RECLAIM, SLAB_CACHE_NOMAGAZINE, SLAB_RECLAIM_ALL,
                    Machine)

# A passing run takes about 20 s. The bound is above hypothesis's own 5-minute cap on shrinking,
# so that a failure is reported as its shrunk sequence rather than cut short.
pytestmark = pytest.mark.timeout(420)

CPUS = 4
MAX_USER_CACHES = 6
INTERNAL = ("slab_magazine", "slab_cache", "slab_extern")

cpus = st.integers(0, CPUS - 1)
alloc_flags = st.sampled_from([0, FRAME_ATOMIC, FRAME_NO_RECLAIM, FRAME_ATOMIC | FRAME_NO_RECLAIM])
kalloc_sizes = st.one_of(st.integers(1, 600), st.integers(1, 1 << 17),
                         st.sampled_from([8, 4096, 4097, 1 << 17]))


def malloc_class(size):
    """The malloc cache kalloc(size) uses (the seed's reclaim order)."""
    n = 8
    while n < size:
        n *= 2
    return f"malloc-{n}" if n < 1024 else f"malloc-{n // 1024}K"


class Obj:
    """A live object as the model knows it."""

    __slots__ = ("addr", "cache", "handle", "size", "cpu", "pattern")

    def __init__(self, addr, cache, handle, size, cpu, seq):
        self.addr, self.cache, self.handle, self.size, self.cpu = addr, cache, handle, size, cpu
        unit = struct.pack("<QQ", seq, addr)
        self.pattern = (unit * (size // len(unit) + 1))[:size]


class SlabMachine(RuleBasedStateMachine):
    caches = Bundle("caches")
    objects = Bundle("objects")

    def __init__(self):
        super().__init__()
        self.m = None
        self.live = {}            # address -> Obj
        self.user = {}            # name -> SlabCache of the test's live caches
        self.destroyed = []       # handles of destroyed caches
        self.align = {}           # name -> the alignment its cache promises
        self.bulk = []            # live objects allocated in bulk (not in the bundle)
        self.seq = 0
        self.names = 0

    # --- helpers ----------------------------------------------------------------------------

    def k(self, cpu):
        return self.m.cpu(cpu)

    def snapshot(self):
        """Simulated memory, the cache-id table, the frame table and the object table."""
        r = self.m.regions
        buf = self.m._shm.buf
        return bytes(self.k(0).memory), bytes(buf[r.cache_ids:r.object_table + r.memory // 4])

    def record(self, addr, cache, handle, size, cpu, align=8):
        assert addr is not None and addr % align == 0, f"{addr!r} not aligned to {align}"
        assert smpsim.PAGE_SIZE <= addr and addr + size <= self.m.memory
        assert addr not in self.live, f"{addr:#x} handed out twice"
        self.seq += 1
        obj = Obj(addr, cache, handle, size, cpu, self.seq)
        self.k(cpu).memory[addr:addr + size] = obj.pattern
        self.live[addr] = obj
        return addr

    def release(self, addr, cpu):
        """Free a live object of the model on cpu, after checking its contents."""
        obj = self.live.pop(addr)
        k = self.k(cpu)
        assert bytes(k.memory[addr:addr + obj.size]) == obj.pattern, f"{addr:#x} corrupted"
        if obj.handle is None:
            k.kfree(addr)
        else:
            k.slab_free(obj.handle, addr)

    def refused(self, error, fn, *args):
        """fn(*args) must raise error and change nothing."""
        before = self.snapshot()
        with pytest.raises(error):
            fn(*args)
        assert self.snapshot() == before, f"{fn.__name__} changed state although it raised"

    # --- rules ------------------------------------------------------------------------------

    @initialize(memory=st.sampled_from(["1M", "2M", "4M"]), magazine_size=st.sampled_from([1, 4]),
                accel=st.sampled_from(["c", "python", "off"]))
    def boot(self, memory, magazine_size, accel):
        self.m = Machine(CPUS, memory, magazine_size=magazine_size, accel=accel)
        self.boot_free = self.m.stats()["frames"]["free"]

    @precondition(lambda self: len(self.user) < MAX_USER_CACHES)
    @rule(target=caches, size=st.integers(1, 20000), align=st.sampled_from([0, 8, 64, 4096]),
          nomagazine=st.booleans(), cpu=cpus)
    def create(self, size, align, nomagazine, cpu):
        name = f"c{self.names}"
        self.names += 1
        flags = SLAB_CACHE_NOMAGAZINE if nomagazine else 0
        try:
            c = self.k(cpu).slab_cache_create(name, size, align, flags)
        except smpsim.OutOfMemory:
            with pytest.raises(KeyError):
                self.k(0).cache(name)
            return multiple()
        assert (c.name, c.size, c.order, c.objects, c.flags) == \
            (name, *smpsim.geometry(size, align, flags))
        assert self.k((cpu + 1) % CPUS).cache(name) == c
        self.user[name] = c
        self.align[name] = max(align, 8)
        return c

    def _alloc(self, cache, cpu, flags):
        """An object of cache on cpu, recorded in the model; None when memory ran out."""
        try:
            a = self.k(cpu).slab_alloc(cache, flags)
        except smpsim.OutOfMemory:
            assert not flags & FRAME_ATOMIC
            return None
        if a is None:
            assert flags & FRAME_ATOMIC
            return None
        return self.record(a, cache.name, cache, cache.size, cpu, self.align[cache.name])

    @rule(target=objects, cache=caches, cpu=cpus, flags=alloc_flags)
    def alloc(self, cache, cpu, flags):
        a = self._alloc(cache, cpu, flags)
        return multiple() if a is None else a

    @rule(cache=caches, cpu=cpus, flags=alloc_flags, n=st.integers(1, 60))
    def alloc_bulk(self, cache, cpu, flags, n):
        """Up to n objects of cache on cpu (fewer when memory runs out), kept in the bulk pool
        (out of the bundle, so that a failing sequence stays readable)."""
        for _ in range(n):
            a = self._alloc(cache, cpu, flags)
            if a is None:
                break
            self.bulk.append(a)

    @rule(target=objects, size=kalloc_sizes, cpu=cpus, flags=alloc_flags)
    def kalloc(self, size, cpu, flags):
        try:
            a = self.k(cpu).kalloc(size, flags)
        except smpsim.OutOfMemory:
            assert not flags & FRAME_ATOMIC
            return multiple()
        if a is None:
            assert flags & FRAME_ATOMIC
            return multiple()
        return self.record(a, malloc_class(size), None, size, cpu)

    @rule(size=st.sampled_from([2048, 16384, 1 << 17]), cpu=cpus, other=cpus)
    def exhaust(self, size, cpu, other):
        """kalloc on cpu with FRAME_ATOMIC until None, then on other without it until
        OutOfMemory (into the bulk pool). The second phase may still succeed a few times: each
        failed request ran a full reclaim, which can leave freed descriptors in slab_extern's
        magazines that the next reclaim gives back (the seed's reclaim order).
        (Three arguments, not two: hypothesis shrinks rule choices toward the rule with the
        fewest arguments, and that should be a cheap one such as reclaim, not this.)"""
        k = self.k(cpu)
        while (a := k.kalloc(size, FRAME_ATOMIC)) is not None:
            self.bulk.append(self.record(a, malloc_class(size), None, size, cpu))
        k = self.k(other)
        with pytest.raises(smpsim.OutOfMemory, match=f"kalloc: no memory left for {size} bytes"):
            while True:
                a = k.kalloc(size)
                self.bulk.append(self.record(a, malloc_class(size), None, size, other))

    @precondition(lambda self: self.bulk)
    @rule(stride=st.integers(1, 3), cpu=cpus, remote=st.booleans())
    def free_bulk(self, stride, cpu, remote):
        """Free every stride-th object of the bulk pool, on cpu or (remote) on the CPU after
        the one that allocated it."""
        for a in self.bulk[::stride]:
            self.release(a, (self.live[a].cpu + 1) % CPUS if remote else cpu)
        del self.bulk[::stride]

    @rule(obj=consumes(objects), cpu=cpus, remote=st.booleans())
    def free(self, obj, cpu, remote):
        """Free on the allocating CPU, or (remote) on cpu if that is another one."""
        home = self.live[obj].cpu
        self.release(obj, cpu if remote and cpu != home else home)

    @rule(obj=consumes(objects), cpu=cpus)
    def double_free(self, obj, cpu):
        handle = self.live[obj].handle
        self.release(obj, cpu)
        k = self.k((cpu + 1) % CPUS)
        if handle is None:
            self.refused(smpsim.InvalidFree, k.kfree, obj)
        else:
            self.refused(smpsim.InvalidFree, k.slab_free, handle, obj)

    @rule(obj=objects, cache=caches, cpu=cpus)
    def wrong_cache_free(self, obj, cache, cpu):
        k = self.k(cpu)
        if self.live[obj].handle != cache:
            self.refused(smpsim.InvalidFree, k.slab_free, cache, obj)
        if self.live[obj].handle is not None:
            self.refused(smpsim.InvalidFree, k.kfree, obj)

    @rule(obj=objects, offset=st.sampled_from([1, 8, 64]), cpu=cpus)
    def interior_free(self, obj, offset, cpu):
        o = self.live[obj]
        if obj + offset in self.live or offset >= o.size:
            return
        k = self.k(cpu)
        if o.handle is None:
            self.refused(smpsim.InvalidFree, k.kfree, obj + offset)
        else:
            self.refused(smpsim.InvalidFree, k.slab_free, o.handle, obj + offset)

    @rule(addr=st.one_of(st.integers(-8, 1 << 23), st.sampled_from([8, 4096, 1 << 21, 1 << 22])),
          cpu=cpus)
    def stray_free(self, addr, cpu):
        if addr == 0 or addr in self.live and self.live[addr].handle is None:
            return
        self.refused(smpsim.InvalidFree, self.k(cpu).kfree, addr)

    @rule(cpu=cpus, full=st.booleans())
    def reclaim(self, cpu, full):
        frames = self.k(cpu).slab_reclaim(SLAB_RECLAIM_ALL if full else 0)
        assert type(frames) is int and frames >= 0
        if full:
            # Only slab_extern may hold objects in magazines: the descriptors the reclaim freed.
            cached = {n: c["cached"] for n, c in self.m.stats()["caches"].items()
                      if c["cached"] and n != "slab_extern"}
            assert cached == {}

    @rule(target=caches, cache=consumes(caches), cpu=cpus)
    def destroy(self, cache, cpu):
        k = self.k(cpu)
        if any(o.handle == cache for o in self.live.values()):
            self.refused(smpsim.CacheNotEmpty, k.slab_cache_destroy, cache)
            return cache
        k.slab_cache_destroy(cache)
        del self.user[cache.name]
        self.destroyed.append(cache)
        with pytest.raises(KeyError):
            k.cache(cache.name)
        return multiple()

    @precondition(lambda self: self.destroyed)
    @rule(i=st.integers(0, 100), cpu=cpus)
    def use_destroyed(self, i, cpu):
        cache = self.destroyed[i % len(self.destroyed)]
        k = self.k(cpu)
        with pytest.raises(smpsim.InvalidCache, match=f"slab_alloc: cache '{cache.name}' was"):
            k.slab_alloc(cache)
        with pytest.raises(smpsim.InvalidCache):
            k.slab_cache_destroy(cache)

    # --- after every step ---------------------------------------------------------------------

    @invariant()
    def consistent(self):
        if self.m is None:
            return
        self.m.check()
        mem = self.k(0).memory
        for a, o in self.live.items():
            assert bytes(mem[a:a + o.size]) == o.pattern, f"live object {a:#x} corrupted"
        want = {}
        for o in self.live.values():
            want[o.cache] = want.get(o.cache, 0) + 1
        stats = self.m.stats()
        have = {n: c["allocated"] for n, c in stats["caches"].items()
                if c["allocated"] and n not in INTERNAL}
        assert have == want
        assert set(self.user) <= set(stats["caches"])
        assert stats["frames"]["free"] <= self.boot_free

    def teardown(self):
        if self.m is None:
            return
        try:
            for i, a in enumerate(list(self.live)):
                self.release(a, i % CPUS)
            k = self.k(0)
            for c in list(self.user.values()):
                k.slab_cache_destroy(c)
            k.slab_reclaim(SLAB_RECLAIM_ALL)
            k.slab_reclaim(SLAB_RECLAIM_ALL)
            self.m.check()
            stats = self.m.stats()
            assert stats["frames"]["free"] == self.boot_free
            assert all(c["allocated"] == 0 for n, c in stats["caches"].items()
                       if n not in INTERNAL)
        finally:
            self.m.close()


SlabMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=20, deadline=None, report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
test_slab_machine = SlabMachine.TestCase
