"""Label and field selectors in Kubernetes' syntax.

Clients (kubectl, lightkube, our CLI) send selectors as strings, so the store parses the same
grammar Kubernetes does: ``a=b,c!=d,e in (x,y),f notin (z),g,!h`` for labels and
``metadata.name=x,status.phase!=Running`` for fields. Parsing happens once per request; matching is
a loop over small tuples.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FieldSelector",
    "LabelSelector",
    "SelectorError",
    "field_value",
    "parse_field_selector",
    "parse_label_selector",
    "selector_from_match",
]

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]

# Kubernetes label keys: optional DNS prefix, a name of [A-Za-z0-9._-] starting/ending alphanumeric.
_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class SelectorError(ValueError):
    """A selector string that does not parse; the API server answers 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op == "=":
            return labels.get(self.key) == self.values[0]
        if self.op == "!=":
            return labels.get(self.key) != self.values[0]
        if self.op == "in":
            return self.key in labels and labels[self.key] in self.values
        return labels.get(self.key) not in self.values  # notin: a missing key matches, as in Kubernetes


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def matches_object(self, obj: Mapping[str, Any]) -> bool:
        return self.matches((obj.get("metadata") or {}).get("labels"))

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.op == "exists":
                parts.append(r.key)
            elif r.op == "!":
                parts.append("!" + r.key)
            elif r.op in ("=", "!="):
                parts.append(f"{r.key}{r.op}{r.values[0]}")
            else:
                parts.append(f"{r.key} {r.op} ({','.join(r.values)})")
        return ",".join(parts)


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside a parenthesised value set."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced ')' in selector {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise SelectorError(f"unbalanced '(' in selector {text!r}")
    parts.append("".join(current))
    return parts


def _check_key(key: str, text: str) -> str:
    if not _KEY.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise SelectorError(f"invalid label key {key!r} in selector {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if not _VALUE.match(value) or len(value) > 63:
        raise SelectorError(f"invalid label value {value!r} in selector {text!r}")
    return value


_SET = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_EQ = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=()]*)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse Kubernetes' label selector syntax; raise ``SelectorError`` with the offending part."""
    if text is None or not text.strip():
        return LabelSelector()
    requirements: list[Requirement] = []
    for raw in _split_top(text):
        part = raw.strip()
        if not part:
            raise SelectorError(f"empty requirement in selector {text!r}")
        m = _SET.match(part)
        if m:
            values = tuple(_check_value(v.strip(), text) for v in m.group("values").split(","))
            if not m.group("values").strip():
                raise SelectorError(f"empty value set in selector {text!r}")
            op: Operator = "in" if m.group("op") == "in" else "notin"
            requirements.append(Requirement(_check_key(m.group("key"), text), op, values))
            continue
        m = _EQ.match(part)
        if m:
            eq_op: Operator = "!=" if m.group("op") == "!=" else "="
            requirements.append(
                Requirement(_check_key(m.group("key"), text), eq_op, (_check_value(m.group("value"), text),))
            )
            continue
        if part.startswith("!"):
            requirements.append(Requirement(_check_key(part[1:].strip(), text), "!"))
            continue
        if " " not in part:
            requirements.append(Requirement(_check_key(part, text), "exists"))
            continue
        raise SelectorError(f"cannot parse requirement {part!r} in selector {text!r}")
    return LabelSelector(tuple(requirements))


def selector_from_match(selector: Mapping[str, Any] | None) -> LabelSelector:
    """Turn a structured ``LabelSelector`` (``matchLabels`` / ``matchExpressions``) into requirements.

    Deployments, PodDisruptionBudgets and Services carry selectors as objects, not strings.
    A Service's plain ``{key: value}`` selector is accepted as well.
    """
    if not selector:
        return LabelSelector()
    requirements: list[Requirement] = []
    if "matchLabels" in selector or "matchExpressions" in selector:
        for key, value in sorted((selector.get("matchLabels") or {}).items()):
            requirements.append(Requirement(key, "=", (str(value),)))
        for expr in selector.get("matchExpressions") or []:
            op = str(expr.get("operator", ""))
            values = tuple(str(v) for v in expr.get("values") or [])
            key = str(expr.get("key", ""))
            if op == "In":
                requirements.append(Requirement(key, "in", values))
            elif op == "NotIn":
                requirements.append(Requirement(key, "notin", values))
            elif op == "Exists":
                requirements.append(Requirement(key, "exists"))
            elif op == "DoesNotExist":
                requirements.append(Requirement(key, "!"))
            else:
                raise SelectorError(f"unknown matchExpressions operator {op!r}")
    else:
        for key, value in sorted(selector.items()):
            requirements.append(Requirement(str(key), "=", (str(value),)))
    return LabelSelector(tuple(requirements))


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The value of a dotted field path as the string Kubernetes compares; missing is ``""``."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return ""
        current = current[part]
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    negate: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.path) == self.value) != self.negate


@dataclass(frozen=True)
class FieldSelector:
    """``metadata.name=x,status.phase!=Running``: equality on dotted paths of the object."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


_FIELD = re.compile(r"^\s*(?P<path>[A-Za-z0-9_.\-]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^,]*?)\s*$")


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse ``path=value`` / ``path==value`` / ``path!=value`` requirements joined by commas."""
    if text is None or not text.strip():
        return FieldSelector()
    requirements: list[FieldRequirement] = []
    for raw in text.split(","):
        m = _FIELD.match(raw)
        if not m:
            raise SelectorError(f"cannot parse field selector requirement {raw.strip()!r}")
        requirements.append(FieldRequirement(m.group("path"), m.group("op") == "!=", m.group("value")))
    return FieldSelector(tuple(requirements))
