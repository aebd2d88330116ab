"""Versioned object store with watch. SEAM: the store work replaces this with the real thing."""

from __future__ import annotations

from typing import Any

ResourceKey = tuple[str, str]  # (group, plural), e.g. ("apps", "deployments")


class Store:  # placeholder until the store lands; see docs/internals.md for the contract
    def __init__(self, path: Any = None) -> None:
        raise NotImplementedError
