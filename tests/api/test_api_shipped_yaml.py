"""Every YAML file shipped in the repository (examples/, meshpilot/) is valid, for us and for Istio.

Files are found by glob, so manifests other engineers add later are checked without editing this
test. Istio kinds are also checked against Istio 1.30.3's CRD schemas.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from crd_oracle import oracle

from meshpilot.api import InvalidObject, load_documents, validate_documents
from meshpilot.api.validation import expand_lists

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(
    p
    for base in ("examples", "meshpilot")
    for p in [*(ROOT / base).rglob("*.yaml"), *(ROOT / base).rglob("*.yml")]
    if "__pycache__" not in p.parts
)


def _is_manifest(obj: object) -> bool:
    return isinstance(obj, dict) and "apiVersion" in obj and "kind" in obj


@pytest.mark.skipif(not FILES, reason="no YAML files shipped yet")
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_shipped_yaml_is_valid(path: Path) -> None:
    name = str(path.relative_to(ROOT))
    loaded = load_documents(path.read_text(encoding="utf-8"), name)
    docs = [d for d in expand_lists(loaded) if _is_manifest(d.obj)]
    if not docs:
        pytest.skip(f"{name} holds no Kubernetes objects")
    try:
        objects = validate_documents(docs)
    except InvalidObject as exc:
        pytest.fail(f"{name} is invalid:\n{exc}")
    for doc, obj in zip(docs, objects, strict=True):
        if oracle().serves(doc.obj["apiVersion"], doc.obj["kind"]):
            assert oracle().errors(doc.obj) == [], f"{name}:{doc.line}"
            assert oracle().errors(obj) == [], f"{name}:{doc.line} (normalized)"
