"""The fast lane's parsers never accept what llhttp would refuse or read differently.

``_fastpath.pyx`` forwards a request it calls plain without ever showing it to llhttp, the parser of
the interpreted lane. If the two disagreed on where a head ends, how long a body is or whether the
connection stays open, a client could smuggle a second request past the interpreted lane's checks
(CL.TE, TE.CL and their cousins). So the fast parser must be a strict subset: table tests pin what it
accepts and refuses, and Hypothesis checks the subset property against httptools (llhttp) on heads
mutated byte by byte, and the chunked scanner against a reference decoder written here.

The divergences this file first found (any token as a method, CONNECT, unchecked authority
characters, Proxy-Connection, duplicate response lengths, Connection lists, unchecked trailers and
chunk extensions) are pinned by the table tests below; the property tests have no exemptions left.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpilot.proxy import _fastpath as fp

# Whole file well under 20 s on a loaded 2-core machine: each example is two parses of a few
# hundred bytes, so the cost is Hypothesis's own bookkeeping.
# FASTPATH_EXAMPLES=20000 searches deeper (such a run found nothing more on 2026-11-26).
PROPERTY = settings(
    max_examples=int(os.environ.get("FASTPATH_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# The methods llhttp (httptools 0.9) accepts in an HTTP/1.1 request; anything else it refuses with
# HttpParserInvalidMethodError. Measured, not guessed: see test_llhttp_method_set.
LLHTTP_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH "
    b"UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE "
    b"UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)
# Characters llhttp refuses in the authority of an absolute-form target (it accepts them in a path).
LLHTTP_BAD_AUTHORITY = frozenset(b'"#<>\\^`{|}')


def req(*lines: bytes, start: bytes = b"GET / HTTP/1.1") -> bytes:
    return b"\r\n".join((start, *lines)) + b"\r\n\r\n"


def resp(*lines: bytes, start: bytes = b"HTTP/1.1 200 OK") -> bytes:
    return b"\r\n".join((start, *lines)) + b"\r\n\r\n"


# --- llhttp, as the interpreted lane drives it ---------------------------------------------------


@dataclass
class LlRead:
    """What llhttp saw. ``error`` is the exception class name, or None when it took the bytes."""

    error: str | None = None
    method: bytes | None = None
    url: bytes = b""
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    headers_done: bool = False
    keep_alive: bool | None = None  # read in on_headers_complete, as http.py does
    body: bytes = b""
    messages: int = 0


class _Recorder:
    def __init__(self, read: LlRead) -> None:
        self.read = read
        self.parser: Any = None

    def on_url(self, url: bytes) -> None:
        self.read.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.read.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        # should_keep_alive() is only meaningful here: llhttp resets its flags after the message.
        self.read.headers_done = True
        self.read.keep_alive = self.parser.should_keep_alive()
        if isinstance(self.parser, httptools.HttpRequestParser):
            self.read.method = self.parser.get_method()
        else:
            self.read.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.read.body += body

    def on_message_complete(self) -> None:
        self.read.messages += 1


def llhttp(data: bytes, *, response: bool = False) -> LlRead:
    read = LlRead()
    rec = _Recorder(read)
    rec.parser = (httptools.HttpResponseParser if response else httptools.HttpRequestParser)(rec)
    try:
        rec.parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade) as e:
        read.error = type(e).__name__
    return read


def ows_trimmed(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # llhttp hands over trailing OWS as part of the value; RFC 9110 5.5 says it is not, and the fast
    # parser drops it. Same reading, different spelling.
    return [(n, v.rstrip(b" \t")) for n, v in headers]


# --- 1. table tests: requests --------------------------------------------------------------------


def test_plain_origin_form() -> None:
    data = req(b"Host: svc.ns:8080", b"User-Agent: curl/8", b"Accept: */*")
    assert fp.parse_request_head(data) == {
        "method": b"GET",
        "target": b"/",
        "headers": [(b"host", b"svc.ns:8080"), (b"user-agent", b"curl/8"), (b"accept", b"*/*")],
        "content_length": -1,
        "close": False,
        "head_end": len(data),
    }


def test_plain_absolute_form_with_body_after_head() -> None:
    head = req(b"Host: a", b"Content-Length: 5", start=b"POST http://reviews:9080/api?x=1 HTTP/1.1")
    got = fp.parse_request_head(head + b"hello")
    assert got["method"] == b"POST"
    assert got["target"] == b"http://reviews:9080/api?x=1"
    assert got["content_length"] == 5
    assert got["head_end"] == len(head)  # the body is not part of the head


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (b"X-A: v", b"v"),
        (b"X-A:v", b"v"),
        (b"X-A: \t v \t ", b"v"),
        (b"X-A:   a  b\tc  ", b"a  b\tc"),  # inner whitespace is the value's own
        (b"X-A:", b""),
        (b"X-A: \t ", b""),
        (b"X-!#$%&'*+-.^_`|~09az: v", b"v"),  # every tchar is fine in a name
    ],
)
def test_ows_trimmed_around_value(line: bytes, value: bytes) -> None:
    got = fp.parse_request_head(req(b"Host: a", line))
    assert got["headers"][1] == (line.split(b":", 1)[0].lower(), value)


def test_names_are_lowercased_and_order_kept() -> None:
    got = fp.parse_request_head(req(b"HOST: a", b"X-Multi: 1", b"x-multi: 2", b"X-Request-ID: r"))
    assert got["headers"] == [
        (b"host", b"a"),
        (b"x-multi", b"1"),
        (b"x-multi", b"2"),
        (b"x-request-id", b"r"),
    ]


@pytest.mark.parametrize(
    ("line", "length"),
    [
        (b"Content-Length: 0", 0),
        (b"Content-Length: 12", 12),
        (b"content-length:007", 7),
        (b"Content-Length: 999999999999999", 10**15 - 1),
    ],
)
def test_content_length(line: bytes, length: int) -> None:
    assert fp.parse_request_head(req(b"Host: a", line))["content_length"] == length


@pytest.mark.parametrize(
    ("lines", "close"),
    [
        ((), False),
        ((b"Connection: keep-alive",), False),
        ((b"Connection: Keep-Alive",), False),
        ((b"Connection: close",), True),
        ((b"Connection: CLOSE",), True),
        ((b"Connection: close", b"Connection: keep-alive"), True),  # llhttp: any close wins
    ],
)
def test_connection(lines: tuple[bytes, ...], close: bool) -> None:
    data = req(b"Host: a", *lines)
    assert fp.parse_request_head(data)["close"] is close
    assert llhttp(data).keep_alive is (not close)


def test_100_headers_is_the_limit() -> None:
    # Envoy's default max_headers_count; a head with more goes to the interpreted lane (requests)
    # or is refused as an upstream protocol error (responses), as Envoy would.
    many = [b"X-H%d: v" % k for k in range(99)]
    assert len(fp.parse_request_head(req(b"Host: a", *many))["headers"]) == 100
    assert fp.parse_request_head(req(b"Host: a", *many, b"X-One-More: v")) is False
    cookies = [b"Set-Cookie: c%d=v" % k for k in range(100)]
    assert len(fp.parse_response_head(resp(*cookies))["headers"]) == 100
    assert fp.parse_response_head(resp(*cookies, b"X-One-More: v")) is False


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(req(b"Host: a", b"Content-Length: 5", b"Transfer-Encoding: chunked"), id="CL+TE"),
        pytest.param(req(b"Host: a", b"Transfer-Encoding: chunked", b"Content-Length: 5"), id="TE+CL"),
        pytest.param(req(b"Host: a", b"Transfer-Encoding: chunked"), id="TE"),
        pytest.param(req(b"Host: a", b"Transfer-Encoding: identity"), id="TE-identity"),
        pytest.param(req(b"Host: a", b"Content-Length: 5", b"Content-Length: 5"), id="two-CL-equal"),
        pytest.param(req(b"Host: a", b"Content-Length: 5", b"Content-Length: 6"), id="two-CL-differ"),
        pytest.param(req(b"Host: a", b"Content-Length: 5, 5"), id="CL-list"),
        pytest.param(req(b"Host: a", b"Content-Length: +5"), id="CL-plus"),
        pytest.param(req(b"Host: a", b"Content-Length: -1"), id="CL-minus"),
        pytest.param(req(b"Host: a", b"Content-Length: 0x5"), id="CL-hex"),
        pytest.param(req(b"Host: a", b"Content-Length: 5a"), id="CL-suffix"),
        pytest.param(req(b"Host: a", b"Content-Length: 5 5"), id="CL-space"),
        pytest.param(req(b"Host: a", b"Content-Length:"), id="CL-empty"),
        pytest.param(req(b"Host: a", b"Content-Length: 1000000000000000"), id="CL-16-digits"),
        pytest.param(req(b"Host: a", b"Content-Length: 99999999999999999999999"), id="CL-huge"),
        pytest.param(req(b"Host: a", b"X-A: 1", b" folded"), id="obs-fold-SP"),
        pytest.param(req(b"Host: a", b"X-A: 1", b"\tfolded"), id="obs-fold-HTAB"),
        pytest.param(req(b"Host: a", b"Content-Length : 5"), id="SP-before-colon"),
        pytest.param(req(b"Host: a", b"Content-Length\t: 5"), id="HTAB-before-colon"),
        pytest.param(req(b" Host: a"), id="SP-before-name"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n", id="bare-LF-in-headers"),
        pytest.param(b"GET / HTTP/1.1\nHost: a\r\n\r\n", id="bare-LF-request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\rX-A: 1\r\n\r\n", id="bare-CR"),
        pytest.param(req(b"Host: a", b"X-A: a\x00b"), id="NUL-in-value"),
        pytest.param(req(b"Host: a", b"X-A: a\x01b"), id="CTL-in-value"),
        pytest.param(req(b"Host: a", b"X-A: a\x0bb"), id="VT-in-value"),
        pytest.param(req(b"Host: a", b"X-A: a\x7fb"), id="DEL-in-value"),
        pytest.param(req(b"Host: a", b"X-A: caf\xc3\xa9"), id="obs-text-in-value"),
        pytest.param(req(b"Host: a", b"X-A: \x80"), id="0x80-in-value"),
        pytest.param(req(b"Host: a", b"X(A): v"), id="paren-in-name"),
        pytest.param(req(b"Host: a", b"X/A: v"), id="slash-in-name"),
        pytest.param(req(b"Host: a", b"X\x00A: v"), id="NUL-in-name"),
        pytest.param(req(b"Host: a", b"X\x80A: v"), id="obs-text-in-name"),
        pytest.param(req(b"Host: a", b": v"), id="empty-name"),
        pytest.param(req(b"Host: a", b"X-A v"), id="no-colon"),
        pytest.param(req(b"Host: a", start=b"GET / HTTP/1.0"), id="HTTP/1.0"),
        pytest.param(req(b"Host: a", start=b"GET / HTTP/2.0"), id="HTTP/2.0"),
        pytest.param(req(b"Host: a", start=b"GET / HTTP/1.2"), id="HTTP/1.2"),
        pytest.param(req(b"Host: a", start=b"GET / http/1.1"), id="lowercase-version"),
        pytest.param(req(b"Host: a", start=b"GET /"), id="HTTP/0.9"),
        pytest.param(req(b"Host: a", start=b"GET  HTTP/1.1"), id="missing-target"),
        pytest.param(req(b"Host: a", start=b"GET  / HTTP/1.1"), id="two-SP-after-method"),
        pytest.param(req(b"Host: a", start=b"GET /  HTTP/1.1"), id="two-SP-after-target"),
        pytest.param(req(b"Host: a", start=b"GET\t/ HTTP/1.1"), id="HTAB-separator"),
        pytest.param(req(b"Host: a", start=b"GET / HTTP/1.1 "), id="SP-after-version"),
        pytest.param(req(b"Host: a", start=b" GET / HTTP/1.1"), id="SP-before-method"),
        pytest.param(req(b"Host: a", start=b"GET /a\x80 HTTP/1.1"), id="obs-text-in-target"),
        pytest.param(req(b"Host: a", start=b"GET /a\x7f HTTP/1.1"), id="DEL-in-target"),
        pytest.param(req(b"Host: a:443", start=b"CONNECT a:443 HTTP/1.1"), id="CONNECT-authority-form"),
        pytest.param(req(b"Host: a", start=b"GET a:80 HTTP/1.1"), id="authority-form"),
        pytest.param(req(b"Host: a", start=b"OPTIONS * HTTP/1.1"), id="asterisk-form"),
        pytest.param(req(b"Host: a", start=b"GET https://a/ HTTP/1.1"), id="https-target"),
        pytest.param(req(b"Host: a", start=b"GET HTTP://a/ HTTP/1.1"), id="uppercase-scheme"),
        pytest.param(req(b"Host: a", start=b"GET http:// HTTP/1.1"), id="http-no-authority"),
        pytest.param(req(b"Host: a", start=b"GET ftp://a/ HTTP/1.1"), id="ftp-target"),
        pytest.param(req(b"Host: a", b"Upgrade: websocket", b"Connection: Upgrade"), id="Upgrade"),
        pytest.param(req(b"Host: a", b"Upgrade: h2c"), id="Upgrade-alone"),
        pytest.param(req(b"Host: a", b"Connection: upgrade"), id="Connection-upgrade"),
        pytest.param(req(b"Host: a", b"Connection: keep-alive, close"), id="Connection-list"),
        pytest.param(req(b"Host: a", b"Connection: x-foo"), id="Connection-other"),
        pytest.param(req(b"Host: a", b"Expect: 100-continue"), id="Expect"),
        pytest.param(req(b"Host: a", b"Host: b"), id="duplicate-Host"),
        pytest.param(req(b"Host: a", b"X-Request-Id: 1", b"X-Request-Id: 2"), id="duplicate-request-id"),
        pytest.param(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", id="leading-CRLF"),
        pytest.param(b"\r\n\r\n", id="empty-head"),
    ],
)
def test_not_plain(data: bytes) -> None:
    assert fp.parse_request_head(data) is False


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET",
        b"GET / HTTP/1.1",
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r",
        b"GET / HTTP/1.1\r\nHost: a\n\n",  # bare LFs never end a head here
        # not even a broken one: without CRLFCRLF the parser does not look further
        b"GARBAGE\x00\x01 / HTTP/9\r\n",
    ],
)
def test_incomplete_head(data: bytes) -> None:
    assert fp.parse_request_head(data) is None


def test_every_prefix_of_a_head_is_incomplete() -> None:
    data = req(b"Host: a", b"Content-Length: 3", start=b"POST /x HTTP/1.1")
    for n in range(len(data)):
        assert fp.parse_request_head(data[:n]) is None, data[:n]
    assert fp.parse_request_head(data)["head_end"] == len(data)


# --- 1. table tests: responses -------------------------------------------------------------------


def test_plain_response() -> None:
    data = resp(b"Content-Type: text/plain", b"Content-Length: 2")
    assert fp.parse_response_head(data + b"ok") == {
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        "content_length": 2,
        "chunked": False,
        "close": False,
        "head_end": len(data),
    }


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (resp(b"Transfer-Encoding: chunked"), {"chunked": True, "content_length": -1}),
        (resp(b"Transfer-Encoding: Chunked"), {"chunked": True}),
        (resp(start=b"HTTP/1.1 404"), {"status": 404, "close": False}),
        (resp(start=b"HTTP/1.1 503 "), {"status": 503}),
        (resp(b"Connection: close", start=b"HTTP/1.1 200 OK"), {"close": True}),
        (resp(start=b"HTTP/1.0 200 OK"), {"close": True}),
        (resp(b"Connection: keep-alive", start=b"HTTP/1.0 200 OK"), {"close": False}),
        (resp(b"X-A: caf\xc3\xa9"), {"headers": [(b"x-a", b"caf\xc3\xa9")]}),  # obs-text: fine upstream
    ],
)
def test_response_fields(data: bytes, fields: dict[str, Any]) -> None:
    got = fp.parse_response_head(data)
    assert {k: got[k] for k in fields} == fields


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(resp(b"Content-Length: 5", b"Transfer-Encoding: chunked"), id="CL+TE"),
        pytest.param(resp(b"Content-Length: 5", b"Content-Length: 6"), id="two-CL-differ"),
        pytest.param(resp(b"Transfer-Encoding: gzip, chunked"), id="TE-list"),
        pytest.param(resp(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"), id="two-TE"),
        pytest.param(resp(b"Content-Length: -1"), id="CL-minus"),
        pytest.param(resp(b"X-A: 1", b" folded"), id="obs-fold"),
        pytest.param(resp(b"Content-Length : 1"), id="SP-before-colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 1\r\n\r\n", id="bare-LF"),
        pytest.param(resp(b"X-A: a\x00"), id="NUL-in-value"),
        pytest.param(resp(b"X-A: a\x7f"), id="DEL-in-value"),
        pytest.param(resp(start=b"HTTP/1.1 200 O\x7fK"), id="DEL-in-reason"),
        pytest.param(resp(start=b"HTTP/2.0 200 OK"), id="HTTP/2.0"),
        pytest.param(resp(start=b"http/1.1 200 OK"), id="lowercase-version"),
        pytest.param(resp(start=b"HTTP/1.1 20 OK"), id="two-digit-status"),
        pytest.param(resp(start=b"HTTP/1.1 2000 OK"), id="four-digit-status"),
        pytest.param(resp(start=b"HTTP/1.1 099 OK"), id="status-below-100"),
        pytest.param(resp(start=b"HTTP/1.1  200 OK"), id="two-SP"),
        pytest.param(resp(start=b"HTTP/1.1 200OK"), id="no-SP-before-reason"),
    ],
)
def test_response_malformed(data: bytes) -> None:
    assert fp.parse_response_head(data) is False


def test_response_incomplete() -> None:
    data = resp(b"Content-Length: 0")
    for n in range(len(data)):
        assert fp.parse_response_head(data[:n]) is None


# --- 1. divergences found: the fast parser takes what llhttp refuses or reads otherwise ----------


def test_llhttp_method_set() -> None:
    """LLHTTP_METHODS is what this llhttp accepts; if httptools changes, the exclusions below must."""
    for m in LLHTTP_METHODS:
        assert llhttp(req(b"Host: a", start=m + b" / HTTP/1.1")).error in (None, "HttpParserUpgrade"), m
    for m in (b"FOO", b"get", b"PRI", b"GETX", b"DESCRIBE"):
        assert llhttp(req(b"Host: a", start=m + b" / HTTP/1.1")).error is not None, m


@pytest.mark.parametrize("method", [b"FOO", b"get", b"GeT", b"PRI", b"G!T"])
def test_unknown_method_is_not_plain(method: bytes) -> None:
    data = req(b"Host: a", start=method + b" / HTTP/1.1")
    assert llhttp(data).error is not None
    assert fp.parse_request_head(data) is False


@pytest.mark.parametrize("target", [b"/", b"http://a/"])
def test_connect_is_not_plain(target: bytes) -> None:
    data = req(b"Host: a", start=b"CONNECT " + target + b" HTTP/1.1")
    assert llhttp(data).error == "HttpParserUpgrade"
    assert fp.parse_request_head(data) is False


@pytest.mark.parametrize("c", sorted(LLHTTP_BAD_AUTHORITY))
def test_absolute_form_authority_chars(c: int) -> None:
    data = req(b"Host: a", start=b"GET http://a" + bytes([c]) + b"b/ HTTP/1.1")
    assert llhttp(data).error == "HttpParserInvalidURLError"
    assert fp.parse_request_head(data) is False


def test_proxy_connection_close_is_read_as_close() -> None:
    data = req(b"Host: a", b"Proxy-Connection: close")
    assert llhttp(data).keep_alive is False
    got = fp.parse_request_head(data)
    assert got is False or got["close"] is True


def test_response_duplicate_equal_content_length() -> None:
    data = resp(b"Content-Length: 5", b"Content-Length: 5")
    assert llhttp(data, response=True).error == "HttpParserError"
    assert fp.parse_response_head(data) is False


@pytest.mark.parametrize(
    "line", [b"Connection: close, x-foo", b"Connection: x-foo, close", b"Proxy-Connection: close"]
)
def test_response_connection_close_in_list(line: bytes) -> None:
    data = resp(line, b"Content-Length: 0")
    assert llhttp(data, response=True).keep_alive is False
    got = fp.parse_response_head(data)
    assert got is False or got["close"] is True


# --- 2a. property: accepted requests read the same by llhttp -------------------------------------

SEED_REQUESTS = [
    req(b"Host: a"),
    req(
        b"Host: reviews.default.svc:9080",
        b"Accept: */*",
        b"Content-Length: 3",
        start=b"POST /api/v1?x=1 HTTP/1.1",
    )
    + b"abc",
    req(b"Host: a", b"Connection: close", b"X-Request-Id: 42", start=b"DELETE http://a:80/x HTTP/1.1"),
    req(b"host:a", b"x-a:\tb c\t", b"content-length:0", b"connection:keep-alive", start=b"PUT /%7e HTTP/1.1"),
]
# The bytes that make parsers disagree: line ends, separators, CTLs, DEL, obs-text, and some
# ordinary ones so that mutations can also make new valid heads.
MUTATION_BYTES = b'\r\n \t:\x00\x0b\x7f\x80\xff,;/=-"0Aa'


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(("insert", "replace", "delete")))
        b = draw(st.sampled_from(MUTATION_BYTES))
        if op == "insert" or pos == len(data):
            data.insert(pos, b)
        elif op == "replace":
            data[pos] = b
        else:
            del data[pos]
    return bytes(data)


def check_request_agrees(data: bytes) -> None:
    got = fp.parse_request_head(data)
    if not isinstance(got, dict):
        return
    head = data[: got["head_end"]]
    length = max(got["content_length"], 0)
    # The head and exactly the body the fast parser expects, then the start of a pipelined request:
    # llhttp must finish one message there, or the two lanes frame the connection differently.
    # (After "Connection: close" llhttp refuses any further byte, so nothing follows then.)
    ll = llhttp(head + b"x" * length + (b"" if got["close"] else b"GET"))
    assert ll.error is None, (data, ll)
    assert ll.method == got["method"]
    assert ll.url == got["target"]
    assert ows_trimmed(ll.headers) == got["headers"]
    assert ll.messages == 1 and len(ll.body) == length
    assert ll.keep_alive is (not got["close"])


@PROPERTY
@given(mutated(SEED_REQUESTS))
def test_accepted_requests_read_the_same_by_llhttp(data: bytes) -> None:
    check_request_agrees(data)


TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~", min_size=1, max_size=12
)
VCHAR = st.binary(min_size=0, max_size=20).map(lambda b: bytes(33 + c % 94 for c in b))


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A plain head built from the grammar, and what the fast parser must read from it."""
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]))
    path = b"/" + draw(VCHAR)
    if draw(st.booleans()):
        target = b"http://" + draw(st.from_regex(rb"\A[a-z0-9.-]{1,10}(:[0-9]{1,5})?\Z")) + path
    else:
        target = path
    headers: list[tuple[bytes, bytes]] = [(b"host", b"a")]
    lines = [b"Host: a"]
    for _ in range(draw(st.integers(0, 6))):
        name = b"x-t-" + draw(TOKEN).encode()
        inner = draw(st.lists(VCHAR.filter(bool), max_size=3))
        value = draw(st.sampled_from([b" ", b"\t"])).join(inner)
        lead, trail = (
            draw(st.sampled_from([b"", b" ", b"\t ", b"  "])),
            draw(st.sampled_from([b"", b" ", b"\t"])),
        )
        lines.append(name + b":" + lead + value + trail)
        headers.append((name.lower(), value))
    length = draw(st.one_of(st.just(-1), st.integers(0, 20)))
    if length >= 0:
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, b"Content-Length: %d" % length)
        headers.insert(at, (b"content-length", b"%d" % length))
    close = draw(st.sampled_from([None, b"close", b"keep-alive"]))
    if close is not None:
        lines.append(b"Connection: " + close)
        headers.append((b"connection", close))
    data = req(*lines, start=method + b" " + target + b" HTTP/1.1")
    want = {
        "method": method,
        "target": target,
        "headers": headers,
        "content_length": length,
        "close": close == b"close",
        "head_end": len(data),
    }
    return data + b"x" * max(length, 0), want


