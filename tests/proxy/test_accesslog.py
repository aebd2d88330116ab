"""Access log formats: Istio's default TEXT line, custom command operators, JSON."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from meshpilot.proxy.accesslog import ISTIO_DEFAULT_TEXT_FORMAT, AccessLogger, parse_text_line
from meshpilot.proxy.router import ConfigError

SEED_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"\n'
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT%\n"
    '%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%"\n'
    '"%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%"\n'
)


def exchange(**kw):
    now = 1000.0
    base = dict(
        start_time=1705833015.123,
        start_mono=now - 0.0455,
        end_mono=now,
        request_end_mono=now,
        response_start_mono=now,
        method="GET",
        target="/products",
        authority="productcatalog:8080",
        protocol="HTTP/1.1",
        status=200,
        flags="",
        details="via_upstream",
        termination="",
        upstream_failure="",
        bytes_received=0,
        bytes_sent=1234,
        req_headers=[
            (b"user-agent", b"curl/7.68.0"),
            (b"x-request-id", b"abc-123-def"),
            (b"x-forwarded-for", b"10.1.1.100"),
        ],
        resp_headers=[(b"x-envoy-upstream-service-time", b"12")],
        upstream_host="127.1.1.5:8080",
        cluster_name="outbound|8080||productcatalog.production.svc.cluster.local",
        upstream_local="127.1.1.4:40000",
        route_name="default",
        conn=SimpleNamespace(
            local_addr="127.1.1.4:15001", remote_addr="127.1.1.4:50000", remote_ip="127.1.1.4", conn_id=1
        ),
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_istio_default_text_line_round_trips():
    line = AccessLogger("/dev/null", "TEXT", None).format(exchange())
    assert line.startswith(
        '[2024-01-21T10:30:15.123Z] "GET /products HTTP/1.1" 200 - via_upstream - "-" 0 1234 45 12 '
    )
    fields = parse_text_line(line)
    assert fields["RESPONSE_CODE"] == "200"
    assert fields["REQ(USER-AGENT)"] == "curl/7.68.0"
    assert fields["REQ(:AUTHORITY)"] == "productcatalog:8080"
    assert fields["UPSTREAM_HOST"] == "127.1.1.5:8080"
    assert fields["UPSTREAM_CLUSTER"].startswith("outbound|8080||")
    assert fields["ROUTE_NAME"] == "default"
    assert line.endswith("\n")


def test_original_path_preferred_and_flags():
    x = exchange(req_headers=[(b"x-envoy-original-path", b"/old")], target="/new", status=503, flags="UF")
    fields = parse_text_line(AccessLogger("/dev/null", "TEXT", None).format(x))
    assert fields["REQ(X-ENVOY-ORIGINAL-PATH?:PATH)"] == "/old"
    assert fields["RESPONSE_FLAGS"] == "UF"


def test_seed_section_5_2_format():
    logger = AccessLogger("/dev/null", "TEXT", SEED_FORMAT)
    line = logger.format(exchange())
    assert line == (
        '[2024-01-21T10:30:15.123Z] "GET /products HTTP/1.1"\n200 - 0 1234\n45 12 "10.1.1.100"\n'
        '"curl/7.68.0" "abc-123-def" "productcatalog:8080"\n'
    )


def test_json_encoding_default_and_custom():
    obj = json.loads(AccessLogger("/dev/null", "JSON", None).format(exchange()))
    assert obj["response_code"] == 200 and obj["bytes_sent"] == 1234 and obj["path"] == "/products"
    assert obj["upstream_service_time"] == "12" and obj["response_flags"] is None
    custom = AccessLogger(
        "/dev/null", "JSON", json.dumps({"code": "%RESPONSE_CODE%", "who": "%REQ(:AUTHORITY)% via proxy"})
    )
    assert json.loads(custom.format(exchange())) == {"code": 200, "who": "productcatalog:8080 via proxy"}


def test_start_time_format_and_truncation():
    line = AccessLogger("/dev/null", "TEXT", "%START_TIME(%Y)% %REQ(USER-AGENT):4%").format(exchange())
    assert line == "2024 curl\n"


@pytest.mark.parametrize("fmt", ["%NOT_AN_OPERATOR%", "%REQ()%"])
def test_unknown_operator_is_a_config_error(fmt):
    with pytest.raises(ConfigError):
        AccessLogger("/dev/null", "TEXT", fmt)


def test_bad_encoding():
    with pytest.raises(ConfigError, match="TEXT or JSON"):
        AccessLogger("/dev/null", "XML", None)


def test_default_format_is_istios():
    assert ISTIO_DEFAULT_TEXT_FORMAT.startswith(
        '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%'
    )
    assert ISTIO_DEFAULT_TEXT_FORMAT.endswith("%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n")
