"""The shape of shared memory: every shared structure, declared once as a table of fields.

One `multiprocessing.shared_memory` segment holds the whole machine:

    0 .. memory               simulated physical memory, addressed by byte offset (0 is NULL).
                              Frame 0 is reserved at boot and holds the kernel's static data
                              (KERNEL: the cache list and its lock, the two static caches of the
                              seed, `mag_cache` and `slab_cache_cache`). Slabs, slab descriptors,
                              magazines and cache descriptors all live in the frames above it,
                              exactly where the seed's allocator puts them.
    memory .. end             bookkeeping, outside simulated memory (Regions below): the machine
                              header, the frame allocator's lock and free lists, one control line
                              per CPU, the cache-id table, the frame table (FRAME, one per page)
                              and the object table (one uint16 per 8-byte granule).

Addresses are byte offsets into the segment, so an address of simulated memory and a bookkeeping
offset are the same kind of int, and the lists of list.h link either. Every field is a whole
8-byte word (the simulated machine is a 64-bit build), except the free-list
index in a free object (the seed's `int`, 4 bytes) and the object table entries (2 bytes).

Code reads and writes fields as `base + STRUCT.field`; no literal offsets appear anywhere else.
Per-CPU data sits on its own 64-byte line (LINE) so that CPUs do not share cache lines.
"""

__all__ = ["WORD", "LINE", "PAGE_SIZE", "PAGE_WIDTH", "MAX_ORDER", "Struct", "SPINLOCK", "LINK",
           "SLAB", "MAGAZINE", "CPU_MAGS", "CACHE", "KERNEL", "HEADER", "CPU_CTL", "FRAME",
           "LOCKSTAT", "LOCKTAB_SIZE", "PCT_MAX", "Regions", "MAX_CACHES", "OBJ_INTERNAL",
           "NAME_MAX"]

WORD = 8
LINE = 64
PAGE_WIDTH = 12
PAGE_SIZE = 1 << PAGE_WIDTH
# Largest buddy block: 2**MAX_ORDER frames (4 MiB), as Linux's default MAX_ORDER.
MAX_ORDER = 10
# Live caches at once; ids index the cache-id table and fill the object table (uint16).
MAX_CACHES = 4096
# Object-table bit marking an object the allocator itself uses (a magazine, an external slab
# descriptor, a cache descriptor): never a caller's to free.
OBJ_INTERNAL = 0x8000
NAME_MAX = 32


class Struct:
    """A C struct in shared memory: its fields in order, each with its size in bytes.

    Each field becomes an attribute holding its byte offset; `sizeof` is the total, rounded up to
    `align`. A field named "_" is padding; PAD_TO_LINE pads to the next 64-byte line.
    """

    def __init__(self, cname, fields, *, align=WORD):
        self.cname = cname
        self.fields = {}
        off = 0
        for name, size in fields:
            if size is PAD_TO_LINE:
                size = -off % LINE
            if name in ("cname", "fields", "sizeof"):
                raise AssertionError(f"{cname}.{name} would hide Struct.{name}")
            if name != "_":
                if off % WORD and size >= WORD:
                    raise AssertionError(f"{cname}.{name} is not word aligned")
                self.fields[name] = off
                setattr(self, name, off)
            off += size
        self.sizeof = off + (-off % align)

    def __repr__(self):
        inner = ", ".join(f"{n}@{o}" for n, o in self.fields.items())
        return f"<{self.cname} sizeof={self.sizeof}: {inner}>"


PAD_TO_LINE = object()
PCT_MAX = 64            # PCT change points at most (depth - 1)

# A spinlock (spinlock_t): the word C's test-and-set works on, then counters updated by the
# holder. smpsim/engine/_atomics.c declares the same struct (tests/test_atomics.py checks the two agree).
SPINLOCK = Struct("spinlock_t", [("holder", 8), ("acquisitions", 8), ("contended", 8), ("spins", 8)])

# A link of HelenOS's circular doubly linked lists (list.h); a list head is a bare link.
LINK = Struct("link_t", [("prev", 8), ("next", 8)])

