"""``meshpilot cluster up|down|status|list``: the local cluster's lifecycle.

Thin: the work is in ``meshpilot.cluster.lifecycle``; this module picks the cluster's name (from
``--name``, else ``--context``, else the current context, else ``default``) and formats.
"""

from __future__ import annotations

import importlib
import json

import click

from meshpilot.cluster import kubeconfig, lifecycle
from meshpilot.cluster.state import context_name

PREFIX = "meshpilot-"


def _cluster_name(ctx: click.Context, name: str | None, *, use_current: bool = True) -> str:
    if name:
        return name
    root = ctx.find_root().obj
    context = root.get("context") if isinstance(root, dict) else None
    if not context and use_current:
        try:
            context = kubeconfig.load().get("current-context") or None
        except kubeconfig.KubeconfigError:
            context = None
    if context and str(context).startswith(PREFIX):
        return str(context)[len(PREFIX) :]
    if context and name is None and root and isinstance(root, dict) and root.get("context"):
        raise click.ClickException(f"context {context!r} is not a meshpilot local cluster")
    return lifecycle.DEFAULT_NAME


def _fail(exc: Exception) -> click.ClickException:
    error = click.ClickException(str(exc))
    return error


name_option = click.option(
    "--name", default=None, metavar="NAME", help="cluster name (default: from --context, else default)"
)


@click.group()
def cluster() -> None:
    """Run a local cluster: a tiny Kubernetes on this machine."""


@cluster.command()
@name_option
@click.option("--no-mesh", is_flag=True, help="do not install the mesh control plane")
@click.pass_context
def up(ctx: click.Context, name: str | None, no_mesh: bool) -> None:
    """Start the cluster (create it on first use); idempotent."""
    cluster_name = _cluster_name(ctx, name, use_current=False)
    try:
        info, message = lifecycle.up(cluster_name, mesh=not no_mesh)
    except lifecycle.ClusterError as exc:
        raise _fail(exc) from None
    click.echo(message)
    if "created" in message:
        from meshpilot import paths

        click.echo(
            f"kubectl works too: KUBECONFIG={paths.kubeconfig_path()} kubectl --context {info.context} get pods -A"
        )
    if info.mesh:
        try:
            mesh = importlib.import_module("meshpilot.cli.mesh")
        except ModuleNotFoundError as exc:
            if exc.name != "meshpilot.cli.mesh":
                raise
            return
        install_into = getattr(mesh, "install_into", None)
        if install_into is not None:
            from meshpilot.client import Client

            with Client.from_kubeconfig(context=context_name(info.name)) as client:
                install_into(client, cluster_id=info.name)


@cluster.command()
@name_option
@click.pass_context
def down(ctx: click.Context, name: str | None) -> None:
    """Stop the cluster's daemon and every pod it runs (objects are kept for the next `up`)."""
    try:
        click.echo(lifecycle.down(_cluster_name(ctx, name)))
    except lifecycle.ClusterError as exc:
        raise _fail(exc) from None


@cluster.command()
@name_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def status(ctx: click.Context, name: str | None, output: str) -> None:
    """Show whether the cluster runs, where, and its daemon's PID."""
    try:
        s = lifecycle.status(_cluster_name(ctx, name))
    except lifecycle.ClusterError as exc:
        raise _fail(exc) from None
    if output == "json":
        click.echo(json.dumps(lifecycle.describe(s), indent=2))
        return
    click.echo(f"cluster {s.info.name}: {s.state}")
    click.echo(f"  API server: {s.info.server}")
    click.echo(f"  context:    {s.info.context}")
    click.echo(f"  daemon pid: {s.pid if s.pid is not None else '-'}")
    click.echo(f"  mesh:       {'yes' if s.info.mesh else 'no'}")
    click.echo(f"  state dir:  {s.info.state_dir}")
    if not s.ready:
        ctx.exit(3)


@cluster.command(name="list")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def list_(output: str) -> None:
    """List the clusters recorded under $MESHPILOT_HOME."""
    statuses = lifecycle.list_clusters()
    if output == "json":
        click.echo(lifecycle.to_json(statuses))
        return
    if not statuses:
        click.echo("no clusters (create one with `meshpilot cluster up`)")
        return
    try:
        current = kubeconfig.load().get("current-context")
    except kubeconfig.KubeconfigError:
        current = None
    rows = [("CURRENT", "NAME", "STATE", "SERVER", "PID", "MESH")]
    for s in statuses:
        rows.append(
            (
                "*" if s.info.context == current else "",
                s.info.name,
                s.state,
                s.info.server,
                str(s.pid) if s.pid is not None else "-",
                "yes" if s.info.mesh else "no",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
