"""kubectl's verbs over the cluster API: apply, get, describe, delete, logs, rollout, scale, label, top,
create.

The commands are thin: ``meshpilot.api`` loads, validates and names things, ``meshpilot.client``
talks to the cluster, ``printers`` formats. What lives here is kubectl's user-facing behaviour:
which arguments mean what, what is printed on success, and that a bad invocation changes nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import click

from meshpilot.api import rollout as rollout_logic
from meshpilot.cli import printers
from meshpilot.cli.common import (
    CliError,
    Command,
    Group,
    context_option,
    fail,
    namespace_options,
    reports_errors,
)
from meshpilot.cli.session import Session, open_session

Obj = dict[str, Any]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _now() -> datetime:
    return datetime.now(UTC)


# --- resource arguments ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A resolved ``KIND NAME`` (or ``KIND/NAME``) argument."""

    info: Any  # meshpilot.api.KindInfo
    name: str

    @property
    def display(self) -> str:
        singular = self.info.singular or self.info.kind.lower()
        return f"{singular}.{self.info.group}/{self.name}" if self.info.group else f"{singular}/{self.name}"

    @property
    def quoted(self) -> str:
        """kubectl's ``deployment.apps "x"`` form of success messages (singular)."""
        singular = self.info.singular or self.info.kind.lower()
        kind = f"{singular}.{self.info.group}" if self.info.group else singular
        return f'{kind} "{self.name}"'

    @property
    def quoted_plural(self) -> str:
        """The server's ``deployments.apps "x"`` form of NotFound errors."""
        return f'{self.info.resource} "{self.name}"'


def resolve_kind(name: str) -> Any:
    from meshpilot.api import NotServed, resolve

    try:
        return resolve(name)
    except NotServed:
        fail(f'the server doesn\'t have a resource type "{name}"')


def refs_from_args(args: Sequence[str], *, default_kind: str | None = None) -> list[Ref]:
    """``deployment/x pod/y`` or ``deployment x y`` (kubectl accepts both, not mixed)."""
    if not args:
        fail("you must specify the type of resource and a name")
    if all("/" in a for a in args):
        refs = []
        for arg in args:
            kind, _, name = arg.partition("/")
            if not kind or not name:
                fail(f"arguments in resource/name form must have a single resource and name: {arg!r}")
            refs.append(Ref(resolve_kind(kind), name))
        return refs
    if any("/" in a for a in args):
        fail(
            "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form"
        )
    if len(args) == 1:
        if default_kind is None:
            fail(f"you must specify a name: {args[0]} NAME")
        return [Ref(resolve_kind(default_kind), args[0])]
    info = resolve_kind(args[0])
    return [Ref(info, name) for name in args[1:]]


# --- reading manifests -------------------------------------------------------------------------


def manifest_files(paths: Sequence[str], recursive: bool) -> list[tuple[str, str]]:
    """(filename, text) for every ``-f`` argument: files, directories (recursively) or ``-``."""
    out: list[tuple[str, str]] = []
    for raw in paths:
        if raw == "-":
            out.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(raw)
        if not path.exists():
            fail(f'the path "{raw}" does not exist')
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
            if not files:
                fail(f'error reading "{raw}": no YAML or JSON files found')
            out.extend((str(p), p.read_text(encoding="utf-8")) for p in files)
        else:
            out.append((str(path), path.read_text(encoding="utf-8")))
    return out


def load_manifests(paths: Sequence[str], recursive: bool = True) -> list[Obj]:
    """Load and validate every document of every file; one ``InvalidObject`` lists every problem."""
    from meshpilot.api import FieldError, InvalidObject, load_documents, validate_documents

    documents = []
    errors: list[FieldError] = []
    sources = manifest_files(paths, recursive)
    for filename, text in sources:
        try:
            documents.extend(load_documents(text, filename))
        except InvalidObject as exc:
            errors.extend(exc.errors)
    try:
        objects = validate_documents(documents)
    except InvalidObject as exc:
        errors.extend(exc.errors)
        objects = []
    if errors:
        order = {name: i for i, name in enumerate(dict.fromkeys(f for f, _ in sources))}
        errors.sort(key=lambda e: (order.get(e.filename or "", len(order)), e.line or 0))
        raise InvalidObject(errors)
    if not objects:
        fail("no objects passed to apply")
    return objects


def _ns_of(obj: Obj) -> str | None:
    ns = obj.get("metadata", {}).get("namespace")
    return str(ns) if ns else None


def check_namespaces(objects: Sequence[Obj], namespace: str | None) -> None:
    """kubectl refuses -n a with an object that says namespace: b."""
    if namespace is None:
        return
    for obj in objects:
        ns = _ns_of(obj)
        if ns is not None and ns != namespace:
            fail(
                f'the namespace from the provided object "{ns}" does not match the namespace "{namespace}". '
                f"You must pass '--namespace={ns}' to perform this operation."
            )


def display_of(obj: Obj) -> str:
    return printers.resource_name(obj)


# --- apply -------------------------------------------------------------------------------------


