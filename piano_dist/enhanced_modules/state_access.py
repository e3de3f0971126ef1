"""Reading and writing the agent's shared state through the StateCoordinator.

Modules that decide (planning, the controller) write through a StateCoordinator so
every write is versioned, logged and seen by subscribers in every process; several
related paths go in one transaction, so readers never see a plan without its goal.
"""
from __future__ import annotations

import threading
from typing import Any

import redis


class AgentStateAccess:
    def __init__(self, agent_state: Any, agent_id: str, module_id: str, connection: redis.Redis,
                 prefix: str | None, coordinator: Any = None):
        self.agent_state = agent_state
        self.agent_id = agent_id
        self.module_id = module_id
        self.connection = connection
        self.prefix = prefix
        self._coordinator = coordinator
        self._registered = False
        self._owned = False
        self._guard = threading.Lock()

    @property
    def coordinator(self):
        """The given StateCoordinator, else one built for this agent on first use."""
        with self._guard:
            if self._coordinator is None:
                from ..state import StateCoordinator

                self._coordinator = StateCoordinator(self.agent_state, connection=self.connection,
                                                     agent_id=self.agent_id, prefix=self.prefix)
                self._owned = True  # built here, so shut down here
            if not self._registered:  # proposals need a registered module id
                self._coordinator.register_module(self.module_id)
                self._registered = True
            return self._coordinator

    def get(self, path: str, default: Any = None) -> Any:
        return self.coordinator.get_value(path, default)

    def write(self, values: dict[str, Any]) -> int:
        """Write every path -> value in one transaction; returns the state version
        right after it."""
        return self.coordinator.write_values(self.module_id, values)

    def close(self) -> None:
        """Shut down a coordinator built here; the next use builds a fresh one."""
        with self._guard:
            coordinator, owned = self._coordinator, self._owned
            if owned:
                self._coordinator, self._owned, self._registered = None, False, False
        if owned and coordinator is not None:
            try:
                coordinator.shutdown()
            except Exception:  # closing must never fail the module's shutdown
                pass