# The seed's slab descriptor, 48 bytes on a 64-bit build.
SLAB = Struct("slab_t", [("cache", 8), ("link", LINK.sizeof), ("start", 8), ("available", 8),
                         ("nextavail", 8)])

# A magazine, 32 bytes; `objs[size]` (8 bytes each) follows at MAGAZINE.objs.
MAGAZINE = Struct("slab_magazine_t", [("link", LINK.sizeof), ("busy", 8), ("size", 8), ("objs", 0)])

# One CPU's magazine pair in one cache: its own line, touched only under its `lock` (the seed's
# mag_cache[cpu]). `allocated` and `cached` are this CPU's share of the cache's counters when the
# machine runs with per-CPU counters (Machine(counters="percpu")); unused otherwise.
CPU_MAGS = Struct("slab_mag_cache_t", [("lock", SPINLOCK.sizeof), ("current", 8), ("last", 8),
                                       ("allocated", 8), ("cached", 8)], align=LINE)

# A cache descriptor (slab_cache_t). Ours to define (the seed's layout is not part of its
# behaviour): the name is stored in
# it, each lock shares a line only with what it guards, and the per-CPU entries follow on lines
# of their own at `mag_cache` (only for caches with magazines).
CACHE = Struct("slab_cache_t", [
    ("link", LINK.sizeof),            # in the cache list (KERNEL.slab_cache_list)
    ("name", NAME_MAX),             # NUL padded
    ("size", 8), ("align", 8), ("flags", 8), ("order", 8), ("objects", 8),
    ("magazine_size", 8),           # objects per magazine (Machine(magazine_size))
    ("id", 8),                      # 1..MAX_CACHES-1, the object table's mark for this cache
    ("gen", 8),                     # unique per created cache; 0 once destroyed
    ("objsize", 8),                 # the size the creator asked for (debugging mode checks it)
    ("_", PAD_TO_LINE),
    ("slablock", SPINLOCK.sizeof),    # guards full_slabs, partial_slabs and every slab's fields
    ("full_slabs", LINK.sizeof),
    ("partial_slabs", LINK.sizeof),
    ("maglock", SPINLOCK.sizeof),     # guards magazines
    ("magazines", LINK.sizeof),       # the shared list of full magazines
    ("magazine_counter", 8),        # atomic: length of `magazines`
    ("_", PAD_TO_LINE),
    ("allocated_objs", 8),          # atomic
    ("cached_objs", 8),             # atomic
    ("allocated_slabs", 8),         # atomic
    ("_", PAD_TO_LINE),
    ("mag_cache", 0),               # CPU_MAGS[cpus] follow
], align=LINE)

# The kernel's static data, in reserved frame 0. The first line stays unused so that no field
# has address 0.
KERNEL = Struct("kernel_static", [
    ("_", LINE),
    ("slab_cache_lock", SPINLOCK.sizeof),  # guards slab_cache_list, the cache-id table, next_gen
    ("slab_cache_list", LINK.sizeof),
    ("next_gen", 8),
    ("_", PAD_TO_LINE),
    ("reclaim_calls", 8),                # atomic: slab_reclaim calls
    ("reclaim_frames", 8),               # atomic: frames they returned (the seed's count)
    ("slab_extern", 8),                  # the seed's slab_extern_cache
    ("malloc_caches", 8 * 15),           # the seed's malloc_caches[], malloc-8 .. malloc-128K
    ("_", PAD_TO_LINE),
    ("mag_cache", CACHE.sizeof),           # the seed's static `mag_cache` ("slab_magazine")
    ("slab_cache_cache", CACHE.sizeof),    # the seed's static `slab_cache_cache` ("slab_cache")
])
assert KERNEL.sizeof <= PAGE_SIZE

# --- bookkeeping, outside simulated memory ---------------------------------------------------