@click.command(cls=Command)
@click.option(
    "-f", "--filename", "filenames", multiple=True, required=True, help="file, directory or - (stdin)"
)
@click.option(
    "-R/-r", "--recursive/--no-recursive", default=True, show_default=True, help="descend into directories"
)
@click.option("--dry-run", type=click.Choice(["none", "server", "client"]), default="none", show_default=True)
@click.option("-o", "--output", type=click.Choice(["name", "yaml", "json"]), default=None)
@namespace_options
@context_option
@click.pass_context
@reports_errors
def apply(
    ctx: click.Context,
    filenames: tuple[str, ...],
    recursive: bool,
    dry_run: str,
    output: str | None,
    namespace: str | None,
    context: str | None,
) -> None:
    """Create or update objects from files: all of them, or nothing if any is invalid."""
    objects = load_manifests(filenames, recursive)
    check_namespaces(objects, namespace)
    session = open_session(ctx, context, namespace)
    if dry_run == "client":
        # Validated locally above; only whether each object exists yet is asked of the cluster.
        from meshpilot.api import lookup

        for obj in objects:
            info = lookup(obj["apiVersion"], obj["kind"])
            ns = (_ns_of(obj) or session.namespace) if info.namespaced else None
            exists = session.get_or_none(info, obj["metadata"]["name"], ns) is not None
            verb = "configured" if exists else "created"
            click.echo(display_of(obj) if output == "name" else f"{display_of(obj)} {verb} (dry run)")
        return
    results = session.apply(objects, dry_run=dry_run == "server")
    suffix = " (server dry run)" if dry_run == "server" else ""
    stored = [r.get("object") or {} for r in results]
    if output == "yaml":
        click.echo(printers.to_yaml(stored[0] if len(stored) == 1 else printers.as_list(stored)), nl=False)
        return
    if output == "json":
        click.echo(printers.to_json(stored[0] if len(stored) == 1 else printers.as_list(stored)))
        return
    for result in results:
        obj = {
            "apiVersion": result.get("apiVersion", ""),
            "kind": result.get("kind", ""),
            "metadata": {"name": result.get("name", "")},
        }
        name = display_of(obj)
        click.echo(name if output == "name" else f"{name} {result.get('result', 'configured')}{suffix}")


# --- get ---------------------------------------------------------------------------------------


def split_kinds(kind_arg: str) -> list[Any]:
    infos: list[Any] = []
    for part in kind_arg.split(","):
        part = part.strip()
        if not part:
            fail(f"invalid resource list {kind_arg!r}")
        if part == "all":
            infos.extend(resolve_kind(k) for k in ("pods", "services", "deployments", "replicasets"))
            continue
        infos.append(resolve_kind(part))
    return infos


def _parse_output(output: str | None) -> tuple[str, str | None]:
    if output is None or output == "":
        return "table", None
    if output in ("wide", "yaml", "json", "name"):
        return output, None
    for prefix in ("jsonpath=", "jsonpath-as-json="):
        if output.startswith(prefix):
            return prefix[:-1], output[len(prefix) :]
    if output.startswith("custom-columns="):
        return "custom-columns", output[len("custom-columns=") :]
    fail(
        f"unable to match a printer suitable for the output format {output!r}, allowed formats are: "
        "json,jsonpath,custom-columns,name,wide,yaml"
    )


