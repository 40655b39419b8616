/*
 * smpsim/engine/_sim.h: simulated time and the scheduler, shared by the two C extensions
 * (_atomics.c: the accesses and locks of the allocator's Python code; _fastpath.c: the magazine
 * hit path). Both include it (through _sched.h, which holds the token scheduler and the locks),
 * so a hit served in C and the same hit served in Python charge the same cycles and pass the
 * same scheduling points. This file: the layout, one CPU's view, bounded skew, the cost model
 * and the lock statistics.
 *
 * The model (docs/time.md explains it for users):
 *
 * Clocks. Every CPU has a clock in cycles (CPU_CTL.clock), advanced only by what it does to
 * the simulated machine's state and by Kernel.compute(). All of a run's CPUs start at the same
 * time (the Machine sets their clocks before it opens the start gate).
 *
 * Costs. Every access the seed's code makes to a 64-byte line of the machine's state goes
 * through charge(). Each such line has a coherence tag in the segment (Regions.tags): word 0 is
 * the CPU that wrote it last and the simulated time of that write (OWNER_SHIFT and TIME_MASK
 * below lay it out); word 1 (TAG_MOVED) the time the line last moved between CPUs; the words
 * from TAG_COPIES on have a bit per CPU holding a copy. A read of a line this CPU holds costs
 * cost_hit; of a line written by another CPU since, cost_transfer, and it cannot complete before
 * the time of that write (the reader's clock moves up to it first). A write or an atomic
 * read-modify-write needs the line alone: cost_hit (cost_atomic for an atomic) when it already
 * has it, else the transfer first. A line no CPU ever wrote costs a hit. Only accesses to lines
 * below the object table are charged; the simulator's bookkeeping is never read through here.
 *
 * Scheduling points. Every spinlock acquire and release, every atomic on shared memory, a
 * barrier, and a program's start and end; in a controlled run (a schedule) also every access
 * the allocator's code makes to the machine's state, so that an access made without the lock
 * that guards it can be interleaved. A point acts before its action. What it does depends on
 * HEADER.sched_mode:
 *
 *   SCHED_FREE   nothing: the host schedules the CPU processes.
 *   SCHED_LAX    bounded skew (simulated time, quantum > 0): a CPU whose clock is more than
 *                `quantum` ahead of the slowest running CPU sleeps (futex on that CPU's
 *                `progress` word, woken once that clock reaches the time it needs) until it
 *                is not. Blocked CPUs (waiting for a lock or at a barrier) and finished ones do
 *                not count as running.
 *   SCHED_TOKEN  one CPU at a time: the CPU holding the token runs to its next point, where the
 *                strategy chooses who holds it next (STRATEGY_CLOCK: the lowest clock, ties to
 *                the lowest id, which is simulated time with quantum 0; RANDOM; PCT; REPLAY of
 *                a recorded schedule). A CPU waiting for a lock another holds is not runnable;
 *                when none is runnable the run has deadlocked.
 *
 * Every word of the scheduler's shared state is written only by the CPU holding the token
 * (token mode), by a CPU about itself (its clock, state, progress), or by the Machine while no
 * CPU runs, so plain stores suffice except where a comment says otherwise.
 */
#ifndef SMPSIM_SIM_H
#define SMPSIM_SIM_H

#include <Python.h>
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The spin-wait hint: PAUSE on x86, YIELD on Arm, a compiler barrier elsewhere. */
#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

enum { SCHED_FREE = 0, SCHED_LAX = 1, SCHED_TOKEN = 2 };
enum { STRATEGY_CLOCK = 0, STRATEGY_RANDOM = 1, STRATEGY_PCT = 2, STRATEGY_REPLAY = 3 };
enum { CPU_IDLE = 0, CPU_RUNNABLE = 1, CPU_BLOCKED = 2, CPU_BARRIER = 3, CPU_DONE = 4 };
enum { FAIL_NONE = 0, FAIL_DEADLOCK = 1, FAIL_MISMATCH = 2, FAIL_LOG_FULL = 3 };
enum { ACC_READ = 0, ACC_WRITE = 1, ACC_RMW = 2 };
enum { LOCK_KERNEL = 1, LOCK_USER = 2 };
/* What a scheduling point is about (the trace of a controlled run names it). */
enum { PT_START = 0, PT_END, PT_LOCK, PT_UNLOCK, PT_TRYLOCK, PT_ATOMIC, PT_LOAD, PT_STORE,
       PT_READ, PT_WRITE, PT_BARRIER };

