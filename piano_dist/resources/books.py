"""What one ResourceCoordinator holds: its locks (for re-entry, release and shutdown),
how many of its ``max_concurrent_locks`` are taken, and its metrics. Local to the
process: who holds what cluster-wide is in Redis (status.py)."""
from __future__ import annotations

import dataclasses
import threading

from ..errors import LockLimitError
from .types import AccessMode, ResourceLock, ResourceMetrics

_RANK = {AccessMode.READ: 0, AccessMode.WRITE: 1, AccessMode.EXCLUSIVE: 2}


@dataclasses.dataclass
class Held:
    lock: ResourceLock
    base: str  # the resource's key base


class LockBooks:
    def __init__(self, max_locks: int):
        self.max_locks = max_locks
        self._held: dict[str, Held] = {}
        self._slots_used = 0
        self._metrics = ResourceMetrics()
        self._guard = threading.Lock()

    # --- slots (max_concurrent_locks) ---------------------------------------------------
    def take_slots(self, n: int, count_request: bool = False) -> None:
        with self._guard:
            if count_request:
                self._metrics.total_requests += 1
            if self._slots_used + n > self.max_locks:
                raise LockLimitError(
                    f"this coordinator holds {self._slots_used} of max_concurrent_locks="
                    f"{self.max_locks} locks; release some or raise the limit")
            self._slots_used += n

    def give_slots(self, n: int) -> None:
        with self._guard:
            self._slots_used -= n

    # --- held locks ------------------------------------------------------------------
    def record(self, lock: ResourceLock, base: str, waited: float) -> None:
        """A lock granted after ``waited`` seconds."""
        with self._guard:
            self._held[lock.lock_id] = Held(lock, base)
            m = self._metrics
            m.successful_acquisitions += 1
            m._total_wait += waited
            m.average_wait_time = m._total_wait / m.successful_acquisitions
            if len(self._held) > m.peak_concurrent_locks:
                m.peak_concurrent_locks = len(self._held)

    def reenter(self, resource_id: str, mode: AccessMode, holder_id: str) -> str | None:
        """The id of a lock held here for the same holder on the resource whose mode
        covers ``mode``, entered once more; None if there is none."""
        with self._guard:
            for lock_id, held in self._held.items():
                lock = held.lock
                if lock.resource_id == resource_id and lock.holder_id == holder_id \
                        and _RANK[lock.access_mode] >= _RANK[mode]:
                    lock.lock_count += 1
                    self._metrics.total_requests += 1
                    self._metrics.successful_acquisitions += 1
                    return lock_id
        return None

    def leave(self, lock_id: str) -> tuple[Held | None, bool]:
        """(the lock held here, or None; whether leaving only unwound a re-entry)."""
        with self._guard:
            held = self._held.get(lock_id)
            if held is not None and held.lock.lock_count > 1:
                held.lock.lock_count -= 1
                return held, True
        return held, False

    def unwind_all(self, lock_id: str) -> None:
        """Count a re-entered lock once (shutdown releases it whole)."""
        with self._guard:
            held = self._held.get(lock_id)
            if held is not None:
                held.lock.lock_count = 1

    def drop(self, lock_id: str) -> None:
        with self._guard:
            if self._held.pop(lock_id, None) is not None:
                self._slots_used -= 1

    def lock_ids(self) -> list[str]:
        with self._guard:
            return list(self._held)

    def locks(self) -> dict[str, ResourceLock]:
        """lock id -> a copy of each lock held here."""
        with self._guard:
            return {lock_id: dataclasses.replace(h.lock) for lock_id, h in self._held.items()}

    # --- metrics ------------------------------------------------------------------------
    def count(self, *fields: str) -> None:
        with self._guard:
            for name in fields:
                setattr(self._metrics, name, getattr(self._metrics, name) + 1)

    def metrics(self) -> ResourceMetrics:
        with self._guard:
            return dataclasses.replace(self._metrics)
