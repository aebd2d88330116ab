"""A test oracle: Istio's own CRD schemas, applied the way a Kubernetes API server applies them.

meshpilot's models are written by hand; Istio's CRDs (../shared/istio-crds/crd-all.gen.yaml,
Istio 1.30.3) say what a real cluster accepts. This module validates an object against the
openAPIV3Schema of its kind and version, as kube-apiserver does for custom resources:

- ``null`` values of fields that are not ``nullable`` are pruned first (Kubernetes' "Defaulting
  and Nullable" rule), so ``spec:`` with only a comment is an absent spec;
- unknown fields are errors (kubectl's default ``--validate=strict`` field validation), except
  under ``x-kubernetes-preserve-unknown-fields``;
- ``x-kubernetes-int-or-string`` accepts an integer or a string, ``nullable`` admits ``null``;
- the CEL rules (``x-kubernetes-validations``) are evaluated by hand-written Python equivalents in
  ``CEL_RULES``; every rule found in the CRDs must have one (``unknown_rules()`` lists those that
  don't, and the tests assert it is empty), so no rule is skipped silently.

Use ``oracle().errors(obj)`` for ``["spec.portLevelSettings: unknown field", ...]`` or
``oracle().accepts(obj)``. The control plane's tests can check every object they emit with it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from shared_files import CRD_FILE

_DURATION_RE = re.compile(
    r"^(\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))*$"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class CelError(Exception):
    """The rule could not be evaluated (CEL reports an evaluation error, the object is rejected)."""


def _duration(text: Any) -> float:
    """CEL's duration(): Go's time.ParseDuration syntax."""
    if not isinstance(text, str) or not _DURATION_RE.match(text):
        raise CelError(f"invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))


def _has(obj: Any, name: str) -> bool:
    return isinstance(obj, dict) and name in obj


def _count(obj: Any, *names: str) -> int:
    return sum(1 for n in names if _has(obj, n))


def _url_scheme(text: Any) -> str:
    if not isinstance(text, str) or "://" not in text:
        raise CelError(f"invalid url {text!r}")
    return text.split("://", 1)[0].lower()


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CelError(f"int({text!r})") from None


_PORT_NAME = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")

# Each CEL rule of the Istio 1.30.3 CRDs, by its exact text, as a Python predicate on ``self``.
CEL_RULES: dict[str, Callable[[Any], bool]] = {
    "duration(self) >= duration('1ms')": lambda s: _duration(s) >= 0.001 - 1e-12,
    'self.all(key, !key.contains("*"))': lambda s: all("*" not in k for k in s),
    "self.all(key, key.size() != 0)": lambda s: all(len(k) != 0 for k in s),
    '!self.contains("*")': lambda s: "*" not in s,
    "(has(self.workloadSelector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1": lambda s: (
        _count(s, "workloadSelector", "targetRefs") <= 1
    ),
    'has(self.context) ? ((self.context == "WAYPOINT") ? has(self.waypoint) : !has(self.waypoint)) : '
    "!has(self.waypoint)": lambda s: (
        (_has(s, "waypoint") if s["context"] == "WAYPOINT" else not _has(s, "waypoint"))
        if _has(s, "context")
        else not _has(s, "waypoint")
    ),
    "0 < self && self <= 65535": lambda s: 0 < s <= 65535,
    "self.size() == 0": lambda s: len(s) == 0,
    "(has(self.tlsCertificates) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1": lambda s: (
        _count(s, "tlsCertificates", "credentialNames") <= 1
    ),
    "(has(self.credentialName) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1": lambda s: (
        _count(s, "credentialName", "credentialNames") <= 1
    ),
    "(has(self.credentialNames) ? 1 : 0) + (has(self.tlsCertificates) ? 1 : 0) <= 1": lambda s: (
        _count(s, "credentialNames", "tlsCertificates") <= 1
    ),
    "(has(self.workloadSelector) ? 1 : 0) + (has(self.endpoints) ? 1 : 0) <= 1": lambda s: (
        _count(s, "workloadSelector", "endpoints") <= 1
    ),
    '!((has(self.addresses) ? self.addresses : []).exists(k, k.contains("/")) && '
    '!((has(self.resolution) ? self.resolution : "NONE") in ["STATIC", "NONE"]))': lambda s: (
        not (
            any("/" in a for a in s.get("addresses", []))
            and s.get("resolution", "NONE") not in ("STATIC", "NONE")
        )
    ),
    '((has(self.resolution) ? self.resolution : "NONE") == "NONE") ? !has(self.endpoints) : true': lambda s: (
        not _has(s, "endpoints") if s.get("resolution", "NONE") == "NONE" else True
    ),
    '((has(self.resolution) ? self.resolution : "") == "DNS_ROUND_ROBIN") ? '
    "((has(self.endpoints) ? self.endpoints : []).size() <= 1) : true": lambda s: (
        len(s.get("endpoints", [])) <= 1 if s.get("resolution", "") == "DNS_ROUND_ROBIN" else True
    ),
    "has(self.address) || has(self.network)": lambda s: _has(s, "address") or _has(s, "network"),
    '(has(self.address) ? self.address : "").startsWith("unix://") ? !has(self.ports) : true': lambda s: (
        not _has(s, "ports") if s.get("address", "").startswith("unix://") else True
    ),
    'self.startsWith("unix://") ? (self.substring(7, 8) == "/" || self.substring(7, 8) == "@") : true': lambda s: (
        s[7:8] in ("/", "@") if s.startswith("unix://") else True
    ),
    'self.startsWith("unix://") ? !self.endsWith("/") : true': lambda s: (
        not s.endswith("/") if s.startswith("unix://") else True
    ),
    'self.all(key, size(key) < 63 && key.matches("^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$"))': lambda s: (
        all(len(k) < 63 and _PORT_NAME.search(k) for k in s)
    ),
    'self != "*"': lambda s: s != "*",
    "self.all(l1, self.exists_one(l2, l1.number == l2.number))": lambda s: all(
        sum(1 for b in s if b.get("number") == a.get("number")) == 1 for a in s
    ),
    'self in ["", "HTTP", "HTTPS"]': lambda s: s in ("", "HTTP", "HTTPS"),
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1": lambda s: (
        _count(s, "selector", "targetRef", "targetRefs") <= 1
    ),
    "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) &&\n"
    "!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true": lambda s: (
        _count(s, "principals", "notPrincipals", "namespaces", "notNamespaces") == 0
        if _count(s, "serviceAccounts", "notServiceAccounts")
        else True
    ),
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? "
    "self.selector.matchLabels : {}).size() > 0) : true": lambda s: (
        len((s.get("selector") or {}).get("matchLabels") or {}) > 0 if _has(s, "portLevelMtls") else True
    ),
    "self.all(key, 0 < int(key) && int(key) <= 65535)": lambda s: all(0 < _int(k) <= 65535 for k in s),
    "(has(self.jwksUri) ? 1 : 0) + (has(self.jwks_uri) ? 1 : 0) + (has(self.jwks) ? 1 : 0) <= 1": lambda s: (
        _count(s, "jwksUri", "jwks_uri", "jwks") <= 1
    ),
    'url(self).getScheme() in ["http", "https"]': lambda s: _url_scheme(s) in ("http", "https"),
    '((has(self.operation) ? self.operation : "") == "UPSERT") ? (self.value != "") : true': lambda s: (
        s.get("value") != "" and "value" in s if s.get("operation", "") == "UPSERT" else True
    ),
    '((has(self.operation) ? self.operation : "") == "REMOVE") ? !has(self.value) : true': lambda s: (
        not _has(s, "value") if s.get("operation", "") == "REMOVE" else True
    ),
}


def _format_path(path: list[Any]) -> str:
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        elif re.fullmatch(r"[A-Za-z_$@][A-Za-z0-9_$@-]*", str(elem)):
            out += f".{elem}" if out else str(elem)
        else:
            out += f'["{elem}"]'
    return out


def _strict(schema: Any) -> Any:
    """Translate a structural CRD schema into plain JSON Schema with strict unknown-field checks."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if k not in ("x-kubernetes-validations", "description")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in schema
    ):
        out["additionalProperties"] = False
    return out


