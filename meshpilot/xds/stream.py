"""Framing of the xDS stream: one JSON document per line over a long-lived TCP connection.

The control plane listens on 15010 (plaintext) and, once the security issue lands, 15012 (mTLS),
as istiod does. Each side writes ``encode(message)`` and reads lines back with ``decode``.
"""

from __future__ import annotations

import json
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a whole mesh's config must fit; a runaway peer must not


def encode(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Any:
    if len(line) > MAX_MESSAGE_BYTES:
        raise ValueError(f"xDS message of {len(line)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return json.loads(line)
