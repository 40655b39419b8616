"""Bad input: every mistake the public interface names gets its typed error with its whole message, from the
caller and from a CPU process of Machine.run, and changes nothing: m.check() passes and every
other live object keeps its contents.

One table, CASES: (id, call, error type, message). `call(k, s)` makes the bad call on Kernel k
with the setup s (addresses, handles); the message is formatted with s. Each case runs twice:
on the caller's CPU 0, and as the program of CPU 1 in m.run, where the error must come back as
CPUError "CPU 1 raised an exception: <Type>: <message>", outside allocator code, holding no lock.
A few cases concern the Machine itself (its constructor, m.cpu, m.run, barrier) and run on
the caller's side only, where those calls are made.
"""

import pytest

import smpsim
from smpsim import (FRAME_ATOMIC, SLAB_CACHE_NOMAGAZINE, BadArgument, CacheNotEmpty,
                    InvalidCache, InvalidFree, Machine)

pytestmark = pytest.mark.timeout(60)

MEM = 8 << 20
INSIDE = "outside the simulated memory's objects (0x1000..0x800000)"


def setup(m):
    """Caches a, b (100 bytes) and n (NOMAGAZINE), a destroyed cache, live objects x (of a),
    y (of b), z (kalloc 50), freed objects f (of a) and fz (kalloc), each live one filled."""
    k = m.cpu(0)
    a = k.slab_cache_create("a", 100)
    b = k.slab_cache_create("b", 100)
    n = k.slab_cache_create("n", 64, 0, SLAB_CACHE_NOMAGAZINE)
    gone = k.slab_cache_create("gone", 10)
    k.slab_cache_destroy(gone)
    x, y, w = k.slab_alloc(a), k.slab_alloc(b), k.slab_alloc(n)
    f = k.slab_alloc(a)
    k.slab_free(a, f)
    z = k.kalloc(50)
    fz = k.kalloc(50)
    k.kfree(fz)
    contents = {x: b"X" * 100, y: b"Y" * 100, w: b"W" * 64, z: b"Z" * 50}
    for addr, data in contents.items():
        k.memory[addr:addr + len(data)] = data
    return dict(a=a, b=b, n=n, gone=gone, x=x, y=y, w=w, z=z, f=f, fz=fz, desc=a._addr,
                contents=contents)


