/*
 * smpsim._fastpath: the magazine hit path of slab_alloc, slab_free, kalloc and kfree as one C
 * call each (the heapq/_heapq pattern). smpsim/engine/fastpath.py holds its pure-Python twin, which
 * must leave shared memory byte for byte as this file does (tests/test_fastpath.py runs both).
 *
 * Why: a Python port of the seed's hit path costs about 20 times a Python list.append + pop
 * pair (docs/bench.md), so a simulated CPU would spend its time interpreting, not
 * allocating, and the effects of locks and magazines would drown. One C call per operation
 * brings the pair near 3 times the floor.
 *
 * What a call does, in the order of the seed's slab_alloc / magazine_obj_get (and free):
 *
 *   1. check the arguments as far as the hit needs them: an exact SlabCache handle whose
 *      generation matches the descriptor, flags within FRAME_ATOMIC | FRAME_NO_RECLAIM, an int
 *      address. Anything else (a bad or destroyed handle, an invalid free, a weird argument)
 *      goes to the Python method, which raises the usual error with the usual message;
 *   2. set CPU_CTL.in_kernel to the operation's code (OPS in smpsim/engine/kernel.py);
 *   3. free only: claim the object-table entry (16-bit CAS cid -> 0, SEQ_CST), as _claim does;
 *   4. take this CPU's magazine lock with ONE test-and-test-and-set attempt (the acquire of
 *      _atomics.c's spin_acquire when it succeeds at once, with the same counter update);
 *   5. pop from `current` (or swap current and last when only last has objects), or push to
 *      `current` (or swap when only last has room), exactly as slab.py's
 *      _get_full_current_mag / _make_empty_current_mag do for their local cases;
 *   6. release the lock, update the seed's counters (cached_objs, allocated_objs: SEQ_CST
 *      fetch-and-add, on the cache or on this CPU's share with Machine(counters="percpu")),
 *      mark the object table (alloc), count ops/allocs|frees/hits in CPU_CTL, clear in_kernel.
 *
 * A miss (no magazine with an object or with room: the shared magazine list, the slab layer or
 * a new magazine is needed), a NOMAGAZINE cache, or a magazine lock found taken, undoes what
 * was done (the lock's acquisition count, the object-table claim, in_kernel) and calls the
 * Python method (the seed's whole path, in smpsim/engine/kernel.py and smpsim/engine/slab.py). So no Python
 * code runs while in_kernel is set here: a stop signal's handler runs after the call, sees
 * in_kernel == 0 and exits, which is what Kernel._leave would have done. The lock is never
 * waited for in C: a contended magazine lock (only reclaim or cache destruction on another CPU
 * takes it) is left to the Python path, which spins with signal checks and lock timeouts.
 *
 * Layout offsets come from smpsim/engine/layout.py through configure() (smpsim/engine/fastpath.py calls it
 * once at import); this file has no literal offset. Every address read from shared memory is
 * checked against the segment before it is dereferenced, so a corrupt machine sends the call to
 * Python instead of crashing the host.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#include "_sched.h"

/* --- the layout, from smpsim/engine/layout.py (configure) -------------------------------------------- */

static struct {
    int ready;
    /* CACHE */
    Py_ssize_t cache_flags, cache_size, cache_id, cache_gen, cache_mag_cache;
    Py_ssize_t cache_allocated_objs, cache_cached_objs;
    /* CPU_MAGS */
    Py_ssize_t mags_sizeof, mags_lock, mags_current, mags_last, mags_allocated, mags_cached;
    /* MAGAZINE */
    Py_ssize_t mag_busy, mag_size, mag_objs;
    /* SPINLOCK */
    Py_ssize_t lock_holder, lock_acquisitions, lock_contended, lock_spins;
    /* CPU_CTL */
    Py_ssize_t ctl_in_kernel, ctl_ops, ctl_allocs, ctl_frees, ctl_hits, ctl_path;
    /* KERNEL, FRAME, SLAB, HEADER */
    Py_ssize_t kernel_malloc_caches, frame_sizeof, frame_parent, slab_cache, hdr_stop;
    /* constants */
    uint64_t page_size, nomagazine, obj_internal, alloc_flags;
    uint64_t min_malloc_w, max_malloc_w;
    uint64_t op_slab_alloc, op_slab_free, op_kalloc, op_kfree;
    uint64_t path_hit, exit_stopped, dead_holder_poll_ms;
    /* the SlabCache handle: its type and the offsets of its _addr and _gen slots */
    PyTypeObject *handle_type;
    Py_ssize_t handle_addr, handle_gen;
} L;

