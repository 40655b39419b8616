/*
 * smpsim/engine/_sched.h: the scheduling points of simulated time and controlled schedules, on
 * top of _sim.h's clocks, cost model and bounded skew: who passes the next point in token mode
 * (the strategies, record and replay, kills, deadlocks), and the spinlock under every mode.
 * _sim.h's opening comment describes the whole mechanism; both C extensions include this file.
 */
#ifndef SMPSIM_SCHED_H
#define SMPSIM_SCHED_H

#include "_sim.h"

/* --- the scheduler ------------------------------------------------------------------------ */

static inline uint64_t
splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Whether CPU i could pass its next point now (token mode). */
static inline int
runnable(struct simcpu *s, uint32_t i)
{
    uint64_t st = ld_relaxed(CW(s, i, c_state));
    if (st == CPU_RUNNABLE)
        return 1;
    if (st == CPU_BLOCKED) {
        uint64_t lock = ld_relaxed(CW(s, i, c_wants));
        return __atomic_load_n((uint64_t *)(s->base + lock), __ATOMIC_ACQUIRE) == 0;
    }
    return 0;
}

/* The clock CPU i would have once it passes its next point (a blocked CPU takes its lock no
 * earlier than the lock's last release plus a transfer). */
static inline uint64_t
effective_clock(struct simcpu *s, uint32_t i)
{
    uint64_t c = ld_relaxed(CW(s, i, c_clock));
    if (ld_relaxed(CW(s, i, c_state)) == CPU_BLOCKED)
        c = take_time(s, i, ld_relaxed(CW(s, i, c_wants)), c);
    return c;
}

/* The run ends at this step for `why` (FAIL_*): -1, as choose() returns it. */
static inline int
sched_fail(struct simcpu *s, uint64_t why)
{
    st_relaxed(HW(s, h_failure), why);
    st_relaxed(HW(s, h_failure_step), ld_relaxed(HW(s, h_step)));
    return -1;
}

/* Choose who passes the next point; `me` is the CPU deciding (the token holder, or ncpus when
 * the Machine decides after the holder died). Returns the CPU, or -1 when none is runnable
 * (HEADER.failure says why). Records or replays the decision when two or more could run. */