/* A coherence tag's first word: the CPU that wrote the line last, + 1 (bits 55-63: up to 256
 * CPUs), and the time of that write (bits 0-54). Its second word, TAG_MOVED: the time the line
 * last moved between CPUs (a transfer; 0: never). From TAG_COPIES on: a bit per CPU holding a
 * copy. Layout.py's Regions.tag_words counts them. */
#define OWNER_SHIFT 55
#define TIME_MASK ((UINT64_C(1) << OWNER_SHIFT) - 1)
#define OWNER_MASK (~TIME_MASK)
#define TAG_MOVED 1
#define TAG_COPIES 2
/* SCHED_LAX: a line that moved between CPUs less than this many quanta ago is "in use by
 * several": every access to it is ordered by simulated time (see charge_slow). */
#define RECENT_QUANTA 4
#define RECENT_MAX 4000        /* ... but no more than this many cycles, whatever the quantum */
#define TOKEN_SPINS 1000       /* polls of the token before yielding the core */
#define TOKEN_YIELDS 10        /* sched_yield()s before sleeping on the futex */
#define WAIT_SLICE_NS 20000000  /* a futex sleep is cut into slices this long (signals, deaths) */
#define SKEW_YIELDS 3          /* bounded skew: sched_yield()s before sleeping for a laggard */
#define SKEW_SPIN_MIN 512      /* ... and the fewest and most polls of its clock before them, */
#define SKEW_SPIN_MAX 16384     /* with a host core per CPU (lax_catch_up) */

/* --- the layout: offsets from smpsim/engine/layout.py, set once by sim_configure() ---------- */

static struct {
    int ready;
    /* HEADER */
    Py_ssize_t h_time_mode, h_sched_mode, h_strategy, h_run_active, h_hz, h_quantum;
    Py_ssize_t h_cost_hit, h_cost_transfer, h_cost_atomic;
    Py_ssize_t h_token, h_step, h_decisions, h_preemptions, h_rng, h_kill_cpu, h_kill_step;
    Py_ssize_t h_failure, h_failure_step, h_log_len, h_log_cap, h_pct_next, h_pct_count;
    Py_ssize_t h_barrier_clock, h_pct_change, h_barrier_count, h_barrier_round, h_run_cpus;
    Py_ssize_t h_replay_lenient, h_run_start, h_pct_demotions;
    /* CPU_CTL */
    Py_ssize_t c_sizeof, c_clock, c_state, c_wants, c_go, c_prio, c_progress, c_wake_at;
    Py_ssize_t c_points, c_transfers, c_epoch_progress, c_wake_epoch;
    /* SPINLOCK */
    Py_ssize_t l_holder, l_acquisitions, l_contended, l_spins;
    /* LOCKSTAT */
    Py_ssize_t s_sizeof, s_addr, s_kind, s_acquisitions, s_contended, s_spins, s_wait_cycles;
    Py_ssize_t s_hold_cycles, s_acquired_at, s_waiting;
} SL;

static const char *const SIM_FIELDS[] = {
    "HEADER.time_mode", "HEADER.sched_mode", "HEADER.strategy", "HEADER.run_active",
    "HEADER.hz", "HEADER.quantum", "HEADER.cost_hit", "HEADER.cost_transfer",
    "HEADER.cost_atomic", "HEADER.token", "HEADER.step", "HEADER.decisions",
    "HEADER.preemptions", "HEADER.rng", "HEADER.kill_cpu", "HEADER.kill_step", "HEADER.failure",
    "HEADER.failure_step", "HEADER.log_len", "HEADER.log_cap", "HEADER.pct_next",
    "HEADER.pct_count", "HEADER.barrier_clock", "HEADER.pct_change", "HEADER.barrier_count",
    "HEADER.barrier_round", "HEADER.run_cpus", "HEADER.replay_lenient", "HEADER.run_start",
    "HEADER.pct_demotions",
    "CPU_CTL.sizeof", "CPU_CTL.clock", "CPU_CTL.state", "CPU_CTL.wants", "CPU_CTL.go",
    "CPU_CTL.prio", "CPU_CTL.progress", "CPU_CTL.wake_at", "CPU_CTL.points",
    "CPU_CTL.transfers", "CPU_CTL.epoch_progress", "CPU_CTL.wake_epoch",
    "SPINLOCK.holder", "SPINLOCK.acquisitions", "SPINLOCK.contended", "SPINLOCK.spins",
    "LOCKSTAT.sizeof", "LOCKSTAT.addr", "LOCKSTAT.kind", "LOCKSTAT.acquisitions",
    "LOCKSTAT.contended", "LOCKSTAT.spins", "LOCKSTAT.wait_cycles", "LOCKSTAT.hold_cycles",
    "LOCKSTAT.acquired_at", "LOCKSTAT.waiting",
    NULL};