static const char *const FIELDS[] = {
    "CACHE.flags", "CACHE.size", "CACHE.id", "CACHE.gen", "CACHE.mag_cache",
    "CACHE.allocated_objs", "CACHE.cached_objs",
    "CPU_MAGS.sizeof", "CPU_MAGS.lock", "CPU_MAGS.current", "CPU_MAGS.last",
    "CPU_MAGS.allocated", "CPU_MAGS.cached",
    "MAGAZINE.busy", "MAGAZINE.size", "MAGAZINE.objs",
    "SPINLOCK.holder", "SPINLOCK.acquisitions", "SPINLOCK.contended", "SPINLOCK.spins",
    "CPU_CTL.in_kernel", "CPU_CTL.ops", "CPU_CTL.allocs", "CPU_CTL.frees", "CPU_CTL.hits",
    "CPU_CTL.path",
    "KERNEL.malloc_caches", "FRAME.sizeof", "FRAME.parent", "SLAB.cache", "HEADER.stop",
    NULL};

static const char *const CONSTANTS[] = {
    "PAGE_SIZE", "SLAB_CACHE_NOMAGAZINE", "OBJ_INTERNAL", "ALLOC_FLAGS",
    "SLAB_MIN_MALLOC_W", "SLAB_MAX_MALLOC_W",
    "OP_SLAB_ALLOC", "OP_SLAB_FREE", "OP_KALLOC", "OP_KFREE",
    "PATH_HIT", "EXIT_STOPPED", "DEAD_HOLDER_POLL_MS",
    NULL};

static int
member_offset(PyTypeObject *type, const char *name, Py_ssize_t *out)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)type, name);
    if (!d)
        return -1;
    if (!Py_IS_TYPE(d, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
        Py_DECREF(d);
        PyErr_Format(PyExc_TypeError, "%s.%s must be a __slots__ member", type->tp_name, name);
        return -1;
    }
    *out = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    return 0;
}

/* configure(fields, constants, handle_type, sim_fields): fields and constants are dicts name ->
 * int, with every name of FIELDS and CONSTANTS; handle_type is smpsim.engine.kernel.SlabCache;
 * sim_fields the offsets _sim.h needs (smpsim/engine/memory.py, configure_extensions). */
static PyObject *
configure(PyObject *module, PyObject *args)
{
    PyObject *fields, *consts, *type, *simfields;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyDict_Type, &fields, &PyDict_Type, &consts,
                          &PyType_Type, &type, &PyDict_Type, &simfields))
        return NULL;
    if (sim_configure(simfields) < 0)
        return NULL;
    Py_ssize_t *f = &L.cache_flags;
    for (int i = 0; FIELDS[i]; i++, f++) {
        PyObject *v = PyDict_GetItemString(fields, FIELDS[i]);
        if (!v)
            return PyErr_Format(PyExc_KeyError, "configure: no field %s", FIELDS[i]);
        *f = PyLong_AsSsize_t(v);
        if (*f < 0)
            return PyErr_Occurred() ? NULL
                                    : PyErr_Format(PyExc_ValueError, "%s < 0", FIELDS[i]);
    }
    uint64_t *c = &L.page_size;
    for (int i = 0; CONSTANTS[i]; i++, c++) {
        PyObject *v = PyDict_GetItemString(consts, CONSTANTS[i]);
        if (!v)
            return PyErr_Format(PyExc_KeyError, "configure: no constant %s", CONSTANTS[i]);
        *c = PyLong_AsUnsignedLongLong(v);
        if (*c == (uint64_t)-1 && PyErr_Occurred())
            return NULL;
    }
    if (member_offset((PyTypeObject *)type, "_addr", &L.handle_addr) < 0 ||
        member_offset((PyTypeObject *)type, "_gen", &L.handle_gen) < 0)
        return NULL;
    Py_XSETREF(L.handle_type, (PyTypeObject *)Py_NewRef(type));
    L.ready = 1;
    Py_RETURN_NONE;
}

/* --- FastPath: one CPU's accelerator ------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int has_view;
    char *base;
    uint64_t seglen;       /* bytes of the segment */
    uint64_t memory;       /* bytes of simulated memory (addresses of objects lie below) */
    uint64_t owner;        /* CPU id + 1, the lock word's holder value */
    uint64_t cpu;
    uint64_t ctl;          /* this CPU's CPU_CTL line */
    uint64_t object_table; /* Regions.object_table */
    uint64_t cache_ids;    /* Regions.cache_ids */
    int percpu;            /* Machine(counters="percpu") */
    int simulated;         /* simulated time or the scheduler: charge and pass points */
    uint64_t hdr;          /* Regions.header */
    uint64_t frame_table;  /* Regions.frame_table */
    struct simcpu sim;     /* configure_sim */
    /* the Python methods that serve everything else (Kernel.slab_alloc, ... bound) */
    PyObject *slow_alloc, *slow_free, *slow_kalloc, *slow_kfree;
} FastPath;

/* The 8-byte word at addr, or NULL when addr is not an aligned word of the segment. */
static inline uint64_t *
w64(FastPath *fp, uint64_t addr)
{
    if (addr > fp->seglen - 8 || (addr & 7))
        return NULL;
    return (uint64_t *)(fp->base + addr);
}

