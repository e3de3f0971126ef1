"""Keeps the leases of one coordinator's held locks and queued requests alive.

While the process lives, a daemon thread renews every lease at a third of its length;
when the process dies the renewals stop and Redis frees the lock within one lease.
A lock held longer than ``max_hold`` is no longer renewed (the renewal cap), so a
stuck holder cannot keep a resource forever.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import redis

log = logging.getLogger("piano_dist.resources")

RENEW_BATCH = 500


@dataclass
class _Lease:
    base: str
    kind: str  # "lock" | "wait"
    since: float  # time.monotonic() when tracking began


class LeaseKeeper:
    def __init__(self, scripts, lease: float, max_hold: float | None,
                 on_lost: Callable[[str], None]):
        self._scripts = scripts
        self._lease_ms = int(lease * 1000)
        self._interval = lease / 3.0
        self._max_hold = max_hold
        self._on_lost = on_lost
        self._leases: dict[str, _Lease] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, item_id: str, base: str, kind: str) -> None:
        with self._guard:
            self._leases[item_id] = _Lease(base, kind, time.monotonic())
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="piano-lock-lease", daemon=True)
                self._thread.start()

    def untrack(self, item_id: str) -> None:
        with self._guard:
            self._leases.pop(item_id, None)

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.renew_all()

    def renew_all(self) -> None:
        """Renew every tracked lease, in pipelines of RENEW_BATCH: a process with
        hundreds of queued requests renews them in a few round trips, not one each."""
        with self._guard:
            leases = list(self._leases.items())
        now = time.monotonic()
        cap = self._max_hold  # a lock held past the renewal cap is let lapse
        due = [(item_id, lease) for item_id, lease in leases
               if lease.kind != "lock" or cap is None or now - lease.since <= cap]
        script = self._scripts.lock_renew
        for start in range(0, len(due), RENEW_BATCH):
            batch = due[start:start + RENEW_BATCH]
            pipe = script.registered_client.pipeline(transaction=False)
            for item_id, lease in batch:
                script(keys=[lease.base], args=[item_id, self._lease_ms, lease.kind], client=pipe)
            try:
                results = pipe.execute(raise_on_error=False)
            except redis.RedisError as exc:
                log.warning("could not renew %d leases: %s", len(batch), exc)
                continue
            for (item_id, lease), result in zip(batch, results):
                if isinstance(result, Exception):
                    log.warning("could not renew lease of %s: %s", item_id, result)
                elif int(result) == 0 and lease.kind == "lock":
                    self.untrack(item_id)
                    self._on_lost(item_id)
