"""Versioned object store with watch: Kubernetes' object semantics on SQLite.

See docs/internals.md ("meshpilot.store") for the contract the API server and the controllers use.
"""

from __future__ import annotations

from meshpilot.store.core import (
    DEFAULT_POD_GRACE_SECONDS,
    EventType,
    ResourceKey,
    Store,
    merge_patch,
    now_rfc3339,
    resource_name,
)
from meshpilot.store.errors import AlreadyExists, Conflict, Gone, Invalid, NotFound, StoreError
from meshpilot.store.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
    selector_from_match,
)

__all__ = [
    "DEFAULT_POD_GRACE_SECONDS",
    "AlreadyExists",
    "Conflict",
    "EventType",
    "FieldSelector",
    "Gone",
    "Invalid",
    "LabelSelector",
    "NotFound",
    "ResourceKey",
    "SelectorError",
    "Store",
    "StoreError",
    "merge_patch",
    "now_rfc3339",
    "parse_field_selector",
    "parse_label_selector",
    "resource_name",
    "selector_from_match",
]
