"""The user's own agent-state object, kept in step with the shared state in Redis.

Construction: Redis is the truth. The object only contributes top-level attributes the
agent's state in Redis does not have yet; attributes Redis already has are overwritten
*in the object* with Redis' values. So the first process seeds the state and a process
that joins later adopts it. Attributes that are not JSON values (a maze, memory
objects, private ``_x`` names) stay local, untouched. Afterwards every applied change
reaches the object through the change log (notifications.ChangeDispatcher); direct
edits to the object are published as changes by module ``agent_state`` before a
snapshot, and undone by a restore.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Callable

from ..errors import InvalidArgument
from .agent_state import RedisAgentState
from .notifications import ChangeDispatcher
from .paths import is_path_segment, validate_state_value
from .proposal import make_proposal
from .store import StateStore
from .tree import MISSING, public_items, to_leaves, write_into_object
from .types import StateChangeType

logger = logging.getLogger("piano_dist.state")


class LocalMirror:
    def __init__(self, agent_state: Any, store: StateStore, dispatcher: ChangeDispatcher,
                 after_apply: Callable[[], None]):
        self.target = agent_state
        self.store = store
        self._dispatcher = dispatcher
        self._after_apply = after_apply

    @property
    def local(self) -> bool:
        """Whether there is an object of the user's to keep in step."""
        return self.target is not None and not isinstance(self.target, RedisAgentState)

    def seed(self) -> None:
        """Seed the shared state from the object, or adopt it into the object (see above)."""
        if not self.local:
            return
        target = self.target
        items = []
        for name, value in public_items(target).items():
            if not is_path_segment(name) or name.startswith("_"):
                continue
            try:
                validate_state_value(value, f"agent_state.{name}")
            except InvalidArgument:
                logger.debug("agent_state.%s is not a JSON value; it stays local, unshared", name)
                continue
            items.append({"id": uuid.uuid4().hex, "path": name, "leaves": to_leaves(value)})
        self.store.init(items)
        state, cursor = self.store.read_all_with_cursor()
        local = public_items(target)
        for name, value in state.items():
            # compared as JSON so a local tuple equal to the stored list stays a tuple
            if as_json(local.get(name, MISSING)) != value:
                write_into_object(target, name, value)
        self._dispatcher.mirror_into(target, cursor)

    def publish_local_edits(self, agent_id: str, fence: Any = None) -> list[str]:
        """Apply top-level attributes of the object that differ from the shared state
        (edited directly, not through propose_change) as changes by module
        ``agent_state``, all at once; return their paths. Attributes that are not JSON
        values stay local, as at construction. ``fence``: the publishing context's."""
        if not self.local:
            return []
        for _ in range(5):
            self._dispatcher.sync_mirror()
            state, cursor = self.store.read_all_with_cursor()
            if cursor == self._dispatcher.mirror_cursor:
                break  # the object has every logged change: what differs was edited here
        else:
            logger.warning("agent %r: state kept changing; local edits not published", agent_id)
            return []
        proposals = []
        for name, value in public_items(self.target).items():
            if not is_path_segment(name) or name.startswith("_"):
                continue
            value_json = as_json(value)
            if value_json is MISSING or value_json == state.get(name, MISSING):
                continue
            try:
                proposals.append(make_proposal("agent_state", name, value, StateChangeType.UPDATE,
                                               metadata={"published": "local edit"}))
            except ValueError:  # InvalidArgument too: not a state value, it stays local
                continue
        if proposals:
            self.store.apply_atomic([p.atomic() for p in proposals], fence)
            self._after_apply()
        return [p.path for p in proposals]

    def overwrite_local_edits(self) -> None:
        """Give the object the shared state's values where it was edited directly (a
        restore logs only what changed in Redis, so such edits were not undone)."""
        if not self.local:
            return
        local = public_items(self.target)
        for name, value in self.store.read_all().items():
            current = local.get(name, MISSING)
            if current is MISSING or as_json(current) != value:
                write_into_object(self.target, name, value)


def as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON, or MISSING when it is no JSON value."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return MISSING
