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

/* Failed reads before the spinning CPU yields its host core. */
#define SPIN_READS 16
/* Yields between checks for Python signals (so a stop request reaches a spinning CPU). */
#define YIELDS_PER_SIGNAL_CHECK 64

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

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
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
    uint64_t *w = word_at(self, args[0], 8);
    if (!w)
        return NULL;
    unsigned long long v = PyLong_AsUnsignedLongLong(args[1]);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
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
    uint32_t *w = (uint32_t *)word_at(self, args[0], 4);
    if (!w)
        return NULL;
    unsigned long v = PyLong_AsUnsignedLong(args[1]);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (v > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_OverflowError, "value does not fit a 4-byte word");
        return NULL;
    }
    __atomic_store_n(w, (uint32_t)v, __ATOMIC_RELAXED);
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

/*
 * Acquire the spinlock at l for owner (CPU id + 1). Returns the failed reads (>= 0), -1 when
 * timeout seconds (> 0) passed without getting it, or -2 when a Python signal handler raised.
 * Called with the GIL held; the GIL is dropped around each sched_yield().
 */
static long long
spin_acquire(struct spinlock *l, uint64_t owner, double timeout)
{
    uint64_t expected;
    long long spins = 0;
    int reads = 0, yields = 0;
    double deadline = 0;

    for (;;) {
        /* Test: a RELAXED read keeps the line shared while someone else holds it. */
        if (__atomic_load_n(&l->holder, __ATOMIC_RELAXED) == 0) {
            expected = 0;
            /* Test-and-set: ACQUIRE, so the critical section's reads happen after it. */
            if (__atomic_compare_exchange_n(&l->holder, &expected, owner, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                break;
        }
        spins++;
        if (++reads < SPIN_READS)
            continue;
        reads = 0;
        Py_BEGIN_ALLOW_THREADS
        sched_yield();
        Py_END_ALLOW_THREADS
        if (++yields % YIELDS_PER_SIGNAL_CHECK == 0) {
            if (PyErr_CheckSignals() < 0)
                return -2;
            if (timeout > 0) {
                double t = now_seconds();
                if (deadline == 0)
                    deadline = t + timeout;
                else if (t > deadline)
                    return -1;
            }
        }
    }
    /* Holder-only updates; RELAXED atomic stores so that concurrent readers see whole words. */
    __atomic_store_n(&l->acquisitions, l->acquisitions + 1, __ATOMIC_RELAXED);
    if (spins) {
        __atomic_store_n(&l->contended, l->contended + 1, __ATOMIC_RELAXED);
        __atomic_store_n(&l->spins, l->spins + spins, __ATOMIC_RELAXED);
    }
    return spins;
}

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
    long long r = spin_acquire(l, owner, timeout);
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
    if (!__atomic_compare_exchange_n(&l->holder, &expected, owner, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
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
    __atomic_store_n(&l->holder, 0, __ATOMIC_RELEASE);
    Py_RETURN_TRUE;
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

static PyMethodDef module_methods[] = {
    {"set_parent_death_signal", set_parent_death_signal, METH_O,
     "prctl(PR_SET_PDEATHSIG, sig) for the calling process"},
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
    if (PyModule_AddObject(m, "Arena", (PyObject *)&ArenaType) < 0 ||
        PyModule_AddIntConstant(m, "SPINLOCK_SIZE", sizeof(struct spinlock)) < 0 ||
        PyModule_AddIntConstant(m, "SPIN_READS", SPIN_READS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
