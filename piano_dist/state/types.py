"""Enums and records of the state API (shapes kept for the original API: docs/compat.md)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Optional


class StateChangeType(Enum):
    CREATE = "create"   # set a path that does not exist yet; rejected if it does
    UPDATE = "update"   # replace the value at a path (intermediate dicts are created)
    DELETE = "delete"   # remove a path; rejected if it does not exist
    MERGE = "merge"     # deep-merge a dict into the dict at a path
    RESET = "reset"     # back to the agent's baseline value (or to new_value if given)


class SyncPolicy(Enum):
    IMMEDIATE = "immediate"
    BATCHED = "batched"
    PERIODIC = "periodic"
    ON_DEMAND = "on_demand"
    CONFLICT_RESOLUTION = "conflict_resolution"  # like ON_DEMAND: apply_changes() resolves


class ChangeStatus(Enum):
    PENDING = "pending"
    APPLIED = "applied"
    SUPERSEDED = "superseded"   # another change to the same path won the conflict
    REJECTED = "rejected"       # stale expected_version, stale fence, or invalid for the state


STRATEGIES = ("latest_wins", "priority", "merge", "custom")


@dataclass
class ConflictResolution:
    field_path: str
    resolution_strategy: str  # 'latest_wins' | 'priority' | 'merge' | 'custom'
    priority_order: list[str] = field(default_factory=list)
    custom_resolver: Optional[Callable[[list["StateChange"]], Any]] = None


@dataclass
class StateChange:
    change_id: str
    module_id: str
    change_type: StateChangeType
    path: str
    old_value: Any = None
    new_value: Any = None
    timestamp: float = field(default_factory=time.time)
    priority: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    applied: bool = False
    # Beyond the seed: where the change sits in the agent's history.
    version: Optional[int] = None          # state version this change produced
    expected_version: Optional[int] = None
    log_id: Optional[str] = None           # change-log (stream) entry id
    transaction_id: Optional[str] = None


@dataclass
class ChangeOutcome:
    """What became of a proposed change; every change ends applied, superseded or rejected."""
    change_id: str
    status: ChangeStatus
    reason: str = ""
    version: Optional[int] = None
    path: Optional[str] = None
    module_id: Optional[str] = None

    @property
    def done(self) -> bool:
        return self.status is not ChangeStatus.PENDING


@dataclass
class StateSnapshot:
    snapshot_id: str
    timestamp: float
    state_data: dict[str, Any]
    module_versions: dict[str, int]
    change_sequence: int  # the state version the snapshot captured


@dataclass
class SyncMetrics:
    total_changes: int = 0
    conflicts_resolved: int = 0
    sync_operations: int = 0
    rollbacks_performed: int = 0
    average_sync_time: float = 0.0
    max_conflict_resolution_time: float = 0.0
    state_size_bytes: int = 0
    snapshot_count: int = 0