@PROPERTY
@given(valid_requests())
def test_generated_plain_requests_accepted_exactly(case: tuple[bytes, dict[str, Any]]) -> None:
    data, want = case
    assert fp.parse_request_head(data) == want
    check_request_agrees(data)


# --- 2b. property: accepted responses read the same by llhttp ------------------------------------

SEED_RESPONSES = [
    resp(b"Content-Length: 2") + b"ok",
    resp(b"Content-Type: text/plain", b"Transfer-Encoding: chunked") + b"2\r\nok\r\n0\r\n\r\n",
    resp(b"Server: x", b"Connection: close", b"Content-Length: 0", start=b"HTTP/1.1 503 Service Unavailable"),
    resp(b"content-length:1", b"x-a:\tb c\t", start=b"HTTP/1.0 404 Not Found") + b"x",
    resp(start=b"HTTP/1.1 204 No Content"),
]


def known_response_divergence(got: dict[str, Any], ll: LlRead) -> bool:
    # The lane refuses 101 itself (FastUpstream.on_head) after parsing; llhttp calls it an upgrade.
    return got["status"] == 101 and ll.error == "HttpParserUpgrade"


def check_response_agrees(data: bytes) -> None:
    got = fp.parse_response_head(data)
    if not isinstance(got, dict):
        return
    head = data[: got["head_end"]]
    status = got["status"]
    bodiless = status < 200 or status in (204, 304)
    framed = bodiless or got["chunked"] or got["content_length"] >= 0
    if bodiless:
        body = b""
    elif got["chunked"]:
        body = b"2\r\nok\r\n0\r\n\r\n"
    else:
        body = b"x" * max(got["content_length"], 0)
    ll = llhttp(head + body, response=True)
    if known_response_divergence(got, ll):
        return
    assert ll.error is None, (data, ll)
    assert ll.status == status
    assert ows_trimmed(ll.headers) == got["headers"]
    if not framed:
        assert ll.messages == 0  # read to EOF: llhttp waits too
        return
    # The body ends where the fast lane thinks it does.
    assert ll.messages == 1, (data, ll)
    assert ll.body == (b"" if bodiless else b"ok" if got["chunked"] else body)
    # Reusing a connection llhttp would close is the harmful direction (closing one it would keep
    # is only slower: HTTP/1.0 "keep-alive" after "close" is such a case).
    tokens = [v.lower() for n, v in got["headers"] if n in (b"connection", b"proxy-connection")]
    known = any(n == b"proxy-connection" for n, _ in got["headers"]) or not all(
        v in (b"close", b"keep-alive") for v in tokens
    )  # test_response_connection_close_in_list
    if not known and ll.keep_alive is False:
        assert got["close"], (data, ll)


