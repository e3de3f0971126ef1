"""Transactions of one StateCoordinator: proposals gathered under an id and applied
together (state_apply's atomic mode), all or none.

A transaction is open in the thread that began it (a stack: the innermost one takes
``propose_change``) or named with ``transaction_id=``. A commit that raised leaves the
id aborted, so a ``rollback`` after it still succeeds.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Optional

from ..ids import unique_hex
from .proposal import Proposal
from .store import StateStore


class Transactions:
    def __init__(self, store: StateStore, after_apply: Callable[[], None]):
        self.store = store
        self._after_apply = after_apply
        self._lock = threading.RLock()
        self._open: dict[str, list[Proposal]] = {}
        self._aborted: set[str] = set()
        self._active = threading.local()

    def current(self) -> Optional[str]:
        """The calling thread's innermost open transaction, or None."""
        stack = getattr(self._active, "stack", None)
        while stack:
            if stack[-1] in self._open:
                return stack[-1]
            stack.pop()
        return None

    def add(self, transaction_id: str, proposal: Proposal) -> None:
        with self._lock:
            if transaction_id not in self._open:
                raise ValueError(f"transaction {transaction_id!r} is not active")
            self._open[transaction_id].append(proposal)

    def open_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._open)

    def begin(self, transaction_id: str) -> str:
        if not isinstance(transaction_id, str) or not transaction_id:
            raise ValueError(f"transaction id must be a non-empty string, got {transaction_id!r}")
        with self._lock:
            if transaction_id in self._open:
                raise ValueError(f"transaction {transaction_id!r} is already active")
            self._aborted.discard(transaction_id)
            self._open[transaction_id] = []
        if not hasattr(self._active, "stack"):
            self._active.stack = []
        self._active.stack.append(transaction_id)
        return transaction_id

    def commit(self, transaction_id: str, fence: Optional[tuple[str, int]] = None) -> bool:
        """Apply the transaction's changes all at once, or none of them (raising
        StateConflictError naming the stale paths, or StateWriteError). ``fence``: the
        committing context's (a stale one refuses the whole commit)."""
        with self._lock:
            if transaction_id not in self._open:
                raise ValueError(f"transaction {transaction_id!r} is not active")
            proposals = self._open.pop(transaction_id)
        if not proposals:
            return True
        try:
            self.apply(proposals, fence, transaction_id)
        except Exception:
            with self._lock:
                self._aborted.add(transaction_id)
            raise
        return True

    def apply(self, proposals: list[Proposal], fence: Optional[tuple[str, int]],
              transaction_id: Optional[str] = None) -> Optional[int]:
        """Apply ``proposals`` as one transaction, all or none (raising as ``commit``
        does); the state version once they are in (None only for a repeated call whose
        outcome record lost its version, by hand)."""
        transaction_id = transaction_id or f"tx_{unique_hex()}"
        applied = self.store.apply_atomic([p.atomic(transaction_id) for p in proposals], fence, transaction_id)
        self._after_apply()
        return applied[-1][1]

    def rollback(self, transaction_id: str) -> bool:
        with self._lock:
            if transaction_id in self._aborted:
                self._aborted.discard(transaction_id)
                return True
            if self._open.pop(transaction_id, None) is None:
                raise ValueError(f"transaction {transaction_id!r} is not active")
        self.store.count_rollback()
        return True

    @contextmanager
    def scope(self, commit: Callable[[str], bool], transaction_id: Optional[str] = None):
        """Commit (through ``commit``) on success, roll back on error."""
        tx = self.begin(transaction_id or f"tx_{unique_hex()}")
        try:
            yield tx
        except BaseException:
            if tx in self._open:
                self.rollback(tx)
            raise
        commit(tx)
