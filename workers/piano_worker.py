"""PianoWorker: an RQ worker whose work loop runs up to N tasks concurrently.

It registers, heartbeats and dies like any RQ worker (so ``rq info`` and rq-dashboard
list it), but claims and finishes tasks through piano-dist's scripts (leases,
dependency release, strict priority) and runs them in threads.

Start it with ``piano-dist worker --concurrency 16`` or
``rq worker -w piano_dist.workers.PianoWorker piano.critical piano.high …``
(concurrency from ``PIANO_CONCURRENCY`` then, default 16).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import uuid
from typing import Any

import redis
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker, WorkerStatus

from ..config import Timing
from ..connection import adopt_retry_policy, describe, get_connection
from ..redis_url import redact
from ..core.engine import SlotEngine
from ..core.allowlist import AllowList
from ..core.loader import ModuleLoader
from ..core.registry import ModuleRegistry
from ..keys import Keys
from .task_log import TaskLog, use_json_lines

log = logging.getLogger("piano_dist.worker")

DEFAULT_CONCURRENCY = 16


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "this process's user"


def default_worker_name(kind: str = "worker") -> str:
    return f"{socket.gethostname()}.{os.getpid()}.{kind}-{uuid.uuid4().hex[:6]}"


def _server_of(kw: dict) -> tuple:
    return (kw.get("path"),) if kw.get("path") else (kw.get("host", "localhost"), int(kw.get("port", 6379)),
                                                      int(kw.get("db", 0) or 0))


def warn_if_not_configured_redis(connection: Any) -> None:
    """`rq worker -w …` connects where rq's --url / RQ_REDIS_URL say (else localhost:6379),
    not where PIANO_REDIS_URL says: say so when the two differ, or the worker serves
    an empty Redis while the tasks wait elsewhere."""
    from ..config import configured_redis_url

    url = configured_redis_url()
    kw = getattr(getattr(connection, "connection_pool", None), "connection_kwargs", None)
    if not url or kw is None:
        return
    try:
        wanted = redis.ConnectionPool.from_url(url).connection_kwargs
    except ValueError:
        return
    if _server_of(wanted) != _server_of(kw):
        log.warning("this worker uses the Redis it was given (%s), not the configured %s: with rq worker, "
                    "pass --url \"$(piano-dist redis url)\"", describe(connection), redact(url))


def set_switch_interval() -> float:
    """``PIANO_SWITCH_INTERVAL`` (seconds) sets how often a thread holding the GIL must let
    a waiting one run. Python's 5 ms is kept by default: measured on the 1,000-agent demo
    (2 × 512 slots), 1 ms cost 4.7 ms of CPU per task against 3.1 ms at 5 ms, because
    every thread waiting for the GIL wakes once per interval. The CPU lanes
    (``PIANO_CPU_LANES``) are what keep hand-offs short: few threads ever wait for it."""
    raw = os.environ.get("PIANO_SWITCH_INTERVAL")
    if not raw:
        return sys.getswitchinterval()
    try:
        interval = float(raw)
        if not 0 < interval <= 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"PIANO_SWITCH_INTERVAL must be seconds in (0, 1], not {raw!r}") from None
    sys.setswitchinterval(interval)
    return interval


class PianoWorker(BaseWorker):
    def __init__(self, queues: Any = None, *args: Any, concurrency: int | None = None,
                 prefix: str | None = None, grace_period: float | None = None,
                 local_modules: dict | None = None, timing: Timing | None = None,
                 isolation: str | None = None, allowed_modules: Any = None, cpu_lanes: int | None = None,
                 **kwargs: Any):
        self.keys = Keys(prefix)
        kwargs.setdefault("serializer", JSONSerializer)
        if kwargs.get("connection") is None:
            kwargs["connection"] = get_connection()
        else:
            warn_if_not_configured_redis(kwargs["connection"])
            adopt_retry_policy(kwargs["connection"])  # `rq worker -w`: RQ made the client
        if not kwargs.get("name"):  # `piano-dist worker` passes name=None when --name is not given
            kwargs["name"] = default_worker_name()
        super().__init__(queues or self.keys.queue_names, *args, **kwargs)
        self.concurrency = int(concurrency or os.environ.get("PIANO_CONCURRENCY") or DEFAULT_CONCURRENCY)
        self.grace_period = float(grace_period if grace_period is not None
                                  else os.environ.get("PIANO_GRACE_PERIOD", "30"))
        self.timing = timing or Timing()
        # Import paths this worker may import module classes from (PIANO_ALLOWED_MODULES,
        # plus --allow): a registration is data anyone with Redis access can write.
        self.allowed_modules = (allowed_modules if isinstance(allowed_modules, AllowList)
                                else AllowList.from_env(allowed_modules or ()))
        self.loader = ModuleLoader(ModuleRegistry(self.connection, self.keys), local=local_modules,
                                   allowed=self.allowed_modules)
        self.engine = SlotEngine(self.connection, self.name, self.queue_names(), self.concurrency,
                                 self.loader, keys=self.keys, timing=self.timing,
                                 on_finished=self._count_outcome,
                                 isolation=isolation or os.environ.get("PIANO_ISOLATION", "thread"),
                                 rq_worker_key=self.key, cpu_lanes=cpu_lanes)
        self._signals_seen = 0

    # --- RQ's lifecycle, kept --------------------------------------------------------
    def serialize(self) -> dict:
        data = super().serialize()
        data["piano_slots"] = self.concurrency
        return data

    def register_birth(self) -> None:
        super().register_birth()
        # RQ lists the queues in rq:queues; ours enter it only when a task is queued, so
        # add the ones this worker serves now and `rq info` shows them from the start.
        self.connection.sadd(self.keys.rq_queues_set(), *[self.keys.rq_queue(q) for q in self.queue_names()])

    def _count_outcome(self, module: str, status: str, elapsed: float) -> None:
        if status == "completed":
            self.successful_job_count += 1
        else:
            self.failed_job_count += 1
        # The same counts in the worker's RQ hash (what `rq info` shows) are written by the
        # finish script itself, in the round trip that records the outcome.
        self.total_working_time += elapsed

    # --- RQ's command channel, stopped without a race -----------------------------------
    def subscribe(self) -> None:
        """As RQ's, but the listener thread looks at its stop flag every second."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(sleep_time=1, daemon=True,
                                                       exception_handler=self._pubsub_exception_handler)

    def unsubscribe(self) -> None:
        """Stop the command listener: flag first, then UNSUBSCRIBE to wake its read.

        RQ sends UNSUBSCRIBE first and stops the thread after. When the listener thread
        reads the reply and loops before the main thread clears its flag (likely on one
        CPU), it waits for a subscription (RQ's 60 s) that never comes, and redis-py 8's
        ``PubSubWorkerThread.stop()`` joins it without a timeout: SIGTERM then took up to
        a minute on an idle worker.
        """
        thread = self.pubsub_thread
        if thread is None:
            return
        self.pubsub_thread = None
        thread.stop(timeout=0)
        try:
            self.pubsub.unsubscribe()
        except redis.RedisError:
            pass  # Redis gone: the thread's next read fails and the flag ends it
        thread.join(timeout=2)
        if not thread.is_alive():
            self.pubsub.close()

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._signals_seen += 1
        if self._signals_seen == 1:
            log.info("worker %s: %s received, finishing running tasks (grace %ss); again to stop now",
                     self.name, signal.Signals(signum).name, self.grace_period)
            self.engine.request_stop()
        else:
            log.warning("worker %s: stopping now, giving running tasks back to their queues", self.name)
            self.grace_period = 0
            self.engine.request_stop(now=True)

    def work(self, burst: bool = False, logging_level: str | None = None, date_format: str | None = None,
             log_format: str | None = None, max_jobs: int | None = None, max_idle_time: int | None = None,
             with_scheduler: bool = False, log_json: bool | None = None, **_ignored: Any) -> bool:
        from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT

        from rq.logutils import setup_loghandlers

        level = logging_level or "INFO"
        level = level.upper() if isinstance(level, str) else level
        if log_json is None:  # `rq worker -w …` cannot pass it: PIANO_LOG_FORMAT=json then
            log_json = os.environ.get("PIANO_LOG_FORMAT", "").lower() == "json"
        if log_json:
            use_json_lines(level)
        self.bootstrap(level, date_format or DEFAULT_LOGGING_DATE_FORMAT, log_format or DEFAULT_LOGGING_FORMAT)
        # piano-dist's own records (task lines, signals, discarded results, lost leases) at the same level.
        setup_loghandlers(level, date_format or DEFAULT_LOGGING_DATE_FORMAT,
                          log_format or DEFAULT_LOGGING_FORMAT, name="piano_dist")
        self.engine.outcome_hooks.append(TaskLog(self.name))
        self._install_signal_handlers()
        set_switch_interval()
        self.engine.tick_hooks.append(self._heartbeat_tick)
        self.set_state(WorkerStatus.IDLE)
        log.info("worker %s: %d slots on %s", self.name, self.concurrency, ", ".join(self.queue_names()))
        self.announce_allowed_modules()
        try:
            self.engine.run(burst=burst)
        finally:
            self.engine.stop(grace=self.grace_period)
            self.teardown()
        return bool(self.successful_job_count or self.failed_job_count)

    def announce_allowed_modules(self) -> None:
        if self.allowed_modules.allows_all:
            log.warning("SECURITY WARNING: worker %s imports module classes from ANY import path (allowed modules: *): "
                        "anyone who can write to this Redis can run code on this worker as %s",
                        self.name, _user())
        else:
            log.info("worker %s imports module classes only from: %s", self.name, self.allowed_modules.describe())

    def _heartbeat_tick(self) -> None:
        busy = bool(self.engine.active)
        state = WorkerStatus.BUSY if busy else WorkerStatus.IDLE
        if state != self.get_state():
            self.set_state(state)
        self.heartbeat()