@click.command(cls=Command)
@click.argument("kind")
@click.argument("names", nargs=-1)
@click.option("-A", "--all-namespaces", is_flag=True, help="list across every namespace")
@click.option("-l", "--selector", default=None, help="label selector, e.g. app=productcatalog,version!=v1")
@click.option(
    "-o", "--output", default=None, help="wide | yaml | json | name | jsonpath=TEMPLATE | custom-columns=SPEC"
)
@click.option("--show-labels", is_flag=True, help="add a LABELS column")
@click.option("--no-headers", is_flag=True, help="omit the header line of tables")
@click.option("--ignore-not-found", is_flag=True, help="a missing named object is not an error")
@click.option("-w", "--watch", is_flag=True, help="after listing, print changes as they happen")
@click.option(
    "--field-selector", default=None, help="field selector, e.g. involvedObject.name=web-1,type=Warning"
)
@namespace_options
@context_option
@click.pass_context
@reports_errors
def get(
    ctx: click.Context,
    kind: str,
    names: tuple[str, ...],
    all_namespaces: bool,
    selector: str | None,
    output: str | None,
    show_labels: bool,
    no_headers: bool,
    ignore_not_found: bool,
    watch: bool,
    field_selector: str | None,
    namespace: str | None,
    context: str | None,
) -> None:
    """Show objects: get pods -n production, get svc,endpoints, get deploy x -o yaml."""
    fmt, template = _parse_output(output)
    if "/" in kind:
        refs = refs_from_args([kind, *names])
        groups: list[tuple[Any, list[str]]] = []
        for ref in refs:
            if groups and groups[-1][0] is ref.info:
                groups[-1][1].append(ref.name)
            else:
                groups.append((ref.info, [ref.name]))
    else:
        groups = [(info, list(names)) for info in split_kinds(kind)]
    if names and all_namespaces:
        fail("a resource cannot be retrieved by name across all namespaces")
    if names and selector:
        fail("name cannot be provided when a selector is specified")
    session = open_session(ctx, context, namespace)
    ns = None if all_namespaces else session.namespace
    found: list[tuple[Any, list[Obj]]] = []
    errors: list[str] = []
    for info, wanted in groups:
        if wanted:
            items = []
            for name in wanted:
                obj = session.get_or_none(info, name, ns if info.namespaced else None)
                if obj is None:
                    if not ignore_not_found:
                        errors.append(f'Error from server (NotFound): {info.resource} "{name}" not found')
                    continue
                items.append(obj)
        else:
            items = session.list(info, ns if info.namespaced else None, selector, field_selector)
        found.append((info, items))
    single = len(groups) == 1 and len(groups[0][1]) == 1
    all_items = [obj for _, items in found for obj in items]
    if fmt in ("yaml", "json", "jsonpath", "jsonpath-as-json"):
        data: Any = all_items[0] if single and all_items else printers.as_list(all_items)
        if fmt == "yaml":
            if all_items or not single:
                click.echo(printers.to_yaml(data), nl=False)
        elif fmt == "json":
            if all_items or not single:
                click.echo(printers.to_json(data))
        else:
            _print_jsonpath(template or "", data, as_json=fmt == "jsonpath-as-json")
    elif fmt == "name":
        for obj in all_items:
            click.echo(printers.resource_name(obj))
    elif fmt == "custom-columns":
        _print_custom_columns(template or "", all_items, no_headers)
    else:
        multi_kind = len(found) > 1
        printed = False
        for info, items in found:
            if not items:
                continue
            text = printers.table(
                info.kind,
                items,
                _now(),
                wide=fmt == "wide",
                with_namespace=all_namespaces and info.namespaced,
                with_kind_prefix=multi_kind,
                show_labels=show_labels,
            )
            if no_headers:
                text = "\n".join(text.splitlines()[1:])
            if printed:
                click.echo("")
            click.echo(text)
            printed = True
        if not printed and not errors and not any(wanted for _, wanted in groups):
            where = (
                ""
                if all_namespaces or not any(i.namespaced for i, _ in groups)
                else f" in {session.namespace} namespace"
            )
            click.echo(f"No resources found{where}.", err=True)
    if watch:
        if len(groups) != 1 or fmt not in ("table", "wide", "name"):
            fail("--watch supports one resource type and table or name output")
        if field_selector:
            fail("--watch does not support --field-selector")
        _watch(session, groups[0][0], ns, selector, names, fmt, all_namespaces)
    if errors:
        raise CliError("\n".join(errors), prefix="")


def _print_jsonpath(template: str, data: Any, *, as_json: bool) -> None:
    from meshpilot.cli import jsonpath

    try:
        if as_json:
            steps = jsonpath.parse_path(template.strip().strip("'").strip("{}"))
            click.echo(printers.to_json(jsonpath.evaluate(steps, data)))
        else:
            click.echo(jsonpath.render(template, data))
    except jsonpath.JSONPathError as exc:
        fail(f"error parsing jsonpath {template}: {exc}")


def _print_custom_columns(spec: str, items: Sequence[Obj], no_headers: bool) -> None:
    from meshpilot.cli import jsonpath

    columns: list[tuple[str, Any]] = []
    for part in spec.split(","):
        header, sep, path = part.partition(":")
        if not sep or not header or not path:
            fail(f"custom-columns format specified incorrectly: {part!r}, expected HEADER:.json.path")
        try:
            columns.append((header, jsonpath.parse_path(path.strip().strip("{}"))))
        except jsonpath.JSONPathError as exc:
            fail(str(exc))
    rows = []
    for obj in items:
        row = []
        for _, steps in columns:
            values = jsonpath.evaluate(steps, obj)
            row.append(",".join(jsonpath.format_value(v) for v in values) if values else "<none>")
        rows.append(row)
    text = printers.format_table([h for h, _ in columns], rows)
    click.echo("\n".join(text.splitlines()[1:]) if no_headers else text)


def _watch(
    session: Session,
    info: Any,
    namespace: str | None,
    selector: str | None,
    names: Sequence[str],
    fmt: str,
    all_namespaces: bool,
) -> None:
    for event_type, obj in session.watch(info, namespace, selector):
        if names and obj.get("metadata", {}).get("name") not in names:
            continue
        if fmt == "name":
            click.echo(printers.resource_name(obj))
            continue
        text = printers.table(info.kind, [obj], _now(), wide=fmt == "wide", with_namespace=all_namespaces)
        line = text.splitlines()[1]
        click.echo(f"{line}   {event_type}" if event_type == "DELETED" else line)


# --- describe ----------------------------------------------------------------------------------


