"""The oracle itself behaves as kube-apiserver does with Istio's CRDs (so agreement means something)."""

from __future__ import annotations

from typing import Any

from crd_oracle import oracle


def vs(spec: Any, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "r", **meta},
        "spec": spec,
    }


def test_unknown_fields_are_errors_but_free_form_fields_are_not() -> None:
    assert oracle().errors(vs({"hosts": ["r"], "hostz": ["r"]})) == ["spec.hostz: unknown field"]
    ef = {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "e"},
        "spec": {
            "configPatches": [{"patch": {"operation": "MERGE", "value": {"anything": {"at": ["all"]}}}}]
        },
        "status": {"whatever": 1},
    }
    assert oracle().accepts(ef)


def test_nulls_are_pruned_unless_nullable() -> None:
    assert oracle().accepts(vs(None))
    assert oracle().accepts(
        vs({"hosts": None, "http": [{"route": [{"destination": {"host": "r"}}], "timeout": None}]})
    )
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "d"}}
    assert oracle().errors({**dr, "spec": {"host": None}}) == ["spec.host: required"]
    # nullable fields keep null, and null is then a valid value for them
    tp = {"host": "d", "trafficPolicy": {"tls": {"insecureSkipVerify": None}}}
    assert oracle().accepts({**dr, "spec": tp})


def test_types_enums_and_int_or_string() -> None:
    assert oracle().errors(vs({"http": [{"route": [{"destination": {"host": "r"}, "weight": "ten"}]}]})) == [
        "spec.http[0].route[0].weight: 'ten' is not of type 'integer'"
    ]
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "d"}}
    assert not oracle().accepts({**dr, "spec": {"host": "d", "trafficPolicy": {"tls": {"mode": "STRICT"}}}})
    status = {"observedGeneration": "3", "conditions": [{"type": "Reconciled", "observedGeneration": 3}]}
    assert oracle().accepts({**dr, "spec": {"host": "d"}, "status": status})


def test_cel_rules_are_evaluated_including_evaluation_errors() -> None:
    assert oracle().errors(
        vs({"http": [{"route": [{"destination": {"host": "r"}}], "timeout": "0.5ms"}]})
    ) == ["spec.http[0].timeout: must be a valid duration greater than 1ms"]
    # duration("soon") is a CEL evaluation error, which rejects the object.
    assert not oracle().accepts(
        vs({"http": [{"route": [{"destination": {"host": "r"}}], "timeout": "soon"}]})
    )
    assert oracle().accepts(vs({"http": [{"route": [{"destination": {"host": "r"}}], "timeout": "1m30s"}]}))


def test_format_byte_is_base64() -> None:
    body = {"status": 200, "body": {"bytes": "not base64!"}}
    assert not oracle().accepts(vs({"http": [{"directResponse": body}]}))
    body = {"status": 200, "body": {"bytes": "aGVsbG8="}}
    assert oracle().accepts(vs({"http": [{"directResponse": body}]}))


def test_unserved_kinds() -> None:
    assert not oracle().serves("install.istio.io/v1alpha1", "IstioOperator")
    assert oracle().errors({"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator"}) == [
        "kind IstioOperator (install.istio.io/v1alpha1) is not served"
    ]
