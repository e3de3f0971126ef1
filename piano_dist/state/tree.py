"""The stored shape of agent state: nested JSON values flattened into leaves.

An agent's state is one Redis hash whose fields are dotted paths of *leaves* and whose
values are JSON text. A dict whose keys are all valid path segments is not stored
itself: its items are (so ``emotional_state.happiness`` is its own field and two
modules can write two keys of one dict without touching each other). Everything else
is a leaf: scalars, lists, empty dicts (``{}``) and dicts with keys that cannot be
path segments (those can only be replaced whole).

Lua scripts never decode leaf values: they move JSON text around untouched, so Redis'
cjson (14-digit floats, ``[]`` turning into ``{}``) never rewrites user data.

A subtree travels as a "leaves" mapping: path relative to the subtree's root -> JSON
text, with ``""`` for a subtree that is one leaf, and ``{}`` for an absent value.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from ..replies import as_text
from .paths import is_path_segment

EMPTY_OBJECT = "{}"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def dump_leaf(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _flattenable(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        is_path_segment(k) and not k.startswith("_") for k in value
    )


def to_leaves(value: Any) -> dict[str, str]:
    """Flatten a JSON value into {relative path: JSON text}."""
    out: dict[str, str] = {}

    def walk(v: Any, rel: str) -> None:
        if _flattenable(v):
            for key, item in v.items():
                walk(item, f"{rel}.{key}" if rel else key)
        else:
            out[rel] = dump_leaf(list(v) if isinstance(v, tuple) else v)

    walk(value, "")
    return out


def from_leaves(leaves: Mapping[str, Any]) -> Any:
    """Rebuild a value from {relative path: JSON text}; MISSING when there are no leaves."""
    if not leaves:
        return MISSING
    if "" in leaves:
        return json.loads(as_text(leaves[""]))
    root: dict[str, Any] = {}
    # Sorted so a parent '{}' placeholder (should one linger) is overwritten by children.
    for rel in sorted(leaves):
        node = root
        parts = rel.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = json.loads(as_text(leaves[rel]))
    return root


def group_top_level(fields: Mapping[Any, Any]) -> dict[str, dict[str, str]]:
    """Split a whole-state hash (full path -> JSON) into {top-level key: leaves}."""
    groups: dict[str, dict[str, str]] = {}
    for raw_path, raw_value in fields.items():
        path = as_text(raw_path)
        top, _, rest = path.partition(".")
        groups.setdefault(top, {})[rest] = as_text(raw_value)
    return groups


def state_from_fields(fields: Mapping[Any, Any]) -> dict[str, Any]:
    return {top: from_leaves(leaves) for top, leaves in group_top_level(fields).items()}


def leaves_under(fields: Mapping[Any, Any], path: str) -> dict[str, str]:
    """The leaves of ``path`` taken from a whole-state hash."""
    out: dict[str, str] = {}
    prefix = path + "."
    for raw_path, raw_value in fields.items():
        full = as_text(raw_path)
        if full == path:
            return {"": as_text(raw_value)}
        if full.startswith(prefix):
            out[full[len(prefix):]] = as_text(raw_value)
    return out


def is_under(path: str, root: str) -> bool:
    """True if ``path`` is ``root`` or inside its subtree."""
    return path == root or path.startswith(root + ".")


def paths_overlap(a: str, b: str) -> bool:
    """A change at one path affects the other (same path, ancestor or descendant)."""
    return is_under(a, b) or is_under(b, a)


def ancestors(path: str) -> Iterable[str]:
    parts = path.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


# --- the user's own object ------------------------------------------------------------
def _get_child(node: Any, name: str) -> Any:
    if isinstance(node, dict):
        return node.get(name, MISSING)
    return getattr(node, name, MISSING)


def _set_child(node: Any, name: str, value: Any) -> None:
    if isinstance(node, dict):
        node[name] = value
    else:
        setattr(node, name, value)


def _del_child(node: Any, name: str) -> None:
    if isinstance(node, dict):
        node.pop(name, None)
    elif hasattr(node, "__dict__") and name in vars(node):
        delattr(node, name)


def write_into_object(obj: Any, path: str, value: Any) -> None:
    """Set ``path`` on a plain object or dict (attributes, then dict keys), creating
    dicts on the way; MISSING deletes it. Existing containers are updated in place so
    references the application holds (``state.emotional_state``) see the new value."""
    parts = path.split(".")
    node = obj
    for part in parts[:-1]:
        child = _get_child(node, part)
        if child is MISSING or not (isinstance(child, dict) or hasattr(child, "__dict__")) \
                or isinstance(child, (str, int, float, bool, list)):
            if value is MISSING:
                return
            child = {}
            _set_child(node, part, child)
        node = child
    if value is MISSING:
        _del_child(node, parts[-1])
    else:
        _set_child(node, parts[-1], value)


def public_items(obj: Any) -> dict[str, Any]:
    """The top-level entries of the user's object that could be mirrored."""
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return {k: v for k, v in obj.items() if isinstance(k, str)}
    if hasattr(obj, "__dict__"):
        return dict(vars(obj))
    return {}