/* The exception a CPU's program gets when the scheduler ends the run (deadlock, a schedule that
 * no longer matches, a full log): a BaseException, so that a workload's `except Exception`
 * cannot swallow it. The Machine reads HEADER.failure to say why. */
static PyObject *ScheduleStop;

/* sim_configure(fields): fields is a dict name -> offset with every name of SIM_FIELDS. */
static int
sim_configure(PyObject *fields)
{
    Py_ssize_t *f = &SL.h_time_mode;
    for (int i = 0; SIM_FIELDS[i]; i++, f++) {
        PyObject *v = PyDict_GetItemString(fields, SIM_FIELDS[i]);
        if (!v) {
            PyErr_Format(PyExc_KeyError, "configure: no field %s", SIM_FIELDS[i]);
            return -1;
        }
        *f = PyLong_AsSsize_t(v);
        if (*f < 0) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "configure: %s < 0", SIM_FIELDS[i]);
            return -1;
        }
    }
    SL.ready = 1;
    return 0;
}

/* --- one CPU's view ------------------------------------------------------------------------- */

struct simcpu {
    char *base;             /* the segment */
    uint64_t len;
    int on;                 /* configured for this machine (otherwise every call is host mode) */
    int timed;              /* simulated time: charge accesses */
    int sched;              /* SCHED_* (fixed for the machine) */
    int data_points;        /* a controlled run: data accesses are scheduling points too */
    uint32_t cpu, ncpus;
    uint64_t hdr, ctl0;     /* HEADER, CPU_CTL of CPU 0 */
    uint64_t tags, tag_lines, tag_words, tag_stride;
    uint64_t locktab, locktab_mask;
    uint64_t log;           /* the schedule log, one byte per decision */
    uint64_t hit, transfer, atomic, quantum;   /* the cost model, copied at configure */
    uint64_t horizon;       /* SCHED_LAX: the end of the slowest running CPU's epoch */
    uint64_t reads_in_row;  /* PCT: points in a row at which this CPU only read (spinning) */
    uint32_t spin_budget;   /* SCHED_LAX: polls of a laggard's clock before yielding (adaptive) */
    uint64_t recent;        /* SCHED_LAX: RECENT_QUANTA * quantum (0 in the other modes) */
    int spin_token;         /* poll the token before sleeping (few CPUs per host core) */
    uint64_t lk_word[16], lk_entry[16];   /* lockstat()'s last answers, by lock line */
    /* precomputed by sim_bind(): this CPU's own words and its tag */
    uint64_t *clock, *wake_at, *wake_epoch, *transfers, *points, *run_active, *run_start;
    uint64_t *tagbase;
    uint64_t me_tag, bit;
    PyObject *tracer;       /* token mode: called as tracer(step, kind, addr, next, preempted)
                             * at every point, before the token moves (a borrowed reference:
                             * its owner, the Arena, keeps it) */
};

#define HW(s, f) ((uint64_t *)((s)->base + (s)->hdr + SL.f))
#define CW(s, i, f) ((uint64_t *)((s)->base + (s)->ctl0 + (uint64_t)(i) * SL.c_sizeof + SL.f))
#define MYCLOCK(s) ((s)->clock)

/* Fill in the pointers simcpu keeps to this CPU's own words (after its offsets are set). */
static inline void
sim_bind(struct simcpu *s)
{
    s->clock = CW(s, s->cpu, c_clock);
    s->wake_at = CW(s, s->cpu, c_wake_at);
    s->wake_epoch = CW(s, s->cpu, c_wake_epoch);
    s->transfers = CW(s, s->cpu, c_transfers);
    s->points = CW(s, s->cpu, c_points);
    s->run_active = HW(s, h_run_active);
    s->run_start = HW(s, h_run_start);
    s->tagbase = (uint64_t *)(s->base + s->tags);
    s->me_tag = (uint64_t)(s->cpu + 1) << OWNER_SHIFT;
    s->bit = UINT64_C(1) << (s->cpu & 63);
    s->spin_budget = 1024;
    s->recent = s->sched != SCHED_LAX ? 0
                : RECENT_QUANTA * s->quantum < RECENT_MAX ? RECENT_QUANTA * s->quantum
                                                          : RECENT_MAX;
}

