"""The cluster daemon's lifecycle on real processes: up, status, list, crash and restart, down.

Uses its own MESHPILOT_HOME and cluster (it kills the daemon on purpose), separate from the
session-wide ``cluster`` fixture.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from meshpilot.client import ApiError, Client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def meshpilot(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MESHPILOT_HOME=str(home))
    env.pop("MESHPILOT_CONTEXT", None)
    return subprocess.run(
        [sys.executable, "-m", "meshpilot", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def wait_for(predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def status_json(home: Path, name: str) -> dict[str, Any]:
    result = meshpilot(home, "cluster", "status", "--name", name, "-o", "json")
    return dict(json.loads(result.stdout))


def client_for(home: Path, context: str) -> Client:
    """A client configured from the kubeconfig, as a user's tools would be (HTTPS with the cluster's CA)."""
    from meshpilot.client.kubeconfig import credentials

    creds = credentials(context, path=home / "kubeconfig")
    assert creds.server.startswith("https://") and creds.ca_data
    return Client(creds.server, creds.token, ca_data=creds.ca_data)


SLEEPER = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "sleeper", "namespace": "default", "labels": {"app": "sleeper"}},
    "spec": {
        "terminationGracePeriodSeconds": 2,
        "containers": [
            {"name": "main", "image": "local", "command": ["python", "-c", "import time; time.sleep(600)"]}
        ],
    },
}


def container_pid(client: Client) -> int | None:
    pod = client.get("pods", "sleeper")
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        cid = str(cs.get("containerID") or "")
        if cid.startswith("meshpilot://") and (cs.get("state") or {}).get("running") is not None:
            return int(cid.removeprefix("meshpilot://").split("-")[0])
    return None


def test_lifecycle_up_status_crash_restart_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    name = "life"
    daemon_pid = None
    try:
        first = meshpilot(home, "cluster", "up", "--name", name, "--no-mesh")
        assert first.returncode == 0, first.stderr
        assert f"cluster {name} created at http://127." in first.stdout

        status = status_json(home, name)
        assert status["state"] == "Running" and status["mesh"] is False
        daemon_pid = int(status["pid"])
        recorded = json.loads((home / "clusters" / name / "cluster.json").read_text())
        assert recorded["index"] == status["index"] and recorded["mesh"] is False
        assert oct((home / "kubeconfig").stat().st_mode & 0o777) == "0o600"

        again = meshpilot(home, "cluster", "up", "--name", name)
        assert again.returncode == 0 and "already running" in again.stdout

        listing = meshpilot(home, "cluster", "list")
        assert name in listing.stdout and "Running" in listing.stdout

        client = client_for(home, f"meshpilot-{name}")
        # a new cluster has the default namespace and the kubernetes Service
        assert client.get("namespaces", "default")["metadata"]["name"] == "default"
        kubernetes = client.get("services", "kubernetes", "default")
        cm = client.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}, "data": {"a": "1"}}
        )
        client.create(SLEEPER)
        pod_pid = wait_for(lambda: container_pid(client), 30, "the pod's process")
        assert alive(pod_pid)

        # the daemon dies: pods keep running, objects survive, `up` restarts and re-adopts
        os.kill(daemon_pid, signal.SIGKILL)
        wait_for(lambda: not alive(daemon_pid), 10, "the daemon to die")
        assert status_json(home, name)["state"] == "Stopped"
        assert alive(pod_pid)

        restarted = meshpilot(home, "cluster", "up", "--name", name)
        assert restarted.returncode == 0, restarted.stderr
        assert "restarted" in restarted.stdout
        daemon_pid = int(status_json(home, name)["pid"])
        kept = client.get("configmaps", "keep")
        assert kept["metadata"]["uid"] == cm["metadata"]["uid"] and kept["data"] == {"a": "1"}
        assert (
            client.get("services", "kubernetes", "default")["metadata"]["uid"]
            == kubernetes["metadata"]["uid"]
        )
        time.sleep(1.0)  # give the controllers a moment; the adopted process must be the same one
        assert container_pid(client) == pod_pid and alive(pod_pid)

        down = meshpilot(home, "cluster", "down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert not alive(daemon_pid)
        assert not alive(pod_pid)
        assert status_json(home, name)["state"] == "Stopped"
        client.close()
        with pytest.raises(ApiError) as unreachable:
            Client(recorded["server"], recorded["token"]).get("namespaces", "default")
        # 503: nothing listens; 401: another test's cluster already took the freed address
        assert unreachable.value.status in (503, 401)
    finally:
        # always: `down` also kills pod processes a crashed daemon left behind
        if (home / "clusters" / name / "cluster.json").exists():
            meshpilot(home, "cluster", "down", "--name", name)


def test_context_option_selects_the_cluster(cluster: Any) -> None:
    status = cluster.cli("--context", cluster.context, "cluster", "status")
    assert status.exit_code == 0, status.stderr
    assert f"cluster {cluster.name}: Running" in status.stdout
    unknown = cluster.cli("cluster", "status", "--name", "nope")
    assert unknown.exit_code != 0 and "does not exist" in unknown.stderr


def test_session_cluster_serves_lightkube(cluster: Any) -> None:
    from lightkube import Client as Lightkube
    from lightkube import KubeConfig
    from lightkube.resources.core_v1 import Namespace

    config = KubeConfig.from_file(str(cluster.home / "kubeconfig"))
    lk = Lightkube(config=config)
    names = [ns.metadata.name for ns in lk.list(Namespace)]
    assert "default" in names


def test_bad_cluster_name_is_one_line_error(tmp_path: Path) -> None:
    result = meshpilot(tmp_path / "home", "cluster", "up", "--name", "Bad_Name!")
    assert result.returncode != 0
    assert "invalid cluster name" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "clusters" / "Bad_Name!").exists()


def test_bootstrap_creates_and_repairs_the_kubernetes_service(tmp_path: Path) -> None:
    import ipaddress

    from meshpilot.cluster.daemon import bootstrap
    from meshpilot.cluster.state import ClusterInfo
    from meshpilot.store import Store

    store = Store(None)
    try:
        bootstrap(store, ClusterInfo("a", 3, tmp_path, "t"))
        first = store.get(("", "services"), "default", "kubernetes")
        assert ipaddress.IPv4Address(first["spec"]["clusterIP"]) in ipaddress.IPv4Network("127.3.128.0/17")
        moved = ClusterInfo("a", 7, tmp_path, "t")
        bootstrap(store, moved)
        second = store.get(("", "services"), "default", "kubernetes")
        assert ipaddress.IPv4Address(second["spec"]["clusterIP"]) in moved.service_network
        endpoints = store.get(("", "endpoints"), "default", "kubernetes")
        assert endpoints["subsets"][0]["addresses"] == [{"ip": "127.7.0.1"}]
        names = [n["metadata"]["name"] for n in store.list(("", "namespaces"))[0]]
        assert {"default", "kube-system", "kube-public"} <= set(names)
    finally:
        store.close()


def test_index_claimed_by_a_stopped_cluster_of_another_home_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meshpilot.cluster import lifecycle

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("MESHPILOT_HOME", str(tmp_path / "home1"))
    first = lifecycle._create_info("a", mesh=False)
    first.save()  # recorded, daemon not running
    monkeypatch.setenv("MESHPILOT_HOME", str(tmp_path / "home2"))
    second = lifecycle._create_info("a", mesh=False)
    assert second.index != first.index
    assert lifecycle._claim_owner(first.index) == (str(tmp_path / "home1"), "a")
    # once the first home's cluster record is gone (and the claim is not a fresh one), it is stale
    (tmp_path / "home1" / "clusters" / "a" / "cluster.json").unlink()
    assert lifecycle._claim_owner(first.index) is not None  # fresh claims count while a cluster is created
    claim = tmp_path / "run" / f"meshpilot-{os.getuid()}" / "indexes" / f"{first.index}.json"
    old = time.time() - 3600
    os.utime(claim, (old, old))
    assert lifecycle._claim_owner(first.index) is None


def test_down_after_a_daemon_crash_kills_the_orphaned_pods(tmp_path: Path) -> None:
    home = tmp_path / "home"
    name = "orphans"
    daemon_pid = None
    pod_pid = None
    try:
        assert meshpilot(home, "cluster", "up", "--name", name, "--no-mesh").returncode == 0
        daemon_pid = int(status_json(home, name)["pid"])
        client = client_for(home, f"meshpilot-{name}")
        client.create(SLEEPER)
        pod_pid = wait_for(lambda: container_pid(client), 30, "the pod's process")
        client.close()
        os.kill(daemon_pid, signal.SIGKILL)
        wait_for(lambda: not alive(daemon_pid), 10, "the daemon to die")
        assert alive(pod_pid)
        down = meshpilot(home, "cluster", "down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert "killed 1 leftover pod process" in down.stdout
        assert not alive(pod_pid)
    finally:
        if (home / "clusters" / name / "cluster.json").exists():
            meshpilot(home, "cluster", "down", "--name", name)


def test_down_kills_a_pod_process_the_daemon_died_before_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime writes a container's pid file right after the fork and the pod status a moment
    later; a daemon that dies in between leaves a process only the pid file knows. ``down`` kills it."""
    from meshpilot.cluster import state
    from meshpilot.cluster.runtime import spawn_process

    home = tmp_path / "home"
    name = "unrecorded"
    orphan = None
    try:
        assert meshpilot(home, "cluster", "up", "--name", name, "--no-mesh").returncode == 0
        monkeypatch.setenv("MESHPILOT_HOME", str(home))
        info = state.load(name)
        pod_dir = info.pods_dir / "default" / "half-started"
        orphan = spawn_process(
            [sys.executable, "-c", "import time; time.sleep(600)"],
            env=dict(os.environ),
            cwd=None,
            log_path=pod_dir / "main.log",
            pid_path=pod_dir / "main.pid",
        )
        down = meshpilot(home, "cluster", "down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert "killed 1 leftover pod process" in down.stdout
        assert wait_for(lambda: not alive(orphan.pid), 10, "the unrecorded process to die")
    finally:
        if orphan is not None and alive(orphan.pid):
            os.kill(orphan.pid, signal.SIGKILL)
        if orphan is not None and orphan.popen is not None:
            orphan.popen.wait(timeout=10)
        if (home / "clusters" / name / "cluster.json").exists():
            meshpilot(home, "cluster", "down", "--name", name)
