"""Why a model call failed, and when the endpoint said to come back."""
from __future__ import annotations

import email.utils
import math
import time
from typing import Mapping

# Refused for load (429) or briefly unavailable (503): the endpoint may say when to return.
PUSHBACK_STATUS = frozenset({429, 503})
# Worth another attempt after a backoff; any other status is the request's own fault.
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# A Retry-After longer than this is taken as this: one reply must not stop a cluster for days.
MAX_PAUSE_SECONDS = 3600.0


class LLMError(RuntimeError):
    """The model could not answer (HTTP error, malformed reply, gave up retrying, …)."""


class EndpointError(LLMError):
    """An endpoint answered with an error status, or could not be reached (status None)."""

    def __init__(self, message: str, *, status: int | None = None, url: str = "",
                 retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.url = url
        self.retry_after = retry_after

    @property
    def pushback(self) -> float | None:
        """Seconds every caller of the endpoint must hold off, when the endpoint said so."""
        return self.retry_after if self.status in PUSHBACK_STATUS else None


class TransientEndpointError(EndpointError):
    """An error another attempt may cure: 429, 5xx, a timeout, a refused connection."""


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from a response's ``retry-after-ms`` or ``Retry-After`` (seconds or
    an HTTP date, read against the response's own ``Date`` so clock skew does not count).
    None when absent or unreadable; capped at MAX_PAUSE_SECONDS."""
    value = _header(headers, "retry-after-ms")
    if value is not None:
        seconds = _non_negative(value)
        if seconds is not None:
            return min(seconds / 1000.0, MAX_PAUSE_SECONDS)
    value = _header(headers, "retry-after")
    if value is None:
        return None
    seconds = _non_negative(value)
    if seconds is None:
        when = _http_date(value)
        if when is None:
            return None
        reference = _http_date(_header(headers, "date") or "")
        seconds = max(0.0, when - (reference if reference is not None else (now or time.time())))
    return min(seconds, MAX_PAUSE_SECONDS)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value).strip()
    return None


def _non_negative(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _http_date(text: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed.timestamp()
