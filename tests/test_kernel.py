"""smpsim/engine/kernel.py: the public Kernel, call by call."""
import pickle

import re

import pytest

import smpsim
from smpsim import FRAME_ATOMIC, SLAB_CACHE_NOMAGAZINE, SLAB_CACHE_SLINSIDE


def test_attributes(machine):
    k = machine.cpu(2)
    assert (k.cpu_id, k.cpus) == (2, 4)
    assert len(k.memory) == machine.memory and not k.memory.readonly


def test_create_returns_the_seed_geometry(machine):
    c = machine.cpu(0).slab_cache_create("node", 100)
    assert (c.name, c.size, c.order, c.objects) == ("node", 104, 0, 38)
    assert c.flags == SLAB_CACHE_SLINSIDE


def test_handles_pickle_and_work_on_every_cpu(machine):
    c = machine.cpu(0).slab_cache_create("node", 100)
    c2 = pickle.loads(pickle.dumps(c))
    assert c2 == c and hash(c2) == hash(c) and repr(c2) == repr(c)
    a = machine.cpu(3).slab_alloc(c2)
    machine.cpu(1).slab_free(c, a)                  # freed on another CPU
    assert machine.cpu(1).cache("node") == c
    machine.check()


def test_boot_caches_are_there_in_the_seeds_order(machine):
    k = machine.cpu(0)
    names = [line.split("\t")[0] for line in k.slab_print_list().splitlines()[1:]]
    assert names[:3] == ["slab_magazine", "slab_cache", "slab_extern"]
    assert names[3:] == ["malloc-8", "malloc-16", "malloc-32", "malloc-64", "malloc-128",
                         "malloc-256", "malloc-512", "malloc-1K", "malloc-2K", "malloc-4K",
                         "malloc-8K", "malloc-16K", "malloc-32K", "malloc-64K", "malloc-128K"]
    assert k.cache("malloc-64").size == 64
    with pytest.raises(KeyError):
        k.cache("nope")


def test_print_list_rows(machine):
    k = machine.cpu(0)
    c = k.slab_cache_create("node", 100)
    a = k.slab_alloc(c)
    rows = {r.split("\t")[0]: r.split("\t") for r in k.slab_print_list().splitlines()[1:]}
    assert rows["node"] == ["node", "104", "1", "38", "1", "0", "1", "", "In"]
    assert rows["malloc-4K"] == ["malloc-4K", "4096", "1", "1", "0", "0", "0", "", "Out"]
    k.slab_free(c, a)


@pytest.mark.parametrize("size,cache", [(1, "malloc-8"), (8, "malloc-8"), (9, "malloc-16"),
                                        (100, "malloc-128"), (4096, "malloc-4K"),
                                        (4097, "malloc-8K"), (131072, "malloc-128K")])
def test_kalloc_picks_the_seeds_cache(machine, size, cache):
    k = machine.cpu(0)
    a = k.kalloc(size)
    assert machine.stats()["caches"][cache]["allocated"] == 1
    k.memory[a:a + size] = b"\xab" * size
    k.kfree(a)
    assert machine.stats()["caches"][cache]["allocated"] == 0
    machine.check()


def test_kfree_of_nothing_does_nothing(machine):
    k = machine.cpu(0)
    k.kfree(0)
    k.kfree(None)
    machine.check()


