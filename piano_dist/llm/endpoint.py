"""What a model call is sent to (URL + model), and how its tokens are estimated before
the reply says."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

# ~4 characters per token for English text with the common BPE tokenizers, plus a few
# tokens of framing per chat message. Only used until a reply's ``usage`` arrives.
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4


@dataclass(frozen=True)
class Endpoint:
    url: str
    model: str

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.url}\n{self.model}".encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.url} {self.model}"


def estimate_tokens(text: Any) -> int:
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False, default=str)
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def estimate_message_tokens(messages: Any) -> int:
    if not isinstance(messages, list):
        return estimate_tokens(messages)
    total = 0
    for message in messages:
        content = message.get("content", "") if isinstance(message, dict) else message
        total += MESSAGE_OVERHEAD_TOKENS + estimate_tokens(content or "")
    return total