CASES = [
    # --- frees ---
    ("double free", lambda k, s: k.slab_free(s["a"], s["f"]), InvalidFree,
     "slab_free: address {f:#x} is a free object of cache 'a' (freed already, or never "
     "allocated), not a live object of 'a'"),
    ("double free, slab layer", lambda k, s: (k.slab_free(s["n"], s["w"] + 64),), InvalidFree,
     "slab_free: address {w64:#x} is a free object of cache 'n' (freed already, or never "
     "allocated), not a live object of 'n'"),
    ("interior address", lambda k, s: k.slab_free(s["a"], s["x"] + 8), InvalidFree,
     "slab_free: address {x8:#x} is 8 bytes inside the live object {x:#x} of cache 'a', not a "
     "live object of 'a'"),
    ("another cache's object", lambda k, s: k.slab_free(s["a"], s["y"]), InvalidFree,
     "slab_free: address {y:#x} is a live object of cache 'b', not a live object of 'a'"),
    ("outside memory (end)", lambda k, s: k.slab_free(s["a"], MEM), InvalidFree,
     "slab_free: address 0x800000 is " + INSIDE),
    ("outside memory (frame 0)", lambda k, s: k.slab_free(s["a"], 64), InvalidFree,
     "slab_free: address 0x40 is " + INSIDE),
    ("negative address", lambda k, s: k.slab_free(s["a"], -8), InvalidFree,
     "slab_free: address -0x8 is " + INSIDE),
    ("NULL", lambda k, s: k.slab_free(s["a"], 0), InvalidFree,
     "slab_free: address 0x0 is " + INSIDE),
    ("not an int", lambda k, s: k.slab_free(s["a"], "0x3000"), InvalidFree,
     "slab_free: address '0x3000' is not an int"),
    ("unaligned", lambda k, s: k.slab_free(s["a"], s["x"] + 4), InvalidFree,
     "slab_free: address {x4:#x} is not 8-byte aligned, so no object starts there"),
    ("the allocator's own object", lambda k, s: k.slab_free(s["a"], s["desc"]), InvalidFree,
     "slab_free: address {desc:#x} is an object the allocator uses itself, not a live object "
     "of 'a'"),
    ("a free frame", lambda k, s: k.slab_free(s["a"], MEM - 4096), InvalidFree,
     "slab_free: address 0x7ff000 is not in any slab (a free frame or the allocator's own "
     "memory), not a live object of 'a'"),
    ("kfree of a slab_alloc object", lambda k, s: k.kfree(s["x"]), InvalidFree,
     "kfree: address {x:#x} is a live object of a cache kalloc does not use, not an object "
     "kalloc gave"),
    ("kfree twice", lambda k, s: k.kfree(s["fz"]), InvalidFree,
     "kfree: address {fz:#x} is not a live object, not an object kalloc gave"),
    ("kfree of an interior address", lambda k, s: k.kfree(s["z"] + 8), InvalidFree,
     "kfree: address {z8:#x} is not a live object, not an object kalloc gave"),
    ("kfree of the allocator's own object", lambda k, s: k.kfree(s["desc"]), InvalidFree,
     "kfree: address {desc:#x} is the allocator's own object, not an object kalloc gave"),
    ("kfree outside memory", lambda k, s: k.kfree(1 << 40), InvalidFree,
     "kfree: address 0x10000000000 is " + INSIDE),
    ("kfree unaligned", lambda k, s: k.kfree(s["z"] + 1), InvalidFree,
     "kfree: address {z1:#x} is not 8-byte aligned, so no object starts there"),
    # --- cache handles ---
    ("alloc from a destroyed cache", lambda k, s: k.slab_alloc(s["gone"]), InvalidCache,
     "slab_alloc: cache 'gone' was destroyed"),
    ("free to a destroyed cache", lambda k, s: k.slab_free(s["gone"], s["x"]), InvalidCache,
     "slab_free: cache 'gone' was destroyed"),
    ("destroy a destroyed cache", lambda k, s: k.slab_cache_destroy(s["gone"]), InvalidCache,
     "slab_cache_destroy: cache 'gone' was destroyed"),
    ("destroy with objects", lambda k, s: k.slab_cache_destroy(s["a"]), CacheNotEmpty,
     "slab_cache_destroy: cache 'a' still has 1 allocated object(s)"),
    ("destroy a boot cache", lambda k, s: k.slab_cache_destroy(k.cache("malloc-64")), BadArgument,
     "slab_cache_destroy: 'malloc-64' is a boot cache of the allocator and cannot be destroyed"),
    ("not a handle", lambda k, s: k.slab_alloc("a"), BadArgument,
     "slab_alloc: 'cache' must be a SlabCache, got 'a'"),
    ("no such cache", lambda k, s: k.cache("nope"), KeyError, "'nope'"),
    # --- slab_cache_create ---
    ("empty name", lambda k, s: k.slab_cache_create("", 10), BadArgument,
     "slab_cache_create: 'name' must be 1 to 32 printable characters without whitespace, "
     "got ''"),
    ("name with a space", lambda k, s: k.slab_cache_create("a b", 10), BadArgument,
     "slab_cache_create: 'name' must be 1 to 32 printable characters without whitespace, "
     "got 'a b'"),
    ("name too long", lambda k, s: k.slab_cache_create("n" * 33, 10), BadArgument,
     "slab_cache_create: 'name' must be 1 to 32 printable characters without whitespace, "
     "got '" + "n" * 33 + "'"),
    ("name not a str", lambda k, s: k.slab_cache_create(7, 10), BadArgument,
     "slab_cache_create: 'name' must be 1 to 32 printable characters without whitespace, "
     "got 7"),
    ("name taken", lambda k, s: k.slab_cache_create("b", 10), BadArgument,
     "slab_cache_create: 'name' 'b' is already used by a live cache"),
    ("boot cache name taken", lambda k, s: k.slab_cache_create("slab_extern", 10), BadArgument,
     "slab_cache_create: 'name' 'slab_extern' is already used by a live cache"),
    ("size 0", lambda k, s: k.slab_cache_create("c", 0), BadArgument,
     "slab_cache_create: 'size' must be an int of at least 1, got 0"),
    ("size a float", lambda k, s: k.slab_cache_create("c", 8.0), BadArgument,
     "slab_cache_create: 'size' must be an int of at least 1, got 8.0"),
    ("size too big for a slab", lambda k, s: k.slab_cache_create("c", 1 << 30), BadArgument,
     "slab_cache_create: 'size' 1073741824 needs slabs of order 18, above the frame "
     "allocator's largest block (order 10)"),
    ("align not a power of two", lambda k, s: k.slab_cache_create("c", 10, 24), BadArgument,
     "slab_cache_create: 'align' must be 0 or a power of two up to 4096, got 24"),
    ("align above a page", lambda k, s: k.slab_cache_create("c", 10, 8192), BadArgument,
     "slab_cache_create: 'align' must be 0 or a power of two up to 4096, got 8192"),
    ("align negative", lambda k, s: k.slab_cache_create("c", 10, -8), BadArgument,
     "slab_cache_create: 'align' must be 0 or a power of two up to 4096, got -8"),
    ("unknown cache flag", lambda k, s: k.slab_cache_create("c", 10, 0, 4), BadArgument,
     "slab_cache_create: 'flags' may hold only SLAB_CACHE_NOMAGAZINE and SLAB_CACHE_SLINSIDE, "
     "got 4"),
    # --- allocation flags and sizes ---
    ("unknown alloc flag", lambda k, s: k.slab_alloc(s["a"], 1), BadArgument,
     "slab_alloc: 'flags' may hold only FRAME_ATOMIC | FRAME_NO_RECLAIM, got 1"),
    ("alloc flags not an int", lambda k, s: k.slab_alloc(s["a"], None), BadArgument,
     "slab_alloc: 'flags' may hold only FRAME_ATOMIC | FRAME_NO_RECLAIM, got None"),
    ("kalloc 0", lambda k, s: k.kalloc(0), BadArgument,
     "kalloc: 'size' must be an int from 1 to 131072, got 0"),
    ("kalloc too big", lambda k, s: k.kalloc(131073), BadArgument,
     "kalloc: 'size' must be an int from 1 to 131072, got 131073"),
    ("kalloc size not an int", lambda k, s: k.kalloc("8"), BadArgument,
     "kalloc: 'size' must be an int from 1 to 131072, got '8'"),
    ("kalloc unknown flag", lambda k, s: k.kalloc(8, FRAME_ATOMIC | 8), BadArgument,
     "kalloc: 'flags' may hold only FRAME_ATOMIC | FRAME_NO_RECLAIM, got 10"),
    ("reclaim unknown flag", lambda k, s: k.slab_reclaim(2), BadArgument,
     "slab_reclaim: 'flags' may hold only SLAB_RECLAIM_ALL, got 2"),
    # --- the Machine (from inside a CPU the constructor fails the same way) ---
    ("Machine cpus 0", lambda k, s: Machine(0), BadArgument,
     "Machine: 'cpus' must be an int from 1 to 256, got 0"),
    ("Machine cpus 257", lambda k, s: Machine(257), BadArgument,
     "Machine: 'cpus' must be an int from 1 to 256, got 257"),
    ("Machine memory too small", lambda k, s: Machine(1, "512K"), BadArgument,
     "Machine: 'memory' must be a multiple of 4096 bytes and at least 1M, got 524288"),
    ("Machine memory not whole pages", lambda k, s: Machine(1, (1 << 20) + 8), BadArgument,
     "Machine: 'memory' must be a multiple of 4096 bytes and at least 1M, got 1048584"),
    ("Machine memory unparsable", lambda k, s: Machine(1, "64 apples"), BadArgument,
     "Machine: 'memory' must be an int or a string like '64M', got '64 apples'"),
    ("Machine magazine_size 0", lambda k, s: Machine(1, magazine_size=0), BadArgument,
     "Machine: 'magazine_size' must be an int from 1 to 1024, got 0"),
    ("Machine magazine_size 1025", lambda k, s: Machine(1, magazine_size=1025), BadArgument,
     "Machine: 'magazine_size' must be an int from 1 to 1024, got 1025"),
    ("Machine lock_timeout", lambda k, s: Machine(1, lock_timeout=0), BadArgument,
     "Machine: 'lock_timeout' must be a positive number of seconds or None, got 0"),
    # --- atomics on simulated memory, and the geometry of a size ---
    ("atomic_store of a value past 64 bits", lambda k, s: k.atomic_store(s["z"], 1 << 64),
     BadArgument, "atomic_store: 'value' must be an int from 0 to 2**64 - 1, got "
     "18446744073709551616"),
    ("atomic_store of a negative value", lambda k, s: k.atomic_store(s["z"], -1), BadArgument,
     "atomic_store: 'value' must be an int from 0 to 2**64 - 1, got -1"),
    ("atomic_add of a float", lambda k, s: k.atomic_add(s["z"], 1.5), BadArgument,
     "atomic_add: 'delta' must be an int from -9223372036854775808 to 2**64 - 1, got 1.5"),
    ("atomic_cas of a str", lambda k, s: k.atomic_cas(s["z"], 0, "1"), BadArgument,
     "atomic_cas: 'new' must be an int from 0 to 2**64 - 1, got '1'"),
    ("geometry of size 0", lambda k, s: smpsim.geometry(0), BadArgument,
     "geometry: 'size' must be an int of at least 1, got 0"),
    ("geometry with a bad alignment", lambda k, s: smpsim.geometry(64, 3), BadArgument,
     "geometry: 'align' must be 0 or a power of two up to 4096, got 3"),
]