/* True when [addr, addr + n) lies in simulated memory above frame 0. */
static inline int
in_memory(FastPath *fp, uint64_t addr, uint64_t n)
{
    return addr >= L.page_size && addr <= fp->memory - n && !(addr & 7);
}

#define LD(addr) (*(uint64_t *)(fp->base + (addr)))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NOINLINE __attribute__((noinline))
/* Plain fields written only by this CPU or under a lock it holds: RELAXED stores, whole words. */
#define ST(addr, v) __atomic_store_n((uint64_t *)(fp->base + (addr)), (v), __ATOMIC_RELAXED)
#define GRANULE(addr) ((uint16_t *)(fp->base + fp->object_table + ((addr) >> 2)))

/* The spinlock at lock taken for this CPU (the magazine lock): one test-and-test-and-set
 * attempt; if another CPU holds it (only reclaim or cache destruction on another CPU takes a
 * CPU's magazine lock), spin as _atomics.c does, counting the contention. Returns 1 when taken,
 * 0 when not (spinning timed out after DEAD_HOLDER_POLL seconds: the Python path then finds
 * out why), -1 with a Python exception set (a signal handler raised). */
static inline int
take_lock(FastPath *fp, uint64_t lock)
{
    uint64_t *holder = (uint64_t *)(fp->base + lock + L.lock_holder), expected = 0;
    long long spins = 0;
    if (__atomic_load_n(holder, __ATOMIC_RELAXED) != 0 ||
        !__atomic_compare_exchange_n(holder, &expected, fp->owner, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
        spins = sim_spin(holder, fp->owner, L.dead_holder_poll_ms / 1000.0);
        if (spins == -1)
            return 0;
        if (spins < 0)
            return -1;
        if (spins == 0)
            spins = 1;          /* the first attempt found it held: a contended acquisition */
    }
    uint64_t acq = lock + L.lock_acquisitions;
    ST(acq, LD(acq) + 1);
    if (spins) {
        ST(lock + L.lock_contended, LD(lock + L.lock_contended) + 1);
        ST(lock + L.lock_spins, LD(lock + L.lock_spins) + (uint64_t)spins);
    }
    return 1;
}

/* Give back a lock taken by take_lock, uncounted (a miss changes nothing but the contention
 * it met, which stays counted). */
static inline void
untake_lock(FastPath *fp, uint64_t lock)
{
    uint64_t acq = lock + L.lock_acquisitions;
    ST(acq, LD(acq) - 1);
    __atomic_store_n((uint64_t *)(fp->base + lock + L.lock_holder), 0, __ATOMIC_RELEASE);
}

static inline void
unlock(FastPath *fp, uint64_t lock)
{
    __atomic_store_n((uint64_t *)(fp->base + lock + L.lock_holder), 0, __ATOMIC_RELEASE);
}

/* A counter's scheduling point and its charge (simulated time or the scheduler). */
static NOINLINE int
count_point(FastPath *fp, uint64_t addr)
{
    if (sim_point(&fp->sim, PT_ATOMIC, addr) < 0)
        return -1;
    charge(&fp->sim, addr, ACC_RMW);
    return 0;
}

/* The seed's atomic_inc / atomic_dec of a counter (SEQ_CST), or this CPU's share of it; under
 * simulated time or the scheduler, after its scheduling point and charged. -1 with a Python
 * exception set when the point ended the run. */
static inline int
count(FastPath *fp, uint64_t cache, uint64_t mags, Py_ssize_t shared, Py_ssize_t percpu,
      int64_t delta)
{
    uint64_t addr = fp->percpu ? mags + percpu : cache + shared;
    if (UNLIKELY(fp->simulated) && count_point(fp, addr) < 0)
        return -1;
    __atomic_fetch_add((uint64_t *)(fp->base + addr), (uint64_t)delta, __ATOMIC_SEQ_CST);
    return 0;
}

/* After an operation served here: a stop request that arrived while it ran (its handler could
 * run only under simulated time or the scheduler, in their waits, or while take_lock spun)
 * ends the CPU now that it is outside allocator code, as Kernel._leave would. */
static inline void
stop_if_asked(FastPath *fp)
{
    if (__atomic_load_n((uint64_t *)(fp->base + fp->hdr + L.hdr_stop), __ATOMIC_ACQUIRE))
        _exit((int)L.exit_stopped);
}

#define CH(addr, kind) charge(&fp->sim, (addr), (kind))
#define HIT_ERROR UINT64_MAX

/* Operation done: CPU_CTL ops, allocs or frees, hits and the path taken (Kernel._counted),
 * then in_kernel = 0. */
static inline void
counted(FastPath *fp, int alloc)
{
    ST(fp->ctl + L.ctl_ops, LD(fp->ctl + L.ctl_ops) + 1);
    Py_ssize_t f = alloc ? L.ctl_allocs : L.ctl_frees;
    ST(fp->ctl + f, LD(fp->ctl + f) + 1);
    ST(fp->ctl + L.ctl_hits, LD(fp->ctl + L.ctl_hits) + 1);
    ST(fp->ctl + L.ctl_path, L.path_hit);
}

/* An int argument as uint64 within [lo, hi], else -1 (no exception left set). */
static inline int
small_uint(PyObject *o, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!PyLong_CheckExact(o))
        return -1;
    int overflow;
    /* (AndOverflow: a loop over the digits; PyLong_AsUnsignedLongLong goes through a byte
     * array for ints above 2**30, twice as slow for the generation numbers.) */
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || v == -1) {
        PyErr_Clear();
        return -1;
    }
    if ((uint64_t)v < lo || (uint64_t)v > hi || v < 0)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* The descriptor address of a magazine cache whose handle is live, else 0. */
