"""The one definition of "a JSON value" that task arguments and agent state share."""
from __future__ import annotations

import math
from typing import Any

from .errors import SecurityError


def check_json_value(value: Any, where: str, max_depth: int, depth: int = 0) -> None:
    """Raise SecurityError naming the position (``args[1]['when']``) of the first value
    that is not JSON: str, int, finite float, bool, None, lists, dicts with string keys."""
    if depth > max_depth:
        raise SecurityError(f"{where} is nested deeper than {max_depth} levels")
    if value is None or isinstance(value, (bool, str, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SecurityError(f"{where} is {value!r}: only finite numbers are JSON values")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_json_value(item, f"{where}[{i}]", max_depth, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SecurityError(f"{where} has a non-string key {key!r}: JSON object keys are strings")
            check_json_value(item, f"{where}[{key!r}]", max_depth, depth + 1)
        return
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    raise SecurityError(
        f"{where} is a {type(value).__name__} ({text}), which is not a JSON value; "
        "use str, int, float, bool, None, lists or dicts with string keys"
    )
