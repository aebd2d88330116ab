"""Framing of the xDS stream: one JSON document per line over a long-lived TCP connection.

The control plane listens on 15010 (plaintext) and, once the security issue lands, 15012 (mTLS),
as istiod does. Each side writes ``encode(message)`` and reads messages back with
``read_message(reader)`` (or ``decode`` on a line it already has).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a whole mesh's config must fit; a runaway peer must not


def encode(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Any:
    if len(line) > MAX_MESSAGE_BYTES:
        raise ValueError(f"xDS message of {len(line)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return json.loads(line)


class MessageTooLarge(ValueError):
    """A line longer than the reader's limit: the peer is broken or hostile, so the stream ends."""


async def read_message(reader: asyncio.StreamReader) -> Any:
    """The next message of the stream. Raises ``EOFError`` when the peer closed it,
    ``MessageTooLarge`` when a line exceeds the reader's ``limit`` (the stream cannot be resynced
    then), ``ValueError`` for a line that is not JSON."""
    try:
        line = await reader.readline()
    except (ValueError, asyncio.LimitOverrunError) as exc:  # readline reports an overrun as ValueError
        raise MessageTooLarge("xDS message exceeds the stream's line limit") from exc
    if not line:
        raise EOFError("the peer closed the xDS stream")
    return decode(line)
