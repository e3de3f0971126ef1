"""Enums and records of the ResourceCoordinator API (names and values kept: docs/compat.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional


class ResourceType(Enum):
    EPISODIC_MEMORY = "episodic_memory"
    SEMANTIC_MEMORY = "semantic_memory"
    TEMPORAL_MEMORY = "temporal_memory"
    CIRCULAR_BUFFER = "circular_buffer"
    AGENT_STATE = "agent_state"
    COMPUTATION = "computation"
    NETWORK = "network"
    FILE_IO = "file_io"


class AccessMode(Enum):
    READ = "read"
    WRITE = "write"
    EXCLUSIVE = "exclusive"

    @property
    def is_shared(self) -> bool:
        return self is AccessMode.READ


def parse_access_mode(value) -> AccessMode:
    if isinstance(value, AccessMode):
        return value
    if isinstance(value, str):
        for mode in AccessMode:
            if value.lower() in (mode.value, mode.name.lower()):
                return mode
    raise ValueError(
        f"access_mode must be an AccessMode (READ, WRITE, EXCLUSIVE), got {value!r}"
    )


def parse_resource_type(value) -> ResourceType:
    if isinstance(value, ResourceType):
        return value
    if isinstance(value, str):
        for kind in ResourceType:
            if value.lower() in (kind.value, kind.name.lower()):
                return kind
    raise ValueError(
        f"resource_type must be a ResourceType ({', '.join(t.name for t in ResourceType)}), got {value!r}"
    )


@dataclass
class ResourceLock:
    """A lock held through this coordinator (the original API's fields, plus lock_id and fence)."""

    resource_id: str
    resource_type: Optional[ResourceType]
    access_mode: AccessMode
    holder_id: str
    acquired_at: float
    expires_at: float
    lock_count: int = 1
    lock_id: str = ""
    fence: int = 0


@dataclass
class ResourceMetrics:
    """Counters of one coordinator (this process's requests)."""

    total_requests: int = 0
    successful_acquisitions: int = 0
    failed_acquisitions: int = 0
    timeout_count: int = 0
    contention_count: int = 0
    average_wait_time: float = 0.0
    peak_concurrent_locks: int = 0
    memory_usage: int = 0
    deadlocks_detected: int = 0
    locks_lost: int = 0
    _total_wait: float = field(default=0.0, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
