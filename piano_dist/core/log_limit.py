"""Rate limits for log lines that a backlog could otherwise repeat thousands of times."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class LogLimiter:
    """Allows a line about ``key`` at most once per ``per_key`` seconds, and at most
    ``burst`` lines in any ``window`` seconds whatever the key. ``allow`` also returns
    how many lines were held back since the last one allowed (to say so)."""

    def __init__(self, per_key: float = 60.0, burst: int = 10, window: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.per_key = per_key
        self.burst = burst
        self.window = window
        self.clock = clock
        self._last: dict[str, float] = {}
        self._recent: deque[float] = deque()
        self._suppressed = 0
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, int]:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            while self._recent and now - self._recent[0] >= self.window:
                self._recent.popleft()
            if (last is not None and now - last < self.per_key) or len(self._recent) >= self.burst:
                self._suppressed += 1
                return False, 0
            self._last[key] = now
            self._recent.append(now)
            if len(self._last) > 10_000:  # forget keys long quiet, so the table stays small
                self._last = {k: t for k, t in self._last.items() if now - t < self.per_key}
            held_back, self._suppressed = self._suppressed, 0
            return True, held_back
