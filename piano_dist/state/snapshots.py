"""An agent's snapshots as a read-only mapping (StateCoordinator.state_snapshots)."""
from __future__ import annotations

from collections.abc import Mapping

from .store import StateStore
from .types import StateSnapshot


class SnapshotView(Mapping):
    """snapshot id -> StateSnapshot, read from Redis on access (oldest first)."""

    def __init__(self, store: StateStore):
        self._store = store

    def __getitem__(self, snapshot_id: str) -> StateSnapshot:
        if not isinstance(snapshot_id, str) or snapshot_id not in self._store.snapshot_ids():
            raise KeyError(snapshot_id)
        return self._store.get_snapshot(snapshot_id)

    def __contains__(self, snapshot_id: object) -> bool:
        return isinstance(snapshot_id, str) and snapshot_id in self._store.snapshot_ids()

    def __iter__(self):
        return iter(self._store.snapshot_ids())

    def __len__(self) -> int:
        return self._store.snapshot_count()