@click.command(cls=Command)
@click.argument("args", nargs=-1, required=True)
@click.option("-l", "--selector", default=None, help="describe every object matching this label selector")
@click.option("-A", "--all-namespaces", is_flag=True)
@namespace_options
@context_option
@click.pass_context
@reports_errors
def describe(
    ctx: click.Context,
    args: tuple[str, ...],
    selector: str | None,
    all_namespaces: bool,
    namespace: str | None,
    context: str | None,
) -> None:
    """Show one object in detail, with its events: describe deployment productcatalog-v1."""
    session = open_session(ctx, context, namespace)
    ns = None if all_namespaces else session.namespace
    if len(args) == 1 and "/" not in args[0]:
        info = resolve_kind(args[0])
        objects = session.list(info, ns if info.namespaced else None, selector)
        if not objects:
            fail(f"No resources found in {session.namespace} namespace.")
    else:
        objects = []
        for ref in refs_from_args(args):
            obj = session.get(ref.info, ref.name, ns if ref.info.namespaced else None)
            objects.append(obj)
    now = _now()
    for i, obj in enumerate(objects):
        if i:
            click.echo("\n")
        if obj.get("kind") == "Service":
            ep = session.get_or_none(
                resolve_kind("endpoints"), obj["metadata"]["name"], obj["metadata"].get("namespace")
            )
            obj = {**obj, "endpoints": printers.endpoints_text(ep or {}, limit=10)}
        click.echo(printers.describe(obj, session.events_for(obj), now))


# --- delete ------------------------------------------------------------------------------------


@click.command(cls=Command)
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", "filenames", multiple=True, help="delete the objects of these files")
@click.option("-l", "--selector", default=None, help="delete every object of KIND matching this selector")
@click.option("--all", "delete_all", is_flag=True, help="delete every object of KIND in the namespace")
@click.option("--ignore-not-found", is_flag=True, help="a missing object is not an error")
@click.option("--wait/--no-wait", default=True, show_default=True, help="wait until the objects are gone")
@click.option("--timeout", default="60s", show_default=True, help="how long --wait waits")
@click.option(
    "--grace-period",
    type=int,
    default=-1,
    show_default=True,
    help="seconds a pod gets to terminate (-1: its own terminationGracePeriodSeconds; 0 needs --force)",
)
@click.option("--force", is_flag=True, help="remove immediately, without waiting for the processes to end")
@namespace_options
@context_option
@click.pass_context
@reports_errors
def delete(
    ctx: click.Context,
    args: tuple[str, ...],
    filenames: tuple[str, ...],
    selector: str | None,
    delete_all: bool,
    ignore_not_found: bool,
    wait: bool,
    timeout: str,
    grace_period: int,
    force: bool,
    namespace: str | None,
    context: str | None,
) -> None:
    """Delete objects by name, by file (-f) or by selector."""
    deadline_seconds = parse_timeout(timeout)
    grace = delete_grace(grace_period, force)
    targets: list[tuple[Any, str, str | None]] = []
    session = open_session(ctx, context, namespace)
    if filenames:
        if args:
            fail("when -f is given, no KIND or NAME arguments are accepted")
        objects = load_manifests(filenames)
        check_namespaces(objects, namespace)
        from meshpilot.api import lookup

        for obj in reversed(objects):  # dependents first, namespaces last
            info = lookup(obj["apiVersion"], obj["kind"])
            ns = (_ns_of(obj) or session.namespace) if info.namespaced else None
            targets.append((info, obj["metadata"]["name"], ns))
    elif selector or delete_all:
        if len(args) != 1:
            fail("with --selector or --all, give exactly one resource type")
        for info in split_kinds(args[0]):
            for obj in session.list(info, session.namespace if info.namespaced else None, selector):
                targets.append((info, obj["metadata"]["name"], _ns_of(obj)))
        if not targets:
            click.echo("No resources found", err=True)
            return
    else:
        for ref in refs_from_args(args):
            targets.append((ref.info, ref.name, session.namespace if ref.info.namespaced else None))
    if grace == 0:
        click.echo(
            "Warning: Immediate deletion does not wait for confirmation that the running resource has "
            "been terminated. The resource may continue to run on the cluster indefinitely.",
            err=True,
        )
    errors: list[str] = []
    deleted: list[tuple[Any, str, str | None]] = []
    for info, name, ns in targets:
        ref = Ref(info, name)
        if session.delete(info, name, ns, grace_period_seconds=grace):
            click.echo(f"{ref.quoted} deleted")
            deleted.append((info, name, ns))
        elif not ignore_not_found:
            errors.append(f"Error from server (NotFound): {ref.quoted_plural} not found")
    if wait and deleted:
        deadline = time.monotonic() + deadline_seconds
        for info, name, ns in deleted:
            while session.get_or_none(info, name, ns) is not None:
                if time.monotonic() > deadline:
                    fail(f"timed out waiting for {Ref(info, name).quoted_plural} to be deleted")
                time.sleep(0.2)
    if errors:
        raise CliError("\n".join(errors), prefix="")


