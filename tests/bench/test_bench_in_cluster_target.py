"""``bench load`` aimed at a Service of the local cluster, as the reference text's section 4.2 does.

``fortio load http://productcatalog/products`` runs inside the cluster, where DNS knows the
Service. From the host, the ways in are the ClusterIP or a sidecar's outbound listener
(``--proxy POD_IP:15001``); a name that resolves nowhere must say so before the run starts.
"""

from __future__ import annotations

from bench_helpers import EchoProcess, bench_cli, echo, load_json

__all__ = ["echo"]  # the module-scoped fixture, re-exported for pytest


def test_a_name_that_does_not_resolve_fails_at_once_and_names_the_ways_in() -> None:
    result = bench_cli("load", "-n", "3", "http://productcatalog.invalid/products", timeout=30)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot resolve 'productcatalog.invalid'" in lines[0]
    assert "ClusterIP" in lines[0] and "--proxy POD_IP:15001" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_proxy_sends_absolute_form_to_the_proxy_and_never_resolves_the_target(echo: EchoProcess) -> None:
    # the echo server stands in for a sidecar's outbound listener: it answers any request line
    doc, result = load_json(
        "-n",
        "4",
        "-c",
        "1",
        "-qps",
        "0",
        "--proxy",
        f"127.0.0.1:{echo.port}",
        "http://productcatalog.invalid/products",
    )
    assert result.returncode == 0, result.stderr
    assert doc["RetCodes"] == {"200": 4}
    assert doc["URL"] == "http://productcatalog.invalid/products"
    assert f"127.0.0.1:{echo.port}: 1" in result.stderr


def test_bad_proxy_addresses_are_one_line_errors() -> None:
    for proxy, message in (
        ("nosuchhost", "invalid proxy address 'nosuchhost' (expected host:port)"),
        ("nosuchhost.invalid:15001", "--proxy: cannot resolve 'nosuchhost.invalid'"),
    ):
        result = bench_cli("load", "-n", "1", "--proxy", proxy, "http://productcatalog/", timeout=30)
        assert result.returncode == 1
        assert result.stderr.strip() == f"Error: {message}", result.stderr
