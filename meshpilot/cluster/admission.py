"""Admission: what happens to an object between the API request and the store.

SEAM (owned by the controllers/runtime work): mutate and validate an object on create/update
(Service ClusterIP allocation, sidecar injection, ...). The API server calls ``admit`` for every
create and update after schema validation.
"""

from __future__ import annotations

from typing import Any, Literal

from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import ResourceKey, Store


def admit(
    store: Store,
    info: ClusterInfo,
    key: ResourceKey,
    obj: dict[str, Any],
    operation: Literal["CREATE", "UPDATE"],
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the object to store (possibly mutated) or raise ``AdmissionError``."""
    return obj


class AdmissionError(Exception):
    """Refused by admission; the API server answers 422 (or 403) with this message."""

    def __init__(self, message: str, *, code: int = 422) -> None:
        super().__init__(message)
        self.code = code