static inline uint64_t
handle_cache(FastPath *fp, PyObject *h)
{
    if (Py_TYPE(h) != L.handle_type)
        return 0;
    PyObject *a = *(PyObject **)((char *)h + L.handle_addr);
    PyObject *g = *(PyObject **)((char *)h + L.handle_gen);
    uint64_t cache, gen;
    if (!a || !g || small_uint(a, 0, INT64_MAX, &cache) < 0 ||
        small_uint(g, 0, INT64_MAX, &gen) < 0)
        return 0;
    if (!in_memory(fp, cache, L.cache_mag_cache + (fp->cpu + 1) * L.mags_sizeof))
        return 0;
    if (LD(cache + L.cache_gen) != gen || (LD(cache + L.cache_flags) & L.nomagazine))
        return 0;
    return cache;
}

/* Whether this CPU's magazine pair in cache could serve an allocation (uncharged, without the
 * lock: only a hint that spares a miss its scheduling point). */
static inline int
alloc_would_hit(FastPath *fp, uint64_t mags)
{
    uint64_t cmag = LD(mags + L.mags_current), lastmag = LD(mags + L.mags_last);
    return cmag && in_memory(fp, cmag, L.mag_objs) &&
           (LD(cmag + L.mag_busy) ||
            (lastmag && in_memory(fp, lastmag, L.mag_objs) && LD(lastmag + L.mag_busy)));
}

static inline int
free_would_hit(FastPath *fp, uint64_t mags)
{
    uint64_t cmag = LD(mags + L.mags_current), lastmag = LD(mags + L.mags_last);
    return cmag && in_memory(fp, cmag, L.mag_objs) &&
           (LD(cmag + L.mag_busy) < LD(cmag + L.mag_size) ||
            (lastmag && in_memory(fp, lastmag, L.mag_objs) &&
             LD(lastmag + L.mag_busy) < LD(lastmag + L.mag_size)));
}

/* Take the magazine lock: in host mode take_lock; under simulated time or the scheduler the
 * seed's accesses before it are charged first (`pre`: the malloc_caches[] entry kalloc reads,
 * or 0; then the cache's flags), then its scheduling point and an acquisition as the Python
 * path's (sim_lock). 1 taken, 0 not (the Python path takes over), -1 an exception set. */
static NOINLINE int
sim_hit_lock(FastPath *fp, uint64_t cache, uint64_t lock, uint64_t pre)
{
    if (pre)
        CH(pre, ACC_READ);
    CH(cache + L.cache_flags, ACC_READ);
    long long r = sim_lock(&fp->sim, lock + L.lock_holder, lock + L.lock_acquisitions,
                           fp->owner, L.dead_holder_poll_ms / 1000.0, LOCK_KERNEL);
    return r >= 0 ? 1 : r == -1 ? 0 : -1;
}

static inline int
hit_lock(FastPath *fp, uint64_t cache, uint64_t lock, uint64_t pre)
{
    if (LIKELY(!fp->simulated))
        return take_lock(fp, lock);
    return sim_hit_lock(fp, cache, lock, pre);
}

/* Release it: unlock, or under simulated time or the scheduler sim_unlock (its scheduling point
 * and charge). 0, or -1 with an exception set. */
static inline int
hit_unlock(FastPath *fp, uint64_t lock)
{
    if (LIKELY(!fp->simulated)) {
        unlock(fp, lock);
        return 0;
    }
    return sim_unlock(&fp->sim, lock + L.lock_holder, LOCK_KERNEL);
}

/* Simulated time: the accesses of an allocation's magazine hit, charged in the order the Python
 * path makes them (slab.py, _magazine_obj_get), out of the host-time path's way. */
