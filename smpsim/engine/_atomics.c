/*
 * smpsim._atomics: atomic operations on a shared-memory buffer, for CPUs that are processes.
 *
 * Python has no atomic read-modify-write on memory shared between processes, and the ways around
 * that (the `atomics` package, ctypes or cffi function pointers) cost 0.3 to 16 microseconds per
 * operation (measured on a 2-core host). This extension wraps gcc's __atomic builtins around one object,
 * an Arena: a writable buffer (the machine's shared-memory segment) addressed by byte offset.
 *
 * Every operation is on a naturally aligned 8-byte word (4-byte for get32/put32, 2-byte for
 * cas16) and checks its offset against the buffer, so a wrong address raises IndexError instead
 * of corrupting the host.
 * Memory orderings are stated at each operation; a lock acquire is an ACQUIRE, a release is a
 * RELEASE, and the counters that stand for the seed's atomic_t are SEQ_CST like the kernel's.
 *
 * The spinlock (struct spinlock below, declared for Python in smpsim/engine/layout.py as SPINLOCK) is
 * test-and-test-and-set: it reads the word until it looks free, then tries one compare-and-swap,
 * and after SPIN_READS failed reads gives the core away with sched_yield(). With 16 or 64 CPU
 * processes on 2 host cores a pure spin starves the holder; yielding keeps throughput
 * (docs/bench.md). The word holds the holder's CPU id + 1 (0 = free), so the locks of a dead
 * CPU can be named. The holder updates the lock's counters after it has the lock, so they need no
 * atomics of their own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <time.h>

#include <string.h>

#include "_sched.h"


struct spinlock {
    uint64_t holder;        /* CPU id + 1 of the holder, 0 when free */
    uint64_t acquisitions;  /* times taken */
    uint64_t contended;     /* acquisitions that found the lock held at least once */
    uint64_t spins;         /* failed reads, summed over all acquisitions */
};

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    char *base;
    Py_ssize_t len;
    int has_view;
    struct simcpu sim;      /* simulated time and scheduling (configure_sim), else all zero */
    PyObject *tracer;       /* set_tracer's callable (sim.tracer borrows it) */
} ArenaObject;

/* --- helpers ------------------------------------------------------------------------------ */

static inline uint64_t *
word_at(ArenaObject *a, PyObject *arg, Py_ssize_t width)
{
    Py_ssize_t off = PyLong_AsSsize_t(arg);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    if (!a->has_view) {
        PyErr_SetString(PyExc_ValueError, "arena is released");
        return NULL;
    }
    if (off < 0 || off > a->len - width || (off & (width - 1))) {
        PyErr_Format(PyExc_IndexError, "offset %zd is not an aligned %zd-byte word of the arena",
                     off, width);
        return NULL;
    }
    return (uint64_t *)(a->base + off);
}