@PROPERTY
@given(mutated(SEED_RESPONSES))
def test_accepted_responses_read_the_same_by_llhttp(data: bytes) -> None:
    check_response_agrees(data)


# --- 2c. property: chunked framing against a reference decoder -----------------------------------

HEXDIGITS = b"0123456789abcdefABCDEF"
TCHARS = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
QUOTED = re.compile(rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"')
FIELD_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t !-~\x80-\xff]*")


@dataclass
class Decoded:
    """The reference decoder's reading. ``error`` names the part that broke the grammar."""

    data_bytes: int = 0
    end: int | None = None  # offset just past the final CRLF
    error: str | None = None


def chunk_extensions_ok(ext: bytes) -> bool:
    """RFC 9112 7.1.1 chunk-ext: *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )."""
    rest = ext
    while rest:
        m = re.match(rb"[ \t]*;[ \t]*", rest)
        if not m:
            return False
        rest = rest[m.end() :]
        m = TCHARS.match(rest)
        if not m:
            return False
        rest = rest[m.end() :]
        m = re.match(rb"[ \t]*=[ \t]*", rest)
        if m:
            rest = rest[m.end() :]
            m = TCHARS.match(rest) or QUOTED.match(rest)
            if not m:
                return False
            rest = rest[m.end() :]
    return True


