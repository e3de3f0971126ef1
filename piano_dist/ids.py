"""Unique ids for hot paths.

``uuid.uuid4()`` reads 16 bytes from the kernel each time (a system call: about 25 µs on
this project's machine, paid several times per task). Ids here come from a generator
seeded once per process from the kernel's randomness and seeded again in a forked
child, so two processes never share its stream. They are unique, not secret: never
use them where guessing one would matter (tokens, passwords).
"""
from __future__ import annotations

import os
import random

_rng = random.Random(os.urandom(32))


def _reseed() -> None:
    _rng.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def unique_hex(digits: int = 32) -> str:
    """``digits`` random hexadecimal digits (32 carry as much as a uuid4)."""
    return f"{_rng.getrandbits(4 * digits):0{digits}x}"
