"""examples/ and the copy shipped in the package (which the demo applies) are the same files."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PACKAGED = ROOT / "meshpilot" / "samples" / "manifests"


def _yaml_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.yaml"))}


def test_packaged_manifests_are_identical_to_examples() -> None:
    examples = _yaml_files(EXAMPLES)
    packaged = _yaml_files(PACKAGED)
    assert examples, "examples/ has no YAML"
    assert sorted(examples) == sorted(packaged)
    for name, content in examples.items():
        assert packaged[name] == content, f"meshpilot/samples/manifests/{name} differs from examples/{name}"


def test_examples_have_the_reference_text_names() -> None:
    objects = [
        doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
    ]
    names = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects}
    assert ("Namespace", "", "production") in names
    assert ("Namespace", "", "frontend") in names
    assert ("ServiceAccount", "frontend", "frontend-service") in names
    assert ("Deployment", "production", "productcatalog-v1") in names
    assert ("Deployment", "production", "productcatalog-v2") in names
    assert ("Service", "production", "productcatalog") in names
    assert ("Service", "frontend", "frontend") in names
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    for dep in deployments:
        selector = dep["spec"]["selector"]["matchLabels"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        for container in dep["spec"]["template"]["spec"]["containers"]:
            # Table 6.1 of the reference text, "普通服务".
            assert container["resources"] == {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "200m", "memory": "256Mi"},
            }
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
            assert container["command"][:2] == ["python", "-m"]
    service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "productcatalog")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]


def test_examples_validate_with_the_resource_model() -> None:
    from meshpilot.api import load_objects

    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert load_objects(path.read_text(), str(path))