# Only where the Machine object is: the caller.
CALLER_CASES = [
    ("m.cpu out of range", lambda m: m.cpu(2), BadArgument,
     "Machine.cpu: CPU id must be an int from 0 to 1, got 2"),
    ("m.cpu negative", lambda m: m.cpu(-1), BadArgument,
     "Machine.cpu: CPU id must be an int from 0 to 1, got -1"),
    ("run on a CPU out of range", lambda m: m.run(attempt, "x", cpus=[2]), BadArgument,
     "Machine.run: 'cpus' must be distinct CPU ids from 0 to 1, got [2]"),
    ("run on no CPU", lambda m: m.run(attempt, "x", cpus=[]), BadArgument,
     "Machine.run: 'cpus' must be distinct CPU ids from 0 to 1, got []"),
    ("run on a CPU twice", lambda m: m.run(attempt, "x", cpus=[1, 1]), BadArgument,
     "Machine.run: 'cpus' must be distinct CPU ids from 0 to 1, got [1, 1]"),
    ("run cpus not a list", lambda m: m.run(attempt, "x", cpus=1), BadArgument,
     "Machine.run: 'cpus' must be a list of CPU ids, got 1"),
    ("run a program that is not callable", lambda m: m.run(42), BadArgument,
     "Machine.run: 'program' must be callable or 'module:function', got 42"),
    ("run a program string without a colon", lambda m: m.run("os.getpid"), BadArgument,
     "Machine.run: 'program' string must be 'module:function', got 'os.getpid'"),
    ("run a program that does not exist", lambda m: m.run("os:nothing_here"), BadArgument,
     "Machine.run: cannot find program 'os:nothing_here': module 'os' has no attribute "
     "'nothing_here'"),
    ("run with a negative timeout", lambda m: m.run(attempt, "x", timeout=-1), BadArgument,
     "Machine.run: 'timeout' must be a positive number of seconds, got -1"),
    ("run with a monitor that is not callable", lambda m: m.run(attempt, "x", monitor=5),
     BadArgument, "Machine.run: 'monitor' must be a callable or None, got 5"),
    ("run with an interval that is not a number", lambda m: m.run(attempt, "x", interval="x"),
     BadArgument, "Machine.run: 'interval' must be a number of seconds above 0 and at most "
     "3600, got 'x'"),
    ("run with pin not a bool", lambda m: m.run(attempt, "x", pin="yes"), BadArgument,
     "Machine.run: 'pin' must be True or False, got 'yes'"),
    ("barrier outside a run", lambda m: m.cpu(0).barrier(), smpsim.SmpsimError,
     "barrier: only CPUs inside Machine.run can wait at a barrier"),
]

