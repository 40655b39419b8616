"""CPUs as processes: Machine.run forks one process per simulated CPU and supervises them.

Start: each CPU process is forked (fork is the start method: it is ten times faster than spawn,
and multiprocessing-logging needs it), asks the kernel to kill it when its parent dies
(prctl PR_SET_PDEATHSIG), builds its own Kernel on the inherited segment, reports ready and waits
at the start gate, a pipe whose write end the parent closes once every CPU is ready: all CPUs
enter the program together, and fork time stays out of what they measure.

Supervision: the parent waits on every CPU's result pipe and process sentinel at once. The first
failure (an exception in the program, a process that exits without a result, or the timeout)
stops the run: the stop flag is set and every other CPU gets STOP_SIGNAL. A CPU outside
allocator code exits at once; one inside finishes its operation first (Kernel.on_stop_signal).
After GRACE seconds the rest are killed. The caller gets CPUError naming the CPU, whether it
was inside allocator code and the locks it held (the lock words hold their holder's id); a
death seen at the same moment as another CPU's exception is the one reported (that exception
may only be a wait for the dead CPU's lock giving up). Other CPUs that the stop left inside
allocator code are added to the error (CPUError.others), so that everything m.check() will
report is explained.

Locks of the dead: each CPU's control line holds the pid of the process running as it. Once a
CPU process is known dead (at once when the supervisor sees it die; for every CPU at the end of
the run that left a lock or an unfinished operation) the pid is marked PID_DEAD, and a CPU
waiting for a lock it holds gives up with LockTimeout within DEAD_HOLDER_POLL seconds instead
of spinning forever (smpsim/engine/memory.py). CPUs that ended cleanly have the field cleared.

Ctrl-C: CPU processes ignore SIGINT; the parent's KeyboardInterrupt stops every CPU as any
failure does, with SIGINT held back while they are being stopped, and then goes on to the
caller. No CPU process outlives Machine.run, whatever happens in it.

Results and rusage (CPU time, voluntary and involuntary context switches) come back through the
result pipes; Machine.last_run keeps the timing and rusage of the last run.
"""

import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback

from . import _atomics
from .errors import BadArgument, CPUError
from .layout import CPU_CTL, HEADER, SPINLOCK
from .kernel import OPS
from .memory import PID_DEAD
from . import sched
from .trace import HEADER_LINE as TRACE_HEADER

__all__ = ["run", "all_stopped", "STOP_SIGNAL", "GRACE"]

STOP_SIGNAL = signal.SIGUSR1
GRACE = 2.0             # seconds a stopped CPU gets to leave allocator code
START_TIMEOUT = 60.0    # seconds for every CPU to get ready


def _resolve(program):
    if isinstance(program, str):
        mod, sep, name = program.partition(":")
        if not sep or not mod or not name:
            raise BadArgument(f"Machine.run: 'program' string must be 'module:function', "
                              f"got {program!r}")
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError) as e:
            raise BadArgument(f"Machine.run: cannot find program {program!r}: {e}") from None
    if not callable(program):
        raise BadArgument(f"Machine.run: 'program' must be callable or 'module:function', "
                          f"got {program!r}")
    return program


def _cpu_ids(cpus, n):
    if cpus is None:
        return list(range(n))
    try:
        ids = list(cpus)
    except TypeError:
        raise BadArgument(f"Machine.run: 'cpus' must be a list of CPU ids, got {cpus!r}") from None
    if not ids or len(set(ids)) != len(ids) or \
            any(type(i) is not int or not 0 <= i < n for i in ids):
        raise BadArgument(f"Machine.run: 'cpus' must be distinct CPU ids from 0 to {n - 1}, "
                          f"got {cpus!r}")
    return ids


def _usage():
    import resource
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"user": ru.ru_utime, "system": ru.ru_stime, "voluntary": ru.ru_nvcsw,
            "involuntary": ru.ru_nivcsw}


def _tag_log_records(cpu):
    """Log records made in this CPU process carry record.cpu (the parent's carry "-")."""
    old = logging.getLogRecordFactory()

    def factory(*a, **kw):
        record = old(*a, **kw)
        record.cpu = cpu
        return record
    logging.setLogRecordFactory(factory)