static NOINLINE void
charge_alloc_hit(FastPath *fp, uint64_t mags, uint64_t cmag, uint64_t lastmag, uint64_t mag,
                 uint64_t slot)
{
    CH(mags + L.mags_current, ACC_READ);
    CH(mags + L.mags_last, ACC_READ);
    CH(cmag + L.mag_busy, ACC_READ);
    if (mag != cmag) {
        CH(lastmag + L.mag_busy, ACC_READ);
        CH(mags + L.mags_current, ACC_WRITE);
        CH(mags + L.mags_last, ACC_WRITE);
    }
    CH(mag + L.mag_busy, ACC_READ);
    CH(mag + L.mag_busy, ACC_WRITE);
    CH(slot, ACC_READ);
}

/* ... and of a free's (_magazine_obj_put). */
static NOINLINE void
charge_free_hit(FastPath *fp, uint64_t mags, uint64_t cmag, uint64_t lastmag, uint64_t mag,
                uint64_t slot)
{
    CH(mags + L.mags_current, ACC_READ);
    CH(mags + L.mags_last, ACC_READ);
    CH(cmag + L.mag_busy, ACC_READ);
    CH(cmag + L.mag_size, ACC_READ);
    if (mag != cmag) {
        CH(lastmag + L.mag_busy, ACC_READ);
        CH(lastmag + L.mag_size, ACC_READ);
        CH(mags + L.mags_last, ACC_WRITE);
        CH(mags + L.mags_current, ACC_WRITE);
    }
    CH(mag + L.mag_busy, ACC_READ);
    CH(slot, ACC_WRITE);
    CH(mag + L.mag_busy, ACC_WRITE);
}

/* The magazine hit of an allocation from cache (a magazine cache): the object, 0 when it needs
 * the slow path (nothing changed then), HIT_ERROR with a Python exception set. op is the
 * in_kernel code, pre what hit_lock charges first. Under simulated time the accesses are
 * charged in the order the Python path makes them (slab.py, _magazine_obj_get). */
static uint64_t
alloc_hit(FastPath *fp, uint64_t cache, uint64_t op, uint64_t pre)
{
    uint64_t mags = cache + L.cache_mag_cache + fp->cpu * L.mags_sizeof;
    uint64_t lock = mags + L.mags_lock;
    uint64_t ink = fp->ctl + L.ctl_in_kernel;
    if (UNLIKELY(fp->simulated) && !alloc_would_hit(fp, mags))
        return 0;
    ST(ink, op);
    int taken = hit_lock(fp, cache, lock, pre);
    if (taken <= 0) {
        if (taken < 0)
            return HIT_ERROR;
        goto out;
    }
    uint64_t cmag = LD(mags + L.mags_current), lastmag = LD(mags + L.mags_last), mag = 0;
    if (cmag && in_memory(fp, cmag, L.mag_objs)) {
        if (LD(cmag + L.mag_busy)) {
            mag = cmag;
        } else if (lastmag && in_memory(fp, lastmag, L.mag_objs) && LD(lastmag + L.mag_busy)) {
            ST(mags + L.mags_current, lastmag);
            ST(mags + L.mags_last, cmag);
            mag = lastmag;
        }
    }
    uint64_t busy = mag ? LD(mag + L.mag_busy) - 1 : 0;
    uint64_t slot = mag + L.mag_objs + busy * 8;
    uint64_t obj = mag && in_memory(fp, slot, 8) ? LD(slot) : 0;
    if (!obj || !in_memory(fp, obj, 8)) {
        if (mag && mag != cmag) {           /* undo the swap */
            ST(mags + L.mags_current, cmag);
            ST(mags + L.mags_last, lastmag);
        }
        untake_lock(fp, lock);
        goto out;
    }
    if (UNLIKELY(fp->simulated))
        charge_alloc_hit(fp, mags, cmag, lastmag, mag, slot);
    ST(mag + L.mag_busy, busy);
    if (hit_unlock(fp, lock) < 0)
        return HIT_ERROR;
    if (count(fp, cache, mags, L.cache_cached_objs, L.mags_cached, -1) < 0 ||
        count(fp, cache, mags, L.cache_allocated_objs, L.mags_allocated, 1) < 0)
        return HIT_ERROR;
    __atomic_store_n(GRANULE(obj), (uint16_t)LD(cache + L.cache_id), __ATOMIC_RELAXED);
    counted(fp, 1);
    ST(ink, 0);
    stop_if_asked(fp);
    return obj;
out:
    ST(ink, 0);
    return 0;
}

/* The magazine hit of freeing obj (a checked address of simulated memory) to cache: 1 when
 * done, 0 when it needs the slow path (nothing changed then), -1 with a Python exception set.
 * `kfree`: the seed's kfree first finds the object's slab (frame->parent, slab->cache). */
