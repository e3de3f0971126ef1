"""SlotEngine: claim tasks and run up to N of them at once in threads.

Shared by PianoWorker (a worker process) and the manager's in-process slots. The
engine keeps the slots (which tasks run, CPU lanes, the slot threads) and runs tasks
in them; three parts around it talk to Redis, each through the task-script gateway:
the claimer (claimer.py: the dispatch loop, one task_claim call for all free slots),
the finisher (finisher.py: the outbox, outcomes recorded in pipelined batches) and the
task lease keeper (task_leases.py: renewals, cancellation requests, deadlines,
metrics, the stalled-task sweep).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import resource
import threading
import time
import traceback
from typing import Any, Callable

import redis

from ..config import Timing
from ..errors import InvalidArgument
from ..keys import Keys
from ..security import SecurityValidator
from .claimer import ClaimedTask, Claimer
from .context import TaskContext, reset_current_task, set_current_task
from .finisher import Finisher, rq_result_entry
from .isolation import run_in_child
from .loader import BrokenModuleError, ModuleLoader, ModuleLoadError
from .log_limit import LogLimiter
from .registry import method_problem
from .task_leases import TaskLeaseKeeper
from .task_scripts import FinishReply, RunOutcome, TaskScripts

log = logging.getLogger("piano_dist.engine")

DEFAULT_CPU_LANES = 32


def cpu_lanes_from_env() -> int:
    raw = os.environ.get("PIANO_CPU_LANES")
    if not raw:
        return DEFAULT_CPU_LANES
    try:
        lanes = int(raw)
        if lanes < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"PIANO_CPU_LANES must be a positive integer, not {raw!r}") from None
    return lanes


class SlotEngine:
    def __init__(self, connection: redis.Redis, worker_name: str, queue_names: list[str],
                 concurrency: int, loader: ModuleLoader, keys: Keys | None = None,
                 timing: Timing | None = None, on_finished: Callable[[str, str, float], None] | None = None,
                 isolation: str = "thread", rq_worker_key: str = "", cpu_lanes: int | None = None):
        if isolation not in ("thread", "process"):
            raise ValueError(f"isolation must be 'thread' or 'process', not {isolation!r}")
        self.isolation = isolation
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.connection = connection
        self.worker_name = worker_name
        self.keys = keys or Keys()
        self.queue_keys = [self.keys.rq_queue(q) for q in queue_names]
        self.concurrency = concurrency
        # CPU lanes: how many tasks may run Python at once; the others of the N slots wait
        # (on the model, mostly: see core.context.waiting). Hundreds of threads that all
        # want the GIL cost more in hand-offs than they do work (each waiter wakes every
        # switch interval), so a worker claims a task only while a lane is free.
        self.cpu_lanes = cpu_lanes if cpu_lanes is not None else cpu_lanes_from_env()
        if self.cpu_lanes < 1:
            raise ValueError(f"cpu_lanes must be at least 1, not {self.cpu_lanes}")
        self._busy = 0  # active tasks not waiting: they hold a CPU lane
        self.loader = loader
        self.timing = timing or Timing()
        self.lease_ms = int(self.timing.lease * 1000)
        self.tasks = TaskScripts(connection, self.keys, self.timing)
        self.on_finished = on_finished
        self.rq_worker_key = rq_worker_key
        self.active: dict[str, TaskContext] = {}
        # Slot threads are kept and reused (starting a thread per task costs more than a
        # no-op task). A timed-out task keeps its thread busy, so one more is started for
        # each such straggler; the surplus ends when the straggler returns.
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._runners = 0
        self._stragglers = 0
        # Re-entrant: a signal handler (request_stop) runs on the main thread, which may hold it.
        self._lock = threading.RLock()
        self._slot_freed = threading.Condition(self._lock)
        self._stop_claiming = threading.Event()
        self._stop_now = threading.Event()
        self._paused = False
        self._stopped = threading.Event()
        self._dispatcher: threading.Thread | None = None
        self.claimer = Claimer(self.tasks, connection, self.queue_keys, worker_name, self.lease_ms, loader,
                               self._stop_claiming, self._wait_for_free_slots, self._launch, self._idle,
                               self._wait_slot_freed)
        self.finisher = Finisher(self.tasks, connection, self._stopped, self._after_record)
        self.leases = TaskLeaseKeeper(self.tasks, worker_name, self.lease_ms, self.timing.stalled_check_interval,
                                      self._running, self._expired, self._tick, self._stopped)
        self.peak_threads = 0
        self.tick_hooks: list[Callable[[], None]] = []
        # "cannot load module" lines: once per module a minute, at most 10 in any 5 s.
        self._load_log = LogLimiter(per_key=60.0, burst=10, window=5.0)
        # Called with (task context, recorded outcome, seconds, result JSON or error text)
        # once each outcome is recorded (refused ones excluded): the worker's task log.
        self.outcome_hooks: list[Callable[[TaskContext, str, float, str], None]] = []
        # The manager's slots: arguments its process holds for tasks pinned to it
        # (piano_dist/in_process_args.py), put back in place of their JSON stand-ins.
        self.argument_source: Callable[[ClaimedTask], tuple[list, dict] | None] | None = None

    # --- lifecycle ----------------------------------------------------------------
    def start(self, burst: bool = False) -> None:
        """Run in background threads (the manager's in-process slots)."""
        self._start_supervisor()
        self._dispatcher = threading.Thread(target=self.dispatch_loop, args=(burst,),
                                            name=f"piano-dispatch-{self.worker_name}", daemon=True)
        self._dispatcher.start()

    def _start_supervisor(self) -> None:
        self.leases.start()
        self.finisher.start()

    def run(self, burst: bool = False) -> None:
        """Run in the calling thread until stopped (a worker process's main loop)."""
        self._start_supervisor()
        self.dispatch_loop(burst)

    def pause(self) -> None:
        """Stop claiming new tasks; running ones continue."""
        self._paused = True

    def resume(self) -> None:
        with self._slot_freed:
            self._paused = False
            self._slot_freed.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def request_stop(self, now: bool = False) -> None:
        """Stop claiming; with ``now``, also cut short a drain in progress (running tasks
        are given back to their queues)."""
        self._stop_claiming.set()
        if now:
            self._stop_now.set()
        with self._slot_freed:
            self._slot_freed.notify_all()

    def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let running tasks finish within ``grace`` seconds; give the
        rest back to their queues so another worker runs them."""
        self.request_stop()
        if self._dispatcher is not None and self._dispatcher is not threading.current_thread():
            self._dispatcher.join(timeout=5)
        self.drain(grace)
        self.finisher.stop()
        self._stopped.set()
        self.leases.join(timeout=5)
        try:
            # Totals live in the cluster stats; the live view should not list a stopped worker.
            self.connection.delete(self.keys.worker_metrics(self.worker_name))
        except redis.RedisError:
            pass

    def drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        with self._slot_freed:
            while self.active and time.monotonic() < deadline and not self._stop_now.is_set():
                self._slot_freed.wait(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            leftover = list(self.active.values())
        for ctx in leftover:
            self._release(ctx, f"worker {self.worker_name} shut down before the task finished")

    # --- claiming (claimer.py) -------------------------------------------------------
    def dispatch_loop(self, burst: bool = False) -> None:
        self.claimer.loop(burst)
        if burst:
            self.drain(grace=float("inf"))

    def _wait_for_free_slots(self) -> int:
        """Block until a slot and a CPU lane are free (or claiming stops); how many."""
        with self._slot_freed:
            while ((len(self.active) >= self.concurrency or self._busy >= self.cpu_lanes or self._paused)
                   and not self._stop_claiming.is_set()):
                self._slot_freed.wait(timeout=1.0)
            return min(self.concurrency - len(self.active), self.cpu_lanes - self._busy)

    def _idle(self) -> bool:
        with self._lock:
            return not self.active

    def _wait_slot_freed(self, timeout: float) -> None:
        with self._slot_freed:
            self._slot_freed.wait(timeout=timeout)

    # --- running ------------------------------------------------------------------
    def _launch(self, task: ClaimedTask) -> None:
        deadline = time.monotonic() + task.timeout if task.timeout else None
        ctx = TaskContext(task.task_id, task.module, task.method, task.attempt, self.worker_name,
                          deadline, task.agent_id, keep_result=task.keep_result)
        ctx.wait_listener = self._wait_changed
        with self._lock:
            self.active[task.task_id] = ctx
            self._busy += 1
            self.peak_threads = max(self.peak_threads, len(self.active))
            self._add_runners()
        self._work.put((task, ctx))

    def _add_runners(self) -> None:
        while self._runners < self.concurrency + self._stragglers:
            self._runners += 1
            threading.Thread(target=self._run_slot, name=f"piano-slot-{self._runners}", daemon=True).start()

    def _run_slot(self) -> None:
        while True:
            task, ctx = self._work.get()
            self._execute(task, ctx)
            with self._lock:
                if ctx.timed_out:
                    self._stragglers -= 1
                if self._runners > self.concurrency + self._stragglers:
                    self._runners -= 1
                    return

    def _execute(self, task: ClaimedTask, ctx: TaskContext) -> None:
        started = time.monotonic()
        try:
            self._run_task(task, ctx, started)
        except BaseException as exc:  # never leave a claimed task running with its slot taken
            log.exception("worker %s: running task %s failed unexpectedly", self.worker_name, task.task_id)
            self._finish(ctx, "failed", f"worker {self.worker_name} could not run the task: "
                                        f"{self._describe(exc)}", time.monotonic() - started)

    def _run_task(self, task: ClaimedTask, ctx: TaskContext, started: float) -> None:
        if task.problem:
            self._finish(ctx, "failed", task.problem, 0.0)
            return
        try:
            module = self.loader.get(task.module, task.registration)
        except BrokenModuleError as exc:
            self._finish(ctx, "failed", f"module {task.module} cannot run: {exc}", time.monotonic() - started)
            return
        except ModuleLoadError as exc:
            allowed, held_back = self._load_log.allow(task.module)
            if allowed:
                log.warning("worker %s cannot load module %s: %s (its tasks wait for a worker that can)%s",
                            self.worker_name, task.module, exc,
                            f"; {held_back} similar line(s) held back" if held_back else "")
            self._release(ctx, f"worker {self.worker_name} cannot load module {task.module}: {exc}", park=True)
            return
        problem = method_problem(module, task.method)
        if problem:
            self._finish(ctx, "failed", f"refused to run {task.module}.{task.method}: {problem}", 0.0)
            return
        if self.argument_source is not None:
            held = self.argument_source(task)
            if held is not None:
                task.args, task.kwargs = held
        if self.isolation == "process":
            outcome, payload, value = self._call_in_child(module, task, ctx)
            if outcome == "killed":
                self._free(ctx)  # the supervisor already recorded the timeout or cancel
                if not ctx.timed_out:
                    self._finish(ctx, "failed", "cancelled while running", time.monotonic() - started)
                return
        else:
            ctx.end_hooks, ctx.outcome_tally = [], self.finisher.tally
            try:
                outcome, payload, value = self._call_in_thread(module, task, ctx)
            finally:
                self._run_end_hooks(ctx)
        self._finish(ctx, outcome, payload, time.monotonic() - started, value)

    @staticmethod
    def _run_end_hooks(ctx: TaskContext) -> None:
        hooks, ctx.end_hooks = ctx.end_hooks or [], None
        for hook in hooks:
            try:
                hook()
            except Exception:  # bookkeeping must never change a task's outcome
                log.exception("end-of-task hook failed for %s", ctx.task_id)

    def _call_in_thread(self, module: Any, task: ClaimedTask, ctx: TaskContext) -> tuple[str, str, Any]:
        token = set_current_task(ctx)
        try:
            value = getattr(module, task.method)(*task.args, **task.kwargs)
        except BaseException as exc:  # SystemExit too: the module's failure is the task's, not the worker's
            log.debug("task %s %s.%s raised", ctx.task_id, task.module, task.method, exc_info=True,
                      extra={"task_id": ctx.task_id})
            return "failed", self._describe(exc), None
        finally:
            reset_current_task(token)
        try:
            return "completed", SecurityValidator.encode_result(value), value
        except InvalidArgument as exc:
            return "failed", f"the task's result was refused: {exc}", None

    def _call_in_child(self, module: Any, task: ClaimedTask, ctx: TaskContext) -> tuple[str, str, Any]:
        def call():
            set_current_task(ctx)
            value = getattr(module, task.method)(*task.args, **task.kwargs)
            try:
                SecurityValidator.encode_result(value)
            except InvalidArgument as exc:
                raise InvalidArgument(f"the task's result was refused: {exc}") from None
            return value

        outcome, payload = run_in_child(call, ctx.cancel_event.is_set,
                                        on_start=lambda pid: setattr(ctx, "child_pid", pid))
        value = json.loads(payload) if outcome == "completed" else None
        return outcome, payload, value

    @staticmethod
    def _describe(exc: BaseException) -> str:
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return f"{type(exc).__name__}: {exc}\n{''.join(tb[-3:])}"[:8000]

    def _finish(self, ctx: TaskContext, outcome: str, payload: str, elapsed: float, value: Any = None) -> None:
        """Hand the outcome to the finisher thread; the slot frees once it is recorded."""
        model = ctx.model_time()
        record = RunOutcome(ctx.task_id, self.worker_name, ctx.attempt, outcome, payload, int(elapsed * 1000), "",
                            self.rq_worker_key, round(model * 1000, 3) if ctx.model_spans else "",
                            len(ctx.model_spans), keep_result=ctx.keep_result)
        if record.sends_value:
            record.rq_result = rq_result_entry(self.worker_name, ctx.attempt, outcome, payload, value)
        self.finisher.put(ctx, record, elapsed)

    def _after_record(self, ctx: TaskContext, result: Any, elapsed: float, payload: str = "") -> None:
        if isinstance(result, Exception):
            log.error("recording the outcome of %s failed: %s", ctx.task_id, result)
            final = "refused"
        else:
            reply = FinishReply.decode(result)
            final = reply.status
        if final == "refused" and not isinstance(result, Exception):
            if not ctx.timed_out:
                log.info("outcome of %s discarded: the task is no longer this run's (%s)",
                         ctx.task_id, reply.detail)
            else:
                log.info("late result of timed-out task %s discarded", ctx.task_id)
        self._free(ctx)
        if self.on_finished and final != "refused":
            self.on_finished(ctx.module_name, final, elapsed)
        if final != "refused":
            for hook in self.outcome_hooks:
                try:
                    hook(ctx, final, elapsed, payload)
                except Exception:
                    log.exception("outcome hook failed for %s", ctx.task_id)

    def _free(self, ctx: TaskContext) -> None:
        with self._slot_freed:
            if self.active.get(ctx.task_id) is ctx:
                del self.active[ctx.task_id]
                if ctx.waits == 0:
                    self._busy -= 1
            self._slot_freed.notify_all()

    def _wait_changed(self, ctx: TaskContext, delta: int) -> None:
        """A task began (+1) or ended (-1) a wait outside the process: it gives its CPU
        lane up while any of its calls waits, and takes one back after."""
        with self._slot_freed:
            before = ctx.waits
            ctx.waits = max(0, before + delta)
            if self.active.get(ctx.task_id) is not ctx:
                return
            if before == 0 and ctx.waits > 0:
                self._busy -= 1
                self._slot_freed.notify_all()
            elif before > 0 and ctx.waits == 0:
                self._busy += 1

    def _release(self, ctx: TaskContext, why: str, park: bool = False) -> None:
        try:
            self.tasks.release(ctx.task_id, self.worker_name, ctx.attempt, why, park)
        except redis.RedisError as exc:
            log.warning("could not give back %s (%s); its lease will expire and it will re-run",
                        ctx.task_id, exc)
        self._free(ctx)

    # --- supervision (task_leases.py) ------------------------------------------------
    def _running(self) -> list[TaskContext]:
        with self._lock:
            return list(self.active.values())

    def _expired(self, ctx: TaskContext, now: float) -> None:
        """A task reached its deadline: it ends timed_out now and frees its slot; its
        thread runs on as a straggler, so one more slot thread is started."""
        ctx.timed_out = True
        ctx.cancel_event.set()
        with self._lock:
            self._stragglers += 1
            self._add_runners()
        timeout = ctx.deadline - ctx.started if ctx.deadline else 0
        self._finish(ctx, "timed_out", f"exceeded its timeout of {timeout:.3g}s", now - ctx.started)

    def _tick(self) -> None:
        self.publish_metrics()
        for hook in self.tick_hooks:
            hook()

    def sweep(self, force: bool = False) -> list[int]:
        return self.leases.sweep(force)

    def publish_metrics(self) -> None:
        with self._lock:
            load = len(self.active) / self.concurrency
        usage = resource.getrusage(resource.RUSAGE_SELF)
        key = self.keys.worker_metrics(self.worker_name)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping={"slots": self.concurrency, "running": len(self.active),
                                    "current_load": round(load, 3), "peak_memory_usage": usage.ru_maxrss * 1024,
                                    "peak_thread_count": self.peak_threads, "heartbeat": time.time(),
                                    "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 4)})
            pipe.expire(key, 3600)
            pipe.execute()