static int
choose(struct simcpu *s, uint32_t me)
{
    uint32_t n = s->ncpus, count = 0, only = 0;
    for (uint32_t i = 0; i < n; i++)
        if (runnable(s, i)) {
            count++;
            only = i;
        }
    if (count == 0) {
        for (uint32_t i = 0; i < n; i++) {
            uint64_t st = ld_relaxed(CW(s, i, c_state));
            if (st == CPU_BLOCKED || st == CPU_BARRIER || st == CPU_RUNNABLE)
                return sched_fail(s, FAIL_DEADLOCK);
        }
        return -1;                          /* every CPU has finished */
    }
    int strategy = (int)ld_relaxed(HW(s, h_strategy));
    int chosen = (int)only;
    if (count > 1) {
        uint64_t *dec = HW(s, h_decisions), d = ld_relaxed(dec);
        if (strategy == STRATEGY_CLOCK) {
            uint64_t best = UINT64_MAX;
            for (uint32_t i = 0; i < n; i++)
                if (runnable(s, i)) {
                    uint64_t c = effective_clock(s, i);
                    if (c < best) {
                        best = c;
                        chosen = (int)i;
                    }
                }
        } else if (strategy == STRATEGY_RANDOM) {
            uint64_t k = splitmix64(HW(s, h_rng)) % count;
            for (uint32_t i = 0; i < n; i++)
                if (runnable(s, i) && k-- == 0) {
                    chosen = (int)i;
                    break;
                }
        } else if (strategy == STRATEGY_PCT) {
            /* Priorities are 1 and up, below 0 for a demoted spinner (pct_spinning); ties go
             * to the lowest id. */
            int64_t best = INT64_MIN;
            for (uint32_t i = 0; i < n; i++)
                if (runnable(s, i) && (int64_t)ld_relaxed(CW(s, i, c_prio)) > best) {
                    best = (int64_t)ld_relaxed(CW(s, i, c_prio));
                    chosen = (int)i;
                }
        } else {                            /* STRATEGY_REPLAY */
            int lenient = (int)ld_relaxed(HW(s, h_replay_lenient));
            chosen = d < ld_relaxed(HW(s, h_log_len)) ? (unsigned char)s->base[s->log + d] : -1;
            if (chosen < 0 || chosen >= (int)n || !runnable(s, (uint32_t)chosen)) {
                if (!lenient)
                    return sched_fail(s, FAIL_MISMATCH);
                /* Lenient (shrinking a schedule): where the schedule names a CPU that cannot
                 * run, or has ended, go on without a preemption: the deciding CPU if it can,
                 * else the lowest runnable id. */
                chosen = me < n && runnable(s, me) ? (int)me : (int)only;
                for (uint32_t i = 0; i < n && chosen != (int)me; i++)
                    if (runnable(s, i)) {
                        chosen = (int)i;
                        break;
                    }
            }
        }
        /* The log records what actually ran: every decision of a strategy that draws, and
         * a lenient replay's over the schedule it follows. */
        if (strategy == STRATEGY_REPLAY ? ld_relaxed(HW(s, h_replay_lenient)) != 0
                                        : strategy != STRATEGY_CLOCK) {
            if (d >= ld_relaxed(HW(s, h_log_cap)))
                return sched_fail(s, FAIL_LOG_FULL);
            s->base[s->log + d] = (char)chosen;
            if (strategy != STRATEGY_REPLAY)
                st_relaxed(HW(s, h_log_len), d + 1);
        }
        if (strategy != STRATEGY_CLOCK) {
            st_relaxed(dec, d + 1);
            if (me < n && (uint32_t)chosen != me && runnable(s, me))
                st_relaxed(HW(s, h_preemptions), ld_relaxed(HW(s, h_preemptions)) + 1);
        }
    }
    return chosen;
}

/* Hand the token to CPU `next` and wake it. */
static inline void
hand_token(struct simcpu *s, uint32_t next)
{
    __atomic_store_n(HW(s, h_token), next, __ATOMIC_RELEASE);
    uint64_t *go = CW(s, next, c_go);
    __atomic_store_n(go, 1, __ATOMIC_RELEASE);
    futex(go, FUTEX_WAKE, 1, -1);
}

/* Wait until this CPU holds the token. -1 when a signal handler raised. */
static int
wait_token(struct simcpu *s)
{
    uint64_t *token = HW(s, h_token), *go = CW(s, s->cpu, c_go);
    if (s->spin_token) {
        for (int i = 0; i < TOKEN_SPINS; i++) {
            if (__atomic_load_n(token, __ATOMIC_ACQUIRE) == s->cpu)
                goto mine;
            cpu_relax();
        }
        for (int i = 0; i < TOKEN_YIELDS; i++) {
            if (__atomic_load_n(token, __ATOMIC_ACQUIRE) == s->cpu)
                goto mine;
            sched_yield();
        }
    }
    while (__atomic_load_n(token, __ATOMIC_ACQUIRE) != s->cpu) {
        if (futex_sleep(go, 0) < 0)
            return -1;
    }
mine:
    __atomic_store_n(go, 0, __ATOMIC_RELAXED);
    return 0;
}

/* Raise ScheduleStop: the run ends here (HEADER.failure says why). */
static int
schedule_stop(struct simcpu *s)
{
    static const char *why[] = {"", "deadlock: no CPU can go on",
                                "the schedule does not match the program",
                                "the schedule log is full"};
    uint64_t f = ld_relaxed(HW(s, h_failure));
    PyErr_Format(ScheduleStop, "CPU %u: %s (step %llu)", s->cpu, why[f < 4 ? f : 0],
                 (unsigned long long)ld_relaxed(HW(s, h_failure_step)));
    return -1;
}

