"""The xDS stream framing both ends share: one JSON message per line, bounded, EOF reported."""

from __future__ import annotations

import asyncio

import pytest

from meshpilot.xds import stream


def _reader(data: bytes, limit: int = 1024) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_messages_then_eof() -> None:
    reader = _reader(stream.encode({"type_url": "a"}) + stream.encode({"nonce": "1"}))
    assert await stream.read_message(reader) == {"type_url": "a"}
    assert await stream.read_message(reader) == {"nonce": "1"}
    with pytest.raises(EOFError):
        await stream.read_message(reader)


async def test_line_over_the_limit_is_too_large() -> None:
    reader = _reader(b'{"x": "' + b"y" * 200 + b'"}\n', limit=64)
    with pytest.raises(stream.MessageTooLarge):
        await stream.read_message(reader)


async def test_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError) as info:
        await stream.read_message(_reader(b"not json\n"))
    assert not isinstance(info.value, stream.MessageTooLarge)
