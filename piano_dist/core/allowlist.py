"""Which module classes a worker may import: the trust boundary between Redis and code.

A registration in Redis names a class by import path. Anyone who can write to Redis can
write a registration, so a worker imports a class only when its module path lies under
one of the prefixes it was told to trust (``PIANO_ALLOWED_MODULES``, comma-separated,
and ``piano-dist worker --allow PREFIX``). ``piano_dist`` (the library's own modules)
is always trusted; ``*`` trusts every import path.

A prefix matches whole dotted components: ``myapp.modules`` allows
``myapp.modules`` and ``myapp.modules.planning``, not ``myapp.modules_old``.
"""
from __future__ import annotations

import os
import re
from typing import Iterable

from ..errors import SecurityError

ENV_VAR = "PIANO_ALLOWED_MODULES"
ALWAYS_ALLOWED = "piano_dist"
ALLOW_ALL = "*"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _check_prefix(prefix: str, source: str) -> str:
    prefix = prefix.strip()
    if prefix == ALLOW_ALL or _DOTTED.fullmatch(prefix):
        return prefix
    raise SecurityError(f"{source}: {prefix!r} is not an import path (use dotted names such as "
                        f"'myapp.modules', or '*' to allow every module)")


class AllowList:
    """Import-path prefixes a process may import module classes from."""

    def __init__(self, prefixes: Iterable[str] = (), source: str = "allowed modules"):
        checked = [ALWAYS_ALLOWED]
        for prefix in prefixes:
            if not isinstance(prefix, str):
                raise SecurityError(f"{source}: {prefix!r} is not an import path")
            if not prefix.strip():
                continue
            prefix = _check_prefix(prefix, source)
            if prefix not in checked:
                checked.append(prefix)
        self.prefixes = tuple(checked)
        self.allows_all = ALLOW_ALL in self.prefixes

    @classmethod
    def from_env(cls, extra: Iterable[str] = ()) -> "AllowList":
        """``PIANO_ALLOWED_MODULES`` plus ``extra`` (a worker's ``--allow`` values)."""
        raw = os.environ.get(ENV_VAR, "")
        return cls([*raw.split(","), *extra], source=f"{ENV_VAR} / --allow")

    def allows(self, class_path: str) -> bool:
        module_path = class_path.partition(":")[0]
        if self.allows_all:
            return True
        return any(module_path == p or module_path.startswith(p + ".") for p in self.prefixes)

    def lists(self, class_path: str) -> bool:
        """True when the class's module path is under a prefix listed explicitly (not
        the always-trusted ``piano_dist``, not ``*``): such a path is the user's own code,
        so a plain class there (not a BaseModule subclass) may be built as a module too."""
        module_path = class_path.partition(":")[0]
        return any(module_path == p or module_path.startswith(p + ".")
                   for p in self.prefixes if p not in (ALWAYS_ALLOWED, ALLOW_ALL))

    def describe(self) -> str:
        return ", ".join(self.prefixes)

    def refusal(self, module_name: str, class_path: str) -> str:
        return (f"module {module_name} ({class_path}) is not allowed on this worker: it imports module "
                f"classes only from {self.describe()} (add the prefix to {ENV_VAR} or "
                f"`piano-dist worker --allow`)")
