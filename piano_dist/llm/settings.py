"""The model-call settings a worker reads from its environment, validated in one place.

Every worker calling the same endpoint should be given the same values: each call
carries its process's limits to the limiter script, so the tightest one that a worker
uses is the one it obeys.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Mapping

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class LLMSettings:
    rpm: float = 0.0               # requests per minute, 0 = unlimited
    tpm: float = 0.0               # prompt + completion tokens per minute, 0 = unlimited
    max_in_flight: int = 0         # requests open at the endpoint at once, 0 = unlimited
    retry_deadline: float = 60.0   # seconds a call keeps retrying after its first failure
    timeout: float = 60.0          # seconds one HTTP attempt may take
    cache: bool = False
    cache_ttl: float = 86400.0
    price_in: float | None = None  # per 1,000 prompt tokens
    price_out: float | None = None  # per 1,000 completion tokens
    seed: int | None = None        # sent with every chat request that has none (cacheable)

    @property
    def limited(self) -> bool:
        return bool(self.rpm or self.tpm or self.max_in_flight)

    @property
    def priced(self) -> bool:
        return self.price_in is not None or self.price_out is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if not self.priced:
            return None
        return (prompt_tokens * (self.price_in or 0.0) + completion_tokens * (self.price_out or 0.0)) / 1000.0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "LLMSettings":
        """Read PIANO_LLM_*; a bad value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ
        return cls(
            rpm=_number(env, "PIANO_LLM_RPM", 0.0),
            tpm=_number(env, "PIANO_LLM_TPM", 0.0),
            max_in_flight=int(_number(env, "PIANO_LLM_MAX_IN_FLIGHT", 0, integer=True)),
            retry_deadline=_number(env, "PIANO_LLM_RETRY_DEADLINE", 60.0, positive=True),
            timeout=_number(env, "PIANO_LLM_TIMEOUT", 60.0, positive=True),
            cache=_flag(env, "PIANO_LLM_CACHE"),
            cache_ttl=_number(env, "PIANO_LLM_CACHE_TTL", 86400.0, positive=True),
            price_in=_optional(env, "PIANO_LLM_PRICE_IN"),
            price_out=_optional(env, "PIANO_LLM_PRICE_OUT"),
            seed=_seed(env, "PIANO_LLM_SEED"),
        )


def _parse(name: str, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be {what}, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be {what}, not {text!r}")
    return value


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool = False,
            positive: bool = False) -> float:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    what = ("a positive number of seconds" if positive
            else "a whole number ≥ 0 (0 or unset = unlimited)" if integer
            else "a number ≥ 0 (0 or unset = unlimited)")
    value = _parse(name, text, what)
    if (positive and value == 0) or (integer and value != int(value)):
        raise ValueError(f"{name} must be {what}, not {text!r}")
    return value


def _optional(env: Mapping[str, str], name: str) -> float | None:
    text = (env.get(name) or "").strip()
    return None if not text else _parse(name, text, "a price ≥ 0 per 1,000 tokens")


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = (env.get(name) or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be 1 or 0 (also true/false, yes/no, on/off), not {env.get(name)!r}")


def _seed(env: Mapping[str, str], name: str) -> int | None:
    text = (env.get(name) or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {text!r}") from None
