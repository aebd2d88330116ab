"""The kubeconfig under ``$MESHPILOT_HOME``: Kubernetes' format, so kubectl can use it too.

One cluster, one user and one context per local cluster, all named ``meshpilot-<name>``;
``current-context`` points at the cluster brought up last. Several ``cluster up`` may run at once
(tests do), so every read-modify-write holds an exclusive lock on a sidecar lock file.
"""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from meshpilot import paths


class KubeconfigError(Exception):
    """No kubeconfig, or no such context: the message says what to run."""


@dataclass(frozen=True)
class Credentials:
    """Where to reach an API server and how to authenticate, from one context."""

    context: str
    server: str
    token: str | None
    namespace: str
    ca_data: str | None = None  # PEM of the CA that signed an https server's certificate


def _empty() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
        "current-context": "",
        "preferences": {},
    }


def load(path: Path | None = None) -> dict[str, Any]:
    path = path or paths.kubeconfig_path()
    if not path.exists():
        return _empty()
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise KubeconfigError(f"{path}: not a kubeconfig (expected a mapping)")
    config = _empty()
    config.update(data)
    for section in ("clusters", "users", "contexts"):
        config[section] = list(config.get(section) or [])
    return config


def _locked(path: Path) -> contextlib.AbstractContextManager[None]:
    return paths.locked(path.with_name(path.name + ".lock"))


def _save(config: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    os.replace(tmp, path)


def _upsert(entries: list[dict[str, Any]], name: str, key: str, value: dict[str, Any]) -> None:
    for entry in entries:
        if entry.get("name") == name:
            entry[key] = value
            return
    entries.append({"name": name, key: value})


def add_cluster(
    context: str,
    server: str,
    token: str,
    *,
    namespace: str = "default",
    make_current: bool = True,
    ca_pem: str | None = None,
) -> None:
    """Add or update the cluster, user and context named ``context``."""
    path = paths.kubeconfig_path()
    cluster: dict[str, Any] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem.encode()).decode()
    with _locked(path):
        config = load(path)
        _upsert(config["clusters"], context, "cluster", cluster)
        _upsert(config["users"], context, "user", {"token": token})
        _upsert(
            config["contexts"],
            context,
            "context",
            {"cluster": context, "user": context, "namespace": namespace},
        )
        if make_current or not config.get("current-context"):
            config["current-context"] = context
        _save(config, path)


def remove_cluster(context: str) -> None:
    """Forget a context (and its cluster and user entries)."""
    path = paths.kubeconfig_path()
    with _locked(path):
        config = load(path)
        for section in ("clusters", "users", "contexts"):
            config[section] = [e for e in config[section] if e.get("name") != context]
        if config.get("current-context") == context:
            config["current-context"] = config["contexts"][0]["name"] if config["contexts"] else ""
        _save(config, path)


def _find(entries: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for entry in entries:
        if entry.get("name") == name:
            return entry
    return None


def credentials(context: str | None = None, path: Path | None = None) -> Credentials:
    """Resolve ``context`` (default: the current context) to server, token and namespace."""
    path = path or paths.kubeconfig_path()
    config = load(path)
    name = context or config.get("current-context") or ""
    if not name:
        raise KubeconfigError(f"no current context in {path}: run `meshpilot cluster up` first")
    ctx = _find(config["contexts"], name)
    if ctx is None:
        known = ", ".join(str(c.get("name")) for c in config["contexts"]) or "none"
        raise KubeconfigError(f"context {name!r} not found in {path} (known: {known})")
    spec = ctx.get("context") or {}
    cluster = _find(config["clusters"], str(spec.get("cluster", "")))
    if cluster is None or not (cluster.get("cluster") or {}).get("server"):
        raise KubeconfigError(f"context {name!r} names cluster {spec.get('cluster')!r}, which has no server")
    user = _find(config["users"], str(spec.get("user", ""))) or {}
    token = (user.get("user") or {}).get("token")
    cluster_spec = cluster["cluster"]
    ca_data: str | None = None
    if cluster_spec.get("certificate-authority-data"):
        try:
            ca_data = base64.b64decode(str(cluster_spec["certificate-authority-data"])).decode()
        except ValueError:
            raise KubeconfigError(f"context {name!r}: certificate-authority-data is not base64") from None
    elif cluster_spec.get("certificate-authority"):
        try:
            ca_data = Path(str(cluster_spec["certificate-authority"])).read_text()
        except OSError as exc:
            raise KubeconfigError(f"context {name!r}: cannot read certificate-authority: {exc}") from None
    return Credentials(
        context=name,
        server=str(cluster_spec["server"]),
        token=str(token) if token else None,
        namespace=str(spec.get("namespace") or "default"),
        ca_data=ca_data,
    )


def in_cluster_credentials() -> Credentials | None:
    """Inside a pod of a local cluster: the API address and token the runtime put in the environment."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    token_file = os.environ.get("MESHPILOT_TOKEN_FILE")
    if not host or not port or not token_file:
        return None
    try:
        token = Path(token_file).read_text().strip()
    except OSError:
        return None
    return Credentials(
        context="in-cluster",
        server=f"http://{host}:{port}",
        token=token or None,
        namespace=os.environ.get("POD_NAMESPACE") or "default",
    )


def auto_credentials(context: str | None = None) -> Credentials:
    """``context`` from the kubeconfig when given; else in-cluster when in a pod; else the current context."""
    if context is None:
        found = in_cluster_credentials()
        if found is not None:
            return found
    return credentials(context)