static int
free_hit(FastPath *fp, uint64_t cache, uint64_t obj, uint64_t cid, uint64_t op, int kfree)
{
    uint64_t mags = cache + L.cache_mag_cache + fp->cpu * L.mags_sizeof;
    uint64_t lock = mags + L.mags_lock;
    uint64_t ink = fp->ctl + L.ctl_in_kernel;
    uint16_t expected = (uint16_t)cid;
    if (UNLIKELY(fp->simulated) && !free_would_hit(fp, mags))
        return 0;
    ST(ink, op);
    /* Claim the live object (Kernel._claim): SEQ_CST 16-bit CAS, so racing frees cannot both
     * win. A failed claim is an invalid free: Python says what is there instead. */
    if (!__atomic_compare_exchange_n(GRANULE(obj), &expected, 0, 0, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST))
        goto out;
    if (fp->simulated && kfree) {
        uint64_t parent = fp->frame_table + (obj >> 12) * L.frame_sizeof + L.frame_parent;
        CH(parent, ACC_READ);
        CH(LD(parent) + L.slab_cache, ACC_READ);
    }
    int taken = hit_lock(fp, cache, lock, 0);
    if (taken <= 0) {
        if (taken < 0)
            return -1;
        goto unclaim;
    }
    uint64_t cmag = LD(mags + L.mags_current), lastmag = LD(mags + L.mags_last), mag = 0;
    if (cmag && in_memory(fp, cmag, L.mag_objs)) {
        if (LD(cmag + L.mag_busy) < LD(cmag + L.mag_size)) {
            mag = cmag;
        } else if (lastmag && in_memory(fp, lastmag, L.mag_objs) &&
                   LD(lastmag + L.mag_busy) < LD(lastmag + L.mag_size)) {
            mag = lastmag;
        }
    }
    uint64_t busy = mag ? LD(mag + L.mag_busy) : 0;
    uint64_t slot = mag + L.mag_objs + busy * 8;
    if (!mag || !in_memory(fp, slot, 8)) {
        untake_lock(fp, lock);
        goto unclaim;
    }
    if (UNLIKELY(fp->simulated))
        charge_free_hit(fp, mags, cmag, lastmag, mag, slot);
    if (mag != cmag) {
        ST(mags + L.mags_last, cmag);
        ST(mags + L.mags_current, lastmag);
    }
    ST(slot, obj);
    ST(mag + L.mag_busy, busy + 1);
    if (hit_unlock(fp, lock) < 0)
        return -1;
    if (count(fp, cache, mags, L.cache_cached_objs, L.mags_cached, 1) < 0 ||
        count(fp, cache, mags, L.cache_allocated_objs, L.mags_allocated, -1) < 0)
        return -1;
    counted(fp, 0);
    ST(ink, 0);
    stop_if_asked(fp);
    return 1;
unclaim:
    __atomic_store_n(GRANULE(obj), (uint16_t)cid, __ATOMIC_SEQ_CST);
out:
    ST(ink, 0);
    return 0;
}

static inline int
flags_ok(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t i)
{
    uint64_t flags;
    return nargs <= i || (small_uint(args[i], 0, UINT64_MAX >> 1, &flags) == 0 &&
                          !(flags & ~L.alloc_flags));
}

/* The positional arguments of a call taking `npos` of them plus an optional `flags`, which may
 * come by keyword (kalloc(64, flags=FRAME_ATOMIC)): 1 when they are there and the flags are
 * within FRAME_ATOMIC | FRAME_NO_RECLAIM. Every other shape of call goes to Python. */
static inline int
alloc_args(FastPath *fp, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (!fp->has_view || nargs + nkw > 2 || nargs < 1)
        return 0;
    if (nkw && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "flags") != 0)
        return 0;
    return flags_ok(args, nargs + nkw, 1);
}

static inline int
free_args(FastPath *fp, Py_ssize_t nargs, Py_ssize_t want, PyObject *kwnames)
{
    return fp->has_view && !kwnames && nargs == want;
}

#define SLOW(fn) PyObject_Vectorcall(fp->fn, args, nargs, kwnames)

/* slab_alloc(cache, flags=0): the magazine hit in C, anything else by Kernel.slab_alloc. */
static PyObject *
FastPath_slab_alloc(FastPath *fp, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (alloc_args(fp, args, nargs, kwnames)) {
        uint64_t cache = handle_cache(fp, args[0]);
        uint64_t obj = cache ? alloc_hit(fp, cache, L.op_slab_alloc, 0) : 0;
        if (obj == HIT_ERROR)
            return NULL;
        if (obj)
            return PyLong_FromUnsignedLongLong(obj);
    }
    return SLOW(slow_alloc);
}

/* slab_free(cache, addr): the magazine hit in C, anything else by Kernel.slab_free. */
static PyObject *
FastPath_slab_free(FastPath *fp, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    uint64_t obj;
    if (free_args(fp, nargs, 2, kwnames) && small_uint(args[1], L.page_size, fp->memory - 8,
                                                       &obj) == 0 && !(obj & 7)) {
        uint64_t cache = handle_cache(fp, args[0]);
        int r = cache ? free_hit(fp, cache, obj, LD(cache + L.cache_id), L.op_slab_free, 0) : 0;
        if (r < 0)
            return NULL;
        if (r)
            Py_RETURN_NONE;
    }
    return SLOW(slow_free);
}