def _cpu_main(machine, cpu, program, args, conn, gate_r, gate_w, pin, parent):
    """The body of a CPU process."""
    _atomics.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:              # the parent died before prctl took effect
        os._exit(1)
    os.close(gate_w)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the supervisor's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a fault, whatever the parent does with it
    k = machine._new_kernel(cpu)
    k._in_run = True
    signal.signal(STOP_SIGNAL, k._on_stop_signal)
    if pin:
        os.sched_setaffinity(0, {cpu % os.cpu_count()})
    _tag_log_records(cpu)
    k._sa.poke(k._sa.ctl + CPU_CTL.pid, os.getpid())
    conn.send(("ready",))
    os.read(gate_r, 1)                      # returns at EOF: the gate is open
    arena = k._sa.arena
    if machine.trace:                       # a line per scheduling point (smpsim/engine/trace.py)
        from .trace import Tracer
        arena.set_tracer(Tracer(k, machine.trace))
    try:
        arena.sched_begin()                 # the program's start: a scheduling point
        result = program(k, *args)
        arena.sched_end()                   # ... and its end
        msg = ("ok", result)
    except BaseException as e:              # noqa: BLE001 - everything goes back to the caller
        msg = ("error", traceback.format_exc(), f"{type(e).__name__}: {e}")
    try:
        conn.send(msg + (_usage(),))
    except Exception as e:                  # noqa: BLE001 - e.g. a result that cannot pickle
        conn.send(("error", traceback.format_exc(),
                   f"its result cannot be sent back: {type(e).__name__}: {e}", _usage()))
    conn.close()


def held_locks(k, cpu):
    """Names of the locks whose word says CPU cpu holds them."""
    return [name for name, lock in k.all_locks() if k.peek(lock + SPINLOCK.holder) == cpu + 1]


def _inside(k, cpu):
    """The allocator operation CPU cpu was in (its control line's in_kernel), or None."""
    op = k.peek(k.regions.cpu(cpu) + CPU_CTL.in_kernel)
    return OPS[op] if 0 < op < len(OPS) else (f"operation {op}" if op else None)


def all_stopped(machine):
    return not getattr(machine, "_procs", None) or \
        all(not p.is_alive() for p in machine._procs.values())


def run(machine, program, args, *, cpus, timeout, monitor, interval, pin):
    ids = _cpu_ids(cpus, machine.cpus)
    program = _resolve(program)
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0) or \
            isinstance(timeout, bool):
        raise BadArgument(f"Machine.run: 'timeout' must be a positive number of seconds, "
                          f"got {timeout!r}")
    if monitor is not None and not callable(monitor):
        raise BadArgument(f"Machine.run: 'monitor' must be a callable or None, got {monitor!r}")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or \
            not 0 < interval <= 3600:
        raise BadArgument(f"Machine.run: 'interval' must be a number of seconds above 0 and "
                          f"at most 3600, got {interval!r}")
    if not isinstance(pin, bool):
        raise BadArgument(f"Machine.run: 'pin' must be True or False, got {pin!r}")
    k = machine._observer()
    hdr = machine.regions.header
    k.poke(hdr + HEADER.run_cpus, len(ids))
    k.poke(hdr + HEADER.barrier_count, 0)
    k.poke(hdr + HEADER.stop, 0)
    ctx = multiprocessing.get_context("fork")
    gate_r, gate_w = os.pipe()
    procs, conns = {}, {}
    machine._procs = procs
    results, usage = {}, {}
    failure = None
    t0 = time.perf_counter()
    try:
        for cpu in ids:
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_cpu_main, name=f"smpsim-cpu{cpu}", daemon=True,
                            args=(machine, cpu, program, args, w, gate_r, gate_w, pin,
                                  os.getpid()))
            p.start()
            w.close()
            procs[cpu], conns[cpu] = p, r
        os.close(gate_r)
        gate_r = None
        failure = _wait_ready(procs, conns, machine)
        if failure is None:
            if machine.trace and not (os.path.exists(machine.trace) and
                                      os.path.getsize(machine.trace)):
                with open(machine.trace, "a") as f:
                    f.write(TRACE_HEADER)
            sched.setup_run(machine, k, ids)  # clocks, states, the first decision
            os.close(gate_w)                 # open the gate: every CPU starts now
            gate_w = None
            t0 = time.perf_counter()
            failure = _supervise(machine, procs, conns, results, usage, t0, timeout, monitor,
                                 interval)
    except BaseException:
        _stop(machine, procs)
        raise
    finally:
        # The gate stays shut until the CPUs are stopped: a failure before the start (a CPU
        # that died getting ready) must not let the others begin the program.
        if failure is not None:
            _stop(machine, procs)
            _name_others(machine, failure, procs, conns)
        else:
            # Every CPU sent its result; give each a moment to exit, then make sure.
            deadline = time.monotonic() + GRACE
            for p in procs.values():
                p.join(max(0.0, deadline - time.monotonic()))
            _stop(machine, procs)
        for fd in (gate_r, gate_w):
            if fd is not None:
                os.close(fd)
        for c in conns.values():
            c.close()
        k.poke(hdr + HEADER.stop, 0)         # every CPU process is gone: no stop pending
        machine.last_schedule = sched.finish_run(machine, k)
        if failure is None:
            failure = _replay_finished(machine, k)
        _mark_ended(machine, procs)
        machine.last_run = {
            "elapsed": time.perf_counter() - t0,
            "cpus": [dict(cpu=c, pid=procs[c].pid, **usage[c]) for c in ids if c in usage]}
        machine._procs = None
    if failure is not None:
        raise failure
    return [results[c] for c in ids]