/* PCT: a CPU that only reads, point after point, is waiting for another (a spin on a flag):
 * at the highest priority it would never let that one run. After PCT_SPIN_POINTS such points
 * it drops below every CPU so far, spinners demoted earlier included, so spinners take turns
 * and the run goes on. Only the token holder runs this. */
#define PCT_SPIN_POINTS 1000

static void
pct_spinning(struct simcpu *s, int kind)
{
    if (kind != PT_LOAD && kind != PT_READ) {
        s->reads_in_row = 0;
        return;
    }
    if (++s->reads_in_row < PCT_SPIN_POINTS)
        return;
    s->reads_in_row = 0;
    uint64_t *d = HW(s, h_pct_demotions), n = ld_relaxed(d) + 1;
    st_relaxed(d, n);
    st_relaxed(CW(s, s->cpu, c_prio), (uint64_t)(-(int64_t)n));
}

/* Token mode: wait for the token; -1 with a Python exception set when it came because the run
 * must end (or a signal handler raised). */
static int
await_token(struct simcpu *s)
{
    if (wait_token(s) < 0)
        return -1;
    return ld_relaxed(HW(s, h_failure)) != FAIL_NONE ? schedule_stop(s) : 0;
}

/* ... after handing it to `next`, unless this CPU has finished. */
static int
pass_token(struct simcpu *s, uint32_t next)
{
    hand_token(s, next);
    return ld_relaxed(CW(s, s->cpu, c_state)) == CPU_DONE ? 0 : await_token(s);
}

/* Token mode: the holder passes a point. Runs the kill and PCT bookkeeping, chooses who goes
 * next, hands over and waits for the token to come back (unless this CPU is done). -1 with a
 * Python exception set when the run must end here. */
static int
token_pass(struct simcpu *s, int kind, uint64_t addr)
{
    uint64_t *step = HW(s, h_step), k = ld_relaxed(step) + 1;
    st_relaxed(step, k);
    uint64_t victim = ld_relaxed(HW(s, h_kill_cpu));
    if (victim == s->cpu + 1 && k >= ld_relaxed(HW(s, h_kill_step)) &&
        ld_relaxed(CW(s, s->cpu, c_state)) != CPU_DONE) {
        /* Machine(kill=(cpu, step)): die here, before this point's action, holding the token
         * (the Machine passes it on). */
        st_relaxed(HW(s, h_kill_cpu), 0);
        kill(getpid(), SIGKILL);
        for (;;)
            pause();
    }
    if (ld_relaxed(HW(s, h_strategy)) == STRATEGY_PCT) {
        pct_spinning(s, kind);
        uint64_t *next = HW(s, h_pct_next), i = ld_relaxed(next);
        if (i < ld_relaxed(HW(s, h_pct_count)) &&
            k >= ld_relaxed((uint64_t *)(s->base + s->hdr + SL.h_pct_change) + i)) {
            /* The i-th change point: the running CPU drops to priority count - i (low). */
            st_relaxed(CW(s, s->cpu, c_prio), ld_relaxed(HW(s, h_pct_count)) - i);
            st_relaxed(next, i + 1);
        }
    }
    uint64_t preempted = ld_relaxed(HW(s, h_preemptions));
    int next = choose(s, s->cpu);
    if (s->tracer) {
        PyObject *r = PyObject_CallFunction(
            s->tracer, "KiKiO", (unsigned long long)k, kind, (unsigned long long)addr, next,
            ld_relaxed(HW(s, h_preemptions)) != preempted ? Py_True : Py_False);
        if (!r)
            return -1;
        Py_DECREF(r);
    }
    if (next < 0) {
        if (ld_relaxed(CW(s, s->cpu, c_state)) == CPU_DONE &&
            ld_relaxed(HW(s, h_failure)) == FAIL_NONE)
            return 0;                       /* the last CPU finished */
        return schedule_stop(s);
    }
    return (uint32_t)next == s->cpu ? 0 : pass_token(s, (uint32_t)next);
}