def delete_grace(grace_period: int, force: bool) -> int | None:
    """The ``gracePeriodSeconds`` to send for ``--grace-period``/``--force``, as kubectl decides it.

    None leaves each pod its own terminationGracePeriodSeconds. A bare 0 becomes 1 so that a
    typo cannot skip the termination of running processes; only ``--force`` deletes at once.
    """
    if grace_period < -1:
        fail(f"invalid --grace-period {grace_period}: must be -1 (the object's own) or at least 0")
    if force and grace_period < 0:
        return 0
    if grace_period == 0 and not force:
        return 1
    return grace_period if grace_period >= 0 else None


def parse_timeout(text: str) -> float:
    """``30s``, ``5m``, ``1h``, ``500ms``, ``0`` (no limit) -> seconds."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)(ms|s|m|h)?\s*", text)
    if match is None:
        fail(f"invalid duration {text!r} (expected e.g. 30s, 5m)")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]


# --- logs --------------------------------------------------------------------------------------


@click.command(cls=Command)
@click.argument("target")
@click.option("-c", "--container", default=None, help="container name (default: the pod's first)")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines")
@click.option("--tail", type=int, default=-1, help="only the last N lines (-1: all)")
@click.option("-p", "--previous", is_flag=True, help="the previous instance of a restarted container")
@namespace_options
@context_option
@click.pass_context
@reports_errors
def logs(
    ctx: click.Context,
    target: str,
    container: str | None,
    follow: bool,
    tail: int,
    previous: bool,
    namespace: str | None,
    context: str | None,
) -> None:
    """Print a container's log: logs POD, logs deployment/NAME -c istio-proxy -f."""
    session = open_session(ctx, context, namespace)
    pod_name = pod_of_target(session, target)
    try:
        for chunk in session.logs(
            pod_name, session.namespace, container=container, follow=follow, tail=tail, previous=previous
        ):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


def pod_of_target(session: Session, target: str) -> str:
    """The pod that ``logs`` and ``exec`` mean by POD, pod/NAME or TYPE/NAME (a controller's oldest
    running pod), as kubectl resolves them."""
    if "/" not in target:
        return target
    ref = refs_from_args([target])[0]
    return ref.name if ref.info.kind == "Pod" else _first_pod_of(session, ref)


def _first_pod_of(session: Session, ref: Ref) -> str:
    owner = session.get(ref.info, ref.name, session.namespace)
    selector = owner.get("spec", {}).get("selector")
    if not isinstance(selector, dict):
        fail(f"{ref.display} has no pod selector")
    labels = selector.get("matchLabels", selector)
    text = ",".join(f"{k}={v}" for k, v in labels.items())
    pods = session.list(resolve_kind("pods"), session.namespace, text)
    running = [p for p in pods if p.get("status", {}).get("phase") == "Running"] or pods
    if not running:
        fail(f"no pods found for {ref.display}")
    name: str = sorted(running, key=lambda p: p["metadata"].get("creationTimestamp", ""))[0]["metadata"][
        "name"
    ]
    return name


# --- rollout -----------------------------------------------------------------------------------


@click.group(cls=Group)
def rollout() -> None:
    """Manage the rollout of a Deployment: restart, status, undo, history."""


def rollout_refs(
    session: Session, args: Sequence[str], selector: str | None, *, announce_empty: bool = True
) -> list[Ref] | None:
    """The Deployments a rollout verb acts on: named ones, or, as kubectl, every one of the namespace
    (``rollout restart deployment -n NS``, optionally ``-l SELECTOR``). None when a bare type found
    nothing (exit 0; restart and status print kubectl's ``No resources found in NS namespace.``,
    undo and history print nothing, as kubectl's do)."""
    if len(args) == 1 and "/" not in args[0]:
        info = resolve_kind(args[0])
        if info.kind != "Deployment":
            fail(f"{info.kind} is not supported here: only deployments")
        found = session.list(info, session.namespace, selector)
        if not found:
            if announce_empty:
                click.echo(f"No resources found in {session.namespace} namespace.", err=True)
            return None
        return [Ref(info, obj["metadata"]["name"]) for obj in found]
    if selector:
        fail("name cannot be provided when a selector is specified")
    refs = refs_from_args(args)
    for ref in refs:
        if ref.info.kind != "Deployment":
            fail(f"{ref.info.kind} is not supported here: only deployments")
    return refs


@rollout.command("restart")
@click.argument("args", nargs=-1, required=True)
@click.option(
    "-l", "--selector", default=None, help="restart only the Deployments matching this label selector"
)
@namespace_options
@context_option
@click.pass_context
@reports_errors
def rollout_restart(
    ctx: click.Context,
    args: tuple[str, ...],
    selector: str | None,
    namespace: str | None,
    context: str | None,
) -> None:
    """Replace every pod of a Deployment with a rolling update (the pod template changes); a bare
    ``deployment`` restarts every Deployment of the namespace, as kubectl does."""
    session = open_session(ctx, context, namespace)
    for ref in rollout_refs(session, args, selector) or []:
        session.patch(ref.info, ref.name, session.namespace, rollout_logic.restart_patch(_now()))
        click.echo(f"{ref.display} restarted")