def _prune_nulls(value: Any, schema: dict[str, Any]) -> Any:
    """Drop ``null`` fields that are not nullable, recursively, as kube-apiserver does before validating."""
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = (props or {}).get(key) if props is not None else None
            if sub is None and isinstance(additional, dict):
                sub = additional
            if sub is None:
                out[key] = item  # unknown or free-form: left for validation to judge
                continue
            if item is None and not sub.get("nullable"):
                continue
            out[key] = _prune_nulls(item, sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune_nulls(item, schema["items"]) for item in value]
    return value


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("byte", raises=(binascii.Error, ValueError))
    def _byte(value: object) -> bool:
        if not isinstance(value, str):
            return True
        base64.b64decode(value, validate=True)
        return True

    return checker


class CRDOracle:
    """The CRD schemas of one file, indexed by (apiVersion, kind)."""

    def __init__(self, path: Path = CRD_FILE) -> None:
        self.path = path
        self.schemas: dict[tuple[str, str], dict[str, Any]] = {}
        self.rules_seen: dict[str, set[str]] = {}
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                api_version = f"{spec['group']}/{version['name']}"
                schema = version["schema"]["openAPIV3Schema"]
                self.schemas[(api_version, spec["names"]["kind"])] = schema
                self._collect_rules(schema, self.rules_seen.setdefault(spec["names"]["kind"], set()))
        self._validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}

    def _collect_rules(self, schema: Any, into: set[str]) -> None:
        if isinstance(schema, dict):
            for rule in schema.get("x-kubernetes-validations", []):
                into.add(rule["rule"])
            for value in schema.values():
                self._collect_rules(value, into)
        elif isinstance(schema, list):
            for value in schema:
                self._collect_rules(value, into)

    def unknown_rules(self, kinds: set[str] | None = None) -> set[str]:
        """CEL rules of ``kinds`` (default: all) that ``CEL_RULES`` cannot evaluate."""
        rules: set[str] = set()
        for kind, seen in self.rules_seen.items():
            if kinds is None or kind in kinds:
                rules |= seen
        return rules - set(CEL_RULES)

    def serves(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self.schemas

    def kinds(self) -> list[tuple[str, str]]:
        return sorted(self.schemas)

    def _validator(self, key: tuple[str, str]) -> jsonschema.protocols.Validator:
        if key not in self._validators:
            root = copy.deepcopy(self.schemas[key])
            root.setdefault("properties", {})
            root["properties"].update(
                {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
            )
            strict = _strict(root)
            cls = jsonschema.validators.validator_for(strict, default=jsonschema.Draft7Validator)
            self._validators[key] = cls(strict, format_checker=_format_checker())
        return self._validators[key]

    def errors(self, obj: dict[str, Any]) -> list[str]:
        """``["field.path: problem", ...]`` for ``obj``; empty when the API server would accept it."""
        key = (str(obj.get("apiVersion")), str(obj.get("kind")))
        if key not in self.schemas:
            return [f"kind {key[1]} ({key[0]}) is not served"]
        schema = self.schemas[key]
        pruned = _prune_nulls(obj, schema)
        out: list[str] = []
        for err in self._validator(key).iter_errors(pruned):
            path = list(err.absolute_path)
            if err.validator == "additionalProperties":
                for name in re.findall(r"'([^']+)'", err.message.split("(", 1)[-1]):
                    if isinstance(err.instance, dict) and name in err.instance:
                        out.append(f"{_format_path([*path, name])}: unknown field")
                continue
            if err.validator == "required":
                missing = re.findall(r"^'([^']+)'", err.message)
                out.append(f"{_format_path(path + missing)}: required")
                continue
            out.append(f"{_format_path(path)}: {err.message}")
        if not out:
            self._cel(pruned, schema, [], out)
        return sorted(set(out))

    def accepts(self, obj: dict[str, Any]) -> bool:
        return not self.errors(obj)

    def _cel(self, value: Any, schema: dict[str, Any], path: list[Any], out: list[str]) -> None:
        for rule in schema.get("x-kubernetes-validations", []):
            check = CEL_RULES.get(rule["rule"])
            if check is None:
                raise NotImplementedError(f"CEL rule not translated: {rule['rule']!r}")
            try:
                ok = bool(check(value))
            except (CelError, KeyError, TypeError):
                ok = False
            if not ok:
                out.append(f"{_format_path(path)}: {rule.get('message', rule['rule'])}")
        if isinstance(value, dict):
            props = schema.get("properties") or {}
            additional = schema.get("additionalProperties")
            for key, item in value.items():
                sub = (
                    props.get(key) if key in props else (additional if isinstance(additional, dict) else None)
                )
                if sub is not None:
                    self._cel(item, sub, [*path, key], out)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                self._cel(item, schema["items"], [*path, i], out)


@functools.lru_cache(maxsize=1)
def oracle() -> CRDOracle:
    """The oracle for Istio 1.30.3's CRDs, loaded once per test session."""
    return CRDOracle()
