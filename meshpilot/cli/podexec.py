"""``meshpilot exec POD [-c CONTAINER] -- COMMAND [ARGS...]``: run a command as a container would.

The local cluster's containers are processes on this machine, so there is no namespace to enter:
"inside the container" means the container's environment (its ``POD_IP``, ``HTTP_PROXY`` pointing
at its sidecar, Kubernetes' service variables, the API token file), read from the running process,
and its working directory. That is what the reference text's troubleshooting step needs
(``kubectl exec -it client-pod -- curl http://service-name:8080/health``): curl and Python honour
``http_proxy``, so the request leaves through the pod's sidecar and service names resolve as they
do in the mesh. The command shares the host's network and filesystem (``ss -tuln`` lists every
socket of the machine, not only the pod's).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import click
import psutil

from meshpilot.cli.common import Command, context_option, fail, namespace_options, reports_errors
from meshpilot.cli.kubectl import pod_of_target, resolve_kind
from meshpilot.cli.session import open_session
from meshpilot.cluster.runtime import Proc


@click.command("exec", cls=Command)
@click.argument("target")
@click.argument("command", nargs=-1, required=True)
@click.option("-c", "--container", default=None, help="container name (default: the pod's first)")
@click.option("-i", "--stdin", "use_stdin", is_flag=True, help="pass this terminal's stdin to the command")
@click.option(
    "-t", "--tty", is_flag=True, help="accepted as kubectl's; the command runs on this terminal as is"
)
@namespace_options
@context_option
@click.pass_context
@reports_errors
def exec_(
    ctx: click.Context,
    target: str,
    command: tuple[str, ...],
    container: str | None,
    use_stdin: bool,
    tty: bool,
    namespace: str | None,
    context: str | None,
) -> None:
    """Run a command with a container's environment: exec POD [-c C] -- curl http://productcatalog/health."""
    session = open_session(ctx, context, namespace)
    pod_name = pod_of_target(session, target)
    pod = session.get(resolve_kind("pods"), pod_name, session.namespace)
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or ()]
    if container is None:
        if not names:
            fail(f"pod {pod_name} has no containers")
        container = names[0]
        if len(names) > 1:
            click.echo(f'Defaulted container "{container}" out of: {", ".join(names)}', err=True)
    elif container not in names:
        fail(f"container {container} is not valid for pod {pod_name}; choose one of: [{' '.join(names)}]")
    proc = _running_process(pod, container)
    if proc is None:
        fail(f"container {container} of pod {pod_name} is not running")
    try:
        env, cwd = proc.environ(), proc.cwd()
    except psutil.Error:
        fail(f"cannot read the environment of container {container} of pod {pod_name} (it just exited?)")
    argv = _argv(command)
    try:
        code = subprocess.call(argv, env=env, cwd=cwd, stdin=None if use_stdin else subprocess.DEVNULL)
    except FileNotFoundError:
        fail(f'exec: "{command[0]}": executable file not found in $PATH')
    except PermissionError:
        fail(f'exec: "{command[0]}": permission denied')
    except KeyboardInterrupt:
        code = 130
    if code != 0:
        click.echo(f"command terminated with exit code {code}", err=True)  # kubectl's words
        sys.exit(code)


def _running_process(pod: dict[str, Any], container: str) -> psutil.Process | None:
    """The container's main process, if it is running here: containerID ``meshpilot://<pid>-<start>``
    names it, and the start time guards against a reused PID."""
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") != container or "running" not in (status.get("state") or {}):
            continue
        cid = str(status.get("containerID") or "")
        if not cid.startswith("meshpilot://"):
            return None
        try:
            pid_text, start_text = cid.removeprefix("meshpilot://").split("-", 1)
            proc = Proc(int(pid_text), float(start_text))
        except ValueError:
            return None
        if not proc.same_process():
            return None
        try:
            return psutil.Process(proc.pid)
        except psutil.Error:
            return None
    return None


def _argv(command: tuple[str, ...]) -> list[str]:
    """As the runtime starts containers: ``python``/``python3`` is this interpreter (the one that has
    meshpilot and its dependencies) and ``meshpilot`` is ``<interpreter> -m meshpilot``."""
    head, rest = command[0], list(command[1:])
    if head in ("python", "python3"):
        return [sys.executable, *rest]
    if head == "meshpilot":
        return [sys.executable, "-m", "meshpilot", *rest]
    return [head, *rest]
