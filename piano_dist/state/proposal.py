"""Turn a proposed change into what the scripts store: validated, flattened, fenced."""
from __future__ import annotations

import json
import time
from ..ids import unique_hex
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import SecurityError
from .paths import validate_module_id, validate_state_path, validate_state_value
from .tree import to_leaves
from .types import StateChangeType


def coerce_change_type(change_type: Any) -> StateChangeType:
    if isinstance(change_type, StateChangeType):
        return change_type
    try:
        return StateChangeType(str(change_type).lower())
    except ValueError:
        names = ", ".join(t.value for t in StateChangeType)
        raise ValueError(f"unknown change type {change_type!r}; use one of {names}") from None


@dataclass
class Proposal:
    change_id: str
    module_id: str
    path: str
    change_type: StateChangeType
    new_value: Any
    leaves: dict[str, str]
    priority: int | float
    metadata: dict[str, Any]
    expected_version: Optional[int]
    fence: Optional[tuple[str, int]]
    from_baseline: bool
    timestamp: float

    def record(self) -> dict[str, str]:
        """Fields of the pending-change hash (state_propose)."""
        fields = {
            "module": self.module_id, "path": self.path, "type": self.change_type.value,
            "leaves": json.dumps(self.leaves, separators=(",", ":"), ensure_ascii=False),
            "priority": repr(self.priority), "meta": json.dumps(self.metadata, separators=(",", ":")),
            "ts": repr(self.timestamp), "baseline": "1" if self.from_baseline else "0",
            "expected": "" if self.expected_version is None else str(self.expected_version),
        }
        if self.fence:
            fields["fkey"], fields["ftok"] = self.fence[0], str(self.fence[1])
        return fields

    def atomic(self, transaction_id: Optional[str] = None) -> dict[str, Any]:
        """One element of an all-or-nothing payload (state_apply atomic)."""
        return {
            "id": self.change_id, "module": self.module_id, "path": self.path, "type": self.change_type.value,
            "leaves": self.leaves, "priority": self.priority,
            "expected": self.expected_version, "meta": json.dumps(self.metadata, separators=(",", ":")),
            "tx": transaction_id or "", "baseline": self.from_baseline,
        }


def make_proposal(module_id: str, path: str, new_value: Any, change_type: Any = StateChangeType.UPDATE,
                  priority: Any = 0, metadata: Optional[dict] = None, expected_version: Optional[int] = None,
                  fence: Optional[tuple[str, int]] = None) -> Proposal:
    validate_module_id(module_id)
    validate_state_path(path)
    ctype = coerce_change_type(change_type)
    if isinstance(priority, bool) or not isinstance(priority, (int, float)) or priority != priority \
            or abs(priority) > 1e15:
        raise SecurityError(f"priority must be a finite number, got {priority!r}")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise SecurityError(f"metadata must be a dict, got {type(metadata).__name__}")
    validate_state_value(metadata, "metadata")
    if expected_version is not None and (isinstance(expected_version, bool)
                                         or not isinstance(expected_version, int) or expected_version < 0):
        raise ValueError(f"expected_version must be a non-negative int, got {expected_version!r}")
    from_baseline = False
    if ctype is StateChangeType.DELETE:
        leaves: dict[str, str] = {}
    elif ctype is StateChangeType.RESET and new_value is None:
        leaves, from_baseline = {}, True
    else:
        validate_state_value(new_value, f"value for {path!r}")
        if ctype is StateChangeType.MERGE and not isinstance(new_value, dict):
            raise ValueError(f"a MERGE change needs a dict value; got {type(new_value).__name__} for {path!r}")
        leaves = to_leaves(new_value)
    return Proposal(
        change_id=unique_hex(), module_id=module_id, path=path, change_type=ctype, new_value=new_value,
        leaves=leaves, priority=priority, metadata=metadata, expected_version=expected_version, fence=fence,
        from_baseline=from_baseline, timestamp=time.time(),
    )