def _mark_ended(machine, procs):
    """Every CPU process of the run is gone: a CPU that left locks or an unfinished operation
    keeps its pid marked dead in its control line (waiters for its locks then fail at once,
    Memory._lock_slow); the others' pids are cleared, so the caller's Kernels may use those
    CPU ids again."""
    k = machine._observer()
    for cpu in procs:
        field = k.regions.cpu(cpu) + CPU_CTL.pid
        if _inside(k, cpu) or held_locks(k, cpu):
            k.poke(field, k.peek(field) | PID_DEAD)
        else:
            k.poke(field, 0)


def _name_others(machine, failure, procs, conns):
    """After a stop: add to the CPUError every other CPU of the run that did not leave
    allocator code (it waited for what the failed CPU held and was ended after GRACE, or it
    raised there), with what it left."""
    if not isinstance(failure, CPUError):
        return
    k = machine._observer()
    for cpu in sorted(procs):
        if cpu == failure.cpu:
            continue
        op = _inside(k, cpu)
        if not op:
            continue
        detail = None
        try:
            if conns[cpu].poll():
                msg = conns[cpu].recv()
                if msg[0] == "error":
                    detail = f"during {op} it raised {msg[2]}"
        except (EOFError, OSError):
            pass
        if detail is None:
            code = procs[cpu].exitcode
            how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"ended with status {code}")
            detail = f"during {op} it was {how} after the {GRACE:g} s grace period"
        failure.add_other(cpu, detail, inside=True, locks=held_locks(k, cpu))


def _wait_ready(procs, conns, machine):
    """Wait until every CPU has reported ready; a CPUError if one died first."""
    waiting = set(procs)
    deadline = time.monotonic() + START_TIMEOUT
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            return CPUError(min(waiting), "timeout", f"not ready within {START_TIMEOUT:g} s")
        by_obj = {conns[c]: c for c in waiting}
        by_obj.update({procs[c].sentinel: c for c in waiting})
        for obj in multiprocessing.connection.wait(list(by_obj), timeout=left):
            c = by_obj[obj]
            if c not in waiting:
                continue
            if conns[c].poll():
                try:
                    conns[c].recv()
                    waiting.discard(c)
                    continue
                except EOFError:
                    pass
            return _died(machine, c, procs[c])
    return None


def _died(machine, cpu, proc):
    proc.join(1.0)
    code = proc.exitcode
    how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
           else f"exited with status {code} without a result")
    k = machine._observer()
    pid_field = k.regions.cpu(cpu) + CPU_CTL.pid
    k.poke(pid_field, k.peek(pid_field) | PID_DEAD)     # CPUs waiting for its locks give up now
    op = _inside(k, cpu)
    detail = how + (f" during {op}" if op else "")
    return CPUError(cpu, "died", detail, inside=bool(op), locks=held_locks(k, cpu))


def _supervise(machine, procs, conns, results, usage, t0, timeout, monitor, interval):
    """Collect every CPU's result; the first failure as a CPUError, or None."""
    k = machine._observer()
    pending = set(procs)
    deadline = t0 + timeout if timeout else None
    next_tick = t0 + interval
    while pending:
        now = time.perf_counter()
        wake = next_tick if monitor else now + 1.0
        if deadline is not None:
            wake = min(wake, deadline)
        by_obj = {conns[c]: c for c in pending}
        by_obj.update({procs[c].sentinel: c for c in pending})
        ready = multiprocessing.connection.wait(list(by_obj), timeout=max(0.0, wake - now))
        failures = []
        for c in sorted({by_obj[o] for o in ready}):
            msg = None
            if conns[c].poll():
                try:
                    msg = conns[c].recv()
                except (EOFError, OSError):
                    msg = None
            if msg is None:
                if procs[c].is_alive() and not procs[c].sentinel in ready:
                    continue
                failures.append(_died(machine, c, procs[c]))
                continue
            pending.discard(c)
            usage[c] = msg[-1]
            if msg[0] == "ok":
                results[c] = msg[1]
            else:
                op = _inside(k, c)
                failures.append(_schedule_failure(machine, k, c) or
                                CPUError(c, "exception", msg[2], traceback=msg[1],
                                         inside=bool(op), locks=held_locks(k, c)))
        if failures:
            # A death comes first: a CPU that raised at the same moment may only have been
            # waiting for a lock the dead one held.
            return min(failures, key=lambda e: e.reason != "died")
        now = time.perf_counter()
        if monitor and now >= next_tick:
            monitor(machine)
            next_tick = now + interval
        if deadline is not None and now >= deadline and pending:
            c = min(pending)
            op = _inside(k, c)
            return CPUError(c, "timeout", f"still running after {timeout:g} s",
                            inside=bool(op), locks=held_locks(k, c))
    return None