@rollout.command("status")
@click.argument("args", nargs=-1, required=True)
@click.option("--timeout", default="0s", show_default=True, help="give up after this long (0: wait forever)")
@click.option(
    "-w", "--watch/--no-watch", default=True, show_default=True, help="wait for the rollout to finish"
)
@click.option("-l", "--selector", default=None, help="only the Deployments matching this label selector")
@namespace_options
@context_option
@click.pass_context
@reports_errors
def rollout_status(
    ctx: click.Context,
    args: tuple[str, ...],
    timeout: str,
    watch: bool,
    selector: str | None,
    namespace: str | None,
    context: str | None,
) -> None:
    """Wait until a Deployment's rollout has finished, printing progress as kubectl does; a bare
    ``deployment`` waits for every Deployment of the namespace in turn (kubectl >= 1.26)."""
    limit = parse_timeout(timeout)
    session = open_session(ctx, context, namespace)
    for ref in rollout_refs(session, args, selector) or []:
        _wait_for_rollout(session, ref, limit, watch)


def _wait_for_rollout(session: Session, ref: Ref, limit: float, watch: bool) -> None:
    deadline = time.monotonic() + limit if limit > 0 else None
    last = ""
    while True:
        dep = session.get(ref.info, ref.name, session.namespace)
        observed = rollout_logic.rollout_status(dep)
        if observed.failed:
            raise CliError(observed.message)
        if observed.message != last:
            click.echo(observed.message)
            last = observed.message
        if observed.done:
            return
        if not watch:
            raise CliError("rollout is still in progress", prefix="")
        if deadline is not None and time.monotonic() >= deadline:
            fail("timed out waiting for the condition")
        time.sleep(0.25)


def _replica_sets_near(session: Session, dep: Obj) -> list[Obj]:
    """The ReplicaSets of the Deployment's namespace; ``meshpilot.api.rollout`` picks its own."""
    return session.list(resolve_kind("replicasets"), dep["metadata"].get("namespace"), None)


@rollout.command("history")
@click.argument("args", nargs=-1, required=True)
@click.option("--revision", type=int, default=0, help="show the pod template of this revision")
@click.option("-l", "--selector", default=None, help="only the Deployments matching this label selector")
@namespace_options
@context_option
@click.pass_context
@reports_errors
def rollout_history(
    ctx: click.Context,
    args: tuple[str, ...],
    revision: int,
    selector: str | None,
    namespace: str | None,
    context: str | None,
) -> None:
    """List a Deployment's revisions (from its ReplicaSets); a bare ``deployment`` lists each
    Deployment of the namespace in turn, as kubectl does."""
    session = open_session(ctx, context, namespace)
    errors: list[str] = []
    for ref in rollout_refs(session, args, selector, announce_empty=False) or []:
        dep = session.get(ref.info, ref.name, session.namespace)
        history = rollout_logic.history(dep, _replica_sets_near(session, dep))
        if revision:
            match = [rs for rs in history if rollout_logic.revision_of(rs) == revision]
            if not match:
                errors.append(f"unable to find the specified revision {revision}")
                continue
            click.echo(f"{ref.display} with revision #{revision}")
            template = match[0].get("spec", {}).get("template", {})
            click.echo(printers.to_yaml(template))
            continue
        click.echo(f"{ref.display} ")  # kubectl's header ends with a space
        rows = [
            [
                str(rollout_logic.revision_of(rs)),
                (rs["metadata"].get("annotations") or {}).get(rollout_logic.CHANGE_CAUSE, "<none>"),
            ]
            for rs in history
        ]
        click.echo(printers.format_table(["REVISION", "CHANGE-CAUSE"], rows))
        click.echo("")
    _fail_with(errors)


@rollout.command("undo")
@click.argument("args", nargs=-1, required=True)
@click.option("--to-revision", type=int, default=0, help="the revision to roll back to (0: the previous one)")
@click.option("-l", "--selector", default=None, help="only the Deployments matching this label selector")
@namespace_options
@context_option
@click.pass_context
@reports_errors
def rollout_undo(
    ctx: click.Context,
    args: tuple[str, ...],
    to_revision: int,
    selector: str | None,
    namespace: str | None,
    context: str | None,
) -> None:
    """Roll a Deployment's pod template back to an earlier revision; a bare ``deployment`` rolls
    back every Deployment of the namespace, as kubectl does (one without history is an error
    reported at the end, after the others are rolled back)."""
    session = open_session(ctx, context, namespace)
    errors: list[str] = []
    for ref in rollout_refs(session, args, selector, announce_empty=False) or []:
        dep = session.get(ref.info, ref.name, session.namespace)
        try:
            revision, template = rollout_logic.rollback_revision(
                dep, _replica_sets_near(session, dep), to_revision
            )
        except LookupError as exc:
            errors.append(str(exc.args[0]) if exc.args else str(exc))
            continue
        if rollout_logic.same_template(dep.get("spec", {}).get("template", {}), template):
            click.echo(
                f"{ref.display} skipped rollback (current template already matches revision {revision})"
            )
            continue
        # A merge patch cannot remove list items or keys the old template lacked, so the template
        # is replaced whole.
        session.replace_template(ref.info, ref.name, session.namespace, template)
        click.echo(f"{ref.display} rolled back")
    _fail_with(errors)