/* The malloc_caches[] entry of size (the seed's kalloc index). */
static inline uint64_t
malloc_slot(uint64_t size)
{
    uint64_t min = (uint64_t)1 << L.min_malloc_w;
    uint64_t s = (size > min ? size : min) - 1;
    uint64_t idx = (63 - __builtin_clzll(s)) - L.min_malloc_w + 1;   /* fnzb(s) - 3 + 1 */
    return L.kernel_malloc_caches + idx * 8;
}

/* The malloc cache serving size, or 0. */
static inline uint64_t
malloc_cache(FastPath *fp, uint64_t size)
{
    uint64_t cache = LD(malloc_slot(size));
    if (!in_memory(fp, cache, L.cache_mag_cache + (fp->cpu + 1) * L.mags_sizeof) ||
        (LD(cache + L.cache_flags) & L.nomagazine))
        return 0;
    return cache;
}

/* kalloc(size, flags=0): the magazine hit in C, anything else by Kernel.kalloc. */
static PyObject *
FastPath_kalloc(FastPath *fp, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    uint64_t size;
    if (alloc_args(fp, args, nargs, kwnames) &&
        small_uint(args[0], 1, (uint64_t)1 << L.max_malloc_w, &size) == 0) {
        uint64_t cache = malloc_cache(fp, size);
        uint64_t obj = cache ? alloc_hit(fp, cache, L.op_kalloc, malloc_slot(size)) : 0;
        if (obj == HIT_ERROR)
            return NULL;
        if (obj)
            return PyLong_FromUnsignedLongLong(obj);
    }
    return SLOW(slow_kalloc);
}

/* kfree(addr): the magazine hit in C, anything else (0, None, an invalid free) by Kernel.kfree. */
static PyObject *
FastPath_kfree(FastPath *fp, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    uint64_t obj;
    if (free_args(fp, nargs, 1, kwnames) &&
        small_uint(args[0], L.page_size, fp->memory - 8, &obj) == 0 && !(obj & 7)) {
        /* The cache whose live object starts at obj, if it is a malloc cache (Kernel.kfree). */
        uint64_t cid = __atomic_load_n(GRANULE(obj), __ATOMIC_RELAXED), cache = 0;
        uint64_t *entry = cid && !(cid & L.obj_internal) ? w64(fp, fp->cache_ids + cid * 8) : NULL;
        if (entry && in_memory(fp, *entry, L.cache_mag_cache)) {
            uint64_t size = LD(*entry + L.cache_size);
            if (size >> L.min_malloc_w && size <= (uint64_t)1 << L.max_malloc_w &&
                !(size & (size - 1)) && malloc_cache(fp, size) == *entry)
                cache = *entry;
        }
        int r = cache ? free_hit(fp, cache, obj, cid, L.op_kfree, 1) : 0;
        if (r < 0)
            return NULL;
        if (r)
            Py_RETURN_NONE;
    }
    return SLOW(slow_kfree);
}

/* --- lifecycle --------------------------------------------------------------------------- */

