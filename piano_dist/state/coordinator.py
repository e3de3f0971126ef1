"""StateCoordinator: cross-module state of one agent, shared by every process through Redis.

Every process that builds a StateCoordinator for the same agent id sees one state:
proposals queue in Redis (so proposals from different processes meet and conflict),
batches and transactions apply in single Lua scripts, and every applied change lands
in the agent's change log, from which local objects and subscribed modules are fed.
The coordinator is the API over parts that each do one job: store.py (the agent's keys
and scripts), mirror.py (the user's own object), notifications.py (subscriptions and
delivery), transactions.py, resolvers.py (conflict strategies, custom resolvers) and
snapshots.py.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
import weakref
from collections import defaultdict
from typing import Any, Callable, Iterable, Optional

import redis
from redis.backoff import ExponentialBackoff

from ..errors import FencedWriteRejected
from .agent_state import RedisAgentState, agent_id_of
from .fence import current_fence
from .mirror import LocalMirror
from .notifications import ChangeDispatcher
from .paths import validate_snapshot_id, validate_state_path
from .proposal import make_proposal
from .resolvers import ConflictResolvers
from .snapshots import SnapshotView
from .store import BATCH_LIMIT, DEFAULT_LOG_MAXLEN, StateStore
from .transactions import Transactions
from .tree import MISSING
from .types import ChangeOutcome, ChangeStatus, StateChangeType, StateSnapshot, SyncMetrics, SyncPolicy

logger = logging.getLogger("piano_dist.state")

INITIAL_SNAPSHOT = "initial"
MAX_APPLY_ROUNDS = 10


class StateCoordinator:
    def __init__(self, agent_state: Any = None, sync_policy: SyncPolicy = SyncPolicy.IMMEDIATE,
                 max_snapshots: int = 50, batch_size: int = 10, sync_interval: float = 1.0, *,
                 redis_url: Optional[str] = None, connection: Optional[redis.Redis] = None,
                 agent_id: Optional[str] = None, prefix: Optional[str] = None,
                 outcome_ttl: Optional[int] = None, log_maxlen: int = DEFAULT_LOG_MAXLEN):
        if not isinstance(sync_policy, SyncPolicy):
            sync_policy = SyncPolicy(str(sync_policy).lower())
        if not isinstance(max_snapshots, int) or max_snapshots < 1:
            raise ValueError(f"max_snapshots must be a positive int, got {max_snapshots!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(sync_interval, (int, float)) or sync_interval <= 0:
            raise ValueError(f"sync_interval must be a positive number of seconds, got {sync_interval!r}")
        self.agent_state = agent_state
        self.sync_policy = sync_policy
        self.max_snapshots = max_snapshots
        self.batch_size = batch_size
        self.sync_interval = float(sync_interval)
        self.agent_id = agent_id_of(agent_state, agent_id)
        if isinstance(agent_state, RedisAgentState) and redis_url is None and connection is None:
            connection = agent_state.store.conn
        self.store = StateStore(self.agent_id, connection, prefix, redis_url=redis_url,
                                outcome_ttl=outcome_ttl, log_maxlen=log_maxlen)

        self._lock = threading.RLock()
        self._modules: dict[str, Callable[[], Any]] = {}
        self._sync_times: list[float] = []
        self._max_conflict_time = 0.0
        self._closed = False
        self._dispatcher = ChangeDispatcher(self.store, self._module_ref)
        self._resolvers = ConflictResolvers(self.store)
        self._transactions = Transactions(self.store, self._after_apply)
        self._mirror = LocalMirror(agent_state, self.store, self._dispatcher, self._after_apply)

        self._mirror.seed()
        self.store.create_snapshot(INITIAL_SNAPSHOT, self.max_snapshots, only_if_absent=True)

        self._periodic: Optional[threading.Thread] = None
        self._stop = threading.Event()
        if sync_policy is SyncPolicy.PERIODIC:
            self._periodic = threading.Thread(target=self._periodic_loop, daemon=True,
                                              name=f"piano-state-sync-{self.agent_id}")
            self._periodic.start()

    # --- modules and subscriptions ---------------------------------------------------
    def register_module(self, module_id: str, module_ref: Any = None) -> None:
        if not isinstance(module_id, str) or not module_id:
            raise ValueError(f"module id must be a non-empty string, got {module_id!r}")
        try:
            ref = weakref.ref(module_ref) if module_ref is not None else (lambda: None)
        except TypeError:  # not weak-referenceable: keep it alive
            ref = (lambda obj: (lambda: obj))(module_ref)
        with self._lock:
            self._modules[module_id] = ref

    def unregister_module(self, module_id: str) -> None:
        with self._lock:
            if self._modules.pop(module_id, None) is None:
                raise KeyError(f"module {module_id!r} is not registered with this StateCoordinator")
        paths = self._dispatcher.subscriptions().get(module_id, set())
        self._dispatcher.unsubscribe(module_id)
        self.store.remove_subscriptions(module_id, paths)

    def _module_ref(self, module_id: str) -> Any:
        ref = self._modules.get(module_id)
        return ref() if ref is not None else None

    def _require_module(self, module_id: str) -> None:
        if module_id not in self._modules:
            raise ValueError(f"module {module_id!r} is not registered; call register_module first")

    def subscribe_to_path(self, module_id: str, path: str) -> None:
        """Deliver changes at ``path``, inside it, or replacing it, to the module."""
        self._require_module(module_id)
        self._dispatcher.subscribe(module_id, validate_state_path(path))
        self.store.add_subscription(module_id, path)

    def unsubscribe_from_path(self, module_id: str, path: str) -> None:
        self._dispatcher.unsubscribe(module_id, path)
        self.store.remove_subscriptions(module_id, [path])

    @property
    def subscriptions(self) -> dict[str, set[str]]:
        """path -> ids of the modules subscribed to it (in this process)."""
        by_path: dict[str, set[str]] = {}
        for module_id, paths in self._dispatcher.subscriptions().items():
            for path in paths:
                by_path.setdefault(path, set()).add(module_id)
        return by_path

    @property
    def path_subscribers(self) -> defaultdict[str, set[str]]:
        """path -> ids of the modules subscribed to it, in any process of this agent (read
        from Redis; a subscription lasts until unsubscribed or its module unregistered).
        Delivery happens in the processes where the module subscribed."""
        return defaultdict(set, self.store.subscriptions_by_path())

    @property
    def state_snapshots(self) -> "SnapshotView":
        """snapshot id -> StateSnapshot, read from Redis on access (oldest first)."""
        return SnapshotView(self.store)

    @property
    def registered_modules(self) -> dict[str, Any]:
        """module id -> module registered in this process (None once garbage-collected)."""
        return {m: ref() for m, ref in self._modules.items()}

    @property
    def module_versions(self) -> dict[str, int]:
        """Applied changes per module (agent-wide); registered modules start at 0."""
        versions = {m: 0 for m in self._modules}
        versions.update(self.store.module_versions())
        return versions

    @property
    def state_version(self) -> int:
        return self.store.version()

    # --- proposals -------------------------------------------------------------------
    def propose_change(self, module_id: str, path: str, new_value: Any,
                       change_type: StateChangeType = StateChangeType.UPDATE, priority: int = 0,
                       metadata: Optional[dict] = None, expected_version: Optional[int] = None, *,
                       transaction_id: Optional[str] = None) -> str:
        """Queue a change and return its id; its fate is in :meth:`get_change_status`.

        Inside ``begin_transaction``/``commit_transaction`` (same thread), or with
        ``transaction_id=``, the change joins the transaction instead of the queue.
        """
        self._require_module(module_id)
        self._check_open()
        fence = current_fence()
        proposal = make_proposal(module_id, path, new_value, change_type, priority, metadata,
                                 expected_version, fence)
        tx = transaction_id or self._transactions.current()
        if tx is not None:
            self._transactions.add(tx, proposal)
            return proposal.change_id
        _, pending = self.store.propose(proposal.change_id, proposal.record())
        if self.sync_policy is SyncPolicy.IMMEDIATE or (
                self.sync_policy is SyncPolicy.BATCHED and pending >= self.batch_size):
            outcomes = self._apply()
            if fence is not None:
                self._raise_if_fenced(proposal.change_id, outcomes)
        return proposal.change_id

    def _raise_if_fenced(self, change_id: str, outcomes: dict[str, ChangeOutcome]) -> None:
        outcome = outcomes.get(change_id) or self.store.outcome(change_id)
        if outcome and outcome.status is ChangeStatus.REJECTED and outcome.reason.startswith("fenced"):
            raise FencedWriteRejected(f"change {change_id} to agent {self.agent_id!r} refused: {outcome.reason}")

    def apply_changes(self, change_ids: Optional[Iterable[str]] = None) -> bool:
        """Settle pending changes now (all of the agent's, or only ``change_ids``)."""
        self._check_open()
        self._apply(list(change_ids) if change_ids is not None else None)
        return True

    def _apply(self, only: Optional[list[str]] = None) -> dict[str, ChangeOutcome]:
        outcomes: dict[str, ChangeOutcome] = {}
        for _ in range(MAX_APPLY_ROUNDS):
            started = time.perf_counter()
            decisions = self._resolvers.decisions()
            result = self.store.apply_batch(BATCH_LIMIT, only, decisions)
            elapsed = time.perf_counter() - started
            if result.outcomes:
                with self._lock:
                    self._sync_times.append(elapsed)
                    del self._sync_times[:-1000]
                    if result.conflicts:
                        self._max_conflict_time = max(self._max_conflict_time, elapsed)
            outcomes.update((o.change_id, o) for o in result.outcomes)
            if only is not None or not result.outcomes or result.remaining == 0:
                break
        self._after_apply()
        return outcomes

    def _after_apply(self) -> None:
        self._dispatcher.sync_mirror()
        self._dispatcher.deliver(blocking=False)

    # --- conflict resolution -----------------------------------------------------------
    def register_conflict_resolver(self, path: str, strategy: Any) -> None:
        """Strategy for conflicting changes at ``path`` and below: 'latest_wins',
        'priority', 'merge', a callable (custom), or a ConflictResolution. Shared by
        every process of this agent; a custom callable runs in the processes that
        registered it (changes on its path wait for one of them)."""
        self._resolvers.register(path, strategy)

    # --- transactions (transactions.py) ------------------------------------------------
    def begin_transaction(self, transaction_id: str) -> str:
        return self._transactions.begin(transaction_id)

    def commit_transaction(self, transaction_id: str) -> bool:
        """Apply the transaction's changes all at once, or none of them (raising
        StateConflictError naming the stale paths, or StateWriteError)."""
        return self._transactions.commit(transaction_id, current_fence())

    def rollback_transaction(self, transaction_id: str) -> bool:
        return self._transactions.rollback(transaction_id)

    def write_values(self, module_id: str, values: dict[str, Any]) -> int:
        """Update every path of ``values`` in one transaction, all or none (raising as
        ``commit_transaction`` does); the state version once they are in (the current
        one when ``values`` is empty). One round trip."""
        self._require_module(module_id)
        self._check_open()
        fence = current_fence()
        proposals = [make_proposal(module_id, path, value, StateChangeType.UPDATE, 0, None, None, fence)
                     for path, value in values.items()]
        if not proposals:
            return self.state_version
        return self._transactions.apply(proposals, fence)

    def transaction(self, transaction_id: Optional[str] = None):
        """``with coordinator.transaction(): ...`` commits on success, rolls back on error."""
        return self._transactions.scope(self.commit_transaction, transaction_id)

    # --- snapshots -------------------------------------------------------------------
    def create_snapshot(self, snapshot_id: Optional[str] = None) -> str:
        """Snapshot the agent's state. Direct edits made to the local object's JSON
        attributes (``agent_state.x = ...`` without propose_change) are first applied to
        the shared state as UPDATE changes by module ``agent_state``, so the snapshot
        holds what this process's object shows (see docs/compat.md)."""
        snapshot_id = validate_snapshot_id(snapshot_id or f"snapshot_{int(time.time() * 1000)}_{uuid.uuid4().hex[:8]}")
        self._check_open()
        self.publish_local_edits()
        self.store.create_snapshot(snapshot_id, self.max_snapshots)
        return snapshot_id

    def publish_local_edits(self) -> list[str]:
        """Apply top-level attributes of the local object that differ from the shared
        state (edited directly, not through propose_change) as changes by module
        ``agent_state``, all at once; return their paths. Attributes that are not JSON
        values stay local, as at construction."""
        return self._mirror.publish_local_edits(self.agent_id, current_fence())

    def restore_snapshot(self, snapshot_id: str) -> bool:
        """Replace the agent's state with the snapshot (atomically; subscribers are told
        with RESET changes). Pending changes are rejected. KeyError if unknown."""
        validate_snapshot_id(snapshot_id)
        self.store.restore(snapshot_id, uuid.uuid4().hex, current_fence())
        self._after_apply()
        self._mirror.overwrite_local_edits()
        return True

    def list_snapshots(self) -> list[str]:
        """Snapshot ids, oldest first."""
        return self.store.snapshot_ids()

    def get_snapshot(self, snapshot_id: str) -> StateSnapshot:
        return self.store.get_snapshot(snapshot_id)

    def delete_snapshot(self, snapshot_id: str) -> bool:
        return self.store.delete_snapshot(validate_snapshot_id(snapshot_id))

    # --- reading -----------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return self.store.read_all()

    def get_value(self, path: str, default: Any = None) -> Any:
        value = self.store.read(validate_state_path(path))
        return default if value is MISSING else value

    def get_version(self, path: Optional[str] = None) -> int:
        """The state version, or the version of ``path`` (for ``expected_version``)."""
        return self.store.version() if path is None else self.store.path_version(validate_state_path(path))

    def get_change_status(self, change_id: str) -> Optional[ChangeOutcome]:
        return self.store.outcome(change_id)

    def wait_for_change(self, change_id: str, timeout: float = 10.0) -> ChangeOutcome:
        """Block until the change is applied, superseded or rejected."""
        deadline = time.monotonic() + timeout
        backoff = ExponentialBackoff(cap=0.1, base=0.005)
        for polls in itertools.count():
            outcome = self.store.outcome(change_id)
            if outcome is not None and outcome.done:
                return outcome
            if time.monotonic() >= deadline:
                raise TimeoutError(f"change {change_id} still pending after {timeout}s")
            time.sleep(backoff.compute(polls))

    def get_state_metrics(self) -> SyncMetrics:
        """Counters are the agent's (all processes); timings are this process's."""
        stats = self.store.stats()
        with self._lock:
            times = list(self._sync_times)
            max_conflict = self._max_conflict_time
        return SyncMetrics(
            total_changes=stats.get("total_changes", 0), conflicts_resolved=stats.get("conflicts_resolved", 0),
            sync_operations=stats.get("sync_operations", 0), rollbacks_performed=stats.get("rollbacks_performed", 0),
            average_sync_time=sum(times) / len(times) if times else 0.0, max_conflict_resolution_time=max_conflict,
            state_size_bytes=self.store.state_size_bytes(), snapshot_count=self.store.snapshot_count(),
        )

    def get_coordination_status(self) -> dict[str, Any]:
        resolvers = self.store.resolvers_map()
        return {
            "agent_id": self.agent_id,
            "state_version": self.store.version(),
            "registered_modules": sorted(self._modules),
            "pending_changes": self.store.pending_count(),
            "active_transactions": self._transactions.open_ids(),
            "snapshots": self.store.snapshot_ids(),
            "conflict_resolvers": {p: r["strategy"] for p, r in resolvers.items()},
            "sync_policy": self.sync_policy.value,
            "module_versions": self.module_versions,
            "subscriptions": {m: sorted(p) for m, p in self._dispatcher.subscriptions().items()},
            "change_log_length": self.store.log_length(),
        }

    # --- lifecycle -----------------------------------------------------------------------
    def _periodic_loop(self) -> None:
        while not self._stop.wait(self.sync_interval):
            try:
                if self.store.pending_count():
                    self._apply()
            except redis.RedisError as exc:
                logger.warning("periodic state sync for agent %r failed: %s", self.agent_id, exc)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this StateCoordinator was shut down")

    def shutdown(self) -> None:
        """Settle pending changes (unless ON_DEMAND), then stop the background threads."""
        if self._closed:
            return
        if self.sync_policy in (SyncPolicy.BATCHED, SyncPolicy.PERIODIC, SyncPolicy.IMMEDIATE):
            try:
                if self.store.pending_count():
                    self._apply()
            except redis.RedisError as exc:
                logger.warning("could not flush pending state changes for %r: %s", self.agent_id, exc)
        self._closed = True
        self._stop.set()
        if self._periodic is not None:
            self._periodic.join(self.sync_interval + 5)
        self._dispatcher.stop()

    def __enter__(self) -> "StateCoordinator":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
