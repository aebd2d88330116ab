"""Store errors, each carrying the HTTP status and reason Kubernetes uses for the same failure.

The API server turns them into ``Status`` objects without a lookup table of its own.
"""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Base class: ``code`` and ``reason`` are Kubernetes' (``404``/``NotFound`` ...)."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class NotFound(StoreError):
    code = 404
    reason = "NotFound"


class AlreadyExists(StoreError):
    code = 409
    reason = "AlreadyExists"


class Conflict(StoreError):
    """Optimistic concurrency: the caller's resourceVersion is not the stored one."""

    code = 409
    reason = "Conflict"


class Gone(StoreError):
    """A watch asked for history that has been compacted away; the client must list again."""

    code = 410
    reason = "Expired"


class Invalid(StoreError):
    code = 422
    reason = "Invalid"
