"""Type tests shared by argument checks: Python counts True as the integer 1, and an
argument check must not (``max_workers=True`` is a mistake, not one worker)."""
from __future__ import annotations

from typing import Any

# The longest TTL a task may ask for (~68 years): what Redis' EXPIRE and Lua's numbers hold exactly.
MAX_TTL = 2**31 - 1


def is_whole(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool (NaN and infinities included: check those apart)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