static inline int
get_u64(PyObject *arg, uint64_t *out)
{
    /* Accept any int; negative deltas wrap like C unsigned arithmetic. */
    unsigned long long v = PyLong_AsUnsignedLongLongMask(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* A value for an 8-byte word stored as it is: 0..2**64-1, else OverflowError (as a memoryview
 * would); get_u64 wraps instead, for the atomics' deltas. */
static inline int
get_word(PyObject *arg, uint64_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* A value for a 4-byte word: 0..2**32-1, else OverflowError. */
static inline int
get_u32(PyObject *arg, uint32_t *out)
{
    unsigned long v = PyLong_AsUnsignedLong(arg);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (v > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_OverflowError, "value does not fit a 4-byte word");
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

#define NARGS(n)                                                                  \
    if (nargs != (n)) {                                                           \
        PyErr_Format(PyExc_TypeError, "expected %d arguments, got %zd", (n), nargs); \
        return NULL;                                                              \
    }

/* --- Arena ---------------------------------------------------------------------------------- */

static int
Arena_init(ArenaObject *self, PyObject *args, PyObject *kw)
{
    PyObject *buf;
    if (!PyArg_ParseTuple(args, "O", &buf))
        return -1;
    if (self->has_view) {
        PyBuffer_Release(&self->view);
        self->has_view = 0;
    }
    if (PyObject_GetBuffer(buf, &self->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    self->has_view = 1;
    self->base = self->view.buf;
    self->len = self->view.len;
    return 0;
}

static void
Arena_dealloc(ArenaObject *self)
{
    Py_CLEAR(self->tracer);
    if (self->has_view)
        PyBuffer_Release(&self->view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* release(): drop the buffer export so that SharedMemory.close() can unmap it. Safe to repeat. */
static PyObject *
Arena_release(ArenaObject *self, PyObject *unused)
{
    if (self->has_view) {
        PyBuffer_Release(&self->view);
        self->has_view = 0;
    }
    Py_RETURN_NONE;
}

/* load(off) -> int: ACQUIRE load of the word at off. */
static PyObject *
Arena_load(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(1);
    uint64_t *w = word_at(self, args[0], 8);
    if (!w)
        return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_load_n(w, __ATOMIC_ACQUIRE));
}

/* store(off, value): RELEASE store. */
static PyObject *
Arena_store(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t v, *w = word_at(self, args[0], 8);
    if (!w || get_u64(args[1], &v) < 0)
        return NULL;
    __atomic_store_n(w, v, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

/* get(off) -> int: a plain (RELAXED) load, for fields the caller's lock guards. */
static PyObject *
Arena_get(ArenaObject *self, PyObject *arg)
{
    uint64_t *w = word_at(self, arg, 8);
    if (!w)
        return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_load_n(w, __ATOMIC_RELAXED));
}

/* put(off, value): a plain (RELAXED) store, for fields the caller's lock guards. Unlike the
 * atomics it refuses a value outside 0 .. 2**64-1 (OverflowError), as a memoryview would. */
static PyObject *
Arena_put(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t v, *w = word_at(self, args[0], 8);
    if (!w || get_word(args[1], &v) < 0)
        return NULL;
    __atomic_store_n(w, v, __ATOMIC_RELAXED);
    Py_RETURN_NONE;
}

/* get32(off) -> int: a plain (RELAXED) load of the 4-byte word at off (the seed's `int` free-list
 * index in a free object), for fields the caller's lock guards. */
static PyObject *
Arena_get32(ArenaObject *self, PyObject *arg)
{
    uint32_t *w = (uint32_t *)word_at(self, arg, 4);
    if (!w)
        return NULL;
    return PyLong_FromUnsignedLong(__atomic_load_n(w, __ATOMIC_RELAXED));
}

/* put32(off, value): a plain (RELAXED) store of a 4-byte word; OverflowError outside 0..2**32-1. */
static PyObject *
Arena_put32(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint32_t v, *w = (uint32_t *)word_at(self, args[0], 4);
    if (!w || get_u32(args[1], &v) < 0)
        return NULL;
    __atomic_store_n(w, v, __ATOMIC_RELAXED);
    Py_RETURN_NONE;
}

/* cas(off, expected, new) -> bool: SEQ_CST compare-and-swap. */
static PyObject *
Arena_cas(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(3);
    uint64_t e, n, *w = word_at(self, args[0], 8);
    if (!w || get_u64(args[1], &e) < 0 || get_u64(args[2], &n) < 0)
        return NULL;
    return PyBool_FromLong(
        __atomic_compare_exchange_n(w, &e, n, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
}

/* fetch_add(off, delta) -> old value: SEQ_CST, the seed's atomic_inc / atomic_dec. */
static PyObject *
Arena_fetch_add(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t d, *w = word_at(self, args[0], 8);
    if (!w || get_u64(args[1], &d) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_fetch_add(w, d, __ATOMIC_SEQ_CST));
}

/* cas16(off, expected, new) -> bool: SEQ_CST compare-and-swap of a 2-byte word (object table). */
static PyObject *
Arena_cas16(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(3);
    uint64_t e, n;
    uint16_t *w = (uint16_t *)word_at(self, args[0], 2);
    if (!w || get_u64(args[1], &e) < 0 || get_u64(args[2], &n) < 0)
        return NULL;
    uint16_t e16 = (uint16_t)e;
    return PyBool_FromLong(__atomic_compare_exchange_n(w, &e16, (uint16_t)n, 0, __ATOMIC_SEQ_CST,
                                                       __ATOMIC_SEQ_CST));
}

/* The host-mode acquisition: spin, then count (holder-only updates; RELAXED atomic stores so
 * that concurrent readers see whole words). */
static long long
spin_acquire(struct spinlock *l, uint64_t owner, double timeout)
{
    long long spins = sim_spin(&l->holder, owner, timeout);
    if (spins < 0)
        return spins;
    __atomic_store_n(&l->acquisitions, l->acquisitions + 1, __ATOMIC_RELAXED);
    if (spins) {
        __atomic_store_n(&l->contended, l->contended + 1, __ATOMIC_RELAXED);
        __atomic_store_n(&l->spins, l->spins + spins, __ATOMIC_RELAXED);
    }
    return spins;
}

/* Whether the machine needs the simulated-time / scheduler paths (else plain host mode). */
#define SIMULATED(a) ((a)->sim.on && ((a)->sim.timed || (a)->sim.sched != SCHED_FREE))

/* lock(off, owner, timeout) -> spins, or -1 on timeout (the caller names the holder). */
static PyObject *
Arena_lock(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(3);
    uint64_t owner;
    struct spinlock *l = (struct spinlock *)word_at(self, args[0], 8);
    if (!l || get_u64(args[1], &owner) < 0)
        return NULL;
    double timeout = PyFloat_AsDouble(args[2]);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    long long r = SIMULATED(self)
        ? sim_lock(&self->sim, (char *)l - self->base, (char *)l - self->base + SL.l_acquisitions,
                   owner, timeout, LOCK_KERNEL)
        : spin_acquire(l, owner, timeout);
    if (r == -2)
        return NULL;
    return PyLong_FromLongLong(r);
}

/* trylock(off, owner) -> bool: one test-and-set; counts an acquisition when it succeeds. */
static PyObject *
Arena_trylock(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t owner, expected = 0;
    struct spinlock *l = (struct spinlock *)word_at(self, args[0], 8);
    if (!l || get_u64(args[1], &owner) < 0)
        return NULL;
    if (SIMULATED(self) && sim_point(&self->sim, PT_TRYLOCK, (char *)l - self->base) < 0)
        return NULL;
    int got = __atomic_compare_exchange_n(&l->holder, &expected, owner, 0, __ATOMIC_ACQUIRE,
                                          __ATOMIC_RELAXED);
    if (SIMULATED(self)) {
        charge(&self->sim, (char *)l - self->base, ACC_RMW);
        if (got && self->sim.timed) {
            uint64_t e = lockstat(&self->sim, (char *)l - self->base, LOCK_KERNEL);
            if (e)
                st_relaxed(LS(&self->sim, e, s_acquired_at), ld_relaxed(MYCLOCK(&self->sim)));
        }
    }
    if (!got)
        Py_RETURN_FALSE;
    __atomic_store_n(&l->acquisitions, l->acquisitions + 1, __ATOMIC_RELAXED);
    Py_RETURN_TRUE;
}

/* unlock(off, owner) -> bool: RELEASE store of 0 if owner holds it; False (and no change) if not. */
static PyObject *
Arena_unlock(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t owner;
    struct spinlock *l = (struct spinlock *)word_at(self, args[0], 8);
    if (!l || get_u64(args[1], &owner) < 0)
        return NULL;
    if (__atomic_load_n(&l->holder, __ATOMIC_RELAXED) != owner)
        Py_RETURN_FALSE;
    if (SIMULATED(self)) {
        if (sim_unlock(&self->sim, (char *)l - self->base, LOCK_KERNEL) < 0)
            return NULL;
        Py_RETURN_TRUE;
    }
    __atomic_store_n(&l->holder, 0, __ATOMIC_RELEASE);
    Py_RETURN_TRUE;
}

/* --- simulated time and scheduling points (smpsim/engine/_sim.h) ------------------------ */

/* configure_sim(cpu, ncpus, header, ctl0, tags, tag_lines, tag_words, locktab, locktab_size,
 *               log, spin_token): make this arena CPU `cpu`'s view for simulated time and the
 * scheduler, with the machine's regions (byte offsets) and its modes, read from the header
 * (the Machine writes them first). */
static PyObject *
Arena_configure_sim(ArenaObject *self, PyObject *args)
{
    unsigned int cpu, ncpus;
    unsigned long long hdr, ctl0, tags, tag_lines, tag_words, locktab, locktab_size, log;
    int spin_token;
    if (!PyArg_ParseTuple(args, "IIKKKKKKKKp", &cpu, &ncpus, &hdr, &ctl0, &tags, &tag_lines,
                          &tag_words, &locktab, &locktab_size, &log, &spin_token))
        return NULL;
    if (!SL.ready) {
        PyErr_SetString(PyExc_RuntimeError, "smpsim.engine._atomics.configure() was not called");
        return NULL;
    }
    if (!self->has_view || cpu >= ncpus || locktab_size & (locktab_size - 1) ||
        tags + tag_lines * tag_stride(tag_words) * 8 > (uint64_t)self->len) {
        PyErr_SetString(PyExc_ValueError, "configure_sim: regions outside the arena");
        return NULL;
    }
    sim_init(&self->sim, self->base, (uint64_t)self->len, cpu, ncpus, hdr, ctl0, tags, tag_lines,
             tag_words, locktab, locktab_size, log, spin_token, self->tracer);
    Py_RETURN_NONE;
}

static inline int
sim_ready(ArenaObject *self)
{
    if (!self->sim.on) {
        PyErr_SetString(PyExc_RuntimeError, "arena: configure_sim() was not called");
        return 0;
    }
    return 1;
}

/* tget(off) / tput(off, v) / tget32 / tput32: get/put/get32/put32 of the allocator's code
 * under simulated time and the scheduler (charged; a point of a controlled run). */
static PyObject *
Arena_tget(ArenaObject *self, PyObject *arg)
{
    uint64_t *w = word_at(self, arg, 8);
    if (!w || sim_access(&self->sim, (char *)w - self->base, ACC_READ) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_load_n(w, __ATOMIC_RELAXED));
}

static PyObject *
Arena_tput(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t v, *w = word_at(self, args[0], 8);
    if (!w || get_word(args[1], &v) < 0 ||
        sim_access(&self->sim, (char *)w - self->base, ACC_WRITE) < 0)
        return NULL;
    __atomic_store_n(w, v, __ATOMIC_RELAXED);
    Py_RETURN_NONE;
}

static PyObject *
Arena_tget32(ArenaObject *self, PyObject *arg)
{
    uint32_t *w = (uint32_t *)word_at(self, arg, 4);
    if (!w || sim_access(&self->sim, (char *)w - self->base, ACC_READ) < 0)
        return NULL;
    return PyLong_FromUnsignedLong(__atomic_load_n(w, __ATOMIC_RELAXED));
}

static PyObject *
Arena_tput32(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint32_t v, *w = (uint32_t *)word_at(self, args[0], 4);
    if (!w || get_u32(args[1], &v) < 0 ||
        sim_access(&self->sim, (char *)w - self->base, ACC_WRITE) < 0)
        return NULL;
    __atomic_store_n(w, v, __ATOMIC_RELAXED);
    Py_RETURN_NONE;
}

/* tfetch_add(off, delta) -> old: the seed's atomic counters under the scheduler and the cost
 * model: a scheduling point, then a charged read-modify-write. */
static PyObject *
Arena_tfetch_add(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t d, *w = word_at(self, args[0], 8);
    if (!w || get_u64(args[1], &d) < 0 ||
        sim_point(&self->sim, PT_ATOMIC, (char *)w - self->base) < 0)
        return NULL;
    charge(&self->sim, (char *)w - self->base, ACC_RMW);
    return PyLong_FromUnsignedLongLong(__atomic_fetch_add(w, d, __ATOMIC_SEQ_CST));
}

/* aload(off) / astore(off, v) / acas(off, old, new) / aadd(off, delta): Kernel.atomic_* on
 * simulated memory: a scheduling point, then the charged atomic (SEQ_CST, ACQUIRE or RELEASE as
 * load/store/cas/fetch_add above). */
static PyObject *
Arena_aload(ArenaObject *self, PyObject *arg)
{
    uint64_t *w = word_at(self, arg, 8);
    if (!w || !sim_ready(self) || sim_point(&self->sim, PT_LOAD, (char *)w - self->base) < 0)
        return NULL;
    charge(&self->sim, (char *)w - self->base, ACC_READ);
    return PyLong_FromUnsignedLongLong(__atomic_load_n(w, __ATOMIC_ACQUIRE));
}

static PyObject *
Arena_astore(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t v, *w = word_at(self, args[0], 8);
    if (!w || get_u64(args[1], &v) < 0 || !sim_ready(self) ||
        sim_point(&self->sim, PT_STORE, (char *)w - self->base) < 0)
        return NULL;
    charge(&self->sim, (char *)w - self->base, ACC_WRITE);
    __atomic_store_n(w, v, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyObject *
Arena_acas(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(3);
    uint64_t e, n, *w = word_at(self, args[0], 8);
    if (!w || get_u64(args[1], &e) < 0 || get_u64(args[2], &n) < 0 || !sim_ready(self) ||
        sim_point(&self->sim, PT_ATOMIC, (char *)w - self->base) < 0)
        return NULL;
    charge(&self->sim, (char *)w - self->base, ACC_RMW);
    return PyBool_FromLong(
        __atomic_compare_exchange_n(w, &e, n, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
}

static PyObject *
Arena_aadd(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t d, *w = word_at(self, args[0], 8);
    if (!w || get_u64(args[1], &d) < 0 || !sim_ready(self) ||
        sim_point(&self->sim, PT_ATOMIC, (char *)w - self->base) < 0)
        return NULL;
    charge(&self->sim, (char *)w - self->base, ACC_RMW);
    return PyLong_FromUnsignedLongLong(__atomic_fetch_add(w, d, __ATOMIC_SEQ_CST));
}

/* ulock(off, owner, timeout) -> spins, or -1 on timeout: Kernel.spin_lock, the simulator's
 * spinlock on a bare word of simulated memory; its counters live in the lock table. */
static PyObject *
Arena_ulock(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(3);
    uint64_t owner, *w = word_at(self, args[0], 8);
    if (!w || get_u64(args[1], &owner) < 0 || !sim_ready(self))
        return NULL;
    double timeout = PyFloat_AsDouble(args[2]);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    uint64_t off = (char *)w - self->base, e = lockstat(&self->sim, off, LOCK_USER);
    if (!e) {
        PyErr_SetString(PyExc_RuntimeError, "the machine's lock table is full");
        return NULL;
    }
    long long r = sim_lock(&self->sim, off, e + SL.s_acquisitions, owner, timeout, LOCK_USER);
    if (r == -2)
        return NULL;
    return PyLong_FromLongLong(r);
}

/* uunlock(off, owner) -> bool: release a user lock owner holds; False (nothing changed) if not. */
static PyObject *
Arena_uunlock(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t owner, *w = word_at(self, args[0], 8);
    if (!w || get_u64(args[1], &owner) < 0 || !sim_ready(self))
        return NULL;
    if (__atomic_load_n(w, __ATOMIC_RELAXED) != owner)
        Py_RETURN_FALSE;
    if (sim_unlock(&self->sim, (char *)w - self->base, LOCK_USER) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

/* clock() -> this CPU's simulated clock in cycles. */
static PyObject *
Arena_clock(ArenaObject *self, PyObject *unused)
{
    if (!sim_ready(self))
        return NULL;
    return PyLong_FromUnsignedLongLong(ld_relaxed(MYCLOCK(&self->sim)));
}

/* compute(cycles): private work; advances this CPU's clock (simulated time only). */
static PyObject *
Arena_compute(ArenaObject *self, PyObject *arg)
{
    uint64_t c;
    if (get_word(arg, &c) < 0 || !sim_ready(self))
        return NULL;
    if (self->sim.timed) {
        st_relaxed(MYCLOCK(&self->sim), ld_relaxed(MYCLOCK(&self->sim)) + c);
        wake_waiters(&self->sim);           /* CPUs sleeping until this clock moved on */
    }
    Py_RETURN_NONE;
}

/* sched_begin(): a CPU process's program starts (a scheduling point: in token mode it waits
 * for the token). */
static PyObject *
Arena_sched_begin(ArenaObject *self, PyObject *unused)
{
    if (!sim_ready(self))
        return NULL;
    struct simcpu *m = &self->sim;
    if (m->sched == SCHED_TOKEN && ld_relaxed(HW(m, h_run_active)) && await_token(m) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* sched_end(): the program returned (a scheduling point after which this CPU is done). */
static PyObject *
Arena_sched_end(ArenaObject *self, PyObject *unused)
{
    if (!sim_ready(self))
        return NULL;
    struct simcpu *m = &self->sim;
    if (m->sched == SCHED_FREE || !ld_relaxed(HW(m, h_run_active)))
        Py_RETURN_NONE;
    set_state(m, CPU_DONE);
    if (m->sched == SCHED_TOKEN) {
        st_relaxed(CW(m, m->cpu, c_points), ld_relaxed(CW(m, m->cpu, c_points)) + 1);
        if (token_pass(m, PT_END, 0) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* barrier(): Kernel.barrier under simulated time or the scheduler. The arrival is an atomic on
 * the barrier's count; the round completes at the latest arrival's clock; every CPU leaves it
 * reading the round, so a waiter's clock moves to that time plus a transfer. A waiting CPU is
 * not running (bounded skew) nor runnable (token mode). */
static PyObject *
Arena_barrier(ArenaObject *self, PyObject *unused)
{
    if (!sim_ready(self))
        return NULL;
    struct simcpu *m = &self->sim;
    uint64_t *count = HW(m, h_barrier_count), *round = HW(m, h_barrier_round);
    uint64_t *latest = HW(m, h_barrier_clock), n = ld_relaxed(HW(m, h_run_cpus));
    uint64_t count_off = (char *)count - m->base, round_off = (char *)round - m->base;
    if (sim_point(m, PT_BARRIER, count_off) < 0)
        return NULL;
    uint64_t rnd = __atomic_load_n(round, __ATOMIC_ACQUIRE);
    charge(m, count_off, ACC_RMW);
    uint64_t t = ld_relaxed(MYCLOCK(m)), cur = __atomic_load_n(latest, __ATOMIC_ACQUIRE);
    while (t > cur && !__atomic_compare_exchange_n(latest, &cur, t, 0, __ATOMIC_ACQ_REL,
                                                   __ATOMIC_ACQUIRE))
        ;
    if (__atomic_fetch_add(count, 1, __ATOMIC_SEQ_CST) == n - 1) {
        /* The last arrival completes the round at the latest arrival's time. */
        st_relaxed(MYCLOCK(m), umax(t, __atomic_exchange_n(latest, 0, __ATOMIC_ACQ_REL)));
        __atomic_store_n(count, 0, __ATOMIC_RELAXED);
        charge(m, round_off, ACC_WRITE);
        if (m->sched == SCHED_TOKEN && ld_relaxed(HW(m, h_run_active)))
            for (uint32_t i = 0; i < m->ncpus; i++)
                if (ld_relaxed(CW(m, i, c_state)) == CPU_BARRIER)
                    st_relaxed(CW(m, i, c_state), CPU_RUNNABLE);
        __atomic_store_n(round, rnd + 1, __ATOMIC_RELEASE);
        futex_wake_all(round);
        Py_RETURN_NONE;
    }
    set_state(m, CPU_BARRIER);
    if (m->sched == SCHED_TOKEN && ld_relaxed(HW(m, h_run_active))) {
        if (token_block(m) < 0)
            return NULL;
    } else {
        while (__atomic_load_n(round, __ATOMIC_ACQUIRE) == rnd)
            if (futex_sleep(round, (uint32_t)rnd) < 0)
                return NULL;
        set_state(m, CPU_RUNNABLE);
    }
    charge(m, round_off, ACC_READ);
    m->horizon = 0;
    Py_RETURN_NONE;
}

/* point(): pass a scheduling point (the Python twin of the hit path, smpsim/engine/fastpath.py). */
static PyObject *
Arena_point(ArenaObject *self, PyObject *unused)
{
    if (!sim_ready(self) || sim_point(&self->sim, PT_ATOMIC, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* charge(off, kind): charge an access (0 read, 1 write, 2 atomic) to the line holding off. */
static PyObject *
Arena_charge(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t off, kind;
    if (get_u64(args[0], &off) < 0 || get_u64(args[1], &kind) < 0 || !sim_ready(self))
        return NULL;
    if (off >= (uint64_t)self->len || kind > ACC_RMW) {
        PyErr_SetString(PyExc_IndexError, "charge: offset or kind out of range");
        return NULL;
    }
    charge(&self->sim, off, (int)kind);
    Py_RETURN_NONE;
}

/* acquired(off, before) / released(off): the simulated time of the allocator's lock at off just
 * taken (the clock at the attempt was `before`) or released (sim_acquired, sim_released). */
static PyObject *
Arena_acquired(ArenaObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    NARGS(2);
    uint64_t off, before;
    if (get_u64(args[0], &off) < 0 || get_u64(args[1], &before) < 0 || !sim_ready(self))
        return NULL;
    sim_acquired(&self->sim, off, before, LOCK_KERNEL);
    Py_RETURN_NONE;
}

static PyObject *
Arena_released(ArenaObject *self, PyObject *arg)
{
    uint64_t off;
    if (get_u64(arg, &off) < 0 || !sim_ready(self))
        return NULL;
    sim_released(&self->sim, off, LOCK_KERNEL);
    Py_RETURN_NONE;
}

/* set_tracer(fn or None): in a controlled run, call fn(step, kind, addr, next, preempted) at
 * every scheduling point this CPU passes, before the token moves (kind: PT_* of _sim.h). */
static PyObject *
Arena_set_tracer(ArenaObject *self, PyObject *fn)
{
    if (!sim_ready(self))
        return NULL;
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "set_tracer: a callable or None");
        return NULL;
    }
    Py_XSETREF(self->tracer, fn == Py_None ? NULL : Py_NewRef(fn));
    self->sim.tracer = self->tracer;
    Py_RETURN_NONE;
}

/* decide() -> the CPU given the token, or -1: the Machine's decision when no CPU holds the
 * token (the start of a controlled run, or after the holder died). */
static PyObject *
Arena_decide(ArenaObject *self, PyObject *unused)
{
    if (!sim_ready(self))
        return NULL;
    struct simcpu *m = &self->sim;
    int next = choose(m, m->ncpus);
    if (next >= 0)
        hand_token(m, (uint32_t)next);
    return PyLong_FromLong(next);
}

static PyMethodDef Arena_methods[] = {
    {"load", (PyCFunction)(void (*)(void))Arena_load, METH_FASTCALL, "load(off) -> int (acquire)"},
    {"store", (PyCFunction)(void (*)(void))Arena_store, METH_FASTCALL, "store(off, v) (release)"},
    {"get", (PyCFunction)Arena_get, METH_O, "get(off) -> int (relaxed)"},
    {"put", (PyCFunction)(void (*)(void))Arena_put, METH_FASTCALL, "put(off, v) (relaxed)"},
    {"get32", (PyCFunction)Arena_get32, METH_O, "get32(off) -> int (relaxed, 4 bytes)"},
    {"put32", (PyCFunction)(void (*)(void))Arena_put32, METH_FASTCALL,
     "put32(off, v) (relaxed, 4 bytes)"},
    {"cas", (PyCFunction)(void (*)(void))Arena_cas, METH_FASTCALL, "cas(off, old, new) -> bool"},
    {"fetch_add", (PyCFunction)(void (*)(void))Arena_fetch_add, METH_FASTCALL,
     "fetch_add(off, delta) -> old"},
    {"cas16", (PyCFunction)(void (*)(void))Arena_cas16, METH_FASTCALL,
     "cas16(off, old, new) -> bool"},
    {"lock", (PyCFunction)(void (*)(void))Arena_lock, METH_FASTCALL,
     "lock(off, owner, timeout) -> spins, or -1 on timeout"},
    {"trylock", (PyCFunction)(void (*)(void))Arena_trylock, METH_FASTCALL,
     "trylock(off, owner) -> bool"},
    {"unlock", (PyCFunction)(void (*)(void))Arena_unlock, METH_FASTCALL,
     "unlock(off, owner) -> bool"},
    {"release", (PyCFunction)Arena_release, METH_NOARGS, "drop the buffer (safe to repeat)"},
    {"configure_sim", (PyCFunction)Arena_configure_sim, METH_VARARGS,
     "configure_sim(cpu, ncpus, header, ctl0, tags, tag_lines, tag_words, locktab, "
     "locktab_size, log, spin_token)"},
    {"tget", (PyCFunction)Arena_tget, METH_O, "tget(off) -> int (charged; a point)"},
    {"tput", (PyCFunction)(void (*)(void))Arena_tput, METH_FASTCALL, "tput(off, v)"},
    {"tget32", (PyCFunction)Arena_tget32, METH_O, "tget32(off) -> int"},
    {"tput32", (PyCFunction)(void (*)(void))Arena_tput32, METH_FASTCALL, "tput32(off, v)"},
    {"tfetch_add", (PyCFunction)(void (*)(void))Arena_tfetch_add, METH_FASTCALL,
     "tfetch_add(off, delta) -> old (a point, charged)"},
    {"aload", (PyCFunction)Arena_aload, METH_O, "aload(off) -> int"},
    {"astore", (PyCFunction)(void (*)(void))Arena_astore, METH_FASTCALL, "astore(off, v)"},
    {"acas", (PyCFunction)(void (*)(void))Arena_acas, METH_FASTCALL,
     "acas(off, old, new) -> bool"},
    {"aadd", (PyCFunction)(void (*)(void))Arena_aadd, METH_FASTCALL, "aadd(off, delta) -> old"},
    {"ulock", (PyCFunction)(void (*)(void))Arena_ulock, METH_FASTCALL,
     "ulock(off, owner, timeout) -> spins, or -1 on timeout"},
    {"uunlock", (PyCFunction)(void (*)(void))Arena_uunlock, METH_FASTCALL,
     "uunlock(off, owner) -> bool"},
    {"clock", (PyCFunction)Arena_clock, METH_NOARGS, "clock() -> cycles"},
    {"compute", (PyCFunction)Arena_compute, METH_O, "compute(cycles)"},
    {"sched_begin", (PyCFunction)Arena_sched_begin, METH_NOARGS, "a program starts"},
    {"sched_end", (PyCFunction)Arena_sched_end, METH_NOARGS, "a program ended"},
    {"barrier", (PyCFunction)Arena_barrier, METH_NOARGS, "Kernel.barrier (scheduled)"},
    {"decide", (PyCFunction)Arena_decide, METH_NOARGS, "the Machine hands the token on"},
    {"set_tracer", (PyCFunction)Arena_set_tracer, METH_O, "set_tracer(fn or None)"},
    {"point", (PyCFunction)Arena_point, METH_NOARGS, "pass a scheduling point"},
    {"charge", (PyCFunction)(void (*)(void))Arena_charge, METH_FASTCALL,
     "charge(off, kind): charge an access (0 read, 1 write, 2 atomic)"},
    {"acquired", (PyCFunction)(void (*)(void))Arena_acquired, METH_FASTCALL,
     "acquired(off, before): the simulated time of a lock just taken"},
    {"released", (PyCFunction)Arena_released, METH_O,
     "released(off): the simulated time of a lock just released"},
    {NULL}};

static PyTypeObject ArenaType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "smpsim._atomics.Arena",
    .tp_doc = "Arena(buffer): atomic operations on a writable buffer, by byte offset.",
    .tp_basicsize = sizeof(ArenaObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Arena_init,
    .tp_dealloc = (destructor)Arena_dealloc,
    .tp_methods = Arena_methods,
};

/* --- module functions ------------------------------------------------------------------------ */

/* set_parent_death_signal(sig): prctl(PR_SET_PDEATHSIG); the CPU process gets sig when its
 * parent dies, so no CPU outlives the machine that made it. */
static PyObject *
set_parent_death_signal(PyObject *m, PyObject *arg)
{
    long sig = PyLong_AsLong(arg);
    if (sig == -1 && PyErr_Occurred())
        return NULL;
    if (prctl(PR_SET_PDEATHSIG, sig) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* configure(fields): the offsets of smpsim/engine/layout.py that _sim.h needs, by name. */
static PyObject *
module_configure(PyObject *m, PyObject *fields)
{
    if (!PyDict_Check(fields)) {
        PyErr_SetString(PyExc_TypeError, "configure: fields must be a dict");
        return NULL;
    }
    if (sim_configure(fields) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_parent_death_signal", set_parent_death_signal, METH_O,
     "prctl(PR_SET_PDEATHSIG, sig) for the calling process"},
    {"configure", module_configure, METH_O,
     "configure(fields): layout offsets for simulated time and the scheduler"},
    {NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "smpsim._atomics",
    "Atomic operations and spinlocks on shared memory (gcc __atomic builtins).", -1,
    module_methods};

PyMODINIT_FUNC
PyInit__atomics(void)
{
    if (PyType_Ready(&ArenaType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    Py_INCREF(&ArenaType);
    ScheduleStop = PyErr_NewExceptionWithDoc(
        "smpsim.engine._atomics.ScheduleStop",
        "The scheduler ended a controlled run at this CPU's point (a deadlock, a schedule that "
        "does not match the program, a full schedule log); the Machine says why.",
        PyExc_BaseException, NULL);
    if (!ScheduleStop || PyModule_AddObjectRef(m, "ScheduleStop", ScheduleStop) < 0 ||
        PyModule_AddObject(m, "Arena", (PyObject *)&ArenaType) < 0 ||
        PyModule_AddIntConstant(m, "SPINLOCK_SIZE", sizeof(struct spinlock)) < 0 ||
        PyModule_AddIntConstant(m, "SPIN_READS", SPIN_READS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