def reference_chunked(stream: bytes) -> Decoded:
    """Strict RFC 9112 7.1 chunked decoding of ``stream`` (which may stop early or run on)."""
    out = Decoded()
    i = 0
    while True:
        eol = stream.find(b"\r\n", i)
        line = stream[i:] if eol < 0 else stream[i:eol]
        digits = re.match(rb"[0-9a-fA-F]*", line).group()  # type: ignore[union-attr]
        ext = line[len(digits) :]
        if (eol >= 0 or ext) and not digits:
            out.error = "size"
            return out
        if digits and int(digits, 16) >= 2**63:
            out.error = "overflow"  # no 64-bit parser can hold it: a length no two peers agree on
            return out
        if re.search(rb"[\x00-\x08\x0a-\x1f]", ext):
            out.error = "size-line"  # a bare CR or LF, or another CTL
            return out
        if eol < 0:
            return out
        if not chunk_extensions_ok(ext):
            out.error = "ext"
            return out
        size = int(digits, 16)
        i = eol + 2
        if size == 0:
            break
        if len(stream) - i < size:
            out.data_bytes += len(stream) - i
            return out
        out.data_bytes += size
        i += size
        crlf = stream[i : i + 2]
        if not b"\r\n".startswith(crlf):
            out.error = "data-crlf"
            return out
        if len(crlf) < 2:
            return out
        i += 2
    while True:  # the trailer section, up to the empty line
        eol = stream.find(b"\r\n", i)
        if eol < 0:
            tail = stream[i:]
            if tail[:1] == b"\r" and len(tail) > 1:
                out.error = "final-crlf"
            elif re.search(rb"\r.|\n", tail):
                out.error = "trailer"
            return out
        if eol == i:
            out.end = i + 2
            return out
        if not FIELD_LINE.fullmatch(stream[i:eol]):
            out.error = "trailer"
            return out
        i = eol + 2


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, int]:
    """A valid chunked body (sizes in any case, with leading zeros, extensions and trailers)."""
    out = b""
    total = 0
    for _ in range(draw(st.integers(0, 4))):
        size = draw(st.integers(1, 40))
        digits = b"%x" % size
        digits = draw(st.sampled_from([digits, digits.upper(), b"00" + digits]))
        ext = draw(st.sampled_from([b"", b";a", b";a=b", b';name="v; \\"q\\""', b";a;b=c"]))
        out += digits + ext + b"\r\n" + draw(st.binary(min_size=size, max_size=size)) + b"\r\n"
        total += size
    out += draw(st.sampled_from([b"0", b"000"])) + draw(st.sampled_from([b"", b";last"])) + b"\r\n"
    for _ in range(draw(st.integers(0, 2))):
        out += draw(st.sampled_from([b"X-Trailer: v", b"Checksum:abc", b"X-E:"])) + b"\r\n"
    return out + b"\r\n", total


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def scan(stream: bytes, cuts: list[int]) -> tuple[int, int | None] | bool:
    """scan_chunked over ``stream`` cut at ``cuts``, with the end offset made absolute again."""
    pieces = split(stream, cuts)
    got = fp.scan_chunked(pieces)
    if got is False or got[1] is None:
        return got
    # The offset is into the piece where the body ended: the first prefix of pieces that ends it.
    start = 0
    for k in range(1, len(pieces) + 1):
        part = fp.scan_chunked(pieces[:k])
        if part is not False and part[1] is not None:
            assert part == got
            return got[0], start + got[1]
        start += len(pieces[k - 1])
    raise AssertionError("scan_chunked ended in no piece")


