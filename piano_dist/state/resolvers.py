"""Conflict resolution strategies of one agent's state, and the custom resolvers this
process runs.

Strategies are stored in Redis (every process of the agent shares them) and applied by
state_apply. A custom strategy's callable lives in the processes that registered it:
before a batch, such a process asks its resolvers about the pending changes on their
paths and passes the answers to the script as decisions.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from .paths import validate_state_path
from .proposal import make_proposal
from .store import BATCH_LIMIT, StateStore
from .types import STRATEGIES, ConflictResolution, StateChange, StateChangeType

logger = logging.getLogger("piano_dist.state")


class ConflictResolvers:
    def __init__(self, store: StateStore):
        self.store = store
        self._lock = threading.Lock()
        self._custom: dict[str, Callable] = {}

    def register(self, path: str, strategy: Any) -> None:
        """Strategy for conflicting changes at ``path`` and below: 'latest_wins',
        'priority', 'merge', a callable (custom), or a ConflictResolution."""
        validate_state_path(path)
        order: list[str] = []
        resolver: Optional[Callable] = None
        if isinstance(strategy, ConflictResolution):
            order = list(strategy.priority_order or [])
            resolver = strategy.custom_resolver
            name = strategy.resolution_strategy
        elif callable(strategy):
            name, resolver = "custom", strategy
        else:
            name = strategy
        if name not in STRATEGIES:
            raise ValueError(f"unknown conflict strategy {name!r}; use one of {', '.join(STRATEGIES)}")
        if name == "custom" and resolver is None:
            raise ValueError(f"custom strategy for {path!r} needs a custom_resolver callable")
        if not all(isinstance(m, str) for m in order):
            raise ValueError("priority_order must be a list of module ids")
        self.store.set_resolver(path, name, order)
        with self._lock:
            if name == "custom":
                self._custom[path] = resolver
            else:
                self._custom.pop(path, None)

    def decisions(self) -> Optional[dict[str, Any]]:
        """This process's custom resolvers' answers for the pending changes on their
        paths, as state_apply takes them; None when it runs no custom resolver."""
        if not self._custom:
            return None
        resolvers = self.store.resolvers_map()
        groups: dict[str, list[StateChange]] = {}
        for change in self.store.pending_changes(BATCH_LIMIT):
            owner = _nearest(change.path, resolvers)
            if owner is not None and resolvers[owner]["strategy"] == "custom" and owner in self._custom:
                groups.setdefault(change.path, []).append((owner, change))
        decisions = {}
        for path, owned in groups.items():
            resolver = self._custom[owned[0][0]]
            changes = [c for _, c in owned]
            try:
                chosen = resolver(list(changes))
            except Exception:
                logger.exception("custom conflict resolver for %r failed; its changes stay pending", path)
                continue
            decisions[path] = {"considered": [c.change_id for c in changes],
                               "apply": _decision_entries(chosen, changes, path)}
        return decisions


def _nearest(path: str, resolvers: dict[str, Any]) -> Optional[str]:
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in resolvers:
            return candidate
    return None


def _decision_entries(chosen: Any, changes: list[StateChange], path: str) -> list[dict[str, Any]]:
    """A custom resolver's answer as script instructions: ids of proposals to apply
    as they are, or new changes carrying the value the resolver computed."""
    if chosen is None:
        return []
    items = chosen if isinstance(chosen, list) else [chosen]
    by_id = {c.change_id: c for c in changes}
    out = []
    for item in items:
        if isinstance(item, StateChange):
            original = by_id.get(item.change_id)
            if original is not None and original.new_value == item.new_value \
                    and original.change_type == item.change_type:
                out.append({"id": item.change_id})
                continue
            value, ctype, module = item.new_value, item.change_type, item.module_id or "custom_resolver"
        else:
            value, ctype, module = item, StateChangeType.UPDATE, "custom_resolver"
        proposal = make_proposal(module, path, value, ctype)
        out.append({"change_id": proposal.change_id, "module": module, "type": ctype.value,
                    "leaves": proposal.leaves, "meta": "{\"resolved_by\":\"custom\"}"})
    return out