/* A scheduling point before an action. 0 to go on; -1 with a Python exception set. */
static inline int
sim_point(struct simcpu *s, int kind, uint64_t addr)
{
    if (s->sched == SCHED_FREE || !s->on || !ld_relaxed(s->run_active))
        return 0;
    st_relaxed(s->points, ld_relaxed(s->points) + 1);
    if (s->sched == SCHED_LAX)
        return lax_wait(s);
    return token_pass(s, kind, addr);
}

/* A data access of the allocator's code: charged, and a point of a controlled run. */
static inline int
sim_access(struct simcpu *s, uint64_t addr, int kind)
{
    if (s->data_points && sim_point(s, kind == ACC_READ ? PT_READ : PT_WRITE, addr) < 0)
        return -1;
    charge(s, addr, kind);
    return 0;
}

/* Token mode: this CPU cannot pass (it waits for a lock or at a barrier): let the scheduler
 * run the others until this CPU is chosen again. -1 with an exception set. */
static int
token_block(struct simcpu *s)
{
    int next = choose(s, s->cpu);
    if (next < 0)
        return schedule_stop(s);
    return (uint32_t)next == s->cpu ? 0 : pass_token(s, (uint32_t)next);
}

/* --- locks --------------------------------------------------------------------------------- */

/*
 * Acquire the spinlock whose word is at `word` for owner (CPU id + 1), under the machine's
 * scheduling mode, after its scheduling point. `counters` is where acquisitions, contended and
 * spins are counted (three consecutive words). Returns the failed attempts (>= 0), -1 when
 * `timeout` seconds passed (SCHED_FREE and SCHED_LAX only), -2 with a Python exception set.
 * In simulated time the acquisition is an atomic on the lock's line: the clock moves to at
 * least the last release plus a transfer; the wait and the acquisition time go to the lock's
 * statistics entry.
 */
/* Failed reads before the spinning CPU yields its host core. */
#define SPIN_READS 16
/* Yields between checks for Python signals (so a stop request reaches a spinning CPU). */
#define YIELDS_PER_SIGNAL_CHECK 64

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/*
 * Spin until the lock word at holder is taken for owner (CPU id + 1), test-and-test-and-set.
 * Returns the failed reads (>= 0), -1 when timeout seconds (> 0) passed without getting it, or
 * -2 when a Python signal handler raised. Called with the GIL held; the GIL is dropped around
 * each sched_yield(). The caller counts the acquisition.
 */
