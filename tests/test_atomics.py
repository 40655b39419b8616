"""smpsim/engine/_atomics.c: atomic operations and the spinlock, in one process and across processes."""
import mmap
import multiprocessing
import os

import pytest

from smpsim.engine._atomics import Arena
from smpsim.engine.layout import SPINLOCK


@pytest.fixture
def arena():
    buf = bytearray(256)
    a = Arena(buf)
    yield a, buf
    a.release()


def test_load_store_cas_fetch_add(arena):
    a, _ = arena
    a.store(8, 41)
    assert a.load(8) == 41
    assert a.fetch_add(8, 1) == 41 and a.load(8) == 42
    assert a.fetch_add(8, -43) == 42 and a.load(8) == (1 << 64) - 1   # wraps like C
    assert a.cas(16, 0, 7) and not a.cas(16, 0, 8) and a.load(16) == 7
    assert a.cas16(32, 0, 0x8001) and not a.cas16(32, 0, 1)
    assert a.cas16(32, 0x8001, 0) and a.load(32) == 0


def test_offsets_are_checked(arena):
    a, _ = arena
    with pytest.raises(IndexError, match="offset 252 is not an aligned 8-byte word"):
        a.load(252)
    with pytest.raises(IndexError, match="offset 3 is not an aligned 8-byte word"):
        a.store(3, 1)
    with pytest.raises(IndexError):
        a.load(-8)
    a.release()
    a.release()                                   # safe to repeat
    with pytest.raises(ValueError, match="arena is released"):
        a.load(0)


def test_lock_records_holder_and_counts(arena):
    a, _ = arena
    assert a.lock(0, 3, 0.0) == 0
    assert a.load(SPINLOCK.holder) == 3 and a.load(SPINLOCK.acquisitions) == 1
    assert not a.trylock(0, 2)
    assert not a.unlock(0, 2) and a.load(0) == 3   # only the holder releases
    assert a.unlock(0, 3) and a.load(0) == 0
    assert a.trylock(0, 2) and a.load(SPINLOCK.acquisitions) == 2
    assert a.unlock(0, 2)


def test_lock_times_out_when_held(arena):
    a, _ = arena
    a.lock(0, 1, 0.0)
    assert a.lock(0, 2, 0.05) == -1                 # held by 1: gives up, changes nothing
    assert a.load(0) == 1 and a.load(SPINLOCK.acquisitions) == 1



def _worker(shared, n, owner):
    a = Arena(shared)
    for _ in range(n):
        a.lock(0, owner, 0.0)
        v = a.load(64)                              # a plain read-modify-write under the lock
        a.store(64, v + 1)
        a.unlock(0, owner)
    a.release()
    os._exit(0)


def test_lock_is_mutual_exclusion_across_processes():
    shared = mmap.mmap(-1, 4096)                    # MAP_SHARED | MAP_ANONYMOUS: survives fork
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(shared, 20000, i + 1)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    a = Arena(shared)
    try:
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        assert a.load(64) == 80000                  # no increment lost
        assert a.load(SPINLOCK.acquisitions) == 80000 and a.load(SPINLOCK.holder) == 0
        assert a.load(SPINLOCK.contended) <= 80000
    finally:
        a.release()
        shared.close()


def test_plain_get_and_put(arena):
    a, buf = arena
    a.put(24, (1 << 64) - 1)
    assert a.get(24) == (1 << 64) - 1 and bytes(buf[24:32]) == b"\xff" * 8
    with pytest.raises(OverflowError):
        a.put(24, -1)                               # refused, like a memoryview store
    with pytest.raises(IndexError, match="offset 4 is not an aligned 8-byte word"):
        a.get(4)
    assert a.get(24) == (1 << 64) - 1
