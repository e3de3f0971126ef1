"""The one rule for agent ids (agent state, memories, task and module agent ids).

Agent ids go inside a Redis hash tag ``{agent}``: braces would break the tag, and
control characters make keys unreadable. Spaces are allowed (agents are often named
after their persona, "Isabella Rodriguez"); an id of spaces only is not.
"""
from __future__ import annotations

import re
from typing import Any

from .errors import InvalidArgument

MAX_AGENT_ID_LENGTH = 128
_AGENT_ID = re.compile(r"[^{}\x00-\x1f\x7f]+")  # fullmatch: "$" would let a trailing "\n" in


def validate_agent_id(agent_id: Any) -> str:
    if not isinstance(agent_id, str) or not agent_id.strip():
        raise InvalidArgument(f"agent id must be a non-empty string, got {agent_id!r}")
    if len(agent_id) > MAX_AGENT_ID_LENGTH or not _AGENT_ID.fullmatch(agent_id):
        raise InvalidArgument(
            f"agent id {agent_id!r} is invalid: at most {MAX_AGENT_ID_LENGTH} characters, "
            "no braces or control characters"
        )
    return agent_id
