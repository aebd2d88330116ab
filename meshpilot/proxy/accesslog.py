"""Access logs with Envoy's command operators, in Istio's default TEXT format or JSON.

A format is compiled once per listener into a list of literal strings and extractor functions;
logging a request is then one pass over that list. Values that are absent print as ``-``, as
Envoy prints them. The extractors read attributes of the proxy's per-request ``Exchange``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, Final

from meshpilot.proxy.router import ConfigError

# Istio >= 1.9's default TEXT format (meshConfig.accessLogFormat unset, accessLogEncoding TEXT).
ISTIO_DEFAULT_TEXT_FORMAT: Final = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)

# Istio's default JSON access log (accessLogEncoding: JSON): the same fields, named.
ISTIO_DEFAULT_JSON_FORMAT: Final[dict[str, str]] = {
    "start_time": "%START_TIME%",
    "route_name": "%ROUTE_NAME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}

Extract = Callable[[Any], "str | int | None"]

_OPERATOR = re.compile(r"%([A-Z_0-9]+)(?:\(([^)]*)\))?(?::(\d+))?%")


def _start_time(spec: str | None) -> Extract:
    if not spec:

        def default(x: Any) -> str:
            t = x.start_time
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"

        return default
    if spec == "%s":
        return lambda x: str(int(x.start_time))
    py = spec.replace("%3f", "%f").replace("%6f", "%f").replace("%9f", "%f")
    return lambda x: datetime.fromtimestamp(x.start_time, UTC).strftime(py)


def _header(names: list[bytes], where: str) -> Callable[[Any], str | None]:
    def get(x: Any) -> str | None:
        headers = getattr(x, where)
        for n in names:
            if n == b":method":
                return str(x.method)
            if n == b":path":
                return str(x.target) if x.target else None
            if n == b":authority":
                return str(x.authority) if x.authority else None
            if n == b":scheme":
                return "http"
            for k, v in headers:
                if k == n:
                    return str(v.decode("latin-1"))
        return None

    return get


def _ms(a: str, b: str) -> Extract:
    def get(x: Any) -> int | None:
        start, end = getattr(x, a), getattr(x, b)
        if not start or not end:
            return None
        return int((end - start) * 1000)

    return get


_SIMPLE: dict[str, Extract] = {
    "PROTOCOL": lambda x: x.protocol,
    "RESPONSE_CODE": lambda x: x.status,
    "RESPONSE_FLAGS": lambda x: x.flags or None,
    "RESPONSE_CODE_DETAILS": lambda x: x.details or None,
    "CONNECTION_TERMINATION_DETAILS": lambda x: x.termination or None,
    "UPSTREAM_TRANSPORT_FAILURE_REASON": lambda x: x.upstream_failure or None,
    "BYTES_RECEIVED": lambda x: x.bytes_received,
    "BYTES_SENT": lambda x: x.bytes_sent,
    "DURATION": _ms("start_mono", "end_mono"),
    "REQUEST_DURATION": _ms("start_mono", "request_end_mono"),
    "RESPONSE_DURATION": _ms("start_mono", "response_start_mono"),
    "RESPONSE_TX_DURATION": _ms("response_start_mono", "end_mono"),
    "UPSTREAM_HOST": lambda x: x.upstream_host or None,
    "UPSTREAM_CLUSTER": lambda x: x.cluster_name or None,
    "UPSTREAM_LOCAL_ADDRESS": lambda x: x.upstream_local or None,
    "DOWNSTREAM_LOCAL_ADDRESS": lambda x: x.conn.local_addr or None,
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": lambda x: x.conn.local_addr.rsplit(":", 1)[0] or None,
    "DOWNSTREAM_REMOTE_ADDRESS": lambda x: x.conn.remote_addr or None,
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": lambda x: x.conn.remote_ip or None,
    "DOWNSTREAM_PEER_ADDRESS": lambda x: x.conn.remote_addr or None,
    "REQUESTED_SERVER_NAME": lambda x: None,
    "ROUTE_NAME": lambda x: x.route_name or None,
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": lambda x: 1 if x.upstream_host else 0,
    "HOSTNAME": lambda x: socket.gethostname(),
    "CONNECTION_ID": lambda x: x.conn.conn_id,
}


def _operator(name: str, arg: str | None, max_len: int | None, where: str) -> Extract:
    fn: Extract
    if name == "START_TIME":
        fn = _start_time(arg)
    elif name in ("REQ", "RESP"):
        if not arg:
            raise ConfigError(f"{where}: %{name}(...)% needs a header name")
        names = [n.strip().lower().encode("latin-1") for n in arg.split("?")]
        fn = _header(names, "req_headers" if name == "REQ" else "resp_headers")
    elif name == "ENVIRONMENT":
        value = os.environ.get(arg or "")
        fn = lambda x: value  # noqa: E731
    elif name in _SIMPLE:
        fn = _SIMPLE[name]
    else:
        raise ConfigError(f"{where}: unknown command operator %{name}%")
    if max_len is None:
        return fn

    def cut(x: Any) -> str | int | None:
        v = fn(x)
        return v[:max_len] if isinstance(v, str) else v

    return cut


def _parse(fmt: str, where: str) -> list[str | Extract]:
    parts: list[str | Extract] = []
    pos = 0
    for m in _OPERATOR.finditer(fmt):
        if m.start() > pos:
            parts.append(fmt[pos : m.start()])
        parts.append(_operator(m.group(1), m.group(2), int(m.group(3)) if m.group(3) else None, where))
        pos = m.end()
    if pos < len(fmt):
        parts.append(fmt[pos:])
    return parts


class AccessLogger:
    """One configured access log of one listener; ``log(exchange)`` writes one line."""

    def __init__(self, path: str, encoding: str, fmt: str | None, where: str = "access_log") -> None:
        if encoding not in ("TEXT", "JSON"):
            raise ConfigError(f"{where}.encoding: expected TEXT or JSON, got {encoding!r}")
        self.path, self.encoding = path, encoding
        self._text: list[str | Extract] = []
        self._json: list[tuple[str, list[str | Extract]]] = []
        if encoding == "TEXT":
            text = fmt if fmt else ISTIO_DEFAULT_TEXT_FORMAT
            if not text.endswith("\n"):
                text += "\n"
            self._text = _parse(text, where)
        else:
            fields = ISTIO_DEFAULT_JSON_FORMAT
            if fmt:
                try:
                    fields = json.loads(fmt)
                except ValueError as e:
                    raise ConfigError(
                        f"{where}.format: JSON encoding needs a JSON object of fields: {e}"
                    ) from None
                if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
                    raise ConfigError(f"{where}.format: expected a JSON object of string fields")
            self._json = [(k, _parse(v, f"{where}.format.{k}")) for k, v in fields.items()]
        self._stream: IO[str] | None = None

    def _out(self) -> IO[str]:
        if self._stream is None:
            if self.path in ("/dev/stdout", "-"):
                self._stream = sys.stdout
            elif self.path == "/dev/stderr":
                self._stream = sys.stderr
            else:
                self._stream = open(self.path, "a", buffering=1)
        return self._stream

    def format(self, x: Any) -> str:
        if self._text:
            out = []
            for p in self._text:
                if isinstance(p, str):
                    out.append(p)
                else:
                    v = p(x)
                    out.append("-" if v is None or v == "" else str(v))
            return "".join(out)
        obj: dict[str, Any] = {}
        for key, parts in self._json:
            if len(parts) == 1 and not isinstance(parts[0], str):
                obj[key] = parts[0](x)
            else:
                obj[key] = "".join(
                    p if isinstance(p, str) else str(p(x) if p(x) is not None else "-") for p in parts
                )
        return json.dumps(obj, separators=(",", ":")) + "\n"

    def log(self, x: Any) -> None:
        line = self.format(x)
        try:
            out = self._out()
            out.write(line)
            if out is sys.stdout or out is sys.stderr:
                out.flush()
        except OSError:
            pass  # a full disk must not take traffic down

    def close(self) -> None:
        if self._stream is not None and self._stream not in (sys.stdout, sys.stderr):
            self._stream.close()
        self._stream = None


def parse_text_line(line: str, fmt: str = ISTIO_DEFAULT_TEXT_FORMAT) -> dict[str, str]:
    """Turn a TEXT line back into {operator: value}: what ``access-log explain`` and tests need."""
    pattern = ""
    names: list[str] = []
    pos = 0
    for m in _OPERATOR.finditer(fmt):
        pattern += re.escape(fmt[pos : m.start()])
        key = m.group(0).strip("%")
        names.append(key)
        nxt = fmt[m.end() : m.end() + 1]
        pattern += f"([^{re.escape(nxt)}]*)" if nxt and nxt not in "\n" else "(.*?)"
        pos = m.end()
    pattern += re.escape(fmt[pos:].rstrip("\n"))
    m2 = re.fullmatch(pattern, line.rstrip("\n"))
    if m2 is None:
        raise ValueError(f"not an access log line of this format: {line!r}")
    return dict(zip(names, m2.groups(), strict=True))
