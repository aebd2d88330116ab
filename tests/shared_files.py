"""Where the tests find the team's shared reference files (Istio CRDs, the reference text)."""

from __future__ import annotations

from pathlib import Path

COPIES = Path(__file__).resolve().parent / "data" / "shared"
ORIGINALS = Path(__file__).resolve().parents[2] / "shared"

CRD_FILE = COPIES / "istio-crds" / "crd-all.gen.yaml"
SEED_FILE = COPIES / "seed" / "000_15a56908aca0fe21.txt"