CUTS = st.lists(st.integers(0, 400), max_size=6)


@PROPERTY
@given(chunked_bodies(), CUTS, st.binary(max_size=8))
def test_valid_chunked_bodies_counted_and_ended_exactly(
    body: tuple[bytes, int], cuts: list[int], after: bytes
) -> None:
    data, total = body
    ref = reference_chunked(data + after)
    assert (ref.error, ref.data_bytes, ref.end) == (None, total, len(data))  # the generator is right
    assert scan(data + after, cuts) == (total, len(data))


@PROPERTY
@given(chunked_bodies(), CUTS, st.data())
def test_truncated_chunked_bodies_are_incomplete(
    body: tuple[bytes, int], cuts: list[int], d: st.DataObject
) -> None:
    data, _ = body
    prefix = data[: d.draw(st.integers(0, len(data) - 1))]
    assert scan(prefix, cuts) == (reference_chunked(prefix).data_bytes, None)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"g\r\n", id="bad-hex"),
        pytest.param(b"5x\r\nhello\r\n0\r\n\r\n", id="hex-then-junk"),
        pytest.param(b"0x5\r\nhello\r\n0\r\n\r\n", id="0x-prefix"),
        pytest.param(b"-5\r\n", id="negative"),
        pytest.param(b"+5\r\n", id="plus"),
        pytest.param(b"\r\n", id="empty-size"),
        pytest.param(b";a\r\n", id="ext-without-size"),
        pytest.param(b"5\nhello\r\n0\r\n\r\n", id="bare-LF-after-size"),
        pytest.param(b"5\rhello\r\n0\r\n\r\n", id="bare-CR-after-size"),
        pytest.param(b"5\r\nhelloX\r\n0\r\n\r\n", id="data-too-long"),
        pytest.param(b"5\r\nhello\n0\r\n\r\n", id="bare-LF-after-data"),
        pytest.param(b"5\r\nhello0\r\n\r\n", id="missing-CRLF-after-data"),
        pytest.param(b"5\r\nhello\r\n0\r\n\rX", id="bad-final-CRLF"),
        pytest.param(b"5;a\x00\r\nhello\r\n0\r\n\r\n", id="NUL-in-ext"),
        pytest.param(b"1" + b"0" * 16 + b"\r\n", id="size-2**64"),
        pytest.param(b"f" * 17 + b"\r\n", id="size-17-digits"),
        pytest.param(b"f" * 64 + b"\r\n", id="size-64-digits"),
    ],
)
def test_corrupted_chunked_is_refused(data: bytes) -> None:
    assert reference_chunked(data).error is not None
    assert fp.scan_chunked([data]) is False
    assert fp.scan_chunked([bytes([b]) for b in data]) is False  # one byte per read: state carries over


