"""The JSONPath template subset of ``get -o jsonpath=``, including the reference text's one-liners."""

from __future__ import annotations

import pytest

from meshpilot.cli.jsonpath import JSONPathError, render

PODS = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {
            "metadata": {"name": "pc-1", "labels": {"app": "pc"}},
            "spec": {
                "containers": [
                    {"name": "productcatalog", "image": "python:3.11-slim"},
                    {"name": "istio-proxy", "image": "meshpilot/proxy:1.20.1"},
                ]
            },
            "status": {"podIP": "127.1.1.2", "containerStatuses": [{"restartCount": 0}]},
        },
        {
            "metadata": {"name": "pc-2"},
            "spec": {"containers": [{"name": "istio-proxy", "image": "meshpilot/proxy:1.21.0"}]},
            "status": {"podIP": "127.1.1.3", "containerStatuses": [{"restartCount": 4}]},
        },
    ],
}


def test_reference_text_sidecar_image_query() -> None:
    # kubectl get pods -n production -o jsonpath='{.items[*].spec.containers[?(@.name=="istio-proxy")].image}'
    template = '{.items[*].spec.containers[?(@.name=="istio-proxy")].image}'
    assert render(template, PODS) == "meshpilot/proxy:1.20.1 meshpilot/proxy:1.21.0"
    # The same with the shell's quotes still on (as written in a script or YAML).
    assert render(f"'{template}'", PODS) == "meshpilot/proxy:1.20.1 meshpilot/proxy:1.21.0"


def test_reference_text_escaped_dot_key() -> None:
    # kubectl get secret cacerts -o jsonpath='{.data.cert-chain\.pem}'
    secret = {"data": {"cert-chain.pem": "LS0tLS1CRUdJTg==", "key.pem": "x"}}
    assert render(r"{.data.cert-chain\.pem}", secret) == "LS0tLS1CRUdJTg=="
    assert render("{.data['key.pem']}", secret) == "x"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{.items[0].metadata.name}", "pc-1"),
        ("{.items[-1].metadata.name}", "pc-2"),
        ("{.items[0:1].metadata.name}", "pc-1"),
        ("{.items[*].status.podIP}", "127.1.1.2 127.1.1.3"),
        ("{..podIP}", "127.1.1.2 127.1.1.3"),
        ("{.items[?(@.status.containerStatuses[0].restartCount>0)].metadata.name}", "pc-2"),
        ("{.items[?(@.metadata.labels)].metadata.name}", "pc-1"),
        ("{.items[?(@.metadata.name!='pc-1')].metadata.name}", "pc-2"),
        ("{.items[0].metadata.labels}", '{"app":"pc"}'),
        ("{.kind}: {.missing.field}!", "List: !"),
        (
            '{range .items[*]}{.metadata.name}{"\\t"}{.status.podIP}{"\\n"}{end}',
            "pc-1\t127.1.1.2\npc-2\t127.1.1.3\n",
        ),
        ("{range .items}[{.metadata.name}]{end}", "[pc-1][pc-2]"),
        ("{.items[*].spec.containers[*].name}", "productcatalog istio-proxy istio-proxy"),
        ("{.items[1].status.containerStatuses[0].restartCount}", "4"),
    ],
)
def test_templates(template: str, expected: str) -> None:
    assert render(template, PODS) == expected


@pytest.mark.parametrize(
    "template",
    ["{.items[}", "{range .items[*]}{.x}", "{end}", "{.items[abc]}", "{.items[?(name=='x')]}", "{.a"],
)
def test_bad_templates_raise(template: str) -> None:
    with pytest.raises(JSONPathError):
        render(template, PODS)
