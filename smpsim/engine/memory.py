"""One CPU's view of the machine's shared memory: word access, HelenOS lists, spinlocks.

Memory is the bottom layer of a Kernel (Memory -> FrameAllocator -> SlabAllocator -> Kernel).
It holds the typed views of the segment, reads and writes fields at `base + STRUCT.field`
(smpsim/engine/layout.py), implements HelenOS's circular doubly linked lists (list.h) on addresses,
and takes and releases the spinlocks through the C extension.

The lock order (smpsim/engine/locks.py states it and what each lock guards) is checked here when the
machine runs in debugging mode: taking a lock whose rank is not above every lock this CPU holds
raises LockOrderError before anything is taken.

Two kinds of access, and the code says which one it makes:

    ld, st, ld32, st32     the simulated machine's own state, as the seed's code reads and writes
                           it: cache descriptors, per-CPU magazine lines, magazines, slabs and
                           their free lists, the frame allocator's state. (In simulated time these
                           are the accesses the cost model charges.)
    fetch_add, lock,       the same, atomically: the seed's atomic counters and its spinlocks.
    unlock, trylock
    peek, poke, q, h       the simulator's own bookkeeping: handle and object-table checks,
                           statistics, debugging data, control lines. Never part of the model.
"""

import os
import time

from . import _atomics
from ._atomics import Arena
from .errors import LockOrderError, LockTimeout, SmpsimError
from .layout import CPU_CTL, FRAME, HEADER, LINK, LOCKSTAT, LOCKTAB_SIZE, SPINLOCK, Regions
from .sched import SCHED_FREE, SCHED_TOKEN, STRATEGY_CLOCK

__all__ = ["Memory", "PID_DEAD", "pid_alive", "DEAD_HOLDER_POLL"]

# CPU_CTL.pid: the process running as the CPU; the supervisor sets this bit once that process
# is known dead (so waiters stop at once, whatever became of the pid), and clears the field when
# a CPU process ended cleanly (then the caller's Kernels may use the CPU id).
PID_DEAD = 1 << 63
# A waiter checks every this many seconds whether the lock's holder is still alive.
DEAD_HOLDER_POLL = 0.5