static long long
sim_spin(uint64_t *holder, uint64_t owner, double timeout)
{
    uint64_t expected;
    long long spins = 0;
    int reads = 0, yields = 0;
    double deadline = 0;

    for (;;) {
        /* Test: a RELAXED read keeps the line shared while someone else holds it. */
        if (__atomic_load_n(holder, __ATOMIC_RELAXED) == 0) {
            expected = 0;
            /* Test-and-set: ACQUIRE, so the critical section's reads happen after it. */
            if (__atomic_compare_exchange_n(holder, &expected, owner, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                return spins;
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
}


/* Simulated time of a lock just taken (its word at `word`, the clock at the attempt `before`):
 * the acquisition is an atomic on the lock's line; the wait beyond the atomic's own cost and
 * the time of the acquisition go to the lock's statistics. */
static inline void
sim_acquired(struct simcpu *s, uint64_t word, uint64_t before, int kind)
{
    if (!s->timed)
        return;
    charge(s, word, ACC_RMW);
    uint64_t now = ld_relaxed(MYCLOCK(s)), e = lockstat(s, word, kind);
    if (e) {
        st_relaxed(LS(s, e, s_wait_cycles),
                   ld_relaxed(LS(s, e, s_wait_cycles)) + (now - before - s->atomic));
        st_relaxed(LS(s, e, s_acquired_at), now);
    }
}

/* Simulated time of a lock just released: a write of its line; the hold to its statistics.
 * The lock's statistics entry (0: none, or host time). */
static inline uint64_t
sim_released(struct simcpu *s, uint64_t word, int kind)
{
    if (!s->timed)
        return 0;
    charge(s, word, ACC_WRITE);
    uint64_t e = lockstat(s, word, kind);
    if (e)
        st_relaxed(LS(s, e, s_hold_cycles), ld_relaxed(LS(s, e, s_hold_cycles)) +
                                                (ld_relaxed(MYCLOCK(s)) -
                                                 ld_relaxed(LS(s, e, s_acquired_at))));
    return e;
}

/*
 * SCHED_LAX: take the lock at word in simulated-time order. While another CPU holds it, sleep on
 * the word (the releaser wakes its waiters); once it is free, the attempt waits until no other
 * CPU could ask for it earlier (every running CPU's clock, and every waiter's, at least the time
 * this CPU would take it: its clock, or the release plus a transfer), so that the lock goes to
 * the earliest request whatever order the host runs the processes in. Meanwhile this CPU is
 * CPU_BLOCKED (lax_clock). Returns the failed attempts, -1 after `timeout` seconds, -2 with a
 * Python exception set.
 */
static long long lax_acquire_loop(struct simcpu *s, uint64_t word, uint64_t owner,
                                  double timeout);

static long long
lax_acquire(struct simcpu *s, uint64_t word, uint64_t owner, double timeout, uint64_t stat)
{
    /* While this CPU is at it, the holder cannot take the lock as a private one (sim_lock). */
    if (stat)
        __atomic_fetch_add(LS(s, stat, s_waiting), 1, __ATOMIC_SEQ_CST);
    long long spins = lax_acquire_loop(s, word, owner, timeout);
    if (stat)
        __atomic_fetch_sub(LS(s, stat, s_waiting), 1, __ATOMIC_RELEASE);
    return spins;
}

static long long
lax_acquire_loop(struct simcpu *s, uint64_t word, uint64_t owner, double timeout)
{
    uint64_t *holder = (uint64_t *)(s->base + word), expected;
    long long spins = 0;
    double deadline = timeout > 0 ? now_seconds() + timeout : 0;
    st_relaxed(CW(s, s->cpu, c_wants), word);
    set_state(s, CPU_BLOCKED);
    for (;;) {
        uint64_t h = __atomic_load_n(holder, __ATOMIC_ACQUIRE);
        if (h == 0) {
            uint64_t *tag = tag_of(s, word), e = tag ? ld_relaxed(tag) : 0;
            uint64_t t = take_time(s, s->cpu, word, ld_relaxed(MYCLOCK(s)));
            if (skew_wait_at(s, t, 0, 0) < 0)
                return -2;
            if (tag && ld_relaxed(tag) != e) {
                spins++;                /* taken and released while we waited: look again */
                continue;
            }
            expected = 0;
            if (__atomic_compare_exchange_n(holder, &expected, owner, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                break;
            spins++;
            continue;
        }
        spins++;
        if (futex_sleep(holder, (uint32_t)h) < 0)
            return -2;
        if (deadline && now_seconds() > deadline) {
            set_state(s, CPU_RUNNABLE);
            return -1;
        }
    }
    set_state(s, CPU_RUNNABLE);
    s->horizon = 0;                         /* recompute before passing the next point */
    return spins;
}

/* SCHED_LAX: this CPU just took the lock at word. A CPU blocked for it stops counting for the
 * skew bound (lax_clock: its lock is held), so whoever sleeps until it moves on looks again. */
static void
lax_taken(struct simcpu *s, uint64_t word)
{
    for (uint32_t i = 0; i < s->ncpus; i++) {
        if (i == s->cpu || ld_relaxed(CW(s, i, c_wants)) != word ||
            __atomic_load_n(CW(s, i, c_state), __ATOMIC_ACQUIRE) != CPU_BLOCKED)
            continue;
        if (__atomic_load_n(CW(s, i, c_wake_at), __ATOMIC_ACQUIRE) != UINT64_MAX)
            wake_class(CW(s, i, c_wake_at), CW(s, i, c_progress));
        if (__atomic_load_n(CW(s, i, c_wake_epoch), __ATOMIC_ACQUIRE) != UINT64_MAX)
            wake_class(CW(s, i, c_wake_epoch), CW(s, i, c_epoch_progress));
    }
}

static long long
sim_lock(struct simcpu *s, uint64_t word, uint64_t counters, uint64_t owner, double timeout,
         int kind)
{
    uint64_t *holder = (uint64_t *)(s->base + word);
    if (sim_point(s, PT_LOCK, word) < 0)
        return -2;
    uint64_t before = s->timed ? ld_relaxed(MYCLOCK(s)) : 0;
    long long spins = 0;
    uint64_t expected = 0;
    if (s->sched == SCHED_TOKEN && ld_relaxed(HW(s, h_run_active))) {
        while (!__atomic_compare_exchange_n(holder, &expected, owner, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED)) {
            expected = 0;
            spins++;
            st_relaxed(CW(s, s->cpu, c_wants), word);
            set_state(s, CPU_BLOCKED);
            if (token_block(s) < 0)
                return -2;              /* still blocked: the deadlock report names it */
            set_state(s, CPU_RUNNABLE);
        }
    } else if (s->sched == SCHED_LAX && ld_relaxed(s->run_active)) {
        /* A private lock (its line has not moved between CPUs lately and no other CPU is
         * trying to take it, such as this CPU's own magazine lock) is simply taken; any other
         * in simulated-time order. */
        uint64_t stat = s->timed ? lockstat(s, word, kind) : 0;
        if (!(line_private(s, word) && stat &&
              __atomic_load_n(LS(s, stat, s_waiting), __ATOMIC_SEQ_CST) == 0 &&
              __atomic_compare_exchange_n(holder, &expected, owner, 0, __ATOMIC_ACQUIRE,
                                          __ATOMIC_RELAXED))) {
            spins = lax_acquire(s, word, owner, timeout, stat);
            if (spins < 0)
                return spins;
        }
        if (!stat || __atomic_load_n(LS(s, stat, s_waiting), __ATOMIC_SEQ_CST))
            lax_taken(s, word);         /* others are trying to take it */
    } else if (__atomic_load_n(holder, __ATOMIC_RELAXED) != 0 ||
               !__atomic_compare_exchange_n(holder, &expected, owner, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED)) {
        spins = sim_spin(holder, owner, timeout);
        if (spins < 0)
            return spins;
        spins = spins ? spins : 1;
    }
    uint64_t *c = (uint64_t *)(s->base + counters);
    st_relaxed(c, ld_relaxed(c) + 1);                         /* holder-only updates */
    if (spins) {
        st_relaxed(c + 1, ld_relaxed(c + 1) + 1);
        st_relaxed(c + 2, ld_relaxed(c + 2) + (uint64_t)spins);
    }
    sim_acquired(s, word, before, kind);
    return spins;
}

/* Release a lock this CPU holds (the caller checked), after its scheduling point. -1 with an
 * exception set. */
static int
sim_unlock(struct simcpu *s, uint64_t word, int kind)
{
    if (sim_point(s, PT_UNLOCK, word) < 0)
        return -1;
    /* The release's time goes on the lock's line before the word is free: the next holder,
     * whoever it is, then pays the transfer from this release. */
    uint64_t stat = sim_released(s, word, kind);
    __atomic_store_n((uint64_t *)(s->base + word), 0, __ATOMIC_SEQ_CST);
    /* Wake the CPUs sleeping on the lock (lax_acquire); with its statistics, only when some
     * CPU is taking it. */
    if (s->sched == SCHED_LAX &&
        (!stat || __atomic_load_n(LS(s, stat, s_waiting), __ATOMIC_SEQ_CST)))
        futex_wake_all((uint64_t *)(s->base + word));
    return 0;
}

#endif /* SMPSIM_SCHED_H */