def test_chunk_size_cap() -> None:
    # The lane caps a chunk at about 2**44 bytes (far beyond any body it could buffer or time): a
    # size under the cap is a (long) body still coming, one above it is refused.
    assert fp.scan_chunked([b"fffffffffff\r\nab"]) == (2, None)
    assert fp.scan_chunked([b"0000000000000000000fffffffffff\r\nab"]) == (2, None)
    assert fp.scan_chunked([b"1000000000000\r\n"]) is False


@pytest.mark.parametrize(
    "data",
    [
        # A client that takes a bare LF as a line end sees the body end at "0\r\n\n" and then reads a
        # second response the upstream wrote into the "trailers": response splitting.
        b"0\r\n\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        b"0\r\nX: a\nY: b\r\n\r\n",
        b"0\r\nno colon\r\n\r\n",
        b"0\r\n\x00\r\n\r\n",
    ],
)
def test_malformed_trailers_are_refused(data: bytes) -> None:
    assert llhttp(resp(b"Transfer-Encoding: chunked") + data, response=True).error is not None
    assert fp.scan_chunked([data]) is False


# (``;=``, an empty extension name, is refused too, though llhttp takes it: the cautious side.)
@pytest.mark.parametrize("ext", [b";\x7f", b";\x80", b";a b", b'; a="unterminated'])
def test_malformed_chunk_extensions_are_refused(ext: bytes) -> None:
    data = b"5" + ext + b"\r\nhello\r\n0\r\n\r\n"
    assert llhttp(resp(b"Transfer-Encoding: chunked") + data, response=True).error is not None
    assert fp.scan_chunked([data]) is False


