"""The proxy's compiled fast lane is part of the install: the CPU target of one sidecar hop
(benchmarks/proxy_hop.py) depends on it, so a build that silently lost it must fail here."""

from __future__ import annotations

import importlib
from pathlib import Path

import meshpilot.proxy

PROXY = Path(meshpilot.proxy.__file__).parent


def test_fast_lane_is_compiled_and_up_to_date() -> None:
    module = importlib.import_module("meshpilot.proxy._fastpath")
    built = Path(module.__file__ or "")
    assert built.suffix == ".so", f"{built}: expected the compiled extension"
    source = PROXY / "_fastpath.pyx"
    assert built.stat().st_mtime >= source.stat().st_mtime, (
        f"{built.name} is older than {source.name}: run ./scripts/setup (or setup.py build_ext --inplace)"
    )