def _fail_with(errors: Sequence[str]) -> None:
    """End with exit 1 and one ``error:`` line per failure, once every target has been handled."""
    if errors:
        raise CliError("\n".join(f"error: {e}" for e in errors), prefix="")


# --- scale -------------------------------------------------------------------------------------


@click.command(cls=Command)
@click.argument("args", nargs=-1, required=True)
@click.option("--replicas", type=int, required=True, help="the new number of replicas")
@click.option("--current-replicas", type=int, default=None, help="only scale if the current count is this")
@namespace_options
@context_option
@click.pass_context
@reports_errors
def scale(
    ctx: click.Context,
    args: tuple[str, ...],
    replicas: int,
    current_replicas: int | None,
    namespace: str | None,
    context: str | None,
) -> None:
    """Set the replica count of a Deployment: scale deployment/NAME --replicas 3."""
    if replicas < 0:
        fail("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    session = open_session(ctx, context, namespace)
    refs = refs_from_args(args)
    for ref in refs:
        if ref.info.kind not in ("Deployment", "ReplicaSet", "StatefulSet"):
            fail(f"{ref.info.kind} cannot be scaled")
    for ref in refs:
        if current_replicas is not None:
            obj = session.get(ref.info, ref.name, session.namespace)
            actual = obj.get("spec", {}).get("replicas", 1)
            if actual != current_replicas:
                fail(f"Expected replicas to be {current_replicas}, was {actual}")
        session.patch(ref.info, ref.name, session.namespace, {"spec": {"replicas": replicas}})
        click.echo(f"{ref.display} scaled")


# --- label -------------------------------------------------------------------------------------


_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"


def parse_label_changes(specs: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    import re

    sets: dict[str, str] = {}
    removes: list[str] = []
    for spec in specs:
        if spec.endswith("-") and "=" not in spec:
            key = spec[:-1]
            _check_label_key(key, re)
            removes.append(key)
            continue
        key, sep, value = spec.partition("=")
        if not sep:
            fail(f"invalid label spec: {spec!r} (expected key=value or key-)")
        _check_label_key(key, re)
        if value and not re.fullmatch(_LABEL_NAME, value):
            fail(
                f"invalid label value: {spec!r}: a valid label value must be 63 characters or less, "
                "start and end with an alphanumeric character, and contain only alphanumerics, '-', '_' or '.'"
            )
        sets[key] = value
    overlap = set(sets) & set(removes)
    if overlap:
        fail(
            f"can not both modify and remove the following label(s) in the same command: {', '.join(sorted(overlap))}"
        )
    return sets, removes


def _check_label_key(key: str, re: Any) -> None:
    prefix, slash, name = key.rpartition("/")
    dns = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    if not re.fullmatch(_LABEL_NAME, name) or (
        slash and (len(prefix) > 253 or not re.fullmatch(dns, prefix))
    ):
        fail(
            f"invalid label key {key!r}: a valid label key is [prefix/]name, name of 63 alphanumerics, '-', '_' or '.'"
        )


@click.command(cls=Command)
@click.argument("args", nargs=-1, required=True)
@click.option("--overwrite", is_flag=True, help="allow changing labels that already have a value")
@click.option("-l", "--selector", default=None, help="label every object of KIND matching this selector")
@click.option("--all", "label_all", is_flag=True, help="label every object of KIND in the namespace")
@namespace_options
@context_option
@click.pass_context
@reports_errors
def label(
    ctx: click.Context,
    args: tuple[str, ...],
    overwrite: bool,
    selector: str | None,
    label_all: bool,
    namespace: str | None,
    context: str | None,
) -> None:
    """Add, change or remove labels: label deploy x tier=web old-."""
    changes = [a for a in args if "=" in a or (a.endswith("-") and "/" not in a)]
    resources = [a for a in args if a not in changes]
    if not changes:
        fail("at least one label update is required")
    sets, removes = parse_label_changes(changes)
    session = open_session(ctx, context, namespace)
    if selector or label_all:
        if len(resources) != 1:
            fail("with --selector or --all, give exactly one resource type")
        info = resolve_kind(resources[0])
        refs = [Ref(info, o["metadata"]["name"]) for o in session.list(info, session.namespace, selector)]
    else:
        refs = refs_from_args(resources)
    objects = [
        (ref, session.get(ref.info, ref.name, session.namespace if ref.info.namespaced else None))
        for ref in refs
    ]
    for _ref, obj in objects:
        current = obj.get("metadata", {}).get("labels") or {}
        if not overwrite:
            for key, value in sets.items():
                if key in current and current[key] != value:
                    fail(f"'{key}' already has a value ({current[key]}), and --overwrite is false")
    for ref, obj in objects:
        current = obj.get("metadata", {}).get("labels") or {}
        patch_labels: dict[str, str | None] = {k: v for k, v in sets.items() if current.get(k) != v}
        patch_labels.update({k: None for k in removes if k in current})
        if not patch_labels:
            click.echo(f"{ref.display} not labeled")
            continue
        ns = session.namespace if ref.info.namespaced else None
        session.patch(ref.info, ref.name, ns, {"metadata": {"labels": patch_labels}})
        verb = "unlabeled" if all(v is None for v in patch_labels.values()) else "labeled"
        click.echo(f"{ref.display} {verb}")


# --- top ---------------------------------------------------------------------------------------


def cpu_millicores(quantity: str) -> int:
    """``250m``, ``12345n``, ``1500u``, ``2`` -> millicores (rounded as kubectl top shows them)."""
    q = quantity.strip()
    factors = {"n": 1e-6, "u": 1e-3, "m": 1.0}
    if q and q[-1] in factors:
        return round(float(q[:-1]) * factors[q[-1]])
    return round(float(q) * 1000)


_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory_bytes(quantity: str) -> int:
    q = quantity.strip()
    for suffix, factor in {**_BINARY, **_DECIMAL}.items():
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * factor)
    return int(float(q))


class _TopGroup(Group):
    """kubectl takes ``top pod``, ``top po`` and ``top pods`` alike; scripts use all three."""

    _ALIASES: ClassVar[dict[str, str]] = {"pod": "pods", "po": "pods"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self._ALIASES.get(cmd_name, cmd_name))


@click.group(cls=_TopGroup)
def top() -> None:
    """Show CPU and memory use of pods, measured by the cluster's runtime."""


@top.command("pods")
@click.argument("name", required=False)
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-l", "--selector", default=None)
@click.option("--containers", is_flag=True, help="one line per container")
@click.option("--sort-by", type=click.Choice(["cpu", "memory"]), default=None)
@click.option("--no-headers", is_flag=True)
@namespace_options
@context_option
@click.pass_context
@reports_errors
def top_pods(
    ctx: click.Context,
    name: str | None,
    all_namespaces: bool,
    selector: str | None,
    containers: bool,
    sort_by: str | None,
    no_headers: bool,
    namespace: str | None,
    context: str | None,
) -> None:
    """top pods -n istio-system --containers: CPU (millicores) and memory (MiB) per pod."""
    session = open_session(ctx, context, namespace)
    ns = None if all_namespaces else session.namespace
    metrics = session.pod_metrics(ns, selector)
    if name:
        metrics = [m for m in metrics if m.get("metadata", {}).get("name") == name]
        if not metrics:
            fail(f'pods "{name}" not found (or no metrics yet: the runtime measures running containers)')
    if not metrics:
        where = "" if all_namespaces else f" in {session.namespace} namespace"
        click.echo(f"No resources found{where}.", err=True)
        return
    rows: list[tuple[list[str], int, int]] = []
    for m in metrics:
        meta = m.get("metadata", {})
        per_container = [
            (
                c.get("name", ""),
                cpu_millicores(c.get("usage", {}).get("cpu", "0")),
                memory_bytes(c.get("usage", {}).get("memory", "0")),
            )
            for c in m.get("containers") or []
        ]
        prefix = [meta.get("namespace", "")] if all_namespaces else []
        if containers:
            for cname, cpu, mem in per_container:
                rows.append(([*prefix, meta.get("name", ""), cname, f"{cpu}m", f"{mem >> 20}Mi"], cpu, mem))
        else:
            cpu = sum(c[1] for c in per_container)
            mem = sum(c[2] for c in per_container)
            rows.append(([*prefix, meta.get("name", ""), f"{cpu}m", f"{mem >> 20}Mi"], cpu, mem))
    if sort_by == "cpu":
        rows.sort(key=lambda r: -r[1])
    elif sort_by == "memory":
        rows.sort(key=lambda r: -r[2])
    headers = ["NAMESPACE"] if all_namespaces else []
    headers += ["POD", "NAME"] if containers else ["NAME"]
    headers += ["CPU(cores)", "MEMORY(bytes)"]
    text = printers.format_table(headers, [r[0] for r in rows])
    click.echo("\n".join(text.splitlines()[1:]) if no_headers else text)


# --- create ------------------------------------------------------------------------------------


@click.group(cls=Group)
def create() -> None:
    """Create an object from arguments: create namespace NAME."""


@create.command("namespace")
@click.argument("name")
@click.option("--dry-run", type=click.Choice(["none", "server", "client"]), default="none")
@click.option("-o", "--output", type=click.Choice(["name", "yaml", "json"]), default=None)
@context_option
@click.pass_context
@reports_errors
def create_namespace(
    ctx: click.Context, name: str, dry_run: str, output: str | None, context: str | None
) -> None:
    """Create a Namespace."""
    from meshpilot.api import validate

    obj = validate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    if dry_run != "client":
        session = open_session(ctx, context, None)
        obj = session.create(resolve_kind("namespaces"), obj, dry_run=dry_run == "server")
    if output == "yaml":
        click.echo(printers.to_yaml(obj), nl=False)
    elif output == "json":
        click.echo(printers.to_json(obj))
    elif output == "name":
        click.echo(f"namespace/{name}")
    else:
        click.echo(f"namespace/{name} created{' (dry run)' if dry_run != 'none' else ''}")


create.add_command(create_namespace, "ns")