CHUNK_SEEDS = [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"3;a=b\r\nabc\r\n0\r\nX: y\r\n\r\n",
    b"1\r\nz\r\n2\r\nzz\r\n0\r\n\r\n",
]


@PROPERTY
@given(mutated(CHUNK_SEEDS), CUTS)
def test_mutated_chunked_never_framed_differently(data: bytes, cuts: list[int]) -> None:
    """Whatever the scanner finishes, the strict reference finishes at the same byte with the same
    count."""
    got = scan(data, cuts)
    ref = reference_chunked(data)
    if got is False:
        return
    if got[1] is None:  # still waiting: so is the reference, unless the bytes are already wrong
        assert ref.end is None, (data, ref)
        if ref.error is None:
            assert got[0] == ref.data_bytes, (data, ref)
        return
    assert ref.error is None, (data, ref)
    assert got == (ref.data_bytes, ref.end), (data, ref)


def test_response_transfer_encoding_with_a_trailing_tab_is_not_chunked_to_llhttp() -> None:
    # Found by the property test above: llhttp frames "chunked\t" as read-until-close while a
    # trimmed value would say chunked; the lane refuses the response instead of disagreeing.
    data = resp(b"Transfer-Encoding: chunked\t") + b"2\r\nok\r\n0\r\n\r\n"
    assert llhttp(data, response=True).messages == 0
    assert fp.parse_response_head(data) is False
    assert fp.parse_response_head(resp(b"Transfer-Encoding: chunked ")) not in (None, False)