_BY_ID = {c[0]: c for c in CASES}


def attempt(k, case_id, s):
    """A CPU's program: make the bad call of case_id (its error goes back as CPUError)."""
    _BY_ID[case_id][1](k, s)
    return "no error"


def _expected(message, s):
    fmt = dict(s, x8=s["x"] + 8, x4=s["x"] + 4, z8=s["z"] + 8, z1=s["z"] + 1, w64=s["w"] + 64)
    return message.format(**fmt)


def _state(m):
    """What must not change: every cache's counts and geometry, the free frames."""
    st = m.stats()
    return st["caches"], st["frames"]


def _unchanged(m, s, before):
    m.check()
    assert _state(m) == before
    k = m.cpu(0)
    for addr, data in s["contents"].items():
        assert bytes(k.memory[addr:addr + len(data)]) == data


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_call_from_the_caller(case):
    _, call, exc, message = case
    with Machine(2, MEM) as m:
        s = setup(m)
        before = _state(m)
        with pytest.raises(exc) as ei:
            call(m.cpu(0), s)
        expected = _expected(message, s)
        assert str(ei.value) == expected
        if exc is not KeyError:
            assert isinstance(ei.value, smpsim.SmpsimError)
        _unchanged(m, s, before)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_call_from_a_cpu(case):
    case_id, _, exc, message = case
    with Machine(2, MEM) as m:
        s = setup(m)
        before = _state(m)
        with pytest.raises(smpsim.CPUError) as ei:
            m.run(attempt, case_id, s, cpus=[1])
        e = ei.value
        remote = f"{exc.__name__}: {_expected(message, s)}"
        assert str(e) == f"CPU 1 raised an exception: {remote}"
        assert (e.cpu, e.reason, e.inside, e.locks) == (1, "exception", False, [])
        assert e.traceback.rstrip().endswith(remote)
        _unchanged(m, s, before)