static int
FastPath_init(FastPath *fp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"buffer", "memory", "cpu", "ctl", "object_table", "cache_ids",
                             "percpu", "slab_alloc", "slab_free", "kalloc", "kfree", NULL};
    PyObject *buf, *sa, *sf, *ka, *kf;
    unsigned long long memory, cpu, ctl, otab, ids;
    int percpu;
    if (!L.ready) {
        PyErr_SetString(PyExc_RuntimeError, "smpsim._fastpath.configure() was not called");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OKKKKKpOOOO", kwlist, &buf, &memory, &cpu, &ctl,
                                     &otab, &ids, &percpu, &sa, &sf, &ka, &kf))
        return -1;
    if (fp->has_view) {
        PyBuffer_Release(&fp->view);
        fp->has_view = 0;
    }
    if (PyObject_GetBuffer(buf, &fp->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    fp->has_view = 1;
    fp->base = fp->view.buf;
    fp->seglen = (uint64_t)fp->view.len;
    if (memory > fp->seglen || otab + 2 * (memory >> 3) > fp->seglen || ctl > fp->seglen ||
        ids > fp->seglen) {
        PyErr_SetString(PyExc_ValueError, "FastPath: regions outside the buffer");
        return -1;
    }
    fp->memory = memory;
    fp->cpu = cpu;
    fp->owner = cpu + 1;
    fp->ctl = ctl;
    fp->object_table = otab;
    fp->cache_ids = ids;
    fp->percpu = percpu;
    Py_XSETREF(fp->slow_alloc, Py_NewRef(sa));
    Py_XSETREF(fp->slow_free, Py_NewRef(sf));
    Py_XSETREF(fp->slow_kalloc, Py_NewRef(ka));
    Py_XSETREF(fp->slow_kfree, Py_NewRef(kf));
    return 0;
}

/* configure_sim(cpu, ncpus, header, ctl0, tags, tag_lines, tag_words, locktab, locktab_size,
 *               log, spin_token, frame_table): as Arena.configure_sim (smpsim/engine/_atomics.c),
 * so that the hit path charges simulated time and passes scheduling points as the Python path
 * does; `frame_table` for kfree's reads of frame->parent. */
static PyObject *
FastPath_configure_sim(FastPath *fp, PyObject *args)
{
    unsigned int cpu, ncpus;
    unsigned long long hdr, ctl0, tags, tag_lines, tag_words, locktab, locktab_size, log, ft;
    int spin_token;
    if (!PyArg_ParseTuple(args, "IIKKKKKKKKpK", &cpu, &ncpus, &hdr, &ctl0, &tags, &tag_lines,
                          &tag_words, &locktab, &locktab_size, &log, &spin_token, &ft))
        return NULL;
    if (!SL.ready || !fp->has_view || cpu != fp->cpu || cpu >= ncpus ||
        locktab_size & (locktab_size - 1) || tags + tag_lines * tag_stride(tag_words) * 8 > fp->seglen ||
        hdr > fp->seglen || ft > fp->seglen) {
        PyErr_SetString(PyExc_ValueError, "FastPath.configure_sim: bad regions");
        return NULL;
    }
    struct simcpu *m = &fp->sim;
    sim_init(m, fp->base, fp->seglen, cpu, ncpus, hdr, ctl0, tags, tag_lines, tag_words, locktab,
             locktab_size, log, spin_token, NULL);
    if (m->data_points) {
        PyErr_SetString(PyExc_ValueError, "FastPath: a controlled run takes the Python path");
        return NULL;
    }
    fp->simulated = m->timed || m->sched != SCHED_FREE;
    fp->hdr = hdr;
    fp->frame_table = ft;
    Py_RETURN_NONE;
}

/* release(): drop the buffer (SharedMemory.close() needs it); later calls all go to Python. */
static PyObject *
FastPath_release(FastPath *fp, PyObject *unused)
{
    if (fp->has_view) {
        PyBuffer_Release(&fp->view);
        fp->has_view = 0;
    }
    Py_RETURN_NONE;
}

static int
FastPath_traverse(FastPath *fp, visitproc visit, void *arg)
{
    Py_VISIT(fp->slow_alloc);
    Py_VISIT(fp->slow_free);
    Py_VISIT(fp->slow_kalloc);
    Py_VISIT(fp->slow_kfree);
    return 0;
}

static int
FastPath_clear(FastPath *fp)
{
    Py_CLEAR(fp->slow_alloc);
    Py_CLEAR(fp->slow_free);
    Py_CLEAR(fp->slow_kalloc);
    Py_CLEAR(fp->slow_kfree);
    return 0;
}

static void
FastPath_dealloc(FastPath *fp)
{
    PyObject_GC_UnTrack(fp);
    FastPath_clear(fp);
    if (fp->has_view)
        PyBuffer_Release(&fp->view);
    Py_TYPE(fp)->tp_free((PyObject *)fp);
}

#define FAST(name, doc) \
    {#name, (PyCFunction)(void (*)(void))FastPath_##name, METH_FASTCALL | METH_KEYWORDS, doc}

static PyMethodDef FastPath_methods[] = {
    FAST(slab_alloc, "slab_alloc(cache, flags=0): Kernel.slab_alloc, magazine hits in C"),
    FAST(slab_free, "slab_free(cache, addr): Kernel.slab_free, magazine hits in C"),
    FAST(kalloc, "kalloc(size, flags=0): Kernel.kalloc, magazine hits in C"),
    FAST(kfree, "kfree(addr): Kernel.kfree, magazine hits in C"),
    {"release", (PyCFunction)FastPath_release, METH_NOARGS, "drop the buffer (safe to repeat)"},
    {"configure_sim", (PyCFunction)FastPath_configure_sim, METH_VARARGS,
     "configure_sim(...): simulated time and the scheduler, as Arena.configure_sim"},
    {NULL}};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "smpsim._fastpath.FastPath",
    .tp_doc = "FastPath(buffer, memory, cpu, ctl, object_table, cache_ids, percpu, slab_alloc, "
              "slab_free, kalloc, kfree): one CPU's magazine hit path; misses call the given "
              "Python methods.",
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastPath_init,
    .tp_dealloc = (destructor)FastPath_dealloc,
    .tp_traverse = (traverseproc)FastPath_traverse,
    .tp_clear = (inquiry)FastPath_clear,
    .tp_methods = FastPath_methods,
};

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(fields, constants, handle_type): the layout, from smpsim/engine/layout.py"},
    {NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "smpsim._fastpath",
    "The magazine hit path of the Kernel's hot methods, one C call per operation.", -1,
    module_methods};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    if (PyType_Ready(&FastPathType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "FastPath", (PyObject *)&FastPathType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
