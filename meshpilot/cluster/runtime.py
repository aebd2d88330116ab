"""The process runtime: each pod's containers are local processes (the kubelet of the local cluster).

Why processes and not containers: the local mesh must run without root and without images. A
container here is ``command`` + ``args`` (Kubernetes' rules, ``$(VAR)`` expansion), its ``env``
(with the downward API, ConfigMap and Secret references), its ``workingDir``, one log file and a
process group of its own.

Processes are started in their own session so they outlive a crashed daemon. Each container's
PID and start time are written to ``<pod dir>/<container>.pid`` right after the fork (before the
status write, so a crash in between cannot lead to a duplicate) and to
``status.containerStatuses[].containerID`` as ``meshpilot://<pid>-<starttime>``. A daemon that
starts again re-adopts a live process only when both PID and start time match (PIDs are reused),
and restarts a dead one: nothing orphaned, nothing duplicated.

Restart back-off follows the kubelet: the first restart is immediate, then 10 s doubling up to
5 min, reset after a container ran cleanly for twice the cap. ``MESHPILOT_BACKOFF_BASE_SECONDS``
scales the base (the cap stays 30 x base) so tests can use a small one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from meshpilot import tasks
from meshpilot.cluster import events as ev
from meshpilot.cluster import ipam
from meshpilot.cluster.informer import watch_forever
from meshpilot.cluster.objects import (
    CONFIGMAPS,
    PODS,
    SECRETS,
    SERVICES,
    Obj,
    env_name,
    is_terminating,
    name_of,
    namespace_of,
    rfc3339,
    set_condition,
    uid_of,
)
from meshpilot.cluster.probes import ProbeTracker, open_from, resolve_port, run_probe
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import Store

log = logging.getLogger("meshpilot.cluster.runtime")

BACKOFF_ENV = "MESHPILOT_BACKOFF_BASE_SECONDS"
TICK = 0.1  # seconds between two looks at a pod's processes when nothing else wakes its worker
KILL_WAIT = 5.0  # after SIGKILL, how long to wait for the kernel to report the death
STOP_GRACE_CAP = 10.0  # ``stop(stop_pods=True)``: most grace any pod gets when the cluster goes down

# variables of the daemon's own environment that a process needs to run at all
PASSTHROUGH_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SYSTEMROOT",
)

# Popen objects of the processes this interpreter started, so that a runtime re-created in the
# same process (a simulated daemon restart) still learns real exit codes and reaps its children.
_POPENS: dict[int, subprocess.Popen[bytes]] = {}


def backoff_base() -> float:
    try:
        return max(0.01, float(os.environ.get(BACKOFF_ENV, "10")))
    except ValueError:
        return 10.0


def backoff_delay(level: int, base: float | None = None) -> float:
    """Seconds to wait before the restart that follows ``level`` earlier crashes in a row."""
    base = backoff_base() if base is None else base
    if level <= 0:
        return 0.0
    return float(min(base * 2 ** (level - 1), base * 30))


# --------------------------------------------------------------------------- argv and env


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, undefined ones are left as
    written, and ``$$`` escapes a dollar (so ``$$(VAR)`` stays ``$(VAR)``)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR.sub(replace, text)


def resolve_argv(argv: list[str]) -> list[str]:
    """``python``/``python3`` run with the daemon's interpreter; ``meshpilot`` is ``python -m meshpilot``."""
    if not argv:
        return argv
    if argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    if argv[0] == "meshpilot":
        return [sys.executable, "-m", "meshpilot", *argv[1:]]
    return list(argv)


class ContainerConfigError(Exception):
    """The container cannot be configured yet (a missing ConfigMap, Secret or key)."""


def field_ref(pod: Obj, path: str) -> str:
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName") or "meshpilot",
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": status.get("podIP"),
        "status.podIPs": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.hostIPs": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ContainerConfigError(f"unsupported fieldPath {path!r}")


def _lookup_key(store: Store, key: Any, namespace: str, ref: Obj, kind: str) -> str | None:
    from meshpilot.store import NotFound

    name = ref.get("name", "")
    try:
        obj = store.get(key, namespace, name)
    except NotFound:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f'{kind} "{name}" not found') from None
    data = dict(obj.get("data") or {})
    wanted = ref.get("key", "")
    if kind == "secret":
        value = data.get(wanted)
        if value is None:
            value = (obj.get("stringData") or {}).get(wanted)
            if value is None:
                if ref.get("optional"):
                    return None
                raise ContainerConfigError(f"couldn't find key {wanted} in Secret {namespace}/{name}")
            return str(value)
        return base64.b64decode(value).decode(errors="replace")
    if wanted not in data:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f"couldn't find key {wanted} in ConfigMap {namespace}/{name}")
    return str(data[wanted])


def service_env(services: list[Obj]) -> dict[str, str]:
    """Kubernetes' Docker-links-style variables for the Services of the pod's namespace."""
    env: dict[str, str] = {}
    for svc in services:
        ip = svc.get("spec", {}).get("clusterIP")
        ports = svc.get("spec", {}).get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = env_name(name_of(svc))
        first = ports[0]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(first.get("port"))
        env[f"{prefix}_PORT"] = f"{str(first.get('protocol', 'TCP')).lower()}://{ip}:{first.get('port')}"
        for port in ports:
            proto = str(port.get("protocol", "TCP"))
            number = port.get("port")
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{env_name(port['name'])}"] = str(number)
            base = f"{prefix}_PORT_{number}_{proto.upper()}"
            env[base] = f"{proto.lower()}://{ip}:{number}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(number)
            env[f"{base}_ADDR"] = ip
    return env


