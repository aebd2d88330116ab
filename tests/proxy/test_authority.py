"""Where a passthrough request goes: the host and port its authority names, or nowhere (400)."""

from __future__ import annotations

import pytest

from meshpilot.proxy.http import _split_host_port


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("example.com", ("example.com", 80)),
        ("example.com:8080", ("example.com", 8080)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("[::1]", ("::1", 80)),
        ("[::1]:9090", ("::1", 9090)),
    ],
)
def test_valid_authorities(authority: str, expected: tuple[str, int]) -> None:
    assert _split_host_port(authority) == expected


@pytest.mark.parametrize(
    "authority",
    ["example.com:99999", "example.com:0", "example.com:http", "example.com:", "[::1]:x", "host:\u00b2"],
)
def test_an_invalid_port_names_no_destination(authority: str) -> None:
    # 99999 used to wrap to 34463 when the socket layer truncated it; a port that is not a number
    # used to send the whole authority to port 80.
    assert _split_host_port(authority) is None
