"""Constructors, destructors and CPU programs the option tests give the machine by name
("option_helpers:construct"): a module of its own, importable in every CPU process (the tests
directory is on sys.path), that pytest does not collect."""

import os
import signal
import struct
import time

MAGIC = 0xC0FFEE_C0FFEE
_Q = struct.Struct("<Q")


def construct(k, addr):
    """Writes MAGIC in the object's second word; records nothing else."""
    _Q.pack_into(k.memory, addr + 8, MAGIC)


def destruct(k, addr):
    """Checks and clears the constructor's word; raises when it is not there."""
    if _Q.unpack_from(k.memory, addr + 8)[0] != MAGIC:
        raise ValueError(f"{addr:#x} was not constructed")
    _Q.pack_into(k.memory, addr + 8, 0)


def refuse(k, addr):
    """A constructor that fails by returning a non-zero int."""
    return 12


def explode(k, addr):
    """A constructor (or destructor) that raises."""
    raise RuntimeError("no resources for this object")


def refuse_every_third(k, addr):
    """Succeeds twice, then fails, in each process (a counter of its own)."""
    refuse_every_third.n = getattr(refuse_every_third, "n", 0) + 1
    if refuse_every_third.n % 3 == 0:
        return 1
    construct(k, addr)
    return 0


def die(k, addr):
    """A constructor or destructor that kills its CPU, inside allocator code."""
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


NOT_CALLABLE = 42


def record_cpu(k, addr):
    """A constructor that writes its CPU id + 1 in the object's second word."""
    _Q.pack_into(k.memory, addr + 8, k.cpu_id + 1)


def reenter(k, addr):
    """A constructor that calls the allocator (which it may not do)."""
    k.cache("malloc-64")
