"""Bring a local cluster up and down: pick its address, record it, start and stop its daemon.

The daemon is detached (own session, output to daemon.log) so it outlives the command that
started it. ``up`` is idempotent: a running cluster is left alone, a dead daemon is restarted
(and re-adopts its pods). ``down`` stops the daemon with SIGTERM, which stops every pod, and then
checks that no process the cluster recorded is still alive, killing any that is.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from meshpilot import paths
from meshpilot.cluster import kubeconfig, state
from meshpilot.cluster.state import ClusterInfo

DEFAULT_NAME = "default"
API_PORT = 6443
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 45.0
CLAIM_GRACE = 120.0
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


class ClusterError(Exception):
    """A lifecycle step failed; the message is meant for the user."""


@dataclass(frozen=True)
class ClusterStatus:
    info: ClusterInfo
    pid: int | None
    running: bool
    ready: bool

    @property
    def state(self) -> str:
        if self.ready:
            return "Running"
        if self.running:
            return "Starting"
        return "Stopped"


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                return False
            raise
    return True


def _claims_dir() -> Path:
    """Machine-wide (per user) record of which index belongs to which cluster of which home.

    Each MESHPILOT_HOME records its own clusters, but addresses are shared by the whole machine:
    without this, a cluster whose daemon is down for a moment (crashed, being restarted) would
    look free to a cluster being created in another home, which would then take its addresses.
    """
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    path = base / f"meshpilot-{os.getuid()}" / "indexes"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _claim_owner(index: int) -> tuple[str, str] | None:
    """(home, name) of the live claim on ``index``; None if unclaimed or the claim is stale."""
    claim = _claims_dir() / f"{index}.json"
    try:
        data = json.loads(claim.read_text())
        home, name = str(data["home"]), str(data["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        recorded = json.loads((Path(home) / "clusters" / name / state.CLUSTER_FILE).read_text())
    except FileNotFoundError:
        # claimed a moment ago by a cluster that is still being created
        fresh = time.time() - claim.stat().st_mtime < CLAIM_GRACE
        return (home, name) if fresh else None
    except (OSError, ValueError):
        return None
    if int(recorded.get("index", -1)) != index:
        return None  # the owner moved or was re-created elsewhere
    return home, name


def _claim(index: int, name: str) -> None:
    path = _claims_dir() / f"{index}.json"
    tmp = path.with_name(f"{index}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"home": str(paths.home()), "name": name}))
    os.replace(tmp, path)


def _claims_locked() -> contextlib.AbstractContextManager[None]:
    return paths.locked(_claims_dir() / "lock")


def pick_index(taken: Iterable[int], name: str | None = None) -> int:
    """The first N in 1..254 not recorded here nor claimed by a cluster of another home, whose
    127.N.0.1:6443 is free; with ``name``, the index is claimed for that cluster."""
    used = set(taken)
    me = str(paths.home())
    with _claims_locked():
        for index in range(1, 255):
            if index in used:
                continue
            owner = _claim_owner(index)
            if owner is not None and owner != (me, name):
                continue
            host = f"127.{index}.0.1"
            if _port_free(host, API_PORT) and _port_free(host, API_PORT + 1):
                if name is not None:
                    _claim(index, name)
                return index
    raise ClusterError("no free cluster index: every 127.N.0.1:6443 (N = 1..254) is in use or claimed")


def _pid_alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def daemon_pid(info: ClusterInfo) -> int | None:
    """The PID in daemon.pid if that process is alive and is our daemon for this cluster."""
    try:
        pid = int(info.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    if "meshpilot.cluster.daemon" in " ".join(cmdline) and info.name in cmdline:
        return pid
    return None


def is_ready(info: ClusterInfo, timeout: float = 2.0) -> bool:
    """Ready and ours: an authenticated request succeeds (another home's daemon would answer 401)."""
    try:
        response = httpx.get(
            f"{info.server}/api", timeout=timeout, headers={"Authorization": f"Bearer {info.token}"}
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def status(name: str) -> ClusterStatus:
    try:
        info = state.load(name)
    except FileNotFoundError:
        raise ClusterError(
            f"cluster {name!r} does not exist (run `meshpilot cluster up --name {name}`)"
        ) from None
    pid = daemon_pid(info)
    return ClusterStatus(info, pid, pid is not None, pid is not None and is_ready(info))


def list_clusters() -> list[ClusterStatus]:
    out = []
    for info in state.recorded():
        pid = daemon_pid(info)
        out.append(ClusterStatus(info, pid, pid is not None, pid is not None and is_ready(info)))
    return out


def _create_info(name: str, mesh: bool, avoid: Iterable[int] = ()) -> ClusterInfo:
    others = [c.index for c in state.recorded() if c.name != name] + list(avoid)
    index = pick_index(others, name)
    return ClusterInfo(
        name=name,
        index=index,
        state_dir=paths.cluster_dir(name),
        token=secrets.token_urlsafe(32),
        api_port=API_PORT,
        mesh=mesh,
    )


def ensure_api_certs(info: ClusterInfo) -> str:
    """A CA and a serving certificate for the API's HTTPS port; returns the CA's PEM.

    kubectl (client-go) sends bearer tokens only over TLS, so the kubeconfig points at the HTTPS
    port and carries this CA. Generated once per cluster and kept in its state directory.
    """
    import datetime
    import ipaddress

    from cryptography import x509

    if info.ca_file.exists() and info.tls_cert_file.exists() and info.tls_key_file.exists():
        try:
            current = x509.load_pem_x509_certificate(info.tls_cert_file.read_bytes())
            san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            if ipaddress.IPv4Address(info.api_host) in san.get_values_for_type(x509.IPAddress):
                return info.ca_file.read_text()
        except (ValueError, x509.ExtensionNotFound):
            pass  # unreadable or made for another address: make new ones
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"meshpilot-{info.name}-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.IPv4Address(info.api_host)),
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.DNSName("kubernetes.default.svc.cluster.local"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca_cert.public_bytes(pem).decode()
    info.state_dir.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(info.tls_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    info.tls_cert_file.write_bytes(cert.public_bytes(pem))
    info.ca_file.write_text(ca_pem)
    return ca_pem


def _register(info: ClusterInfo) -> None:
    """Record the cluster in the kubeconfig: its HTTPS address and CA, and its token."""
    ca_pem = ensure_api_certs(info)
    kubeconfig.add_cluster(info.context, info.secure_server, info.token, ca_pem=ca_pem)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_daemon(info: ClusterInfo, timeout: float = READY_TIMEOUT) -> int:
    """Start the daemon detached and wait for ``/readyz``; returns its PID."""
    info.state_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["MESHPILOT_HOME"] = str(paths.home())
    with open(info.log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshpilot.cluster.daemon", "--name", info.name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=str(info.state_dir),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise ClusterError(
                f"cluster daemon exited with code {code} during start; last lines of {info.log_file}:\n"
                + _tail(info.log_file)
            )
        if is_ready(info, timeout=1.0):
            return proc.pid
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)
    raise ClusterError(f"cluster daemon did not become ready within {timeout:.0f}s; see {info.log_file}")


def _exclusive(name: str) -> contextlib.AbstractContextManager[None]:
    """One lifecycle operation per cluster at a time (two `cluster up` racing would start two daemons)."""
    return paths.locked(paths.cluster_dir(name) / "lifecycle.lock")


def up(name: str = DEFAULT_NAME, *, mesh: bool = True) -> tuple[ClusterInfo, str]:
    """Create or restart cluster ``name``; returns its info and a one-line message for the user."""
    _check_name(name)
    with _exclusive(name):
        return _up(name, mesh)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ClusterError(
            f"invalid cluster name {name!r}: use lowercase letters, digits and '-' (at most 40), "
            "starting with a letter"
        )


def _up(name: str, mesh: bool) -> tuple[ClusterInfo, str]:
    try:
        info = state.load(name)
        created = False
    except FileNotFoundError:
        info = _create_info(name, mesh)
        created = True
    if not created and mesh != info.mesh and daemon_pid(info) is None:
        info = ClusterInfo(info.name, info.index, info.state_dir, info.token, info.api_port, mesh)
    pid = daemon_pid(info)
    if pid is not None:
        _register(info)
        return info, f"cluster {name} is already running at {info.server} (daemon pid {pid})"
    if not created:
        with _claims_locked():
            owner = _claim_owner(info.index)
            if owner is None:
                _claim(info.index, name)
    if not created and not (
        _port_free(info.api_host, info.api_port) and _port_free(info.api_host, info.secure_port)
    ):
        raise ClusterError(
            f"cannot restart cluster {name}: {info.api_host}:{info.api_port} or :{info.secure_port} is in use "
            "by another process"
        )
    info.save()
    _register(info)
    failed: list[int] = []
    while True:
        try:
            pid = start_daemon(info)
            break
        except ClusterError:
            # Another MESHPILOT_HOME may have taken the same free address a moment before us.
            if not created or len(failed) >= 5 or _port_free(info.api_host, info.api_port):
                raise
            failed.append(info.index)
            for leftover in info.state_dir.glob("store.db*"):
                leftover.unlink()  # a brand-new cluster: nothing in it was made for the new address plan
            info = _create_info(name, mesh, failed)
            info.save()
            _register(info)
    verb = "created" if created else "restarted"
    return info, f"cluster {name} {verb} at {info.server} (daemon pid {pid}, context {info.context})"


def recorded_pids(info: ClusterInfo) -> list[tuple[int, float | None]]:
    """(pid, start time) of every container the cluster started.

    Two records, because a daemon can die between them: the runtime writes ``<container>.pid`` in
    the pod's directory right after the fork, and the store's pod status a moment later.
    """
    from meshpilot.cluster.runtime import read_pid_file

    found: dict[int, float | None] = dict(_pids_in_store(info))
    for pid_file in info.pods_dir.glob("*/*/*.pid"):
        proc = read_pid_file(pid_file)
        if proc is not None:
            found.setdefault(proc.pid, proc.start_time)
    return sorted(found.items())


def _pids_in_store(info: ClusterInfo) -> list[tuple[int, float | None]]:
    """(pid, start time) of every container the store's pod statuses record."""
    if not info.store_path.exists():
        return []
    from meshpilot.store import Store

    store = Store(info.store_path)
    try:
        pods, _ = store.list(("", "pods"))
    finally:
        store.close()
    out: list[tuple[int, float | None]] = []
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        statuses += (pod.get("status") or {}).get("initContainerStatuses") or []
        for cs in statuses:
            container_id = str(cs.get("containerID") or "")
            if not container_id.startswith("meshpilot://"):
                continue
            pid_text, _, start_text = container_id.removeprefix("meshpilot://").partition("-")
            try:
                pid = int(pid_text)
            except ValueError:
                continue
            try:
                start = float(start_text) if start_text else None
            except ValueError:
                start = None
            out.append((pid, start))
    return out


def _same_process(pid: int, start: float | None) -> bool:
    """Is ``pid`` still the process that was recorded (not a reused PID)?"""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except psutil.Error:
        return False
    return start is None or abs(created - start) < 2.0


def surviving_pids(info: ClusterInfo) -> list[int]:
    return [pid for pid, start in recorded_pids(info) if _same_process(pid, start)]


def _kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
        proc.kill()


def down(name: str = DEFAULT_NAME, timeout: float = STOP_TIMEOUT) -> str:
    """Stop the daemon and every pod; returns a one-line message. Raises if a process survives."""
    try:
        info = state.load(name)
    except FileNotFoundError:
        raise ClusterError(f"cluster {name!r} does not exist") from None
    with _exclusive(name):
        return _down(info, name, timeout)


def _down(info: ClusterInfo, name: str, timeout: float) -> str:
    pid = daemon_pid(info)
    message = f"cluster {name} was not running"
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.1)
        if _pid_alive(pid):
            _kill_tree(pid)
            message = (
                f"cluster {name} stopped (daemon pid {pid} did not exit in {timeout:.0f}s and was killed)"
            )
        else:
            message = f"cluster {name} stopped"
        with contextlib.suppress(FileNotFoundError):
            info.pid_file.unlink()
    leftovers = surviving_pids(info)
    for leftover in leftovers:
        _kill_tree(leftover)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_pid_alive(p) for p in leftovers):
        time.sleep(0.05)
    alive = [p for p in leftovers if _pid_alive(p)]
    if alive:
        raise ClusterError(f"cluster {name}: processes {alive} survived SIGKILL")
    if leftovers:
        message += f"; killed {len(leftovers)} leftover pod process(es)"
    return message


def describe(s: ClusterStatus) -> dict[str, object]:
    """A JSON-able summary for ``cluster status -o json`` and ``cluster list``."""
    return {
        "name": s.info.name,
        "state": s.state,
        "server": s.info.server,
        "context": s.info.context,
        "index": s.info.index,
        "pid": s.pid,
        "mesh": s.info.mesh,
        "stateDir": str(s.info.state_dir),
    }


def to_json(statuses: Iterable[ClusterStatus]) -> str:
    return json.dumps([describe(s) for s in statuses], indent=2)
