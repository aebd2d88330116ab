"""meshpilot's resource model: the Kubernetes and Istio kinds the cluster serves.

Objects travel between packages as plain JSON-like dicts shaped as Kubernetes objects; this package
loads them from YAML (keeping line numbers), validates them strictly, applies Kubernetes' defaults,
and says which kinds exist and what they are called. See docs/internals.md, "meshpilot.api".
"""

from __future__ import annotations

from meshpilot.api import registry
from meshpilot.api.documents import Document, load_documents
from meshpilot.api.errors import FieldError, InvalidObject, NotServed, format_path, parse_path
from meshpilot.api.registry import KindInfo, by_plural, kinds, lookup, resolve
from meshpilot.api.validation import load_objects, object_key, validate, validate_documents

__all__ = [
    "Document",
    "FieldError",
    "InvalidObject",
    "KindInfo",
    "NotServed",
    "by_plural",
    "format_path",
    "kinds",
    "load_documents",
    "load_objects",
    "lookup",
    "object_key",
    "parse_path",
    "registry",
    "resolve",
    "validate",
    "validate_documents",
]