HEADER = Struct("machine_header", [
    ("magic", 8), ("memory", 8), ("nframes", 8), ("cpus", 8), ("magazine_size", 8),
    ("options", 8),                      # Machine option bits (OPT_* in machine.py)
    ("creator_pid", 8),
    ("_", PAD_TO_LINE),
    ("frames_lock", SPINLOCK.sizeof),      # guards free_lists, free_frames and the frame table
    ("free_frames", 8),
    ("_", PAD_TO_LINE),
    ("free_lists", LINK.sizeof * (MAX_ORDER + 1)),  # buddy free lists, one per order
    ("_", PAD_TO_LINE),
    # A run's control line: the start gate, the barrier and the stop flag.
    ("run_cpus", 8),                     # CPUs taking part in the current run
    ("barrier_count", 8),                # atomic: arrivals in the current barrier round
    ("barrier_round", 8),                # atomic: rounds completed
    ("stop", 8),                         # set when the run is being stopped
    ("_", PAD_TO_LINE),
    # Simulated time and the scheduler (smpsim/engine/_sim.h): the modes and the cost model,
    # written by the Machine before a run, read by every CPU.
    ("time_mode", 8),                    # TIME_HOST or TIME_SIMULATED
    ("sched_mode", 8),                   # SCHED_FREE, SCHED_LAX or SCHED_TOKEN
    ("strategy", 8),                     # token mode: STRATEGY_* (who passes the next point)
    ("run_active", 8),                   # a run is under way: scheduling points act only then
    ("hz", 8), ("quantum", 8),           # clock rate; largest skew between running CPUs
    ("cost_hit", 8), ("cost_transfer", 8), ("cost_atomic", 8),   # cycles (the cost model)
    ("_", PAD_TO_LINE),
    # A controlled run's state, written only by the CPU holding the token (or by the Machine
    # between runs, or after the holder died).
    ("token", 8),                        # the CPU that may run
    ("step", 8),                         # scheduling points passed
    ("decisions", 8),                    # choices made among two or more runnable CPUs
    ("preemptions", 8),                  # ... that switched away from a CPU that could go on
    ("rng", 8),                          # the random strategies' generator (splitmix64)
    ("kill_cpu", 8), ("kill_step", 8),   # Machine(kill=(cpu, step)): cpu + 1, or 0 for none
    ("failure", 8), ("failure_step", 8), # FAIL_*: why no CPU could go on, and where
    ("log_len", 8), ("log_cap", 8),      # decisions in the schedule log, and its room
    ("pct_next", 8), ("pct_count", 8),   # PCT: the next change point's index, how many
    ("barrier_clock", 8),                # the latest arrival's clock in this barrier round
    ("replay_lenient", 8),               # replay: where the log names a CPU that cannot run or
                                         # has ended, go on without a preemption (shrinking)
    ("_", PAD_TO_LINE),
    ("pct_change", 8 * PCT_MAX),         # PCT: the steps at which a priority drops, ascending
    ("_", PAD_TO_LINE),
], align=LINE)

# One CPU's control line, written by that CPU, read by the supervisor.
CPU_CTL = Struct("cpu_ctl", [
    ("in_kernel", 8),   # nonzero while inside allocator code: the public operation under way
    ("ops", 8),         # allocations and frees done (progress, audit)
    ("allocs", 8),
    ("frees", 8),
    ("hits", 8),        # operations served by this CPU's own magazine pair
    ("misses", 8),      # operations that went past it (shared magazine list, slab layer)
    ("path", 8),        # how deep the last operation went (PATH_* in slab.py)
    ("depot", 8),       # operations whose deepest layer was the magazine exchange (of misses)
    ("slab", 8),        #   ... a slab's free list
    ("frames", 8),      #   ... the frame allocator
    ("pid", 8),
    ("_", PAD_TO_LINE),
    # Simulated time and the scheduler: written by this CPU, read by the others when they
    # compute the slowest running clock or choose who runs next.
    ("clock", 8),       # this CPU's simulated clock, in cycles
    ("state", 8),       # CPU_IDLE, CPU_RUNNABLE, CPU_BLOCKED, CPU_BARRIER or CPU_DONE
    ("wants", 8),       # CPU_BLOCKED: the lock word it waits for
    ("go", 8),          # futex word: the token was handed to this CPU (token mode)
    ("prio", 8),        # PCT: this CPU's priority
    ("progress", 8),    # futex word: bumped when this CPU wakes the CPUs waiting for it
    ("wake_at", 8),     # bounded skew: the earliest clock of this CPU that a sleeper needs
    ("points", 8),      # scheduling points this CPU has passed
    ("transfers", 8),   # simulated time: lines this CPU had to take from another CPU's cache
    ("epoch_progress", 8),  # futex word: bumped when this CPU wakes the CPUs waiting for its epoch
    ("wake_epoch", 8),  # bounded skew: the earliest clock of this CPU an epoch sleeper needs
    ("_", PAD_TO_LINE),
], align=LINE)

