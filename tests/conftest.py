"""Shared fixtures. Every test is checked for leaks: no smpsim shared-memory segment and no
child process may outlive it."""
import os

import psutil
import pytest

SHM = "/dev/shm"


def _segments():
    """This process's segments (others may run their own tests beside us)."""
    mine = f"smpsim_{os.getpid()}_"
    try:
        return {n for n in os.listdir(SHM) if n.startswith(mine)}
    except OSError:
        return set()


def _is_resource_tracker(proc):
    """multiprocessing's resource tracker lives as long as the test process, by design."""
    try:
        return "resource_tracker" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves a segment or a child process behind (and clean up after it)."""
    before = _segments()
    yield
    me = psutil.Process()
    children = [c for c in me.children(recursive=True) if not _is_resource_tracker(c)]
    _, alive = psutil.wait_procs(children, timeout=5)
    for c in alive:
        c.kill()
    leaked = _segments() - before
    for n in leaked:
        os.unlink(os.path.join(SHM, n))
    assert not alive, f"child processes outlived the test: {[c.pid for c in alive]}"
    assert not leaked, f"shared-memory segments outlived the test: {sorted(leaked)}"


@pytest.fixture
def machine():
    """A small 4-CPU machine, closed after the test."""
    from smpsim import Machine
    with Machine(cpus=4, memory="16M") as m:
        yield m
