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
                              and the object table (one uint16 per 8-byte granule), and what
                              simulated time and controlled schedules keep. The options beyond
                              the seed (smpsim/engine/options.py) add, on a machine with one on,
                              their model state before the object table (CACHE_EXT per cache id,
                              a slab lock per frame), and on every machine their bookkeeping at
                              the end (OPTIONS, CACHE_STATS per cache id): with every option off
                              the regions up to there are exactly the seed machine's.

Addresses are byte offsets into the segment, so an address of simulated memory and a bookkeeping
offset are the same kind of int, and the lists of list.h link either. Every field is a whole
8-byte word (the simulated machine is a 64-bit build), except the free-list
index in a free object (the seed's `int`, 4 bytes) and the object table entries (2 bytes).

Code reads and writes fields as `base + STRUCT.field`; no literal offsets appear anywhere else.
Per-CPU data sits on its own 64-byte line (LINE) so that CPUs do not share cache lines.
"""

from typing import Final

__all__ = ["WORD", "LINE", "PAGE_SIZE", "PAGE_WIDTH", "MAX_ORDER", "Struct", "SPINLOCK", "LINK",
           "SLAB", "MAGAZINE", "CPU_MAGS", "CACHE", "KERNEL", "HEADER", "CPU_CTL", "FRAME",
           "LOCKSTAT", "LOCKTAB_SIZE", "PCT_MAX", "CACHE_EXT", "CACHE_STATS", "OPTIONS",
           "Regions", "MAX_CACHES", "OBJ_INTERNAL", "NAME_MAX", "FN_MAX", "MAGAZINE_SIZES"]

WORD = 8
LINE = 64
PAGE_WIDTH = 12
PAGE_SIZE: Final[int] = 1 << PAGE_WIDTH
# Largest buddy block: 2**MAX_ORDER frames (4 MiB), as Linux's default MAX_ORDER.
MAX_ORDER = 10
# Live caches at once; ids index the cache-id table and fill the object table (uint16).
MAX_CACHES = 4096
# Object-table bit marking an object the allocator itself uses (a magazine, an external slab
# descriptor, a cache descriptor): never a caller's to free.
OBJ_INTERNAL = 0x8000
NAME_MAX = 32
# Longest "module:function" name of a constructor or destructor (CACHE_EXT.ctor, .dtor).
FN_MAX = 128
# Solaris's magazine sizes (objects per magazine), the steps of Machine(resize_magazines=True);
# KERNEL.mag_sized holds the magazine cache of each.
MAGAZINE_SIZES = (1, 3, 7, 15, 31, 47, 63, 95, 143)


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
    # Options beyond the seed (smpsim/engine/options.py); never written with every option off.
    ("mag_front", 8),                      # Machine(cpu_magazine_cache): "slab_magazine_cpu"
    ("mag_sized", 8 * len(MAGAZINE_SIZES)),  # Machine(resize_magazines): slab_magazine_<M>,
                                           # one per size above the machine's magazine_size
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
    ("run_start", 8),                    # the clocks when the current run started
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
    ("pct_demotions", 8),                # PCT: spinning CPUs put below every other so far
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
    # Where inside an option's window the operation under way is (STAGES in options.py), so
    # that the checker can say what a CPU that died there left: the stage, its cache, its object.
    ("stage", 8), ("stage_cache", 8), ("stage_obj", 8),
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
    ("waiting", 8),                      # bounded skew: CPUs taking it in simulated-time order
], align=LINE)
LOCKTAB_SIZE = 4096                      # entries (a power of two)

# A frame table entry (frame_t): `link` in a buddy free list, `parent` the slab owning the frame
# (the seed's frame->parent), `info` the state and order (FRAME_* in frames.py).
FRAME = Struct("frame_t", [("link", LINK.sizeof), ("parent", 8), ("info", 8)])

# --- the options beyond the seed (smpsim/engine/options.py) ------------------------------------

# The model state a cache needs for the machine's options, one per cache id, before the object
# table (so that simulated time charges it like simulated memory: it is what a real kernel would
# keep in the cache descriptor), only on a machine with an option on; read and written with
# ld / st / locks, each group on a line of its own. Set up when the cache is linked
# (_link_cache), for the options the machine has on.
CACHE_EXT = Struct("slab_cache_ext_t", [
    # Depot state guarded by the cache's maglock.
    ("depot_contention", 8),       # resize: contended maglock acquisitions this period
    ("period_start", 8),           # resize: when this period began (options.clock_ns)
    ("depot_low", 8),              # reap: fewest full magazines on the list since the last reap
    ("_", PAD_TO_LINE),
    # Machine(empty_magazines=True): the cache's list of empty magazines.
    ("emptylock", SPINLOCK.sizeof),  # guards `empty` and empty_counter
    ("empty", LINK.sizeof),
    ("empty_counter", 8),
    ("_", PAD_TO_LINE),
    # Machine(colour=True).
    ("colour_next", 8),            # atomic: slabs created so far, whose count picks the colour
    ("colour_max", 8),             # the largest colour offset (the slab's slack, in steps)
    ("colour_step", 8),            # bytes between colours (64, or the cache's alignment)
    ("_", PAD_TO_LINE),
], align=LINE)

# The simulator's own data about a cache for the options, one per cache id, at the end of the
# segment (bookkeeping, on every machine): statistics and the names of the constructor and the
# destructor, which every CPU process must be able to read.
CACHE_STATS = Struct("slab_cache_stats_t", [
    ("constructed", 8), ("destructed", 8), ("resizes", 8), ("ctor_failures", 8),
    ("dtor_errors", 8),
    # The locks of the cache's freed slabs (slab locks): their counts and simulated cycles.
    ("slab_acquisitions", 8), ("slab_contended", 8), ("slab_spins", 8),
    ("slab_wait_cycles", 8), ("slab_hold_cycles", 8),
    ("ctor", FN_MAX), ("dtor", FN_MAX),    # "module:function", NUL padded
], align=LINE)

# The options' global line (bookkeeping): the periodic reap's timer and the reaps' counters.
OPTIONS = Struct("options_state", [
    ("reap_due", 8),               # options.clock_ns when the next periodic reap is due
    ("reap_calls", 8), ("reap_frames", 8), ("reap_magazines", 8),
    ("functions", 8),              # nonzero once any cache was made with a ctor or dtor
    ("_", PAD_TO_LINE),
], align=LINE)


class Regions:
    """Where each part lies in the segment of a machine with `memory` bytes and `cpus` CPUs.

    `timed`: the machine runs in simulated time, so the segment holds a coherence tag for every
    64-byte line before the object table (`tag_words` words each: the last writer and the time
    of that write, the time the line last moved between CPUs, then a bit per CPU that holds a
    copy). `log_cap`: the room, in decisions, of a controlled run's schedule log (0: the
    machine runs no controlled schedule). `options`: an option beyond the seed is on, so the
    segment holds its model state (CACHE_EXT per cache id and a slab lock per frame) before the
    object table.
    """

    def __init__(self, memory, cpus, *, timed=False, log_cap=0, options=False):
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
        self.cache_ext = self.slab_locks = 0
        if options:
            off += -off % LINE
            self.cache_ext = off             # CACHE_EXT per cache id
            off += CACHE_EXT.sizeof * MAX_CACHES
            self.slab_locks = off            # a SPINLOCK per frame, a line each (slab_locks)
            off += LINE * self.nframes
        self.object_table = off              # uint16 per 8-byte granule of simulated memory
        off += 2 * (memory // WORD)
        off += -off % LINE
        self.locktab = off
        off += LOCKSTAT.sizeof * LOCKTAB_SIZE
        # Coherence tags cover every line before the object table: simulated memory and the
        # frame allocator's state (the bookkeeping in between is never charged).
        # Each tag takes a whole host cache line (tag_stride words): the tags of neighbouring
        # lines, such as two CPUs' magazine pairs, would otherwise share one, and every charged
        # access would move it between host cores. Pages of tags no access touches stay unbacked.
        self.tag_words = 2 + (cpus + 63) // 64
        self.tag_stride = max(LINE // WORD, self.tag_words)
        self.tag_lines = self.object_table // LINE if timed else 0
        self.tags = off
        off += WORD * self.tag_stride * self.tag_lines
        self.log = off                       # one byte per decision: the CPU chosen
        self.log_cap = log_cap
        off += log_cap
        off += -off % LINE
        self.options_line = off              # OPTIONS
        off += OPTIONS.sizeof
        self.cache_stats = off               # CACHE_STATS per cache id
        off += CACHE_STATS.sizeof * MAX_CACHES
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

    def ext(self, cid):
        """The CACHE_EXT of the cache with id cid (a machine with an option on)."""
        return self.cache_ext + cid * CACHE_EXT.sizeof

    def stats(self, cid):
        """The CACHE_STATS of the cache with id cid."""
        return self.cache_stats + cid * CACHE_STATS.sizeof

    def slab_lock(self, pfn):
        """The slab lock of the slab whose space begins at frame pfn (slab_locks option), on a
        line of its own as a lock in the slab's descriptor would be."""
        return self.slab_locks + pfn * LINE