@pytest.mark.parametrize("case", CALLER_CASES, ids=[c[0] for c in CALLER_CASES])
def test_bad_machine_call(case):
    _, call, exc, message = case
    with Machine(2, MEM) as m:
        s = setup(m)
        before = _state(m)
        with pytest.raises(exc) as ei:
            call(m)
        assert str(ei.value) == message
        _unchanged(m, s, before)


def test_errors_are_smpsim_errors_and_argument_errors_value_errors():
    for cls in (smpsim.OutOfMemory, InvalidFree, InvalidCache, CacheNotEmpty,
                smpsim.InvariantError, smpsim.CPUError, smpsim.LockTimeout,
                smpsim.LockOrderError, smpsim.DebugError, BadArgument):
        assert issubclass(cls, smpsim.SmpsimError)
    assert issubclass(BadArgument, ValueError)


def test_errors_pickle_whole():
    import pickle
    e = smpsim.CPUError(3, "died", "killed by signal SIGKILL during slab_free", inside=True,
                        locks=["a.slablock"])
    e.add_other(1, "during slab_alloc it was killed", inside=True, locks=["b.cpu1"])
    for err in (e, smpsim.LockTimeout("a.slablock", 2, 0.5, "which died (process 7) without "
                                      "releasing it"),
                smpsim.DebugError("m", kind="red zone", obj=64, cache="a", cpu=1, offset=100),
                smpsim.InvariantError(["one", "two"])):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert back.__dict__ == err.__dict__ or isinstance(err, smpsim.CPUError)
    back = pickle.loads(pickle.dumps(e))
    assert (back.cpu, back.inside, back.locks, [o.cpu for o in back.others]) == \
        (3, True, ["a.slablock"], [1])
    assert str(e) == ("CPU 3 died: killed by signal SIGKILL during slab_free; it was inside "
                      "allocator code, holding a.slablock (m.check() reports what its unfinished "
                      "operation left); the stop left CPU 1 inside allocator code, holding "
                      "b.cpu1 (during slab_alloc it was killed)")


def test_kfree_of_nothing_does_nothing():
    with Machine(1, "1M") as m:
        k = m.cpu(0)
        before = _state(m)
        k.kfree(0)
        k.kfree(None)
        assert _state(m) == before
        m.check()