# Statistics of one lock, outside simulated memory, found by the lock word's address (an open
# addressed table, Regions.locktab): every measure a lock word cannot hold. For a user lock
# (Kernel.spin_lock) all of them; for the allocator's locks, whose SPINLOCK struct counts
# acquisitions, contention and spins, the simulated cycles.
LOCKSTAT = Struct("lockstat_t", [
    ("addr", 8),                         # the lock word; 0: a free entry
    ("kind", 8),                         # LOCK_USER or LOCK_KERNEL
    ("acquisitions", 8), ("contended", 8), ("spins", 8),   # user locks only (as SPINLOCK)
    ("wait_cycles", 8),                  # simulated cycles from the attempt to the acquisition
    ("hold_cycles", 8),                  # simulated cycles from the acquisition to the release
    ("acquired_at", 8),                  # the holder's clock when it took the lock
], align=LINE)
LOCKTAB_SIZE = 4096                      # entries (a power of two)

# A frame table entry (frame_t): `link` in a buddy free list, `parent` the slab owning the frame
# (the seed's frame->parent), `info` the state and order (FRAME_* in frames.py).
FRAME = Struct("frame_t", [("link", LINK.sizeof), ("parent", 8), ("info", 8)])


class Regions:
    """Where each part lies in the segment of a machine with `memory` bytes and `cpus` CPUs.

    `timed`: the machine runs in simulated time, so the segment holds a coherence tag for every
    64-byte line before the object table (`tag_words` words each: the last writer and the time
    of that write, the time the line last moved between CPUs, then a bit per CPU that holds a
    copy). `log_cap`: the room, in decisions, of a
    controlled run's schedule log (0: the machine runs no controlled schedule).
    """

    def __init__(self, memory, cpus, *, timed=False, log_cap=0):
        self.memory = memory
        self.cpus = cpus
        self.nframes = memory // PAGE_SIZE
        off = memory
        self.header = off
        off += HEADER.sizeof
        self.cpu_ctl = off
        off += CPU_CTL.sizeof * cpus
        self.cache_ids = off
        off += WORD * MAX_CACHES
        self.frame_table = off
        off += FRAME.sizeof * self.nframes
        self.object_table = off              # uint16 per 8-byte granule of simulated memory
        off += 2 * (memory // WORD)
        off += -off % LINE
        self.locktab = off
        off += LOCKSTAT.sizeof * LOCKTAB_SIZE
        # Coherence tags cover every line before the object table: simulated memory and the
        # frame allocator's state (the bookkeeping in between is never charged).
        self.tag_words = 2 + (cpus + 63) // 64
        self.tag_lines = self.object_table // LINE if timed else 0
        self.tags = off
        off += WORD * self.tag_words * self.tag_lines
        self.log = off                       # one byte per decision: the CPU chosen
        self.log_cap = log_cap
        off += log_cap
        self.size = off + (-off % PAGE_SIZE)

    def cpu(self, i):
        """The control line of CPU i."""
        return self.cpu_ctl + i * CPU_CTL.sizeof

    def frame(self, pfn):
        """The frame table entry of frame number pfn."""
        return self.frame_table + pfn * FRAME.sizeof

    def granule(self, addr):
        """The object table entry (a byte offset) of the 8-byte granule at addr."""
        return self.object_table + (addr >> 2)
