"""meshpilot's Istio models accept and reject what Istio 1.30.3's CRD schemas accept and reject."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from crd_oracle import CEL_RULES, oracle
from istio_samples import SAMPLES, STRICTER_THAN_SCHEMA
from pydantic import BaseModel

from meshpilot.api import InvalidObject, kinds, load_documents, validate
from meshpilot.api.validation import _unwrap

ISTIO_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io")
ISTIO_KINDS = [k for k in kinds() if k.group in ISTIO_GROUPS]


def _verdict(text: str, filename: str = "sample.yaml") -> tuple[bool, list[str]]:
    (doc,) = load_documents(text, filename)
    try:
        validate(doc.obj, doc)
    except InvalidObject as exc:
        return False, [str(e) for e in exc.errors]
    return True, []


def test_every_cel_rule_of_served_kinds_is_evaluated() -> None:
    served = {k.kind for k in ISTIO_KINDS}
    assert oracle().unknown_rules(served) == set()
    assert len(CEL_RULES) >= 30


def test_we_serve_exactly_the_istio_kinds_and_versions_of_the_crds() -> None:
    crd = {(api_version, kind) for api_version, kind in oracle().kinds()}
    # Istio kinds meshpilot does not serve: Wasm/extension plugins and ProxyConfig need Envoy.
    crd = {(v, k) for v, k in crd if k not in ("WasmPlugin", "TrafficExtension", "ProxyConfig")}
    ours = {(av, k.kind) for k in ISTIO_KINDS for av in k.api_versions}
    assert ours == crd


def test_samples_cover_every_istio_kind_both_ways() -> None:
    covered: dict[str, set[bool]] = {}
    for _, valid, text in SAMPLES:
        (doc,) = load_documents(text, "s.yaml")
        covered.setdefault(doc.obj["kind"], set()).add(valid)
    assert {k.kind: {True, False} for k in ISTIO_KINDS} == covered
    assert len(SAMPLES) >= 40


@pytest.mark.parametrize(("name", "valid", "text"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_model_agrees_with_crd_schema(name: str, valid: bool, text: str) -> None:
    (doc,) = load_documents(text, f"{name}.yaml")
    schema_errors = oracle().errors(doc.obj)
    assert (not schema_errors) is valid, f"the sample's label is wrong: schema says {schema_errors}"
    ours, errors = _verdict(text, f"{name}.yaml")
    assert ours is valid, f"model: {errors or 'accepted'}; schema: {schema_errors or 'accepted'}"
    for line in errors:
        assert line.startswith(f"{name}.yaml:"), line


@pytest.mark.parametrize(
    ("name", "valid", "text"), [s for s in SAMPLES if s[1]], ids=[s[0] for s in SAMPLES if s[1]]
)
def test_valid_samples_agree_in_every_served_version(name: str, valid: bool, text: str) -> None:
    (doc,) = load_documents(text, f"{name}.yaml")
    group = doc.obj["apiVersion"].split("/")[0]
    info = next(k for k in ISTIO_KINDS if k.kind == doc.obj["kind"] and k.group == group)
    for version in info.versions:
        obj = {**doc.obj, "apiVersion": f"{group}/{version}"}
        assert oracle().accepts(obj)
        normalized = validate(obj)
        # What meshpilot stores (and serves back) is itself valid for the real API server.
        assert oracle().errors(normalized) == []
        assert normalized["apiVersion"] == f"{group}/{version}"


@pytest.mark.parametrize(
    ("name", "text", "path"), STRICTER_THAN_SCHEMA, ids=[s[0] for s in STRICTER_THAN_SCHEMA]
)
def test_documented_cases_where_we_are_stricter_than_the_schema(name: str, text: str, path: str) -> None:
    (doc,) = load_documents(text, f"{name}.yaml")
    assert oracle().accepts(doc.obj)
    ok, errors = _verdict(text)
    assert not ok
    assert any(f": {path}: " in e for e in errors), errors


# --- field coverage: every field of every CRD schema exists in our model, and no others ------------


def _model_of(annotation: Any) -> Any:
    """The model a field leads to, through Optional and Annotated and into list and dict values."""
    while True:
        annotation = _unwrap(annotation)
        if typing.get_origin(annotation) in (list, dict):
            annotation = typing.get_args(annotation)[-1]
        else:
            return annotation


def _diff(schema: dict[str, Any], model: type[BaseModel], path: str, out: list[str]) -> None:
    while "items" in schema and "properties" not in schema:
        schema = schema["items"]
    while isinstance(schema.get("additionalProperties"), dict) and "properties" not in schema:
        schema = schema["additionalProperties"]
    props = schema.get("properties") or {}
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    for name in props.keys() - fields.keys():
        out.append(f"missing in model: {path}.{name}")
    for name in fields.keys() - props.keys():
        out.append(f"not in schema: {path}.{name}")
    for name in props.keys() & fields.keys():
        child = _model_of(fields[name].annotation)
        if isinstance(child, type) and issubclass(child, BaseModel):
            _diff(props[name], child, f"{path}.{name}", out)


@pytest.mark.parametrize("info", ISTIO_KINDS, ids=[k.kind for k in ISTIO_KINDS])
def test_model_has_every_field_of_the_crd_schema(info: Any) -> None:
    schema = oracle().schemas[(info.api_version, info.kind)]
    spec_model = _model_of(info.model.model_fields["spec"].annotation)
    problems: list[str] = []
    _diff(schema["properties"]["spec"], spec_model, "spec", problems)
    assert problems == []