def test_out_of_memory_atomic_and_not():
    with smpsim.Machine(cpus=1, memory="1M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("big", 60000, 0, SLAB_CACHE_NOMAGAZINE)
        objs = []
        while (a := k.slab_alloc(c, FRAME_ATOMIC)) is not None:
            objs.append(a)
        assert objs
        with pytest.raises(smpsim.OutOfMemory, match="slab_alloc: no memory left for an object "
                                                     "of 'big'"):
            k.slab_alloc(c)
        m.check()
        for a in objs:
            k.slab_free(c, a)
        m.check()


def test_free_checks_leave_everything_as_it_was(machine):
    k = machine.cpu(0)
    c = k.slab_cache_create("node", 100)
    d = k.slab_cache_create("other", 100)
    a, b = k.slab_alloc(c), k.slab_alloc(d)
    k.memory[a:a + 100] = b"A" * 100
    k.memory[b:b + 100] = b"B" * 100
    before = machine.stats()["caches"]
    cases = [
        (c, a + 8, "slab_free: address {:#x} is 8 bytes inside the live object {:#x} of cache "
                   "'node', not a live object of 'node'".format(a + 8, a)),
        (c, b, "slab_free: address {:#x} is a live object of cache 'other', not a live object "
               "of 'node'".format(b)),
        (c, a + 4, "slab_free: address {:#x} is not 8-byte aligned, so no object starts "
                   "there".format(a + 4)),
        (c, machine.memory, "slab_free: address {:#x} is outside the simulated memory's objects "
                            "(0x1000..{:#x})".format(machine.memory, machine.memory)),
        (c, 0, "slab_free: address 0x0 is outside the simulated memory's objects "
               "(0x1000..{:#x})".format(machine.memory)),
    ]
    for cache, addr, msg in cases:
        with pytest.raises(smpsim.InvalidFree) as e:
            k.slab_free(cache, addr)
        assert str(e.value) == msg
    k.slab_free(c, a)
    with pytest.raises(smpsim.InvalidFree, match="freed already"):
        k.slab_free(c, a)                               # double free
    with pytest.raises(smpsim.InvalidFree, match="not an object kalloc gave"):
        k.kfree(b)
    after = machine.stats()["caches"]
    assert after["other"] == before["other"]
    assert bytes(k.memory[b:b + 100]) == b"B" * 100
    machine.check()
    k.slab_free(d, b)
    machine.check()


def test_allocator_objects_cannot_be_freed_by_callers(machine):
    k = machine.cpu(0)
    c = k.slab_cache_create("node", 100)
    a = k.slab_alloc(c)
    k.slab_free(c, a)                                   # this made a magazine
    mags = machine.stats()["caches"]["slab_magazine"]["allocated"]
    assert mags >= 1
    cur = k._sa.ld(k._sa._mags(c._addr) + smpsim.engine.layout.CPU_MAGS.current)
    with pytest.raises(smpsim.InvalidFree, match="is an object the allocator uses itself"):
        k.slab_free(k.cache("slab_magazine"), cur)
    machine.check()


def test_destroy(machine):
    k = machine.cpu(0)
    free0 = machine.stats()["frames"]["free"]
    c = k.slab_cache_create("node", 100)
    a = k.slab_alloc(c)
    with pytest.raises(smpsim.CacheNotEmpty, match="slab_cache_destroy: cache 'node' still has "
                                                   "1 allocated object"):
        k.slab_cache_destroy(c)
    k.slab_free(c, a)
    machine.check()
    k.slab_cache_destroy(c)
    for call in (lambda: k.slab_alloc(c), lambda: k.slab_free(c, a),
                 lambda: k.slab_cache_destroy(c)):
        with pytest.raises(smpsim.InvalidCache, match="cache 'node' was destroyed"):
            call()
    with pytest.raises(KeyError):
        k.cache("node")
    k.slab_reclaim(smpsim.SLAB_RECLAIM_ALL)
    k.slab_reclaim(smpsim.SLAB_RECLAIM_ALL)
    assert machine.stats()["frames"]["free"] == free0
    c2 = k.slab_cache_create("node", 50)                # the name is free again
    assert c2 != c and c2.size == 56
    with pytest.raises(smpsim.BadArgument, match="'malloc-64' is a boot cache"):
        k.slab_cache_destroy(k.cache("malloc-64"))
    machine.check()


@pytest.mark.parametrize("args,msg", [
    (("", 8), "'name' must be 1 to 32 printable characters without whitespace, got ''"),
    (("a b", 8), "'name' must be 1 to 32 printable characters without whitespace, got 'a b'"),
    (("x" * 33, 8), "'name' must be 1 to 32 printable characters"),
    (("ok", 0), "'size' must be an int of at least 1, got 0"),
    (("ok", 8, 3), "'align' must be 0 or a power of two up to 4096, got 3"),
    (("ok", 8, 8192), "'align' must be 0 or a power of two up to 4096, got 8192"),
    (("ok", 8, 0, 4), "'flags' may hold only SLAB_CACHE_NOMAGAZINE and SLAB_CACHE_SLINSIDE, got 4"),
    (("ok", 1 << 23), "'size' 8388608 needs slabs of order 11, above the frame allocator's "
                      "largest block (order 10)"),
    (("malloc-8", 8), "'name' 'malloc-8' is already used by a live cache"),
])
def test_create_rejects_bad_arguments(machine, args, msg):
    k = machine.cpu(0)
    before = machine.stats()
    with pytest.raises(ValueError) as e:
        k.slab_cache_create(*args)
    assert isinstance(e.value, smpsim.SmpsimError)
    assert str(e.value).startswith("slab_cache_create: ") and msg in str(e.value)
    after = machine.stats()
    assert after["caches"] == before["caches"] and after["frames"] == before["frames"]
    machine.check()


def test_flags_and_sizes_out_of_range(machine):
    k = machine.cpu(0)
    c = k.slab_cache_create("node", 100)
    with pytest.raises(ValueError, match=r"slab_alloc: 'flags' may hold only FRAME_ATOMIC \| "
                                         r"FRAME_NO_RECLAIM, got 1"):
        k.slab_alloc(c, 1)
    for size in (0, 131073, "8"):
        with pytest.raises(ValueError, match="kalloc: 'size' must be an int from 1 to 131072"):
            k.kalloc(size)
    with pytest.raises(ValueError, match="slab_reclaim: 'flags' may hold only SLAB_RECLAIM_ALL"):
        k.slab_reclaim(2)
    with pytest.raises(ValueError, match="'cache' must be a SlabCache"):
        k.slab_alloc("node")
    machine.check()


def test_barrier_outside_a_run(machine):
    with pytest.raises(smpsim.SmpsimError, match="barrier: only CPUs inside Machine.run"):
        machine.cpu(0).barrier()


def test_atomics_on_simulated_memory(machine):
    k = machine.cpu(0)
    w = k.kalloc(8)
    k.atomic_store(w, 5)
    assert k.atomic_add(w, 2) == 5 and k.atomic_load(w) == 7
    assert k.atomic_cas(w, 7, 1) and not k.atomic_cas(w, 7, 2)
    with pytest.raises(ValueError, match="atomic_load: 'addr' must be an 8-byte aligned address"):
        k.atomic_load(w + 1)
    k.kfree(w)
    machine.check()


def test_last_path_names_the_deepest_layer_each_operation_reached():
    """k.last_path after each kind of operation; the control line counts misses by path."""
    with smpsim.Machine(1, "4M", magazine_size=4) as m:
        k = m.cpu(0)
        assert k.last_path is None
        c = k.slab_cache_create("p", 64)
        objs = [k.slab_alloc(c) for _ in range(13)]
        assert k.last_path == "slab"                   # the slab's free list, no new slab
        for a in objs[:12]:
            k.slab_free(c, a)
        assert k.last_path == "hit"                    # the third magazine had room
        k.slab_free(c, objs[12])                       # both full: one goes to the shared list
        assert k.last_path == "depot"
        for _ in range(5):                             # current holds 1, last 4
            k.slab_alloc(c)
            assert k.last_path == "hit"
        k.slab_alloc(c)                                # the pair is empty: a full one imported
        assert k.last_path == "depot"
        n = k.slab_cache_create("n", 64, 0, smpsim.SLAB_CACHE_NOMAGAZINE)
        a = k.slab_alloc(n)
        assert k.last_path == "frames"                 # its first slab
        k.slab_free(n, a)
        assert k.last_path == "frames"                 # the slab is empty: its frames go back
        row = m.cpu_stats()[0]
        assert row["misses"] == row["depot"] + row["slab"] + row["frames"] > 0
        assert row["hits"] + row["misses"] == row["ops"]


def test_help_of_kernel_shows_the_public_interface_only():
    import pydoc
    text = pydoc.render_doc(smpsim.Kernel, renderer=pydoc.plaintext)
    text = re.sub(r"\(\s*\|?\s*self", "(self", text)     # 3.13 wraps long signatures
    for public in ("slab_alloc", "slab_free", "kalloc", "kfree", "slab_cache_create",
                   "slab_cache_destroy", "slab_reclaim", "slab_print_list", "barrier", "cache"):
        assert f"{public}(self" in text
    for internal in ("list_append", "frame_alloc", "_slab_obj_create", "ld(", "fetch_add",
                     "lock_rank", "SlabAllocator", "Methods inherited"):
        assert internal not in text