def build_env(
    store: Store,
    info: ClusterInfo,
    pod: Obj,
    container: Obj,
    *,
    services: list[Obj],
    token_file: Path,
) -> dict[str, str]:
    """Everything a container's process sees in ``os.environ`` (docs/internals.md, cluster)."""
    namespace = namespace_of(pod)
    status = pod.get("status", {})
    spec = pod.get("spec", {})
    env: dict[str, str] = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    env["HOSTNAME"] = name_of(pod)
    env.update(service_env(services))
    env["KUBERNETES_SERVICE_HOST"] = info.api_host
    env["KUBERNETES_SERVICE_PORT"] = str(info.api_port)
    env["KUBERNETES_SERVICE_PORT_HTTPS"] = str(info.api_port)
    env["POD_NAME"] = name_of(pod)
    env["POD_NAMESPACE"] = namespace
    env["POD_IP"] = str(status.get("podIP", ""))
    env["INSTANCE_IP"] = str(status.get("podIP", ""))
    env["SERVICE_ACCOUNT"] = str(spec.get("serviceAccountName") or "default")
    env["MESHPILOT_TOKEN_FILE"] = str(token_file)
    ports = container.get("ports") or []
    if ports:
        env["PORT"] = str(ports[0].get("containerPort"))
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, key, ref_name in (
            ("configmap", CONFIGMAPS, "configMapRef"),
            ("secret", SECRETS, "secretRef"),
        ):
            ref = source.get(ref_name)
            if ref is None:
                continue
            from meshpilot.store import NotFound

            try:
                obj = store.get(key, namespace, ref.get("name", ""))
            except NotFound:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind} "{ref.get("name")}" not found') from None
            for k, v in (obj.get("data") or {}).items():
                env[prefix + k] = base64.b64decode(v).decode(errors="replace") if kind == "secret" else str(v)
    for var in container.get("env") or []:
        name = str(var.get("name"))
        if "value" in var or "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "fieldRef" in source:
            value = field_ref(pod, str(source["fieldRef"].get("fieldPath", "")))
        elif "configMapKeyRef" in source:
            value = _lookup_key(store, CONFIGMAPS, namespace, source["configMapKeyRef"], "configmap")
        elif "secretKeyRef" in source:
            value = _lookup_key(store, SECRETS, namespace, source["secretKeyRef"], "secret")
        elif "resourceFieldRef" in source:
            resource = str(source["resourceFieldRef"].get("resource", ""))
            kind_, _, res = resource.partition(".")
            value = str((container.get("resources", {}).get(kind_) or {}).get(res, "0"))
        else:
            raise ContainerConfigError(f"env {name}: unsupported valueFrom")
        if value is not None:
            env[name] = value
    return env


