"""Object metadata, label selectors and the other pieces every Kubernetes-shaped object shares."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from meshpilot.api.types import Int64, Model, NonEmptyStr, expected, invalid

_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a label/annotation key (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix or len(prefix) > 253 or not _PREFIX.match(prefix):
            return "the prefix must be a DNS subdomain such as example.com"
    if not name:
        return "the name part must be non-empty"
    if len(name) > 63:
        return "the name part must be no more than 63 characters"
    if not _QUALIFIED_NAME.match(name):
        return "the name part must consist of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL_VALUE.match(value):
        return "must be empty or consist of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
    return None


def check_labels(labels: dict[str, str] | None) -> dict[str, str] | None:
    """Kubernetes' label syntax; the error names the offending key."""
    if labels is None:
        return None
    for key, value in labels.items():
        why = qualified_name_problem(key)
        if why is not None:
            raise invalid(f'invalid label key "{key}": {why}', [key])
        why = label_value_problem(value)
        if why is not None:
            raise invalid(f'invalid label value "{value}": {why}', [key])
    return labels


def string_map(value: object) -> dict[str, str]:
    """map[string]string with a hint for the most common mistake, an unquoted number or boolean."""
    if not isinstance(value, dict):
        raise expected("map of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            if isinstance(item, bool | int | float):
                text = ("true" if item else "false") if isinstance(item, bool) else repr(item)
                raise invalid(f'expected string, got {text} (quote it: "{text}")', [key])
            raise invalid("expected string", [key])
    return value


class OwnerReference(Model):
    apiVersion: NonEmptyStr
    kind: NonEmptyStr
    name: NonEmptyStr
    uid: NonEmptyStr
    controller: bool | None = None
    blockOwnerDeletion: bool | None = None


class ObjectMeta(Model):
    """metadata; ``managedFields`` is accepted and dropped (server-side apply bookkeeping we don't keep)."""

    name: str | None = None
    generateName: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    generation: Int64 | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    deletionGracePeriodSeconds: Int64 | None = None
    ownerReferences: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managedFields: list[dict[str, Any]] | None = Field(default=None, exclude=True)
    selfLink: str | None = Field(default=None, exclude=True)

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _maps(cls, value: object) -> object:
        return None if value is None else string_map(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_labels(value)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            for key in value:
                why = qualified_name_problem(key)
                if why is not None:
                    raise invalid(f'invalid annotation key "{key}": {why}', [key])
        return value


class LabelSelectorRequirement(Model):
    key: NonEmptyStr
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None

    @model_validator(mode="after")
    def _values(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise invalid(f"values must be non-empty when operator is {self.operator}", ["values"])
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise invalid(f"values must be empty when operator is {self.operator}", ["values"])
        return self


class LabelSelector(Model):
    matchLabels: dict[str, str] | None = None
    matchExpressions: list[LabelSelectorRequirement] | None = None

    @field_validator("matchLabels", mode="before")
    @classmethod
    def _map(cls, value: object) -> object:
        return None if value is None else string_map(value)

    @field_validator("matchLabels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_labels(value)

    def matches(self, labels: dict[str, str]) -> bool:
        """Kubernetes semantics: every matchLabels pair and every expression must hold."""
        for key, value in (self.matchLabels or {}).items():
            if labels.get(key) != value:
                return False
        for req in self.matchExpressions or []:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in (req.values or [])):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in (req.values or []):
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True

    def is_empty(self) -> bool:
        return not self.matchLabels and not self.matchExpressions


class Condition(Model):
    """A status condition; the union of the fields Kubernetes' condition types use."""

    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    lastTransitionTime: str | None = None
    lastUpdateTime: str | None = None
    lastProbeTime: str | None = None
    lastHeartbeatTime: str | None = None
    observedGeneration: Int64 | None = None


class ObjectReference(Model):
    apiVersion: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    fieldPath: str | None = None


class LocalObjectReference(Model):
    name: str | None = None
