"""Every YAML snippet of the reference text gets the verdict a real cluster would give it.

The snippets are read from the seed file by section heading (never retyped), so a change in the
text is a change in the test. Istio snippets: our verdict equals the CRD schema's, and a rejection
names the exact field path and line. IstioOperator snippets (an installer's input, not a served
kind) get the "not served" message.
"""

from __future__ import annotations

import re

import pytest
from crd_oracle import oracle
from shared_files import SEED_FILE

from meshpilot.api import InvalidObject, load_documents, load_objects

SEED = SEED_FILE


def yaml_blocks(section: str) -> list[str]:
    """The ```yaml blocks of section ``section`` ("2.3") of the reference text."""
    text = SEED.read_text(encoding="utf-8")
    match = re.search(rf"^### {re.escape(section)} .*?(?=^### |^## |\Z)", text, re.S | re.M)
    assert match, f"section {section} not found in the reference text"
    return re.findall(r"```yaml\n(.*?)```", match.group(0), re.S)


def _line_of(block: str, needle: str) -> int:
    """1-based line of the first line of ``block`` that contains ``needle`` (found independently)."""
    for number, line in enumerate(block.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in block")


ISTIO_SECTIONS = ["2.2", "2.3", "6.2", "7.2", "7.3"]
CASES = [(s, i, b) for s in ISTIO_SECTIONS for i, b in enumerate(yaml_blocks(s))]


def test_sections_have_the_snippets_we_expect() -> None:
    assert [len(yaml_blocks(s)) for s in ISTIO_SECTIONS] == [1, 1, 1, 1, 1]
    kinds = [d.obj["kind"] for s, _, b in CASES for d in load_documents(b, s)]
    assert kinds == ["ServiceEntry", "DestinationRule", "AuthorizationPolicy", "AuthorizationPolicy",
                     "DestinationRule", "EnvoyFilter"]  # fmt: skip


@pytest.mark.parametrize(("section", "index", "block"), CASES, ids=[f"{s}-{i}" for s, i, _ in CASES])
def test_istio_snippets_get_the_schemas_verdict(section: str, index: int, block: str) -> None:
    filename = f"seed-{section}.yaml"
    schema_errors = [e for d in load_documents(block, filename) for e in oracle().errors(d.obj)]
    try:
        load_objects(block, filename)
        errors: list[str] = []
    except InvalidObject as exc:
        errors = [str(e) for e in exc.errors]
    assert (not errors) == (not schema_errors), (errors, schema_errors)


def _rejection(section: str) -> str:
    (block,) = yaml_blocks(section)
    with pytest.raises(InvalidObject) as info:
        load_objects(block, f"seed-{section}.yaml")
    (error,) = info.value.errors
    return str(error)


def test_2_3_port_level_settings_directly_under_spec_is_rejected_where_it_is() -> None:
    (block,) = yaml_blocks("2.3")
    line = _line_of(block, "portLevelSettings:")
    assert oracle().errors(load_documents(block, "x")[0].obj) == ["spec.portLevelSettings: unknown field"]
    assert _rejection("2.3") == (
        f'seed-2.3.yaml:{line}: spec.portLevelSettings: unknown field "portLevelSettings": '
        "portLevelSettings belongs under spec.trafficPolicy"
    )


def test_7_2_keep_alive_is_not_a_field_and_we_say_which_one_is() -> None:
    (block,) = yaml_blocks("7.2")
    line = _line_of(block, "keepAlive:")
    assert oracle().errors(load_documents(block, "x")[0].obj) == [
        "spec.trafficPolicy.connectionPool.tcp.keepAlive: unknown field"
    ]
    assert _rejection("7.2") == (
        f"seed-7.2.yaml:{line}: spec.trafficPolicy.connectionPool.tcp.keepAlive: "
        'unknown field "keepAlive", did you mean "tcpKeepalive"?'
    )


def test_6_2_default_deny_with_a_comment_only_spec_is_an_allow_nothing_policy() -> None:
    (block,) = yaml_blocks("6.2")
    deny, allow = load_objects(block, "seed-6.2.yaml")
    # `spec:` followed only by a comment is null; Kubernetes prunes it, as we do.
    assert load_documents(block, "x")[0].obj["spec"] is None
    assert "spec" not in deny
    assert deny["metadata"] == {"name": "default-deny", "namespace": "production"}
    assert allow["spec"]["rules"][0]["from"][0]["source"]["principals"] == [
        "cluster.local/ns/frontend/sa/frontend-service"
    ]


@pytest.mark.parametrize("section", ["6.1", "6.3", "8.1"])
def test_istio_operator_snippets_are_not_served(section: str) -> None:
    (block,) = yaml_blocks(section)
    line = _line_of(block, "kind: IstioOperator")
    assert _rejection(section) == (
        f"seed-{section}.yaml:{line}: kind IstioOperator (install.istio.io/v1alpha1) is not served by this cluster"
    )


def test_7_1_mesh_config_map_is_accepted() -> None:
    (block,) = yaml_blocks("7.1")
    (cm,) = load_objects(block, "seed-7.1.yaml")
    assert cm["kind"] == "ConfigMap"
    assert "proxyStatsMatcher" in cm["data"]["mesh"]