static inline uint64_t ld_relaxed(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void st_relaxed(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint64_t umax(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* Words from one coherence tag to the next: a host cache line each (Regions.tag_stride). */
static inline uint64_t tag_stride(uint64_t tag_words) { return umax(tag_words, 8); }

/* Set up one CPU's view of a machine whose segment is at base (len bytes): the regions the
 * Python side computed (layout.py), then the modes and the cost model from its HEADER. Both
 * extensions' configure_sim() call it. */
static void
sim_init(struct simcpu *m, char *base, uint64_t len, uint32_t cpu, uint32_t ncpus, uint64_t hdr,
         uint64_t ctl0, uint64_t tags, uint64_t tag_lines, uint64_t tag_words, uint64_t locktab,
         uint64_t locktab_size, uint64_t log, int spin_token, PyObject *tracer)
{
    memset(m, 0, sizeof *m);
    m->tracer = tracer;
    m->base = base;
    m->len = len;
    m->cpu = cpu;
    m->ncpus = ncpus;
    m->hdr = hdr;
    m->ctl0 = ctl0;
    m->tags = tags;
    m->tag_lines = tag_lines;
    m->tag_words = tag_words;
    m->tag_stride = tag_stride(tag_words);
    m->locktab = locktab;
    m->locktab_mask = locktab_size - 1;
    m->log = log;
    m->spin_token = spin_token;
    m->timed = ld_relaxed(HW(m, h_time_mode)) != 0;
    m->sched = (int)ld_relaxed(HW(m, h_sched_mode));
    m->data_points = m->sched == SCHED_TOKEN &&
                     ld_relaxed(HW(m, h_strategy)) != STRATEGY_CLOCK;
    m->hit = ld_relaxed(HW(m, h_cost_hit));
    m->transfer = ld_relaxed(HW(m, h_cost_transfer));
    m->atomic = ld_relaxed(HW(m, h_cost_atomic));
    m->quantum = ld_relaxed(HW(m, h_quantum));
    sim_bind(m);
    m->on = 1;
}

/* The coherence tag of the line holding addr, or NULL where the model charges nothing (host
 * time, or bookkeeping past the tag table). */
static inline uint64_t *
tag_of(struct simcpu *s, uint64_t addr)
{
    uint64_t line = addr >> 6;
    return s->timed && line < s->tag_lines ? s->tagbase + line * s->tag_stride : NULL;
}

/* Whether a CPU other than `cpu` holds a copy of the tag's line. */
static inline int
copied_elsewhere(struct simcpu *s, uint64_t *tag, uint32_t cpu)
{
    for (uint64_t w = 0; w + TAG_COPIES < s->tag_words; w++)
        if (ld_relaxed(tag + TAG_COPIES + w) &
            ~(w == (cpu >> 6) ? UINT64_C(1) << (cpu & 63) : 0))
            return 1;
    return 0;
}

static long
futex(uint64_t *word, int op, uint32_t val, long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    /* The low half of a little-endian 64-bit word is its value below 2**32. */
    return syscall(SYS_futex, (uint32_t *)word, op, val, ns >= 0 ? &ts : NULL, NULL, 0);
}

static inline void
futex_wake_all(uint64_t *word)
{
    futex(word, FUTEX_WAKE, INT32_MAX, -1);
}

/* Sleep while the futex word still holds `seen` (at most one slice), without the GIL, then let
 * Python signal handlers run (a stop request). -1 when a handler raised. */
static int
futex_sleep(uint64_t *word, uint32_t seen)
{
    Py_BEGIN_ALLOW_THREADS
    futex(word, FUTEX_WAIT, seen, WAIT_SLICE_NS);
    Py_END_ALLOW_THREADS
    return PyErr_CheckSignals();
}

/* --- bounded skew (SCHED_LAX) ------------------------------------------------------------- */

/*
 * The CPUs waiting for this one sleep in two classes, each with its own futex word and the
 * earliest clock one of its sleepers needs: an ordered access or a lock attempt waits for a
 * clock close to this CPU's (CPU_CTL.progress, wake_at); a CPU at the end of its epoch waits for
 * this one to enter that epoch (epoch_progress, wake_epoch), usually much later. Apart, the
 * frequent near wakes do not rouse the epoch sleepers only for them to sleep again.
 */
static inline void
wake_class(uint64_t *at, uint64_t *progress)
{
    __atomic_store_n(at, UINT64_MAX, __ATOMIC_RELEASE);
    __atomic_fetch_add(progress, 1, __ATOMIC_RELEASE);
    futex_wake_all(progress);
}

/* Wake the sleepers whose clock this CPU has reached. Called at every point and charge. */
static inline void
wake_waiters(struct simcpu *s)
{
    uint64_t t = ld_relaxed(s->clock);
    if (t >= __atomic_load_n(s->wake_at, __ATOMIC_ACQUIRE))
        wake_class(s->wake_at, CW(s, s->cpu, c_progress));
    if (t >= __atomic_load_n(s->wake_epoch, __ATOMIC_ACQUIRE))
        wake_class(s->wake_epoch, CW(s, s->cpu, c_epoch_progress));
}

/* Set this CPU's scheduler state (others read it to find the slowest running clock); a CPU that
 * stops running wakes everyone sleeping on it. */
static inline void
set_state(struct simcpu *s, uint64_t state)
{
    __atomic_store_n(CW(s, s->cpu, c_state), state, __ATOMIC_SEQ_CST);
    if (s->sched != SCHED_LAX || state == CPU_RUNNABLE)
        return;
    if (__atomic_load_n(s->wake_at, __ATOMIC_SEQ_CST) != UINT64_MAX)
        wake_class(s->wake_at, CW(s, s->cpu, c_progress));
    if (__atomic_load_n(s->wake_epoch, __ATOMIC_SEQ_CST) != UINT64_MAX)
        wake_class(s->wake_epoch, CW(s, s->cpu, c_epoch_progress));
}

/* SCHED_LAX: whether the line's tag says it moved between CPUs less than `recent` cycles before
 * time t (a line in use by several, whose accesses go in simulated-time order). So is every
 * line in a run's first `recent` cycles, while the host starts the CPU processes one by one:
 * which lines the CPUs will share is not known yet. */
static inline int
recently_moved(struct simcpu *s, uint64_t *tag, uint64_t t)
{
    uint64_t moved = ld_relaxed(tag + TAG_MOVED);
    return s->recent && ((moved && moved + s->recent > t) ||
                         t < ld_relaxed(s->run_start) + s->recent);
}

/* Whether the line holding addr is this CPU's alone and has not moved between CPUs lately: an
 * access to it needs no ordering against the others (the lock of this CPU's own magazines). */
static inline int
line_private(struct simcpu *s, uint64_t addr)
{
    uint64_t *tag = tag_of(s, addr);
    return tag && (ld_relaxed(tag) & OWNER_MASK) == s->me_tag &&
           !recently_moved(s, tag, ld_relaxed(s->clock)) && !copied_elsewhere(s, tag, s->cpu);
}

/* The time of the last write to the line holding addr (for choosing by clock). */
static inline uint64_t
line_time(struct simcpu *s, uint64_t addr)
{
    uint64_t *tag = tag_of(s, addr);
    return tag ? ld_relaxed(tag) & TIME_MASK : 0;
}

/* When CPU i, now at clock c, can take the free lock whose word is at `lock`: at once if it
 * holds the lock's line alone (it released the lock last and no other CPU has looked), else
 * after the release plus a transfer. */
static inline uint64_t
take_time(struct simcpu *s, uint32_t i, uint64_t lock, uint64_t c)
{
    uint64_t *tag = tag_of(s, lock);
    if (!tag)
        return c;
    uint64_t e = ld_relaxed(tag);
    int alone = (e & OWNER_MASK) == (uint64_t)(i + 1) << OWNER_SHIFT &&
                !copied_elsewhere(s, tag, i);
    return alone ? c : umax(c, (e & TIME_MASK) + s->transfer);
}

/* Where CPU i's clock stands for the skew bound, or UINT64_MAX when it does not hold the others
 * back: a running CPU's clock; a CPU spinning for a lock that is free now would take it at the
 * release plus a transfer; one whose lock is held waits for its holder (who counts itself); a
 * CPU at a barrier, finished or idle does not count. */
static inline uint64_t
lax_clock(struct simcpu *s, uint32_t i)
{
    uint64_t st = __atomic_load_n(CW(s, i, c_state), __ATOMIC_ACQUIRE);
    uint64_t c = ld_relaxed(CW(s, i, c_clock));
    if (st == CPU_RUNNABLE)
        return c;
    if (st == CPU_BLOCKED) {
        uint64_t lock = ld_relaxed(CW(s, i, c_wants));
        if (lock && __atomic_load_n((uint64_t *)(s->base + lock), __ATOMIC_ACQUIRE) == 0)
            return take_time(s, i, lock, c);
    }
    return UINT64_MAX;
}

/* Before sleeping for CPU i to reach `need`. With a host core per CPU, poll its clock for up to
 * s->spin_budget reads: a sleep and a wake cost microseconds (tens on a virtual machine whose
 * idle cores halt), and a laggard running on another core often gets there sooner. The budget
 * adapts as glibc's adaptive mutexes do: doubled after a poll that got there, halved after one
 * that did not, so that on a busy host (where the laggard waits for a core, and polling only
 * delays it) polling fades. Then yield the core a few times (the laggard may be waiting for
 * it). Whether it got there. */
static int
lax_catch_up(struct simcpu *s, uint32_t i, uint64_t need)
{
    if (s->spin_token) {
        for (uint32_t n = 0; n < s->spin_budget; n++) {
            if (lax_clock(s, i) >= need) {
                s->spin_budget = s->spin_budget * 2 > SKEW_SPIN_MAX ? SKEW_SPIN_MAX
                                                                     : s->spin_budget * 2;
                return 1;
            }
            cpu_relax();
        }
        s->spin_budget = s->spin_budget / 2 > SKEW_SPIN_MIN ? s->spin_budget / 2 : SKEW_SPIN_MIN;
    }
    for (int n = 0; n < SKEW_YIELDS; n++) {
        if (lax_clock(s, i) >= need)
            return 1;
        sched_yield();
    }
    return lax_clock(s, i) >= need;
}

/*
 * SCHED_LAX: wait until every other running CPU is at most `ahead` cycles behind time t (this
 * CPU's clock, or when it would take a lock): (clock_j + ahead, j) >= (t, me) for every
 * running j (lax_clock), so with `ahead` 0 no running CPU is behind (ties go to the lower id).
 * Sleeps on the laggard's `progress` futex, which it bumps once its clock reaches what we need
 * (wake_waiters) or it stops running
 * (set_state). -1 when a signal handler raised.
 */
static int
skew_wait_at(struct simcpu *s, uint64_t t, uint64_t ahead, int epoch)
{
    for (;;) {
        uint64_t need = 0, lowest = UINT64_MAX;
        uint32_t laggard = s->cpu;
        for (uint32_t i = 0; i < s->ncpus; i++) {
            uint64_t c = i == s->cpu ? UINT64_MAX : lax_clock(s, i);
            if (c == UINT64_MAX)
                continue;
            /* CPU i must reach `want` (a tie lets the lower id go first); wait for the one
             * furthest behind. */
            uint64_t want = t > ahead ? t - ahead + (i > s->cpu ? 0 : 1) : 0;
            if (c < want && c < lowest) {
                lowest = c;
                need = want;
                laggard = i;
            }
        }
        if (laggard == s->cpu)
            return 0;
        if (lax_catch_up(s, laggard, need))
            continue;
        uint64_t *p = epoch ? CW(s, laggard, c_epoch_progress) : CW(s, laggard, c_progress);
        uint64_t *at = epoch ? CW(s, laggard, c_wake_epoch) : CW(s, laggard, c_wake_at);
        uint64_t cur = __atomic_load_n(at, __ATOMIC_ACQUIRE);
        while (need < cur && !__atomic_compare_exchange_n(at, &cur, need, 0, __ATOMIC_ACQ_REL,
                                                          __ATOMIC_ACQUIRE))
            ;
        uint32_t seen = (uint32_t)__atomic_load_n(p, __ATOMIC_ACQUIRE);
        if (lax_clock(s, laggard) < need && futex_sleep(p, seen) < 0)
            return -1;
        if (!ld_relaxed(HW(s, h_run_active)))
            return 0;
    }
}

static inline int
skew_wait(struct simcpu *s, uint64_t ahead)
{
    return skew_wait_at(s, ld_relaxed(MYCLOCK(s)), ahead, 0);
}

/* SCHED_LAX at a scheduling point: no more than quantum ahead of the slowest running CPU.
 * Simulated time is cut into epochs of `quantum` cycles; every CPU may run to the end of the
 * slowest running CPU's epoch (so the skew stays below a quantum), and a CPU that reaches it
 * sleeps until the slowest enters its own epoch: at most one sleep per CPU per epoch, where a
 * sliding window would wake and stop the CPUs ahead at every step of the slowest. The last
 * computed end (the horizon) saves the scan while the clock stays below it. */
static int
lax_wait(struct simcpu *s)
{
    wake_waiters(s);
    uint64_t t = ld_relaxed(MYCLOCK(s)), q = s->quantum;
    if (t < s->horizon)
        return 0;
    for (;;) {
        uint64_t slowest = t;
        for (uint32_t i = 0; i < s->ncpus; i++)
            if (i != s->cpu && lax_clock(s, i) < slowest)
                slowest = lax_clock(s, i);
        s->horizon = (slowest / q + 1) * q;
        if (t < s->horizon)
            return 0;
        if (skew_wait_at(s, t / q * q, 0, 1) < 0)   /* the slowest enters this epoch */
            return -1;
        if (!ld_relaxed(s->run_active))
            return 0;
    }
}

/* --- the cost model ---------------------------------------------------------------------- */

/* Whether an access of `kind` finds the line this CPU's already (no transfer): a read, when it
 * wrote the line last or holds a copy; a write or an atomic, when no other CPU holds one. */
static inline __attribute__((always_inline)) int
line_is_mine(struct simcpu *s, uint64_t *tag, uint64_t e, int kind)
{
    int owned = (e & OWNER_MASK) == s->me_tag || e == 0;
    if (kind == ACC_READ)
        return owned || (ld_relaxed(tag + TAG_COPIES + (s->cpu >> 6)) & s->bit);
    return owned && !copied_elsewhere(s, tag, s->cpu);
}

/* Record that the line moved between CPUs at time t (the later of two racing moves stays). */
static inline void
note_moved(uint64_t *tag, uint64_t t)
{
    uint64_t cur = ld_relaxed(tag + TAG_MOVED);
    while (cur < t && !__atomic_compare_exchange_n(tag + TAG_MOVED, &cur, t, 0,
                                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* charge() past its fast case: the line is not this CPU's alone, or a read of a line it only
 * holds a copy of, or a line that moved lately. */
static __attribute__((noinline)) void
charge_slow(struct simcpu *s, uint64_t *tag, int kind)
{
    uint64_t *mine = tag + TAG_COPIES + (s->cpu >> 6), bit = s->bit;
    uint64_t *clock = s->clock, t = ld_relaxed(clock), me = s->me_tag;
    uint64_t e = ld_relaxed(tag);
    if (s->sched == SCHED_LAX && (!line_is_mine(s, tag, e, kind) || recently_moved(s, tag, t)) &&
        ld_relaxed(s->run_active)) {
        /* An access that needs the line from another CPU, or to a line that moved between
         * CPUs lately (in use by several: a lock, a shared counter, an object passed around),
         * happens in simulated-time order: first every running CPU behind this one catches up,
         * so that none of them can reach the line at an earlier time afterwards. A line one
         * CPU keeps to itself (its magazines' objects) is not waited for: the bound on the
         * skew is all it needs. A stop request may run its Python handler here; it cannot
         * raise, see Kernel._on_stop_signal. */
        if (skew_wait(s, 0) < 0)
            PyErr_Clear();
        t = ld_relaxed(clock);
        e = ld_relaxed(tag);
    }
    if (kind == ACC_READ) {
        if ((e & OWNER_MASK) == me || e == 0 || (ld_relaxed(mine) & bit)) {
            t += s->hit;
        } else {
            t = umax(t, e & TIME_MASK) + s->transfer;
            __atomic_fetch_or(mine, bit, __ATOMIC_RELAXED);   /* now it holds a copy too */
            st_relaxed(s->transfers, ld_relaxed(s->transfers) + 1);
        }
        st_relaxed(clock, t);
        wake_waiters(s);
        return;
    }
    /* A write or an atomic: the line must be this CPU's alone. */
    uint64_t cost = kind == ACC_RMW ? s->atomic : s->hit;
    for (;;) {
        int alone = ((e & OWNER_MASK) == me || e == 0) && !copied_elsewhere(s, tag, s->cpu);
        uint64_t done = alone ? t + cost : umax(t, e & TIME_MASK) + s->transfer + cost;
        if ((e & OWNER_MASK) == me) {
            st_relaxed(tag, me | (done & TIME_MASK));
        } else if (!__atomic_compare_exchange_n(tag, &e, me | (done & TIME_MASK), 0,
                                                __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            continue;                       /* another CPU took the line meanwhile: again */
        }
        if (!alone) {
            for (uint64_t w = 0; w + TAG_COPIES < s->tag_words; w++)
                st_relaxed(tag + TAG_COPIES + w, tag + TAG_COPIES + w == mine ? bit : 0);
            note_moved(tag, done);
            st_relaxed(s->transfers, ld_relaxed(s->transfers) + 1);
        }
        st_relaxed(clock, done);
        wake_waiters(s);
        return;
    }
}

/* Charge this CPU's clock for an access of `kind` to the line holding addr, and update the
 * line's coherence tag. Lines at or above the tag table's end (bookkeeping) cost nothing. The
 * common case, inline: the line was written last by this CPU, no other holds a copy and it has
 * not moved lately. */
static inline __attribute__((always_inline)) void
charge(struct simcpu *s, uint64_t addr, int kind)
{
    uint64_t *tag = tag_of(s, addr);
    if (!tag)
        return;
    uint64_t e = ld_relaxed(tag), now = ld_relaxed(s->clock);
    if ((e & OWNER_MASK) == s->me_tag && s->tag_words == TAG_COPIES + 1 &&   /* <= 64 CPUs */
        (kind == ACC_READ || !(ld_relaxed(tag + TAG_COPIES) & ~s->bit)) &&
        !recently_moved(s, tag, now)) {
        uint64_t t = now + (kind == ACC_RMW ? s->atomic : s->hit);
        if (kind != ACC_READ)
            st_relaxed(tag, s->me_tag | (t & TIME_MASK));
        st_relaxed(s->clock, t);
        if (t >= ld_relaxed(s->wake_at) || t >= ld_relaxed(s->wake_epoch))
            wake_waiters(s);
        return;
    }
    charge_slow(s, tag, kind);
}

/* --- lock statistics: an open addressed table keyed by the lock word's address ------------- */

/* The statistics entry of the lock at addr (made on first use), or NULL when the table is
 * full. Entries are claimed with a compare-and-swap of `addr` from 0, so CPUs may race. */
static uint64_t lockstat_find(struct simcpu *s, uint64_t addr, int kind);

static inline uint64_t
lockstat(struct simcpu *s, uint64_t addr, int kind)
{
    /* Entries are never freed or moved, so an answer stays right for the machine's life. */
    unsigned i = (unsigned)(addr >> 6) & 15;
    if (s->lk_word[i] != addr || !s->lk_entry[i]) {
        s->lk_entry[i] = lockstat_find(s, addr, kind);
        s->lk_word[i] = addr;
    }
    return s->lk_entry[i];
}

static uint64_t
lockstat_find(struct simcpu *s, uint64_t addr, int kind)
{
    uint64_t h = (addr >> 3) * UINT64_C(0x9E3779B97F4A7C15);
    for (uint64_t i = 0; i <= s->locktab_mask; i++) {
        uint64_t e = s->locktab + ((h + i) & s->locktab_mask) * SL.s_sizeof;
        uint64_t *a = (uint64_t *)(s->base + e + SL.s_addr), seen = 0;
        uint64_t cur = __atomic_load_n(a, __ATOMIC_ACQUIRE);
        if (cur == addr)
            return e;
        if (cur == 0) {
            if (__atomic_compare_exchange_n(a, &seen, addr, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                st_relaxed((uint64_t *)(s->base + e + SL.s_kind), kind);
                return e;
            }
            if (seen == addr)
                return e;
        }
    }
    return 0;
}

#define LS(s, e, f) ((uint64_t *)((s)->base + (e) + SL.f))

#endif /* SMPSIM_SIM_H */
