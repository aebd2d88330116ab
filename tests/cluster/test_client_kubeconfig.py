"""The kubeconfig is Kubernetes' format and resolves contexts the way kubectl does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshpilot.client import Client
from meshpilot.client import kubeconfig as kc


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MESHPILOT_HOME", str(tmp_path))
    for var in (
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "MESHPILOT_TOKEN_FILE",
        "POD_NAMESPACE",
    ):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_add_and_resolve_contexts(home: Path) -> None:
    with pytest.raises(kc.KubeconfigError, match="cluster up"):
        kc.credentials()
    kc.add_cluster("meshpilot-a", "http://127.1.0.1:6443", "tok-a")
    kc.add_cluster("meshpilot-b", "http://127.2.0.1:6443", "tok-b", namespace="prod")
    config = yaml.safe_load((home / "kubeconfig").read_text())
    assert config["current-context"] == "meshpilot-b"
    assert [c["name"] for c in config["contexts"]] == ["meshpilot-a", "meshpilot-b"]
    assert config["users"][0] == {"name": "meshpilot-a", "user": {"token": "tok-a"}}
    current = kc.credentials()
    assert (current.server, current.token, current.namespace) == ("http://127.2.0.1:6443", "tok-b", "prod")
    assert kc.credentials("meshpilot-a").token == "tok-a"
    with pytest.raises(kc.KubeconfigError, match="context 'nope' not found"):
        kc.credentials("nope")
    # updating keeps one entry per name
    kc.add_cluster("meshpilot-a", "http://127.3.0.1:6443", "tok-a2")
    again = yaml.safe_load((home / "kubeconfig").read_text())
    assert len(again["clusters"]) == 2 and kc.credentials("meshpilot-a").server == "http://127.3.0.1:6443"
    kc.remove_cluster("meshpilot-a")
    assert [c["name"] for c in kc.load()["contexts"]] == ["meshpilot-b"]
    client = Client.from_kubeconfig()
    assert client.namespace == "prod" and client.server == "http://127.2.0.1:6443"
    client.close()


def test_in_cluster_credentials_win_inside_a_pod(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kc.add_cluster("meshpilot-a", "http://127.1.0.1:6443", "tok-a")
    token = home / "token"
    token.write_text("pod-token\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.9.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setenv("MESHPILOT_TOKEN_FILE", str(token))
    monkeypatch.setenv("POD_NAMESPACE", "production")
    creds = kc.auto_credentials()
    assert (creds.server, creds.token, creds.namespace) == (
        "http://127.9.0.1:6443",
        "pod-token",
        "production",
    )
    assert kc.auto_credentials("meshpilot-a").token == "tok-a"