def _schedule_failure(machine, k, cpu):
    """The CPUError of a controlled run that the scheduler ended (HEADER.failure), or None."""
    h = k.regions.header
    why, step = k.peek(h + HEADER.failure), k.peek(h + HEADER.failure_step)
    if why == sched.FAIL_DEADLOCK:
        stuck = []
        for i in range(machine.cpus):
            ctl = k.regions.cpu(i)
            state = k.peek(ctl + CPU_CTL.state)
            if state == sched.CPU_BLOCKED:
                wants = k.lock_name(k.peek(ctl + CPU_CTL.wants))
                held = held_locks(k, i)
                stuck.append(f"CPU {i} holds {', '.join(held) if held else 'no lock'} and "
                             f"waits for {wants}")
            elif state == sched.CPU_BARRIER:
                stuck.append(f"CPU {i} waits at the barrier")
        first = next((i for i in range(machine.cpus) if k.peek(
            k.regions.cpu(i) + CPU_CTL.state) in (sched.CPU_BLOCKED, sched.CPU_BARRIER)), cpu)
        e = CPUError(first, "deadlock", f"no CPU can go on at step {step}: "
                     + "; ".join(stuck), inside=bool(_inside(k, first)),
                     locks=held_locks(k, first))
        e.stuck = stuck
        return e
    if why == sched.FAIL_MISMATCH:
        return CPUError(cpu, "schedule", f"the schedule replayed does not match the program: "
                        f"at step {step} it names a CPU that cannot run there (or it ends "
                        f"before the run does)", inside=bool(_inside(k, cpu)),
                        locks=held_locks(k, cpu))
    if why == sched.FAIL_LOG_FULL:
        return CPUError(cpu, "schedule", f"the controlled run made more than "
                        f"{machine.regions.log_cap} decisions, the schedule log's room "
                        f"(Machine(max_steps=...) makes more)", inside=bool(_inside(k, cpu)),
                        locks=held_locks(k, cpu))
    return None


def _replay_finished(machine, k):
    """A replay that ran to its end must have used the whole schedule."""
    if machine._strategy != sched.STRATEGY_REPLAY or machine._sched_mode != sched.SCHED_TOKEN \
            or machine._lenient:
        return None
    h = k.regions.header
    used, total = k.peek(h + HEADER.decisions), k.peek(h + HEADER.log_len)
    if used == total:
        return None
    return CPUError(0, "schedule", f"the schedule replayed does not match the program: the run "
                    f"ended after {used} of its {total} decisions")


def _pass_token(machine, procs):
    """Token mode, while stopping: the CPU holding the token has ended, so the Machine chooses
    who runs next among those left (each runs to the end of its allocator operation, where
    the stop request ends it). False when none can run (they wait for what the dead held)."""
    k = machine._observer()
    if machine._sched_mode != sched.SCHED_TOKEN or not k.peek(k.regions.header + HEADER.run_active):
        return True
    for cpu, p in procs.items():
        if p.exitcode is not None:
            k.poke(k.regions.cpu(cpu) + CPU_CTL.state, sched.CPU_DONE)
    holder = k.peek(k.regions.header + HEADER.token)
    if holder in procs and procs[holder].exitcode is None:
        return True
    return k.arena.decide() >= 0


def _stop(machine, procs):
    """Stop every CPU process: STOP_SIGNAL, then SIGKILL for those still there after GRACE.

    Ctrl-C (and SIGTERM) is held back while this runs (a second one would otherwise leave CPU processes
    behind) and delivered when it returns; whatever happens, no CPU process outlives it.
    """
    masked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        alive = [p for p in procs.values() if p.exitcode is None]
        if alive:
            k = machine._observer()
            k.poke(machine.regions.header + HEADER.stop, 1)
        for p in alive:
            try:
                os.kill(p.pid, STOP_SIGNAL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + GRACE
        if machine._sched_mode == sched.SCHED_TOKEN:
            # One CPU runs at a time: pass the token on whenever its holder ends.
            while any(p.exitcode is None for p in alive) and time.monotonic() < deadline:
                if not _pass_token(machine, procs):
                    deadline = 0.0          # none can run: no grace period will help
                    break
                multiprocessing.connection.wait([p.sentinel for p in alive
                                                 if p.exitcode is None], timeout=0.05)
        for p in alive:
            p.join(max(0.0, deadline - time.monotonic()))
    finally:
        for p in procs.values():
            if p.exitcode is None:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
        for p in procs.values():
            if p.pid is not None:
                p.join()
        signal.pthread_sigmask(signal.SIG_SETMASK, masked)
