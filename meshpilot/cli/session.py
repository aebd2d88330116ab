"""One CLI invocation's view of the cluster: the client, the namespace in effect, kubectl's defaults.

The commands in ``kubectl.py`` speak in kubectl's terms ("this namespace or all", "missing is not
an error here"); this module maps them onto ``meshpilot.client`` once, so the verbs stay short.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import click

from meshpilot.cli.common import CliError, context_name
from meshpilot.client import ALL_NAMESPACES, ApiError, Client, KubeconfigError

Obj = dict[str, Any]
Objs = list[Obj]  # an alias: inside Session, `list` is a method name

METRICS_PODS = "/apis/metrics.k8s.io/v1beta1"


class Session:
    """The client plus the namespace this invocation works in (``-n``, else the context's)."""

    def __init__(self, client: Client, namespace: str | None) -> None:
        self.client = client
        self.namespace = namespace or client.namespace or "default"

    def get(self, info: Any, name: str, namespace: str | None) -> Obj:
        return self.client.get(info, name, namespace or self.namespace)

    def get_or_none(self, info: Any, name: str, namespace: str | None) -> Obj | None:
        try:
            return self.get(info, name, namespace)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self, info: Any, namespace: str | None, selector: str | None, field_selector: str | None = None
    ) -> Objs:
        """``namespace=None``: every namespace (kubectl's ``-A``)."""
        items = self.client.list(
            info,
            namespace or ALL_NAMESPACES,
            label_selector=selector or None,
            field_selector=field_selector or None,
        )
        return sorted(
            items, key=lambda o: (o.get("metadata", {}).get("namespace", ""), o["metadata"]["name"])
        )

    def apply(self, objects: Sequence[Obj], *, dry_run: bool) -> Objs:
        return self.client.apply(objects, self.namespace, dry_run=dry_run)

    def create(self, info: Any, obj: Obj, *, dry_run: bool) -> Obj:
        if dry_run:
            path = _collection_path(info, self.namespace)
            result: Obj = self.client.request("POST", path, json=obj, params={"dryRun": "All"}).json()
            return result
        return self.client.create(obj, self.namespace if info.namespaced else None)

    def patch(self, info: Any, name: str, namespace: str | None, patch: Obj) -> Obj:
        return self.client.patch(info, name, patch, namespace or self.namespace)

    def replace_template(self, info: Any, name: str, namespace: str | None, template: Obj) -> Obj:
        """Swap a workload's pod template whole (a merge patch can't drop what the old one lacked)."""
        for _ in range(5):
            current = self.get(info, name, namespace)
            current.setdefault("spec", {})["template"] = template
            try:
                return self.client.replace(current, namespace or self.namespace)
            except ApiError as exc:
                if exc.status != 409:
                    raise
        raise CliError(f"{info.kind} {name!r} kept changing while rolling back; try again")

    def delete(
        self, info: Any, name: str, namespace: str | None, *, grace_period_seconds: int | None = None
    ) -> bool:
        """True when deleted (or deletion started), False when it did not exist."""
        try:
            self.client.delete(
                info, name, namespace or self.namespace, grace_period_seconds=grace_period_seconds
            )
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def watch(self, info: Any, namespace: str | None, selector: str | None) -> Iterator[tuple[str, Obj]]:
        items = self.client.list(info, namespace or ALL_NAMESPACES, label_selector=selector or None)
        yield from self.client.watch(
            info,
            namespace or ALL_NAMESPACES,
            resource_version=items.resource_version or None,
            label_selector=selector or None,
        )

    def logs(
        self,
        pod: str,
        namespace: str,
        *,
        container: str | None,
        follow: bool,
        tail: int,
        previous: bool,
    ) -> Iterator[str]:
        tail_lines = tail if tail >= 0 else None
        if follow and not previous:  # a previous instance has ended: its log is all there is
            for line in self.client.follow_logs(pod, namespace, container=container, tail_lines=tail_lines):
                yield line + "\n"
        else:
            yield self.client.logs(
                pod, namespace, container=container, tail_lines=tail_lines, previous=previous
            )

    def events_for(self, obj: Obj) -> Objs:
        """Events about ``obj``, oldest first; none when the cluster keeps no events."""
        from meshpilot.api import NotServed, resolve

        try:
            info = resolve("events")
        except NotServed:
            return []
        meta = obj.get("metadata", {})
        try:
            items = self.client.list(info, meta.get("namespace") or self.namespace)
        except ApiError:
            return []
        uid = meta.get("uid")
        related = [
            e
            for e in items
            if (e.get("involvedObject") or {}).get("uid") == uid
            or (
                (e.get("involvedObject") or {}).get("name") == meta.get("name")
                and (e.get("involvedObject") or {}).get("kind") == obj.get("kind")
            )
        ]
        return sorted(related, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))

    def pod_metrics(self, namespace: str | None, selector: str | None) -> Objs:
        """``metrics.k8s.io`` PodMetrics, as the runtime measures them; a clear error when not served."""
        path = f"{METRICS_PODS}/namespaces/{namespace}/pods" if namespace else f"{METRICS_PODS}/pods"
        params = {"labelSelector": selector} if selector else {}
        try:
            body = self.client.request("GET", path, params=params).json()
        except ApiError as exc:
            if exc.status == 404:
                raise CliError(
                    "Metrics API not available: this cluster does not serve metrics.k8s.io "
                    "(the local cluster's runtime measures CPU and memory per container; upgrade it)"
                ) from None
            raise
        items: Objs = body.get("items") or []
        return sorted(
            items, key=lambda o: (o.get("metadata", {}).get("namespace", ""), o["metadata"]["name"])
        )


def _collection_path(info: Any, namespace: str) -> str:
    from meshpilot.client import resource_path

    return resource_path(info, namespace if info.namespaced else None)


def open_session(ctx: click.Context, context: str | None, namespace: str | None) -> Session:
    """Connect with ``--context`` (the command's or the group's), in namespace ``-n`` if given."""
    try:
        client = Client.from_kubeconfig(context_name(ctx, context))
    except KubeconfigError as exc:
        raise CliError(str(exc)) from None
    # as kubectl: what the server warns about (e.g. config stored but not enforced) goes to stderr
    client.on_warning = _print_warning
    ctx.call_on_close(client.close)
    return Session(client, namespace)


def _print_warning(text: str) -> None:
    click.echo(f"Warning: {text}", err=True)