def container_argv(container: Obj, env: dict[str, str]) -> list[str]:
    command = [expand(str(a), env) for a in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    return resolve_argv(command + args)


def container_ports(container: Obj) -> dict[str, int]:
    return {str(p["name"]): int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")}


# --------------------------------------------------------------------------- processes


def _rounded(start_time: float) -> float:
    return round(start_time, 2)


@dataclass
class Proc:
    """One running container process, identified by PID and start time together."""

    pid: int
    start_time: float
    popen: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    exited: bool = False

    @property
    def container_id(self) -> str:
        return f"meshpilot://{self.pid}-{self.start_time:.2f}"

    def same_process(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return (
                abs(_rounded(proc.create_time()) - self.start_time) < 0.05
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    def poll(self) -> bool:
        """True once the process has exited (``exit_code`` is then set, None when unknowable)."""
        if self.exited:
            return True
        popen = self.popen or _POPENS.get(self.pid)
        if popen is not None:
            code = popen.poll()
            if code is None:
                return False
            _POPENS.pop(self.pid, None)
            self.exited, self.exit_code = True, (128 - code if code < 0 else code)
            return True
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                code = os.waitstatus_to_exitcode(status)
                self.exited, self.exit_code = True, (128 - code if code < 0 else code)
                return True
        except ChildProcessError:
            pass
        if not self.same_process():
            self.exited = True
            return True
        return False

    def signal(self, sig: int) -> None:
        """Signal the container's whole process group, never a process that merely reuses the PID."""
        if self.poll():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill_group(self) -> None:
        """After the main process exited: SIGKILL what is left of its process group, as the end of a
        container ends every process in it. Safe against PID reuse: while any member lives, the
        kernel does not hand the group's id to a new process."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def tree_usage(self) -> tuple[float, int]:
        """(CPU seconds, RSS bytes) of the process and its descendants."""
        cpu, rss = 0.0, 0
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return cpu, rss
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
        return cpu, rss


def previous_log_path(log_path: Path) -> Path:
    """Where a restarted container's last instance's log goes (``kubectl logs --previous`` reads it)."""
    return log_path.with_name(log_path.stem + ".previous.log")


def read_pid_file(path: Path) -> Proc | None:
    try:
        pid_text, start_text = path.read_text().split()[:2]
        return Proc(int(pid_text), float(start_text))
    except (OSError, ValueError):
        return None


def spawn_process(
    argv: list[str], *, env: dict[str, str], cwd: str | None, log_path: Path, pid_path: Path
) -> Proc:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    try:
        start = _rounded(psutil.Process(popen.pid).create_time())
    except psutil.NoSuchProcess:
        start = _rounded(time.time())
    _POPENS[popen.pid] = popen
    tmp = pid_path.with_suffix(".pid.tmp")
    tmp.write_text(f"{popen.pid} {start:.2f}\n")
    tmp.replace(pid_path)
    return Proc(popen.pid, start, popen)


# --------------------------------------------------------------------------- one container


@dataclass
class ContainerRun:
    """What the runtime knows about one container of one pod across its restarts."""

    name: str
    spec: Obj
    init: bool = False
    proc: Proc | None = None
    restart_count: int = 0
    ever_started: bool = False
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    backoff_level: int = 0
    restart_at: float = 0.0  # monotonic time at which the next start may happen
    finished: bool = False  # terminated and not going to restart
    succeeded: bool = False  # (init containers) exited 0
    started_mono: float = 0.0
    startup: ProbeTracker | None = None
    liveness: ProbeTracker | None = None
    readiness: ProbeTracker | None = None
    was_ready: bool = False
    killing: bool = False
    post_start_pending: bool = False  # the postStart hook runs: no probes, not ready yet
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        if self.proc is None or self.init or "running" not in self.state or self.post_start_pending:
            return False
        if self.startup is not None and self.startup.passing is not True:
            return False
        if self.readiness is None:
            return True
        return self.readiness.passing is True

    @property
    def started(self) -> bool:
        return "running" in self.state and (self.startup is None or self.startup.passing is True)

    def status(self) -> Obj:
        out: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.proc is not None:
            out["containerID"] = self.proc.container_id
        return out


# --------------------------------------------------------------------------- one pod


class PodWorker:
    """Drives one pod: start, watch, probe, restart, and terminate its containers."""

    def __init__(self, runtime: ProcessRuntime, pod: Obj) -> None:
        self.runtime = runtime
        self.pod = pod
        self.uid = uid_of(pod)
        self.namespace = namespace_of(pod)
        self.name = name_of(pod)
        self.dir = runtime.info.pods_dir / self.namespace / self.name
        self.wake = asyncio.Event()
        self.gone = False
        self.terminating = False
        self.task: asyncio.Task[None] | None = None
        spec = pod.get("spec", {})
        self.init_runs = [
            ContainerRun(str(c["name"]), c, init=True) for c in spec.get("initContainers") or []
        ]
        self.runs = [ContainerRun(str(c["name"]), c) for c in spec.get("containers") or []]
        status = pod.get("status", {})
        self.conditions: list[Obj] = [dict(c) for c in status.get("conditions") or []]
        self.start_time = status.get("startTime") or rfc3339()
        self.pod_ip = str(status.get("podIP") or "")
        self.scheduled = bool(self.pod_ip)  # a pod with an address was placed (and reported) before
        self.published: Obj | None = None
        self.failed_reason = ""
        self.probe_tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        running = sum(1 for r in self.runs if r.proc is not None and not r.proc.exited)
        return (
            f"<PodWorker {self.namespace}/{self.name} ip={self.pod_ip} [{running}/{len(self.runs)} running]>"
        )

    @property
    def all_runs(self) -> list[ContainerRun]:
        return self.init_runs + self.runs

    @property
    def restart_policy(self) -> str:
        return str(self.pod.get("spec", {}).get("restartPolicy") or "Always")

    @property
    def grace_period(self) -> float:
        meta = self.pod.get("metadata", {})
        value = meta.get("deletionGracePeriodSeconds")
        if value is None:
            value = self.pod.get("spec", {}).get("terminationGracePeriodSeconds")
        return float(30 if value is None else value)

    # ---- events

    def _event(
        self, type_: ev.EventType, reason: str, message: str, run: ContainerRun | None = None, *, by: str = ""
    ) -> None:
        """An Event about this pod (or one of its containers), from the kubelet unless ``by`` says."""
        path = None
        if run is not None:
            path = f"spec.{'initContainers' if run.init else 'containers'}{{{run.name}}}"
        self.runtime.events.event(self.pod, type_, reason, message, by or ev.KUBELET, field_path=path)

    # ---- setup and adoption

    def _setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        token = self.dir / "token"
        if not token.exists():
            token.write_text(self.runtime.info.token)
            token.chmod(0o600)
        if not self.pod_ip or not self.runtime.pod_ips.contains(self.pod_ip):
            self.pod_ip = self.runtime.pod_ips.allocate()
        else:
            self.runtime.pod_ips.reserve(self.pod_ip)
        self.pod.setdefault("status", {})["podIP"] = self.pod_ip
        set_condition(self.conditions, "PodScheduled", "True")
        if not self.scheduled:
            node = self.pod.get("spec", {}).get("nodeName") or ev.NODE_NAME
            self._event(
                "Normal",
                "Scheduled",
                f"Successfully assigned {self.namespace}/{self.name} to {node}",
                by=ev.SCHEDULER,
            )
            self.scheduled = True
        previous = {s.get("name"): s for s in self.pod.get("status", {}).get("containerStatuses") or []}
        previous_init = {
            s.get("name"): s for s in self.pod.get("status", {}).get("initContainerStatuses") or []
        }
        for run in self.all_runs:
            old = (previous_init if run.init else previous).get(run.name) or {}
            run.restart_count = int(old.get("restartCount") or 0)
            if old.get("lastState"):
                run.last_state = old["lastState"]
            if (
                run.init
                and "terminated" in (old.get("state") or {})
                and old["state"]["terminated"].get("exitCode") == 0
            ):
                run.succeeded = run.finished = True
                run.state = old["state"]
                continue
            proc = read_pid_file(self._pid_path(run))
            if proc is None:
                continue
            if proc.same_process():
                proc.popen = _POPENS.get(proc.pid)
                run.proc = proc
                run.ever_started = True
                run.state = {"running": {"startedAt": rfc3339(_from_epoch(proc.start_time))}}
                run.started_mono = time.monotonic()
                self._new_trackers(run, adopted_ready=bool(old.get("ready")))
                log.info("adopted %s/%s container %s (pid %d)", self.namespace, self.name, run.name, proc.pid)
            else:
                proc.popen = _POPENS.get(proc.pid)
                proc.poll()
                run.proc = proc
                run.ever_started = True
                self._on_exit(run, time.monotonic(), lost=proc.exit_code is None)

    def _pid_path(self, run: ContainerRun) -> Path:
        return self.dir / f"{run.name}.pid"

    def _new_trackers(self, run: ContainerRun, adopted_ready: bool = False) -> None:
        now = time.monotonic()
        spec = run.spec
        run.startup = (
            ProbeTracker(spec["startupProbe"], now) if spec.get("startupProbe") and not run.init else None
        )
        run.liveness = (
            ProbeTracker(spec["livenessProbe"], now) if spec.get("livenessProbe") and not run.init else None
        )
        run.readiness = (
            ProbeTracker(spec["readinessProbe"], now) if spec.get("readinessProbe") and not run.init else None
        )
        if adopted_ready:
            # an adopted container that was ready stays ready until a probe says otherwise, so a
            # daemon restart does not make every endpoint flap
            for tracker in (run.startup, run.readiness):
                if tracker is not None:
                    tracker.passing = True
                    tracker.next_at = now

    # ---- starting

    def _services(self) -> list[Obj]:
        try:
            items, _ = self.runtime.store.list(SERVICES, namespace=self.namespace)
        except Exception:
            return []
        return list(items)

    def _start(self, run: ContainerRun, now: float) -> None:
        container = run.spec
        try:
            env = build_env(
                self.runtime.store,
                self.runtime.info,
                self.pod,
                container,
                services=self._services(),
                token_file=self.dir / "token",
            )
        except ContainerConfigError as exc:
            if run.state.get("waiting", {}).get("message") != str(exc):
                self._event("Warning", "Failed", f"Error: {exc}", run)
            run.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            run.restart_at = now + 1.0
            return
        argv = container_argv(container, env)
        if not argv:
            run.state = {"waiting": {"reason": "CreateContainerError", "message": "container has no command"}}
            run.restart_at = now + 5.0
            return
        cwd = container.get("workingDir")
        if cwd and not os.path.isabs(cwd):
            cwd = str(self.dir / cwd)
        log_path = self.dir / f"{run.name}.log"
        if run.ever_started:
            run.restart_count += 1
            # the kubelet keeps one instance back: ``logs`` shows the current one, ``--previous``
            # the one before; this also keeps a crash loop from growing one log without end
            with contextlib.suppress(FileNotFoundError):
                log_path.replace(previous_log_path(log_path))
        run.ever_started = True
        run.env = env
        try:
            run.proc = spawn_process(argv, env=env, cwd=cwd, log_path=log_path, pid_path=self._pid_path(run))
        except OSError as exc:
            run.proc = None
            stamp = rfc3339()
            run.last_state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": f"failed to start {argv[0]!r}: {exc.strerror or exc}",
                    "startedAt": stamp,
                    "finishedAt": stamp,
                }
            }
            run.state = dict(run.last_state)
            self._event("Warning", "Failed", f"Error: {run.last_state['terminated']['message']}", run)
            self._schedule_restart(run, now, exit_code=128)
            return
        run.state = {"running": {"startedAt": rfc3339(_from_epoch(run.proc.start_time))}}
        run.started_mono = now
        run.killing = False
        self._new_trackers(run)
        log.info("started %s/%s container %s: pid %d", self.namespace, self.name, run.name, run.proc.pid)
        self._event("Normal", "Created", f"Created container {run.name}", run)
        self._event("Normal", "Started", f"Started container {run.name}", run)
        hook = (container.get("lifecycle") or {}).get("postStart")
        if hook and not run.init:
            run.post_start_pending = True
            self._spawn(
                self._post_start(run, run.proc, hook), f"postStart {self.namespace}/{self.name}/{run.name}"
            )

    async def _post_start(self, run: ContainerRun, proc: Proc, hook: Obj) -> None:
        """Kubernetes' postStart: runs right after the start; a failure kills the container."""
        ok, message = await self._run_hook(run, hook, time.monotonic() + float(self.grace_period or 30))
        if run.proc is not proc:
            return
        run.post_start_pending = False
        if not ok:
            self._event("Warning", "FailedPostStartHook", f"PostStartHook failed: {message}", run)
            self._kill_for_restart(run, f"postStart hook failed: {message}")
        self.wake.set()

    async def _run_hook(self, run: ContainerRun, hook: Obj, deadline: float) -> tuple[bool, str]:
        remaining = max(0.0, deadline - time.monotonic())
        if "exec" in hook:
            spec = {"exec": hook["exec"], "timeoutSeconds": remaining}
            return await run_probe(
                spec, pod_ip=self.pod_ip, ports={}, env=run.env, cwd=run.spec.get("workingDir")
            )
        if "httpGet" in hook:
            spec = {"httpGet": hook["httpGet"], "timeoutSeconds": remaining}
            return await run_probe(
                spec, pod_ip=self.pod_ip, ports=container_ports(run.spec), env=run.env, cwd=None
            )
        if "tcpSocket" in hook:
            spec = {"tcpSocket": hook["tcpSocket"], "timeoutSeconds": remaining}
            return await run_probe(
                spec, pod_ip=self.pod_ip, ports=container_ports(run.spec), env=run.env, cwd=None
            )
        if "sleep" in hook:
            await asyncio.sleep(min(remaining, float(hook["sleep"].get("seconds") or 0)))
            return True, "slept"
        return False, "hook has no handler"

    # ---- exits and restarts

    def _on_exit(self, run: ContainerRun, now: float, *, lost: bool = False) -> None:
        proc = run.proc
        assert proc is not None
        proc.kill_group()
        code = proc.exit_code
        started = run.state.get("running", {}).get("startedAt") or rfc3339(_from_epoch(proc.start_time))
        if lost or code is None:
            terminated: Obj = {
                "exitCode": 137,
                "reason": "ContainerStatusUnknown",
                "message": "the process ended while the runtime was not watching it",
            }
        else:
            terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
            if code == 137 and run.killing:
                terminated["reason"] = "Error"
        terminated.update({"startedAt": started, "finishedAt": rfc3339(), "containerID": proc.container_id})
        run.state = {"terminated": terminated}
        run.last_state = {"terminated": terminated}
        run.killing = False
        ran_for = now - run.started_mono if run.started_mono else 0.0
        if ran_for > 2 * backoff_base() * 30:
            run.backoff_level = 0
        for tracker in (run.startup, run.liveness, run.readiness):
            if tracker is not None:
                tracker.passing = None
        self._pid_path(run).unlink(missing_ok=True)
        exit_code = int(terminated["exitCode"])
        if run.init:
            if exit_code == 0:
                run.succeeded = run.finished = True
                return
        self._schedule_restart(run, now, exit_code=exit_code)

    def _schedule_restart(self, run: ContainerRun, now: float, *, exit_code: int) -> None:
        policy = self.restart_policy
        restart = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
        if run.init:
            restart = policy != "Never"
        if not restart:
            run.finished = True
            return
        delay = backoff_delay(run.backoff_level)
        run.backoff_level += 1
        run.restart_at = now + delay
        if delay > 0:
            self._event(
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {run.name} in pod {self.name}_{self.namespace}({self.uid})",
                run,
            )
            run.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:g}s restarting failed container={run.name} pod={self.name}_{self.namespace}",
                }
            }

    def _kill_for_restart(self, run: ContainerRun, reason: str) -> None:
        """A failed liveness or startup probe: stop the container; its exit goes the usual way."""
        if run.killing or run.proc is None:
            return
        run.killing = True
        log.info("%s/%s container %s: %s, restarting", self.namespace, self.name, run.name, reason)
        proc = run.proc
        grace = float(self.pod.get("spec", {}).get("terminationGracePeriodSeconds") or 30)
        proc.signal(signal.SIGTERM)

        async def finish() -> None:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not proc.poll():
                await asyncio.sleep(0.05)
            proc.signal(signal.SIGKILL)

        self._spawn(finish(), f"kill {self.namespace}/{self.name}/{run.name}")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A helper task of this pod (probe, hook, kill timer): tracked so stopping can end it."""
        task = tasks.spawn(coro, name=name)
        self.probe_tasks.add(task)
        task.add_done_callback(self.probe_tasks.discard)

    async def end_helpers(self) -> None:
        helpers = list(self.probe_tasks)
        for task in helpers:
            task.cancel()
        if helpers:
            await asyncio.gather(*helpers, return_exceptions=True)

    # ---- probes

    def _probe(self, run: ContainerRun, tracker: ProbeTracker, kind: str, now: float) -> None:
        tracker.begin(now)
        ports: dict[str, int] = {}
        for c in self.pod.get("spec", {}).get("containers") or []:
            ports.update(container_ports(c))
        proc = run.proc

        async def go() -> None:
            ok, message = await run_probe(
                tracker.spec, pod_ip=self.pod_ip, ports=ports, env=run.env, cwd=run.spec.get("workingDir")
            )
            if run.proc is not proc:  # the container restarted meanwhile; this result is stale
                tracker.running = False
                return
            verdict = tracker.record(ok, message)
            if not ok:
                self._event("Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}", run)
            if kind in ("liveness", "startup") and verdict is False and not run.killing:
                self._event(
                    "Normal", "Killing", f"Container {run.name} failed {kind} probe, will be restarted", run
                )
                self._kill_for_restart(run, f"{kind} probe failed: {message}")
            self.wake.set()

        self._spawn(go(), f"{kind} probe {self.namespace}/{self.name}/{run.name}")

    def _run_probes(self, run: ContainerRun, now: float) -> None:
        if run.proc is None or run.proc.exited or run.killing or run.post_start_pending:
            return
        if run.startup is not None and run.startup.passing is not True:
            if run.startup.due(now):
                self._probe(run, run.startup, "startup", now)
            return
        if run.liveness is not None and run.liveness.due(now):
            self._probe(run, run.liveness, "liveness", now)
        if run.readiness is not None and run.readiness.due(now):
            self._probe(run, run.readiness, "readiness", now)

    # ---- the loop

    def step(self, now: float) -> None:
        """One look at every container: reap exits, start what is due, run due probes."""
        for run in self.all_runs:
            if run.proc is not None and not run.proc.exited and run.proc.poll():
                self._on_exit(run, now)
        pending_init = next((r for r in self.init_runs if not r.succeeded), None)
        if pending_init is not None:
            if pending_init.finished:
                self.failed_reason = "Init:Error"
                return
            if (pending_init.proc is None or pending_init.proc.exited) and now >= pending_init.restart_at:
                self._start(pending_init, now)
            return
        for run in self.runs:
            if run.finished:
                continue
            if (run.proc is None or run.proc.exited) and now >= run.restart_at:
                self._start(run, now)
            self._run_probes(run, now)

    def phase(self) -> str:
        if any(r.finished and not r.succeeded for r in self.init_runs):
            return "Failed"
        if any(not r.succeeded for r in self.init_runs):
            return "Pending"
        if self.runs and all(r.finished for r in self.runs):
            codes = [r.state.get("terminated", {}).get("exitCode", 1) for r in self.runs]
            return "Succeeded" if all(c == 0 for c in codes) else "Failed"
        if any(r.ever_started for r in self.runs):
            return "Running"
        return "Pending"

    def status(self) -> Obj:
        phase = self.phase()
        initialized = all(r.succeeded for r in self.init_runs)
        containers_ready = bool(self.runs) and all(r.ready for r in self.runs) and not self.terminating
        ready = containers_ready and phase == "Running"
        set_condition(self.conditions, "PodScheduled", "True")
        set_condition(
            self.conditions,
            "Initialized",
            "True" if initialized else "False",
            "" if initialized else "ContainersNotInitialized",
        )
        reason = "" if containers_ready else ("PodTerminating" if self.terminating else "ContainersNotReady")
        set_condition(self.conditions, "ContainersReady", "True" if containers_ready else "False", reason)
        set_condition(self.conditions, "Ready", "True" if ready else "False", reason if not ready else "")
        for cond in self.conditions:
            if cond.get("status") == "True":
                cond.pop("reason", None)
                cond.pop("message", None)
            cond.pop("lastUpdateTime", None)
        order = {"PodScheduled": 0, "Initialized": 1, "ContainersReady": 2, "Ready": 3}
        self.conditions.sort(key=lambda c: order.get(str(c.get("type")), 9))
        status: Obj = {
            "phase": phase,
            "conditions": [dict(c) for c in self.conditions],
            "hostIP": self.runtime.info.api_host,
            "hostIPs": [{"ip": self.runtime.info.api_host}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "qosClass": "BestEffort",
            "containerStatuses": [r.status() for r in self.runs],
        }
        if self.init_runs:
            status["initContainerStatuses"] = [r.status() for r in self.init_runs]
        return status

    def publish(self) -> None:
        from meshpilot.store import NotFound

        status = self.status()
        if status == self.published:
            return
        try:
            self.runtime.store.patch(
                PODS, self.namespace, self.name, {"status": status}, subresource="status"
            )
        except NotFound:
            self.gone = True
            return
        self.published = status

    async def run(self) -> None:
        self._setup()
        self.publish()
        while not self.runtime.stopping:
            if self.gone:
                await self._shutdown(grace=min(self.grace_period, 2.0))
                self._cleanup()
                return
            if is_terminating(self.pod):
                await self.terminate()
                return
            self.step(time.monotonic())
            self.publish()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self.wake.wait()
            self.wake.clear()

    # ---- termination

    async def terminate(self) -> None:
        """Graceful deletion: not ready -> out of Endpoints -> preStop -> SIGTERM -> grace -> SIGKILL -> gone."""
        self.terminating = True
        deadline = time.monotonic() + self.grace_period
        for run in self.runs:
            if run.proc is not None and not run.proc.exited:
                self._event("Normal", "Killing", f"Stopping container {run.name}", run)
        self.publish()
        await self.runtime.wait_unserved(self.pod_ip, deadline=min(deadline, time.monotonic() + 5.0))
        hooks = [
            self._pre_stop(run, deadline) for run in self.runs if run.proc is not None and not run.proc.exited
        ]
        if hooks:
            await asyncio.gather(*hooks)
        await self._shutdown(deadline=deadline)
        self.publish()
        self._cleanup()
        self.runtime.finalize(self)

    async def _pre_stop(self, run: ContainerRun, deadline: float) -> None:
        hook = (run.spec.get("lifecycle") or {}).get("preStop") or {}
        if not hook or deadline <= time.monotonic():
            return
        try:
            ok, message = await self._run_hook(run, hook, deadline)
        except Exception as exc:  # a failing hook must not stop the termination
            ok, message = False, repr(exc)
        if not ok:
            log.warning("%s/%s preStop hook of %s failed: %s", self.namespace, self.name, run.name, message)

    async def _shutdown(self, *, grace: float | None = None, deadline: float | None = None) -> None:
        """SIGTERM every container process, wait until ``deadline``, SIGKILL what is left, reap."""
        if deadline is None:
            deadline = time.monotonic() + (grace or 0.0)
        procs = [r.proc for r in self.all_runs if r.proc is not None and not r.proc.exited]
        for proc in procs:
            proc.signal(signal.SIGTERM)
        while time.monotonic() < deadline and not all(p.poll() for p in procs):
            await asyncio.sleep(0.05)
        for proc in procs:
            proc.signal(signal.SIGKILL)
        kill_deadline = time.monotonic() + KILL_WAIT
        while time.monotonic() < kill_deadline and not all(p.poll() for p in procs):
            await asyncio.sleep(0.02)
        now = time.monotonic()
        for run in self.all_runs:
            if run.proc is not None and run.proc.exited and "running" in run.state:
                self._on_exit(run, now)
                run.finished = True

    def _cleanup(self) -> None:
        for task in list(self.probe_tasks):
            task.cancel()
        self.runtime.pod_ips.release(self.pod_ip)
        shutil.rmtree(self.dir, ignore_errors=True)


def _from_epoch(seconds: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.UTC)


# --------------------------------------------------------------------------- the runtime


class ProcessRuntime:
    """Runs a PodWorker for every pod in the store."""

    def __init__(self, store: Store, info: ClusterInfo) -> None:
        self.store = store
        self.info = info
        self.pod_ips = ipam.pod_range(info.index)
        self.workers: dict[str, PodWorker] = {}
        self._watch: asyncio.Task[None] | None = None
        self._serving: Callable[[str], bool] = lambda ip: False
        self.stopping = False
        # the ControllerManager hands its recorder over, so that aggregation spans both
        self.events = ev.EventRecorder(store)

    def __repr__(self) -> str:
        return f"<ProcessRuntime {self.info.name} [{len(self.workers)} pods]>"

    def set_serving_check(self, check: Callable[[str], bool]) -> None:
        """``check(ip)`` says whether any Endpoints or the service proxy still sends traffic to ``ip``."""
        self._serving = check

    async def wait_unserved(self, ip: str, *, deadline: float) -> None:
        while time.monotonic() < deadline and ip and self._serving(ip):
            await asyncio.sleep(0.05)

    async def start(self) -> None:
        items, _ = self.store.list(PODS)
        self.pod_ips.sync(
            str(p.get("status", {}).get("podIP", "")) for p in items if p.get("status", {}).get("podIP")
        )
        self._adopt_strays(items)
        self._sync(items)
        self._watch = tasks.spawn(watch_forever(self.store, PODS, self._on_event), name="runtime: watch pods")

    def _adopt_strays(self, pods: list[Obj]) -> None:
        """Kill processes recorded in pid files whose pod is no longer in the store."""
        known = {(namespace_of(p), name_of(p)) for p in pods}
        root = self.info.pods_dir
        if not root.is_dir():
            return
        for ns_dir in root.iterdir():
            if not ns_dir.is_dir():
                continue
            for pod_dir in ns_dir.iterdir():
                if (ns_dir.name, pod_dir.name) in known or not pod_dir.is_dir():
                    continue
                for pid_file in pod_dir.glob("*.pid"):
                    proc = read_pid_file(pid_file)
                    if proc is not None and proc.same_process():
                        log.warning(
                            "killing orphan process %d of deleted pod %s/%s",
                            proc.pid,
                            ns_dir.name,
                            pod_dir.name,
                        )
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(proc.pid, signal.SIGKILL)
                shutil.rmtree(pod_dir, ignore_errors=True)

    def _on_event(self, event_type: str, obj: Obj) -> None:
        if self.stopping:
            return
        if event_type == "SYNC":
            items, _ = self.store.list(PODS)
            self._sync(items)
            return
        uid = uid_of(obj)
        worker = self.workers.get(uid)
        if event_type == "DELETED":
            if worker is not None and not worker.terminating:
                worker.gone = True
                worker.wake.set()
            elif worker is None:
                # a finished pod (no worker runs for it) went away: free what it still held
                self.pod_ips.release(str(obj.get("status", {}).get("podIP", "")))
                shutil.rmtree(self.info.pods_dir / namespace_of(obj) / name_of(obj), ignore_errors=True)
            return
        if worker is None:
            self._ensure_worker(obj)
        else:
            worker.pod["metadata"] = obj.get("metadata", {})
            worker.wake.set()

    def _sync(self, pods: list[Obj]) -> None:
        uids = set()
        for pod in pods:
            uids.add(uid_of(pod))
            worker = self.workers.get(uid_of(pod))
            if worker is None:
                self._ensure_worker(pod)
            else:
                worker.pod["metadata"] = pod.get("metadata", {})
                worker.wake.set()
        for uid, worker in list(self.workers.items()):
            if uid not in uids and not worker.terminating:
                worker.gone = True
                worker.wake.set()

    def _ensure_worker(self, pod: Obj) -> None:
        uid = uid_of(pod)
        phase = pod.get("status", {}).get("phase")
        if uid in self.workers:
            return
        if phase in ("Succeeded", "Failed") and not is_terminating(pod):
            return  # a finished pod keeps its status; nothing to run
        worker = PodWorker(self, pod)
        # A pod's directory is named after namespace/name, so a pod re-created under the name of
        # one whose worker still stops it (delete --force, replace --force) waits for that worker:
        # otherwise it would adopt the old pod's process from the pid file, and the old worker's
        # cleanup would remove the new pod's pid file, token and log.
        predecessors = [
            w.task
            for w in self.workers.values()
            if (w.namespace, w.name) == (worker.namespace, worker.name) and w.task is not None
        ]
        self.workers[uid] = worker

        async def run() -> None:
            try:
                if predecessors:
                    await asyncio.wait(predecessors)
                await worker.run()
            finally:
                if self.workers.get(uid) is worker:
                    del self.workers[uid]

        worker.task = tasks.spawn(run(), name=f"pod {worker.namespace}/{worker.name}")

    def finalize(self, worker: PodWorker) -> None:
        """The pod's processes are gone: remove the object for good."""
        from meshpilot.store import NotFound

        try:
            self.store.delete(PODS, worker.namespace, worker.name, grace_period_seconds=0)
        except NotFound:
            pass

    async def stop(self, *, stop_pods: bool) -> None:
        self.stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        workers = list(self.workers.values())
        for worker in workers:
            if worker.task is not None:
                worker.task.cancel()
        for worker in workers:
            if worker.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker.task
            await worker.end_helpers()
        if stop_pods:
            await asyncio.gather(*(w._shutdown(grace=min(w.grace_period, STOP_GRACE_CAP)) for w in workers))
        self.workers.clear()


# --------------------------------------------------------------------------- metrics for `top`

_CPU_SAMPLES: dict[str, tuple[float, float]] = {}  # containerID -> (monotonic, cpu seconds)


def pod_metrics(
    store: Store, info: ClusterInfo, *, namespace: str | None = None, label_selector: str | None = None
) -> list[Obj]:
    """metrics.k8s.io/v1beta1 PodMetrics for every running pod, measured with psutil.

    CPU is the rate since the previous call for the same container (or since the process started,
    on the first call), in nanocores; memory is the RSS of the container's process tree.
    """
    items, _ = store.list(PODS, namespace=namespace, label_selector=label_selector)
    out: list[Obj] = []
    now_mono = time.monotonic()
    stamp = rfc3339()
    for pod in items:
        containers: list[Obj] = []
        window = 0.0
        for status in pod.get("status", {}).get("containerStatuses") or []:
            cid = str(status.get("containerID") or "")
            if "running" not in (status.get("state") or {}) or not cid.startswith("meshpilot://"):
                continue
            try:
                pid_text, start_text = cid.removeprefix("meshpilot://").split("-", 1)
                proc = Proc(int(pid_text), float(start_text))
            except ValueError:
                continue
            if not proc.same_process():
                continue
            cpu, rss = proc.tree_usage()
            previous = _CPU_SAMPLES.get(cid)
            if previous is not None and now_mono - previous[0] >= 0.5:
                elapsed, used = now_mono - previous[0], cpu - previous[1]
                _CPU_SAMPLES[cid] = (now_mono, cpu)
            elif previous is not None:
                elapsed, used = max(now_mono - previous[0], 1e-3), max(cpu - previous[1], 0.0)
            else:
                elapsed, used = max(time.time() - proc.start_time, 1e-3), cpu
                _CPU_SAMPLES[cid] = (now_mono, cpu)
            window = max(window, elapsed)
            nanocores = int(max(used, 0.0) / elapsed * 1e9)
            containers.append(
                {"name": status.get("name"), "usage": {"cpu": f"{nanocores}n", "memory": f"{rss // 1024}Ki"}}
            )
        if not containers:
            continue
        meta = pod.get("metadata", {})
        out.append(
            {
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": "PodMetrics",
                "metadata": {
                    "name": meta.get("name"),
                    "namespace": meta.get("namespace"),
                    "labels": dict(meta.get("labels") or {}),
                    "creationTimestamp": stamp,
                },
                "timestamp": stamp,
                "window": f"{window:.3f}s",
                "containers": containers,
            }
        )
    # forget the samples of containers no pod has any more (restarts make new IDs); judged against
    # every pod, as ``top pod`` (default namespace) would otherwise never prune
    everything = items if namespace is None and not label_selector else store.list(PODS)[0]
    live = {
        str(s.get("containerID"))
        for p in everything
        for s in p.get("status", {}).get("containerStatuses") or []
    }
    for cid in list(_CPU_SAMPLES):
        if cid not in live:
            del _CPU_SAMPLES[cid]
    return out


async def pod_ip_reachable(pod_ip: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something listens on ``pod_ip:port`` (connecting from the pod's own address)."""
    try:
        _reader, writer = await asyncio.wait_for(open_from(pod_ip, pod_ip, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


__all__ = [
    "BACKOFF_ENV",
    "ContainerConfigError",
    "ProcessRuntime",
    "backoff_delay",
    "build_env",
    "container_argv",
    "expand",
    "pod_ip_reachable",
    "pod_metrics",
    "previous_log_path",
    "resolve_argv",
    "resolve_port",
    "service_env",
]
