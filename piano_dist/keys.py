"""Every Redis key and channel name piano-dist uses, in one module.

piano-dist's own keys start with the deployment prefix (``PIANO_PREFIX``, default
``piano``) so two deployments can share one Redis. Tasks are RQ jobs, so their hashes,
queues and registries keep RQ's names (``rq:job:<id>``, ``rq:queue:<name>``, …); the
queue *names* carry the prefix, which keeps deployments apart there too. Task ids are
therefore one namespace per Redis: a task belongs to the deployment whose queue is its
``origin``, and every entry point treats another deployment's task as unknown.
Keys that belong to one agent carry a ``{agent}`` hash tag so that an agent's scripts
touch a single cluster slot.
"""
from __future__ import annotations

import re

from .config import key_prefix, validate_prefix

RQ_PREFIX = "rq"
PRIORITY_LEVELS = ("critical", "high", "normal", "low", "background")


_GROUP_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Keys:
    """``queue_group``: None for the cluster's queues (the ones workers serve); a name
    for a set of queues of their own, ``<prefix>@<group>.<level>`` ('@' cannot occur in a
    prefix), which a standalone TaskScheduler uses. Every other key is the prefix's."""

    def __init__(self, prefix: str | None = None, queue_group: str | None = None):
        self.prefix = validate_prefix(prefix) if prefix is not None else key_prefix()
        if queue_group is not None and not (isinstance(queue_group, str) and _GROUP_RE.fullmatch(queue_group)):
            raise ValueError(f"invalid queue group {queue_group!r}: use 1-64 letters, digits, '_' or '-'")
        self.queue_group = queue_group

    def grouped(self, queue_group: str | None) -> "Keys":
        return Keys(self.prefix, queue_group)

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix,) + parts)

    # --- RQ-owned names ------------------------------------------------------------
    def queue_name(self, level: str) -> str:
        if self.queue_group is not None:
            return f"{self.prefix}@{self.queue_group}.{level}"
        return f"{self.prefix}.{level}"

    @property
    def queue_names(self) -> list[str]:
        return [self.queue_name(level) for level in PRIORITY_LEVELS]

    def owns_origin(self, origin: str | bytes | None) -> bool:
        """Whether a task whose RQ ``origin`` is this queue name belongs to this deployment:
        one of its cluster queues (``<prefix>.<level>``) or of its queue groups
        (``<prefix>@<group>.<level>``), whichever group this Keys stands for. Mirrors
        ``owned`` in piano_dist/lua/includes/task_common.lua."""
        if isinstance(origin, bytes):
            origin = origin.decode("utf-8", "replace")
        if not isinstance(origin, str):
            return False
        if origin.startswith(self.prefix + "."):
            return origin[len(self.prefix) + 1:] in PRIORITY_LEVELS
        if origin.startswith(self.prefix + "@"):
            group, _, level = origin[len(self.prefix) + 1:].rpartition(".")
            return level in PRIORITY_LEVELS and bool(_GROUP_RE.fullmatch(group))
        return False

    @staticmethod
    def rq_queue(queue_name: str) -> str:
        return f"{RQ_PREFIX}:queue:{queue_name}"

    @staticmethod
    def rq_queues_set() -> str:
        return f"{RQ_PREFIX}:queues"

    @staticmethod
    def rq_worker(worker_name: str) -> str:
        return f"{RQ_PREFIX}:worker:{worker_name}"

    @staticmethod
    def rq_job(task_id: str) -> str:
        return f"{RQ_PREFIX}:job:{task_id}"

    @staticmethod
    def rq_results(task_id: str) -> str:
        return f"{RQ_PREFIX}:results:{task_id}"

    @staticmethod
    def rq_registry(kind: str, queue_name: str) -> str:
        """kind: wip (started), finished, failed, deferred, canceled."""
        return f"{RQ_PREFIX}:{kind}:{queue_name}"

    def waiting_lists(self) -> list[str]:
        """Where queued and deferred tasks wait in RQ's terms: each queue, then each
        queue's deferred registry (held, parked and delayed tasks derive from the prefix)."""
        return ([self.rq_queue(q) for q in self.queue_names]
                + [self.rq_registry("deferred", q) for q in self.queue_names])

    def finished_registries(self) -> list[str]:
        """RQ's registries of ended jobs (scored by when their record expires)."""
        return [self.rq_registry(kind, q) for q in self.queue_names for kind in ("finished", "failed", "canceled")]

    # --- tasks and their graph -----------------------------------------------------
    @property
    def task_job_prefix(self) -> str:
        return f"{RQ_PREFIX}:job:"

    def task_pending_parents(self, task_id: str) -> str:
        return self._k("task", task_id, "pending")

    def task_children(self, task_id: str) -> str:
        return self._k("task", task_id, "children")

    @property
    def task_graph_prefix(self) -> str:
        return self._k("task") + ":"

    @property
    def running(self) -> str:
        """Sorted set of running task ids scored by lease expiry (ms since epoch)."""
        return self._k("running")

    def group(self, group: str) -> str:
        """Hash final status -> count of the group's tasks that ended (kept as long as the
        longest result TTL of the tasks that ended in it, an hour for a TTL of 0); set by
        task_common.lua's set_terminal."""
        return self._k("group", group)

    @property
    def stats(self) -> str:
        return self._k("stats")

    @property
    def wakeup(self) -> str:
        """List that idle workers BLPOP on; submits and releases push a token."""
        return self._k("wakeup")

    @property
    def events_channel(self) -> str:
        return self._k("events")

    @property
    def stalled_sweep_gate(self) -> str:
        return self._k("stalled-sweep")

    # --- modules -------------------------------------------------------------------
    @property
    def modules(self) -> str:
        return self._k("modules")

    @property
    def paused_modules(self) -> str:
        return self._k("paused")

    def held(self, module: str, priority: int) -> str:
        """Tasks of a paused module, set aside in queue order until resume."""
        return self._k("held", module, str(int(priority)))

    @property
    def parked_index(self) -> str:
        """Set of "<queue name>:<module>" pairs that have parked tasks (see parked())."""
        return self._k("parked")

    def parked(self, queue_name: str, module: str) -> str:
        """Tasks of a module that a worker could not start (not registered, or the
        worker cannot load it), set aside in queue order: workers that can start the
        module take them from here, so they never block the queue behind them."""
        return self._k("parked", queue_name, module)

    @property
    def delayed(self) -> str:
        """Tasks waiting out a retry delay, scored by when they may run (ms)."""
        return self._k("delayed")

    # --- scheduling (TaskScheduler; read by the claim script) ------------------------
    @property
    def sched(self) -> str:
        """Hash: policy, aging_ms, fairness, indexed — the cluster's scheduling policy."""
        return self._k("sched")

    def sched_part(self, part: str) -> str:
        """quota (module -> cap), running (module -> running count), rr (queue -> last
        module served), stats (starts/waits per priority and module), origins (set of
        the queue names of queue groups, which a policy change indexes too)."""
        return self._k("sched", part)

    # --- workers -------------------------------------------------------------------
    def worker_metrics(self, worker_name: str) -> str:
        return self._k("worker", worker_name, "metrics")

    @property
    def worker_metrics_prefix(self) -> str:
        return self._k("worker") + ":"

    @property
    def started_at(self) -> str:
        return self._k("epoch")

    # --- resources (ResourceCoordinator) --------------------------------------------
    # (section owned by piano_dist.resources)
    # One resource's lock keys share the ``{resource_id}`` hash tag; the lock_* scripts
    # derive them from resource_base() (see piano_dist/lua/includes/lock_lib.lua).
    def resource_base(self, resource_id: str) -> str:
        return f"{self.prefix}:res:{{{resource_id}}}"

    def resource_fence(self, resource_id: str) -> str:
        """Latest fencing token granted for the resource (integer string)."""
        return f"{self.resource_base(resource_id)}:fence"

    def resource_part(self, resource_id: str, part: str) -> str:
        """holders, locks, writer, queue, waiters, wlease, seq, watch:read, watch:write
        (see lua/includes/lock_lib.lua)."""
        return f"{self.resource_base(resource_id)}:{part}"

    def resource_mailbox(self, resource_id: str, waiter_id: str) -> str:
        return f"{self.resource_base(resource_id)}:mbox:{waiter_id}"

    @property
    def resource_registry(self) -> str:
        """Hash resource_id -> resource type, cluster-wide."""
        return self._k("res", "registry")

    @property
    def lock_index(self) -> str:
        """Hash lock_id -> resource base key, so a lock can be released by id alone."""
        return self._k("res", "lockindex")

    @property
    def lock_waitfor(self) -> str:
        """Hash waiting owner -> JSON {base, waiter, since, ...}: the wait-for edges."""
        return self._k("res", "waitfor")

    # --- agent state and memory (StateCoordinator, memory systems) -------------------
    # (section owned by piano_dist.state / piano_dist.memory)
    def state_base(self, agent_id: str) -> str:
        """Common start of one agent's state keys; scripts derive change and snapshot
        keys from it, so everything of one agent's state shares the ``{agent}`` slot."""
        return self._k("state", "{" + agent_id + "}")

    def state_key(self, agent_id: str, part: str) -> str:
        """part: data, versions, meta, pending, log, resolvers, modvers, stats, baseline,
        scratch, cursors, snapinfo, snapidx, subscribers."""
        return f"{self.state_base(agent_id)}:{part}"

    def state_change_prefix(self, agent_id: str) -> str:
        return f"{self.state_base(agent_id)}:change:"

    def state_snapshot_prefix(self, agent_id: str) -> str:
        return f"{self.state_base(agent_id)}:snap:"

    def state_channel(self, agent_id: str) -> str:
        """Pub/sub wake-up published after each applied batch (the stream is the truth)."""
        return f"{self.state_base(agent_id)}:wake"

    def memory_base(self, agent_id: str, kind: str, name: str) -> str:
        """Common start of one memory instance's keys; ``{agent}`` keeps them in one slot.

        Scripts derive per-item keys (keyword and adjacency indexes) from this base,
        so those share the slot too.
        """
        return self._k("mem", "{" + agent_id + "}", kind, name)

    def memory_key(self, agent_id: str, kind: str, name: str, part: str) -> str:
        return f"{self.memory_base(agent_id, kind, name)}:{part}"

    # --- worlds, enhanced modules ---------------------------------------------------------
    # (section owned by piano_dist.world / piano_dist.enhanced_modules)
    def world_base(self, world: str) -> str:
        """Common start of one world's keys; ``{world:<name>}`` keeps them in one slot.
        The world scripts derive its cell keys from it (see lua/world_apply.lua)."""
        return self._k("world", "{world:" + world + "}")

    def world_key(self, world: str, part: str) -> str:
        """part: meta, objects, agents, occ, version, cell:<cx>:<cy>, cellev:<cx>:<cy>."""
        return f"{self.world_base(world)}:{part}"

    def perception_cache(self, sensor: str, digest: str) -> str:
        """One cached sensor result, by the sha256 of its canonical-JSON input."""
        return self._k("perception", "cache", sensor, digest)

    @property
    def perception_cache_stats(self) -> str:
        """Hash of hits/misses/writes across every process (cache effectiveness)."""
        return self._k("perception", "cache-stats")

    def reflection_key(self, agent_id: str, part: str) -> str:
        """part: seen (the memory's poignancy total when the last reflection ended),
        running (one reflection at a time)."""
        return self._k("reflection", "{" + agent_id + "}", part)

    # --- language-model calls (section owned by piano_dist.llm) -------------------------
    def llm_key(self, part: str) -> str:
        """part: in_flight (calls now waiting on a model), calls (total started)."""
        return self._k("llm", part)

    def llm_endpoint(self, endpoint_id: str, part: str) -> str:
        """One endpoint's (URL + model) cluster-wide limiter; ``{llm:<id>}`` keeps its keys
        in one slot. part: limit (hash: rtat, stat, ttat, cavg, pause), inflight (sorted
        set holder -> place expiry ms), wake (list a release pushes for waiters)."""
        return self._k("llm", "{llm:" + endpoint_id + "}", part)

    @property
    def llm_endpoints(self) -> str:
        """Hash endpoint id -> JSON {url, model, rpm, tpm, max_in_flight} (for display)."""
        return self._k("llm", "endpoints")

    def llm_cache(self, digest: str) -> str:
        """One cached model reply, by the sha256 of its canonical-JSON request."""
        return self._k("llm", "cache", digest)

    def llm_account(self, scope: str, name: str) -> str:
        """Counters of one module, agent or endpoint (scope), or of everything (total, all)."""
        return self._k("llm", "acct", scope, name)

    def llm_account_index(self, scope: str) -> str:
        """Set of the names that have counters in ``scope``."""
        return self._k("llm", "acct-index", scope)

    @property
    def llm_account_prefix(self) -> str:
        return self._k("llm", "acct") + ":"

    # --- the multi-agent demo (piano_dist.demo) ----------------------------------------
    def demo_stats(self, run_id: str) -> str:
        """Counters one demo run's modules add to (actions, lock waits)."""
        return self._k("demo", run_id, "stats")
