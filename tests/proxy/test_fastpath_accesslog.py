"""Access logs written by the compiled fast lane read as the interpreted lane's, field by field.

With access logging on, ``_fastpath.pyx`` still serves plain requests: its ``FastExchange`` keeps
what ``accesslog.py`` reads and the listener's loggers run after the metrics. Users grep, parse and
alert on these lines, so turning the lane on must not change one field of them.

Two proxy processes get the same bootstrap (but for their listener ports and log directory), one
with the lane on and one with ``MESHPILOT_PROXY_FASTPATH=0``. Each logs on its outbound and its
inbound listener in Istio's default TEXT format, its default JSON and a custom format (TEXT and
JSON) with the operators the defaults leave out. Every case sends the same requests to both, checks
from the lane's counters that the lane served them (none handed over), waits for the lines (written
when an exchange finishes), and compares them once what legitimately differs is masked: times,
durations, generated request ids, ephemeral ports, the proxies' own listener ports, connection ids
(renumbered in order of appearance, so keep-alive reuse still has to agree).

Topology (module scope)::

    client --> virtualOutbound (127.0.0.1)  --> raw upstreams a, b, a dead port
                                            \\-> the same proxy's inbound listener (127.0.0.2) --> a
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastpath_upstream import CHUNKED_BODY, RawUpstream
from proxy_harness import (
    REVIEWS_ENDPOINT,
    REVIEWS_META,
    ProxyProcess,
    free_port,
    inbound_listener,
    node,
    outbound_listener,
    static_cluster,
)
from test_fastpath import RQ, Closed, Lane, RawClient, get, post, stats

from meshpilot.proxy.accesslog import ISTIO_DEFAULT_JSON_FORMAT, ISTIO_DEFAULT_TEXT_FORMAT, parse_text_line

DST_IP = "127.0.0.2"
IN_CLUSTER = "inbound|9080||"

# The operators Istio's defaults leave out, and request/response headers the cases set or edit.
# "|" appears in no value these cases produce, so parse_text_line can split on it.
CUSTOM_TEXT_FORMAT = (
    "%REQ(:METHOD)%|%REQ(:PATH)%|%REQ(:AUTHORITY)%|%REQ(END-USER)%|%REQ(X-ADDED)%|%REQ(X-SECRET)%|"
    "%REQ(X-ENVOY-PEER-METADATA-ID)%|%RESP(CONTENT-TYPE)%|%RESP(CONTENT-LENGTH)%|"
    "%RESP(TRANSFER-ENCODING)%|%RESP(X-UPSTREAM)%|%RESP(X-CUSTOM)%|%RESP(X-RESP)%|%UPSTREAM_HOST%|"
    "%ROUTE_NAME%|%RESPONSE_CODE%|%RESPONSE_FLAGS%|%RESPONSE_CODE_DETAILS%|"
    "%UPSTREAM_TRANSPORT_FAILURE_REASON%|%CONNECTION_TERMINATION_DETAILS%|%BYTES_RECEIVED%|"
    "%BYTES_SENT%|%DURATION%|%RESPONSE_DURATION%|%UPSTREAM_REQUEST_ATTEMPT_COUNT%|%CONNECTION_ID%\n"
)
CUSTOM_JSON_FORMAT = {
    "method": "%REQ(:METHOD)%",
    "authority_and_path": "%REQ(:AUTHORITY)%%REQ(:PATH)%",  # two operators: a string, "-" if absent
    "added": "%REQ(X-ADDED)%",
    "end_user": "%REQ(END-USER)%",
    "resp_custom": "%RESP(X-CUSTOM)%",
    "resp_added": "%RESP(X-RESP)%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "route": "%ROUTE_NAME%",
    "code": "%RESPONSE_CODE%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "termination": "%CONNECTION_TERMINATION_DETAILS%",
    "received": "%BYTES_RECEIVED%",
    "sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "response_duration": "%RESPONSE_DURATION%",
    "conn": "%CONNECTION_ID%",
}
# log name -> (encoding, format given in the bootstrap, {field: operator} to read a line back)
LOGS: dict[str, tuple[str, str | None, dict[str, str] | str]] = {
    "text": ("TEXT", None, ISTIO_DEFAULT_TEXT_FORMAT),
    "json": ("JSON", None, ISTIO_DEFAULT_JSON_FORMAT),
    "custom-text": ("TEXT", CUSTOM_TEXT_FORMAT, CUSTOM_TEXT_FORMAT),
    "custom-json": ("JSON", json.dumps(CUSTOM_JSON_FORMAT), CUSTOM_JSON_FORMAT),
}
LISTENERS = ("outbound", "inbound")


def _add(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}


def _route(name: str, cluster: str, match: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    route = {k: v for k, v in extra.items() if k == "timeout"}
    edits = {k: v for k, v in extra.items() if k != "timeout"}
    return {"name": name, "match": match or {"prefix": "/"}, "route": {"cluster": cluster, **route}, **edits}


def bootstrap(ups: dict[str, RawUpstream], out_port: int, in_port: int, dead_port: int, logs: Path) -> dict:
    """One sidecar: an outbound listener and an inbound one, each with all four access logs."""
    a, b = ups["a"], ups["b"]

    def access_log(listener: str) -> list[dict[str, str]]:
        out = []
        for name, (encoding, fmt, _) in LOGS.items():
            entry = {"path": str(logs / f"{listener}-{name}.log"), "encoding": encoding}
            if fmt is not None:
                entry["format"] = fmt
            out.append(entry)
        return out

    vhosts = [
        {
            "name": "svc",
            "domains": ["svc"],
            "routes": [_route("slow", "a", {"prefix": "/slow"}, timeout=0.3), _route("svc-default", "a")],
        },
        {
            "name": "hdr",
            "domains": ["hdr"],
            "routes": [
                _route(
                    "jason",
                    "b",
                    {"prefix": "/", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]},
                ),
                _route("hdr-default", "a"),
            ],
        },
        {
            "name": "edit",
            "domains": ["edit"],
            "routes": [
                _route(
                    "edit",
                    "a",
                    request_headers_to_add=[_add("x-added", "one")],
                    request_headers_to_remove=["x-secret"],
                    response_headers_to_add=[_add("x-resp", "added")],
                    response_headers_to_remove=["x-custom"],
                )
            ],
        },
        # response edits that only add: no removal, so ``HeaderOps.apply`` appends to the list it is given
        {
            "name": "edit-add",
            "domains": ["edit-add"],
            "routes": [_route("edit-add", "a", response_headers_to_add=[_add("x-resp", "added")])],
        },
        {"name": "dead", "domains": ["dead"], "routes": [_route("dead", "dead")]},
        {"name": "reviews", "domains": ["reviews"], "routes": [_route("reviews", "to-dst")]},
    ]
    return {
        "node": node("productpage", app="productpage"),
        "static_resources": {
            "listeners": [
                outbound_listener(out_port, access_log=access_log("outbound")),
                inbound_listener(DST_IP, in_port, IN_CLUSTER, access_log=access_log("inbound")),
            ],
            "routes": [{"name": "80", "virtual_hosts": vhosts}],
            "clusters": [
                static_cluster("a", [(a.host, a.port)]),
                static_cluster("b", [(b.host, b.port)]),
                static_cluster("dead", [("127.0.0.1", dead_port)]),
                static_cluster(
                    "to-dst", [(DST_IP, in_port)], ep_metadata=[REVIEWS_ENDPOINT], metadata=REVIEWS_META
                ),
                static_cluster(IN_CLUSTER, [(a.host, a.port)], metadata=REVIEWS_META),
            ],
        },
    }


# --- proxies and their log files ----------------------------------------------------------------


@dataclass
class Sidecar:
    proc: ProxyProcess
    out_port: int
    in_port: int
    logs: Path
    fast: bool

    def path(self, listener: str, log: str) -> Path:
        return self.logs / f"{listener}-{log}.log"

    def lines(self, listener: str, log: str) -> list[str]:
        p = self.path(listener, log)
        # only whole lines: one may be half written while we read
        text = p.read_text() if p.exists() else ""
        return text.splitlines(keepends=True)[: text.count("\n")]

    def marks(self) -> dict[tuple[str, str], int]:
        return {(li, lg): len(self.lines(li, lg)) for li in LISTENERS for lg in LOGS}


@pytest.fixture(scope="module")
def ups():
    started = {n: RawUpstream(n).start() for n in ("a", "b")}
    yield started
    for u in started.values():
        u.stop()


@pytest.fixture(scope="module")
def dead_port():
    return free_port()


def _start(ups, dead_port: int, logs: Path, fast: bool) -> Sidecar:
    out_port, in_port = free_port(), free_port(DST_IP)
    boot = bootstrap(ups, out_port, in_port, dead_port, logs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESHPILOT_PROXY_FASTPATH", "1" if fast else "0")  # inherited by the child
        p = ProxyProcess(boot)
    try:
        p.wait_ready()
    except Exception:
        p.stop()
        raise
    return Sidecar(p, out_port, in_port, logs, fast)


@pytest.fixture(scope="module")
def sidecars(ups, dead_port, tmp_path_factory):
    on = _start(ups, dead_port, tmp_path_factory.mktemp("lane-on"), fast=True)
    try:
        off = _start(ups, dead_port, tmp_path_factory.mktemp("lane-off"), fast=False)
    except Exception:
        on.proc.stop()
        raise
    yield on, off
    on.proc.stop()
    off.proc.stop()


# --- masking what legitimately differs ----------------------------------------------------------

_START_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_MILLIS = {"DURATION", "RESPONSE_DURATION", "RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)"}
_EPHEMERAL = {"UPSTREAM_LOCAL_ADDRESS", "DOWNSTREAM_REMOTE_ADDRESS"}


def _fields(line: str, spec: dict[str, str] | str) -> list[tuple[str, str, Any]]:
    """(field, operator(s), value) in format order: a TEXT line parsed back, a JSON line read."""
    if isinstance(spec, str):
        return [(op, op, v) for op, v in parse_text_line(line, spec).items()]
    obj = json.loads(line)
    assert list(obj) == list(spec), obj  # every field, in the format's order
    return [(k, spec[k].strip("%"), obj[k]) for k in spec]


def _mask(op: str, value: Any, side: Sidecar, conns: dict[Any, str]) -> Any:
    if value is None or value == "-":
        return value  # absent stays absent: a lane that loses a value must show
    s = str(value)
    if op == "START_TIME":
        assert _START_TIME.fullmatch(s), s
        return "<time>"
    if op in _MILLIS:
        assert s.isdigit(), s
        return "<ms>"
    if op == "REQ(X-REQUEST-ID)" and _UUID.fullmatch(s):
        return "<generated>"
    if op in _EPHEMERAL:
        assert re.fullmatch(r"127\.0\.0\.[12]:\d+", s), s
        return s.rsplit(":", 1)[0] + ":<ephemeral>"
    if op == "CONNECTION_ID":
        return conns.setdefault(value, f"<conn {len(conns) + 1}>")
    if isinstance(value, str):  # the proxy's own listener ports (upstream_host for the inbound hop too)
        value = value.replace(f"127.0.0.1:{side.out_port}", "127.0.0.1:<outbound>")
        value = value.replace(f"{DST_IP}:{side.in_port}", f"{DST_IP}:<inbound>")
    return value


def masked(side: Sidecar, listener: str, log: str, lines: list[str]) -> list[list[tuple[str, Any]]]:
    conns: dict[Any, str] = {}
    return [
        [(field, _mask(op, value, side, conns)) for field, op, value in _fields(line, LOGS[log][2])]
        for line in lines
    ]


def raw_fields(line: str, log: str) -> dict[str, Any]:
    return {field: value for field, _, value in _fields(line, LOGS[log][2])}


# --- the cases ----------------------------------------------------------------------------------


@dataclass
class Case:
    run: Callable[[Sidecar, dict[str, RawUpstream]], None]
    outbound: int  # lines each outbound log gets
    inbound: int = 0  # lines each inbound log gets
    check: Callable[[dict[str, list[dict[str, Any]]]], None] | None = None  # on the lane's lines


def _one(raw: bytes, head_only: bool = False, port: str = "out") -> Callable[[Sidecar, Any], None]:
    def run(side: Sidecar, ups: Any) -> None:
        host, p = ("127.0.0.1", side.out_port) if port == "out" else (DST_IP, side.in_port)
        with RawClient(p, host=host) as c:
            c.request(raw, head_only)

    return run


def _each(*raws: bytes) -> Callable[[Sidecar, Any], None]:
    def run(side: Sidecar, ups: Any) -> None:
        with RawClient(side.out_port) as c:
            for raw in raws:
                c.request(raw)

    return run


def _upstream_dies(side: Sidecar, ups: Any) -> None:
    with RawClient(side.out_port) as c:
        c.send(get("/die", x_request_id="rid-die"))
        with pytest.raises(Closed):
            c.response()  # a cut body: the client sees the connection close early


def _client_walks_away(side: Sidecar, ups: dict[str, RawUpstream]) -> None:
    a = ups["a"]
    n = len(a.requests_to("/echo"))
    with RawClient(side.out_port) as c:
        c.send(get("/echo?sleep=1&dc=1", x_request_id="rid-dc"))
        deadline = time.monotonic() + 5
        while len(a.requests_to("/echo")) == n:  # close only once the request is upstream
            assert time.monotonic() < deadline, "the request never reached the upstream"
            time.sleep(0.01)


def _codes(want: list[tuple[int, str | None]], listener: str = "outbound"):
    """Beyond parity: the lane-on JSON lines have these (code, flags)."""

    def check(lines: dict[str, list[dict[str, Any]]]) -> None:
        got = [(d["response_code"], d["response_flags"]) for d in lines[f"{listener}-json"]]
        assert got == want

    return check


def _check_get(lines: dict[str, list[dict[str, Any]]]) -> None:
    d = lines["outbound-text"][0]
    assert d["REQ(X-REQUEST-ID)"] == "rid-get" and d["REQ(USER-AGENT)"] == "curl/8.4.0"
    assert d["REQ(X-FORWARDED-FOR)"] == "10.1.1.100" and d["REQ(:AUTHORITY)"] == "svc"
    assert d["RESPONSE_CODE"] == "200" and d["RESPONSE_CODE_DETAILS"] == "via_upstream"
    assert d["ROUTE_NAME"] == "svc-default" and d["UPSTREAM_CLUSTER"] == "a"
    c = lines["outbound-custom-text"][0]
    assert c["REQ(X-ENVOY-PEER-METADATA-ID)"].startswith("sidecar~127.0.0.1~productpage")


def _check_no_ids(lines: dict[str, list[dict[str, Any]]]) -> None:
    j = lines["outbound-json"][0]
    assert _UUID.fullmatch(j["request_id"]) and j["user_agent"] is None and j["x_forwarded_for"] is None
    assert j["path"] == "/echo?q=1"


def _check_post(lines: dict[str, list[dict[str, Any]]]) -> None:
    j = lines["outbound-json"][0]
    assert j["method"] == "POST" and j["bytes_received"] == 11 and j["bytes_sent"] > 0


def _check_header_match(lines: dict[str, list[dict[str, Any]]]) -> None:
    routes = [
        (c["ROUTE_NAME"], c["REQ(END-USER)"], c["RESP(X-UPSTREAM)"]) for c in lines["outbound-custom-text"]
    ]
    assert routes == [("jason", "jason", "b"), ("hdr-default", "mary", "a"), ("hdr-default", "-", "a")]
    assert len({c["CONNECTION_ID"] for c in lines["outbound-custom-text"]}) == 1  # one keep-alive connection


def _check_edits(lines: dict[str, list[dict[str, Any]]]) -> None:
    c = lines["outbound-custom-text"][0]
    # request edits are in what the log reads; the removed header is gone
    assert c["REQ(X-ADDED)"] == "one" and c["REQ(X-SECRET)"] == "-"


def _check_head(lines: dict[str, list[dict[str, Any]]]) -> None:
    c = lines["outbound-custom-text"][0]
    assert c["REQ(:METHOD)"] == "HEAD" and c["RESP(CONTENT-LENGTH)"] == "1234" and c["BYTES_SENT"] == "0"


def _check_chunked(lines: dict[str, list[dict[str, Any]]]) -> None:
    c = lines["outbound-custom-text"][0]
    assert c["RESP(TRANSFER-ENCODING)"] == "chunked" and c["BYTES_SENT"] == str(len(CHUNKED_BODY))


def _check_inbound_hop(lines: dict[str, list[dict[str, Any]]]) -> None:
    out, inn = lines["outbound-custom-text"][0], lines["inbound-custom-text"][0]
    assert out["UPSTREAM_HOST"].startswith(DST_IP) and out["ROUTE_NAME"] == "reviews"
    assert inn["REQ(X-ENVOY-PEER-METADATA-ID)"] == "-"  # stripped on the inbound side before logging
    assert inn["UPSTREAM_HOST"].startswith("127.0.0.1:") and inn["ROUTE_NAME"] == "-"
    assert lines["inbound-json"][0]["upstream_cluster"] == IN_CLUSTER
    assert lines["inbound-text"][0]["REQ(X-REQUEST-ID)"] == "rid-hop"  # the same id on both hops


def _check_uf(lines: dict[str, list[dict[str, Any]]]) -> None:
    c = lines["outbound-custom-text"][0]
    assert (c["RESPONSE_CODE"], c["RESPONSE_FLAGS"]) == ("503", "UF")
    assert c["RESPONSE_CODE_DETAILS"] == "upstream_reset_before_response_started{connection_failure}"
    assert c["UPSTREAM_TRANSPORT_FAILURE_REASON"] != "-" and c["RESP(CONTENT-TYPE)"] == "text/plain"


def _check_uc(lines: dict[str, list[dict[str, Any]]]) -> None:
    c = lines["outbound-custom-text"][0]
    assert (c["RESPONSE_CODE"], c["RESPONSE_FLAGS"]) == ("200", "UC")
    assert c["RESPONSE_CODE_DETAILS"] == "upstream_reset_after_response_started{connection_termination}"
    assert c["UPSTREAM_TRANSPORT_FAILURE_REASON"] == "connection_termination"
    assert c["BYTES_SENT"] == "1000" and c["RESP(CONTENT-LENGTH)"] == "100000"


def _check_ut(lines: dict[str, list[dict[str, Any]]]) -> None:
    c = lines["outbound-custom-text"][0]
    assert (c["RESPONSE_CODE"], c["RESPONSE_FLAGS"], c["ROUTE_NAME"]) == ("504", "UT", "slow")
    assert c["RESPONSE_CODE_DETAILS"] == "upstream_response_timeout" and c["BYTES_SENT"] == "24"
    assert 250 <= int(c["DURATION"]) < 1000


def _check_dc(lines: dict[str, list[dict[str, Any]]]) -> None:
    c = lines["outbound-custom-text"][0]
    assert (c["RESPONSE_CODE"], c["RESPONSE_FLAGS"]) == ("0", "DC")
    assert c["RESPONSE_CODE_DETAILS"] == c["CONNECTION_TERMINATION_DETAILS"] == "downstream_remote_disconnect"
    assert c["RESPONSE_DURATION"] == "-"  # no response ever started


def _pipelined(side: Sidecar, ups: Any) -> None:
    with RawClient(side.out_port) as c:
        c.send(
            get("/echo?n=1", x_request_id="rid-p1")
            + post("/echo?n=2", b"abc", host="hdr", end_user="jason", x_request_id="rid-p2")
            + b"HEAD /head HTTP/1.1\r\nHost: svc\r\nX-Request-Id: rid-p3\r\n\r\n"
        )
        c.response()
        c.response()
        c.response(head_only=True)


def _check_pipelined(lines: dict[str, list[dict[str, Any]]]) -> None:
    got = [(c["REQ(:PATH)"], c["ROUTE_NAME"], c["BYTES_RECEIVED"]) for c in lines["outbound-custom-text"]]
    assert got == [
        ("/echo?n=1", "svc-default", "0"),
        ("/echo?n=2", "jason", "3"),
        ("/head", "svc-default", "0"),
    ]


CASES: dict[str, Case] = {
    "get-with-ids": Case(
        _one(
            get(
                "/echo",
                x_request_id="rid-get",
                user_agent="curl/8.4.0",
                x_forwarded_for="10.1.1.100",
            )
        ),
        1,
        check=_check_get,
    ),
    "get-without-ids": Case(_one(get("http://svc/echo?q=1", host=None)), 1, check=_check_no_ids),
    "post-with-body": Case(
        _one(post("/echo", b"hello world", x_request_id="rid-post", user_agent="ua/1")), 1, check=_check_post
    ),
    "header-matched-route": Case(
        _each(
            get("/echo", host="hdr", end_user="jason", x_request_id="rid-j"),
            get("/echo", host="hdr", end_user="mary", x_request_id="rid-m"),
            get("/echo", host="hdr", x_request_id="rid-n"),
        ),
        3,
        check=_check_header_match,
    ),
    "header-edits": Case(
        _one(get("/hop", host="edit", x_secret="s", x_request_id="rid-e")), 1, check=_check_edits
    ),
    "head": Case(
        _one(b"HEAD /head HTTP/1.1\r\nHost: svc\r\nX-Request-Id: rid-head\r\n\r\n", head_only=True),
        1,
        check=_check_head,
    ),
    "chunked-response": Case(_one(get("/chunked", x_request_id="rid-ch")), 1, check=_check_chunked),
    "outbound-to-inbound": Case(
        _one(get("/echo", host="reviews", x_request_id="rid-hop", user_agent="ua/hop")),
        1,
        1,
        _check_inbound_hop,
    ),
    "inbound-direct-no-request-id": Case(
        _one(get("/echo", host="reviews:9080", x_forwarded_for="10.9.9.9"), port="in"),
        0,
        1,
        _codes([(200, None)], "inbound"),
    ),
    "503-uf-dead-port": Case(_one(get("/", host="dead", x_request_id="rid-uf")), 1, check=_check_uf),
    "503-uc-upstream-dies": Case(_upstream_dies, 1, check=_check_uc),
    "504-ut-route-timeout": Case(_one(get("/slow?sleep=1", x_request_id="rid-ut")), 1, check=_check_ut),
    "dc-client-walks-away": Case(_client_walks_away, 1, check=_check_dc),
    "pipelined": Case(_pipelined, 3, check=_check_pipelined),
    "post-to-dead-port": Case(
        _one(post("/", b"abc", host="dead", x_request_id="rid-puf")), 1, check=_codes([(503, "UF")])
    ),
    "response-edit-add-only": Case(_one(get("/hop", host="edit-add", x_request_id="rid-a")), 1),
}
# response-edit-add-only once differed: both lanes now log the response as the route's edits left it.


def _run_on(side: Sidecar, ups: dict[str, RawUpstream], case: Case) -> dict[str, list[str]]:
    """Run ``case`` on one proxy; its new lines per listener and log once all have arrived."""
    before = side.marks()
    case.run(side, ups)
    want = {
        (li, lg): n + (case.outbound if li == "outbound" else case.inbound) for (li, lg), n in before.items()
    }
    deadline = time.monotonic() + 5
    while True:
        now = side.marks()
        if now == want:
            break
        assert all(now[k] <= want[k] for k in want), f"more lines than expected: {now} > {want}"
        if time.monotonic() > deadline:
            raise AssertionError(
                f"lines by the deadline ({'on' if side.fast else 'off'}): {now}, want {want}"
            )
        time.sleep(0.02)
    return {f"{li}-{lg}": side.lines(li, lg)[before[li, lg] :] for li, lg in before}


def _compare(name: str, sidecars: tuple[Sidecar, Sidecar], ups: dict[str, RawUpstream]) -> None:
    on, off = sidecars
    case = CASES[name]
    lane = Lane(on.proc)
    got = _run_on(on, ups, case)
    # every request on the lane-on proxy was served in the lane (inbound hops count too), none handed over
    assert lane.delta() == (case.outbound + case.inbound, 0)
    want = _run_on(off, ups, case)
    for key in got:
        li, lg = key.split("-", 1)
        mine, theirs = masked(on, li, lg, got[key]), masked(off, li, lg, want[key])
        assert len(mine) == len(theirs), key
        # (line, field, lane on, lane off) for every field that differs
        diff = [
            (i, fa, va, vb)
            for i, (a, b) in enumerate(zip(mine, theirs, strict=True))
            for (fa, va), (fb, vb) in zip(a, b, strict=True)
            if (fa, va) != (fb, vb)
        ]
        assert diff == [], f"{key}: {diff}"
    if case.check is not None:
        case.check(
            {key: [raw_fields(line, key.split("-", 1)[1]) for line in lines] for key, lines in got.items()}
        )


def test_the_lane_is_on_in_one_proxy_only(sidecars):
    on, off = sidecars
    assert RQ in stats(on.proc) and RQ not in stats(off.proc)


@pytest.mark.parametrize(
    "name",
    list(CASES),
)
def test_lanes_log_the_same_lines(sidecars, ups, name):
    _compare(name, sidecars, ups)
