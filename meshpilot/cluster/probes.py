"""Container probes (httpGet, tcpSocket, exec) and their Kubernetes timing rules.

Probes connect FROM the pod's own address (bind before connect), so an app or sidecar that looks
at the peer address sees the pod, as it would see the kubelet's node address on a real cluster,
and never a stranger's loopback address.

``ProbeTracker`` is the sans-IO part: given results and a clock it says when the next probe is
due and whether the probe is passing (successThreshold / failureThreshold). ``run_probe`` is the
I/O part.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

# Linux: let connect() choose the source port even though we bound the source address first,
# so thousands of probes never exhaust the ephemeral ports of one address.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


@dataclass
class ProbeTracker:
    """Timing and thresholds of one probe of one container run (reset when the container restarts)."""

    spec: Obj
    started_at: float
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    passing: bool | None = None  # None until the threshold decides either way
    last_message: str = ""
    running: bool = False
    history: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.next_at = self.started_at + float(self.spec.get("initialDelaySeconds") or 0)

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds") or 1)

    @property
    def success_threshold(self) -> int:
        return int(self.spec.get("successThreshold") or 1)

    @property
    def failure_threshold(self) -> int:
        return int(self.spec.get("failureThreshold") or 3)

    def due(self, moment: float) -> bool:
        return not self.running and moment >= self.next_at

    def begin(self, moment: float) -> None:
        self.running = True
        self.next_at = moment + self.period

    def record(self, ok: bool, message: str = "") -> bool | None:
        """Feed one result; return the new verdict (True passing, False failed, None undecided)."""
        self.running = False
        self.last_message = message
        self.history.append(ok)
        del self.history[:-20]
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.success_threshold:
                self.passing = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.failure_threshold:
                self.passing = False
        return self.passing


async def run_probe(
    spec: Obj, *, pod_ip: str, ports: dict[str, int], env: dict[str, str], cwd: str | None
) -> tuple[bool, str]:
    """Run one probe; return (success, message). Never raises for a failing target."""
    timeout = float(spec.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in spec:
            return await asyncio.wait_for(_http_get(spec["httpGet"], pod_ip, ports), timeout)
        if "tcpSocket" in spec:
            return await asyncio.wait_for(_tcp(spec["tcpSocket"], pod_ip, ports), timeout)
        if "exec" in spec:
            return await _exec(spec["exec"], env, cwd, timeout)
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except OSError as exc:
        return False, str(exc)
    return False, "probe has no handler (httpGet, tcpSocket or exec)"


def resolve_port(port: Any, ports: dict[str, int]) -> int:
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    if text in ports:
        return ports[text]
    raise OSError(f"port {text!r} is not a named containerPort")


async def open_from(
    pod_ip: str, host: str, port: int, *, tls: bool = False
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a TCP connection whose source address is the pod's IP."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    except OSError:
        pass
    sock.setblocking(False)
    try:
        sock.bind((pod_ip, 0))
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return await asyncio.open_connection(sock=sock, ssl=context, server_hostname=host if tls else None)


async def _http_get(action: Obj, pod_ip: str, ports: dict[str, int]) -> tuple[bool, str]:
    host = action.get("host") or pod_ip
    port = resolve_port(action.get("port"), ports)
    path = action.get("path") or "/"
    tls = str(action.get("scheme", "HTTP")).upper() == "HTTPS"
    reader, writer = await open_from(pod_ip, host, port, tls=tls)
    try:
        headers = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.30", "Accept": "*/*"}
        for header in action.get("httpHeaders") or []:
            headers[str(header.get("name"))] = str(header.get("value", ""))
        head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write((head + "Connection: close\r\n\r\n").encode("latin-1"))
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    parts = status_line.decode("latin-1").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f"malformed HTTP response {status_line[:60]!r}"
    code = int(parts[1])
    if 200 <= code < 400:
        return True, f"HTTP probe succeeded with statuscode: {code}"
    return False, f"HTTP probe failed with statuscode: {code}"


async def _tcp(action: Obj, pod_ip: str, ports: dict[str, int]) -> tuple[bool, str]:
    host = action.get("host") or pod_ip
    port = resolve_port(action.get("port"), ports)
    _reader, writer = await open_from(pod_ip, host, port)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True, f"connected to {host}:{port}"


async def _exec(action: Obj, env: dict[str, str], cwd: str | None, timeout: float) -> tuple[bool, str]:
    argv = [str(a) for a in action.get("command") or []]
    if not argv:
        return False, "exec probe has no command"
    from meshpilot.cluster.runtime import resolve_argv  # the runtime's argv rules apply to probes too

    argv = resolve_argv(argv)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=cwd if cwd and os.path.isdir(cwd) else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        # never leave the command (or its transport) behind, even when the probe is cancelled
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(proc.communicate(), 2.0)
        if isinstance(exc, asyncio.CancelledError):
            raise
        return False, f"command timed out after {timeout:g}s"
    text = out.decode(errors="replace").strip()[-200:]
    if proc.returncode == 0:
        return True, text
    return False, f"command exited with {proc.returncode}: {text}"