def pid_alive(pid):
    """True when process pid exists and is not a zombie (a dead child not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")


_configured = False


def sim_fields():
    """The offsets of layout.py that smpsim/engine/_sim.h needs, by "STRUCT.field"."""
    fields = {}
    for prefix, struct in (("HEADER", HEADER), ("CPU_CTL", CPU_CTL), ("SPINLOCK", SPINLOCK),
                           ("LOCKSTAT", LOCKSTAT)):
        fields[f"{prefix}.sizeof"] = struct.sizeof
        for name, off in struct.fields.items():
            fields[f"{prefix}.{name}"] = off
    return fields


def configure_extensions():
    """Give the atomics extension the offsets it needs (once per process)."""
    global _configured
    if not _configured:
        _atomics.configure(sim_fields())
        _configured = True
    return _configured


class Memory:
    """Views of the segment for CPU `cpu_id` (the owner id in lock words is cpu_id + 1).

    `buf` is a writable memoryview of the whole segment; Memory makes its own casts of it and
    drops them in release(), which must run before the segment can be closed.
    """

    arena = None

    def __init__(self, buf, regions: Regions, cpu_id, *, debug=False, lock_timeout=None):
        self.regions = regions
        self.cpu_id = cpu_id
        self.owner = cpu_id + 1
        self.debug = debug
        self.lock_timeout = float(lock_timeout or 0.0)
        # Seconds of spinning before a waiter first looks at the holder (then once per poll).
        self._poll = min(DEAD_HOLDER_POLL, self.lock_timeout or DEAD_HOLDER_POLL)
        configure_extensions()
        arena = self.arena = Arena(buf)
        self.segment = buf              # the whole segment (owned by the Machine's SharedMemory)
        arena.configure_sim(*self.sim_regions())
        # peek / poke: a plain access, for the simulator's bookkeeping (module docstring).
        self.peek = arena.get
        self.poke = arena.put
        hdr = regions.header
        self.timed = bool(self.peek(hdr + HEADER.time_mode))
        sched = self.peek(hdr + HEADER.sched_mode)
        self.scheduled = self.timed or sched != SCHED_FREE
        # A controlled run: every access of the allocator's code is a scheduling point.
        self.data_points = sched == SCHED_TOKEN and \
            self.peek(hdr + HEADER.strategy) != STRATEGY_CLOCK
        # ld(addr) / st(addr, value): the 8-byte word at addr, a plain load or store (the caller
        # holds what guards it). Bound C methods of the arena: a third of what a Python method
        # reading self.q[addr >> 3] costs, and the slab layer makes some thirty per operation.
        # ld32 / st32: the seed's 4-byte `int` (the free-list index kept in a free object).
        # fetch_add(addr, delta): the seed's atomic_inc/atomic_dec, SEQ_CST; returns the old
        # value. Under simulated time or a schedule, the arena's charged variants, which also
        # pass the scheduling points (smpsim/engine/_sim.h).
        if self.scheduled:
            self.ld, self.st = arena.tget, arena.tput
            self.ld32, self.st32 = arena.tget32, arena.tput32
            self.fetch_add = arena.tfetch_add
        else:
            self.ld, self.st = arena.get, arena.put
            self.ld32, self.st32 = arena.get32, arena.put32
            self.fetch_add = arena.fetch_add
        self.q = buf.cast("Q")          # 8-byte words: every field
        self.i32 = buf.cast("I")        # 4-byte words: the free-list index in a free object
        self.h = buf.cast("H")          # 2-byte words: the object table
        self.memory = buf[:regions.memory]
        self._views = [self.q, self.i32, self.h, self.memory]
        self._held = []                 # debug mode: (rank, off) of the locks held, in order

    def sim_regions(self):
        """What Arena.configure_sim (and the accelerator's) take: this CPU, the machine's CPU
        count and regions, and whether to poll the token before sleeping (few CPUs per host
        core)."""
        r = self.regions
        return (self.cpu_id, r.cpus, r.header, r.cpu(0), r.tags, r.tag_lines, r.tag_words,
                r.locktab, LOCKTAB_SIZE, r.log, r.cpus <= (os.cpu_count() or 1))

    def release(self):
        """Drop every view of the segment (safe to repeat)."""
        if self.arena is not None:
            self.arena.release()
            for v in self._views:
                v.release()
            self.arena = None

    # --- fields -------------------------------------------------------------------------------

    def signed(self, addr):
        """The word at addr read as a signed 64-bit int (counters that were decremented); a
        bookkeeping read (statistics, the checker)."""
        v = self.q[addr >> 3]
        return v - (1 << 64) if v >> 63 else v

    def frame_entry(self, addr):
        """The frame table entry of the frame holding addr."""
        return self.regions.frame(addr >> 12)

    def frame_parent(self, addr):
        """The seed's frame->parent: the slab owning the frame that holds addr."""
        return self.ld(self.frame_entry(addr) + FRAME.parent)

    # --- HelenOS lists (list.h): a head and its members are LINK structs --------------------

    def list_init(self, head):
        self.st(head + LINK.prev, head)
        self.st(head + LINK.next, head)

    def list_empty(self, head):
        return self.ld(head + LINK.next) == head

    def list_prepend(self, link, head):
        """Insert link first in the list at head."""
        first = self.ld(head + LINK.next)
        self.st(link + LINK.prev, head)
        self.st(link + LINK.next, first)
        self.st(first + LINK.prev, link)
        self.st(head + LINK.next, link)

    def list_append(self, link, head):
        """Insert link last in the list at head."""
        last = self.ld(head + LINK.prev)
        self.st(link + LINK.prev, last)
        self.st(link + LINK.next, head)
        self.st(last + LINK.next, link)
        self.st(head + LINK.prev, link)

    def list_remove(self, link):
        prev, nxt = self.ld(link + LINK.prev), self.ld(link + LINK.next)
        self.st(prev + LINK.next, nxt)
        self.st(nxt + LINK.prev, prev)
        self.st(link + LINK.prev, 0)
        self.st(link + LINK.next, 0)

    def list_links(self, head, limit=1 << 40, *, charged=True):
        """The links of the list at head, first to last (at most `limit`, for walking a list
        that may be corrupt). `charged` False: a bookkeeping walk (statistics, names)."""
        ld = self.ld if charged else self.peek
        cur = ld(head + LINK.next)
        while cur != head and limit > 0:
            yield cur
            cur = ld(cur + LINK.next)
            limit -= 1

    # --- spinlocks ------------------------------------------------------------------------------

    def lock(self, lock):
        """Acquire the spinlock at `lock` (test-and-test-and-set in C; see smpsim/engine/_atomics.c).

        Raises LockTimeout when the machine has a lock_timeout and the lock stays taken longer,
        and, with or without one, when its holder's process has died (see _lock_slow).
        """
        if self.debug:
            self._check_order(lock)
        if self.arena.lock(lock, self.owner, self._poll) < 0:
            self._lock_slow(lock, self.arena.lock)
        if self.debug:
            self._held.append((self.lock_rank(lock), lock))

    def _lock_slow(self, lock, acquire):
        """A lock not had within one poll interval: every interval, see whether its holder can
        still release it. LockTimeout when the holder's process died (the lock would never be
        released), when this very CPU id holds it (a deadlock with itself), or once the
        machine's lock_timeout has passed; otherwise keep spinning."""
        t0 = time.monotonic() - self._poll
        while True:
            holder = self.peek(lock + SPINLOCK.holder)
            waited = time.monotonic() - t0
            if holder:
                why = self._holder_gone(holder - 1)
                if why or (self.lock_timeout and waited >= self.lock_timeout):
                    raise LockTimeout(self.lock_name(lock), holder - 1,
                                      round(waited, 1) if why else self.lock_timeout, why)
            step = self._poll
            if self.lock_timeout:
                step = max(0.001, min(step, self.lock_timeout - waited))
            if acquire(lock, self.owner, step) >= 0:
                return

    def _holder_gone(self, cpu):
        """Why CPU cpu will never release a lock it holds, or "" when it may."""
        if cpu == self.cpu_id:
            return ("which is this CPU itself (a CPU process of a run and a Kernel of the "
                    "caller must not use one CPU id at once; or the CPU died holding it)")
        r = self.regions
        if not 0 <= cpu < (r.cache_ids - r.cpu_ctl) // CPU_CTL.sizeof:
            return "which is no CPU of this machine (the lock word is corrupt)"
        pid = self.q[(r.cpu(cpu) + CPU_CTL.pid) >> 3]
        if pid & PID_DEAD or (pid and not pid_alive(pid)):
            return f"which died (process {pid & ~PID_DEAD}) without releasing it"
        return ""

    def trylock(self, lock):
        """One attempt at the spinlock at `lock`: True when this CPU took it (counted as an
        acquisition), False when another holds it (nothing changed)."""
        if self.debug:
            self._check_order(lock)
        if not self.arena.trylock(lock, self.owner):
            return False
        if self.debug:
            self._held.append((self.lock_rank(lock), lock))
        return True

    def unlock(self, lock):
        """Release the spinlock at `lock`, which this CPU must hold."""
        if not self.arena.unlock(lock, self.owner):
            raise SmpsimError(f"CPU {self.cpu_id} released lock {self.lock_name(lock)}, "
                              f"which it does not hold")
        if self.debug:
            self._held = [h for h in self._held if h[1] != lock]

    def holds(self, lock):
        """True when this CPU holds the spinlock at `lock` (for precondition checks; a
        bookkeeping read)."""
        return self.peek(lock + SPINLOCK.holder) == self.owner

    def _check_order(self, lock):
        rank = self.lock_rank(lock)
        if self._held and self._held[-1][0] >= rank:
            top = self._held[-1][1]
            raise LockOrderError(
                f"CPU {self.cpu_id} takes {self.lock_name(lock)} (rank {rank}) while holding "
                f"{self.lock_name(top)} (rank {self._held[-1][0]}): against the lock order "
                f"of smpsim/engine/locks.py")

    # The slab layer knows which structure a lock guards; these name and rank it.
    def lock_name(self, lock):
        return f"lock@{lock:#x}"

    def lock_rank(self, lock):
        return 0
