"""How ``meshpilot get`` and ``describe`` print objects: kubectl's tables, names and descriptions.

Pure functions of the objects (plain Kubernetes-shaped dicts) and of "now", so that they are tested
with fixed data and the commands stay thin. Columns follow kubectl's built-in printers for core
kinds and the CRDs' ``additionalPrinterColumns`` for Istio's kinds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

Obj = dict[str, Any]
NONE = "<none>"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


# --- small helpers -----------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """kubectl's AGE: ``45s``, ``2m30s``, ``5h10m``, ``3d4h``, ``400d``, ``2y10d``."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(obj: Obj, now: datetime, field: str = "creationTimestamp") -> str:
    created = parse_time(obj.get("metadata", {}).get(field))
    if created is None:
        return NONE
    return human_duration((now - created).total_seconds())


def since(value: Any, now: datetime) -> str:
    when = parse_time(value)
    return human_duration((now - when).total_seconds()) if when else NONE


def group_of(obj: Obj) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.rpartition("/")[0]


def resource_name(obj: Obj) -> str:
    """``-o name``: ``deployment.apps/productcatalog-v1``, ``pod/x``, ``virtualservice.networking.istio.io/x``."""
    kind = str(obj.get("kind", "")).lower()
    group = group_of(obj)
    name = obj.get("metadata", {}).get("name", "")
    return f"{kind}.{group}/{name}" if group else f"{kind}/{name}"


def json_list(value: Any) -> str:
    """How kubectl prints an array column of a CRD: ``["a","b"]``."""
    if value is None or value == []:
        return ""
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def join_or_none(values: Iterable[str]) -> str:
    items = [v for v in values if v]
    return ",".join(items) if items else NONE


def selector_text(selector: Any) -> str:
    if not isinstance(selector, dict) or not selector:
        return NONE
    labels = (
        selector.get("matchLabels")
        if "matchLabels" in selector or "matchExpressions" in selector
        else selector
    )
    parts = [f"{k}={v}" for k, v in (labels or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) if parts else NONE


def labels_text(labels: Any) -> str:
    if not isinstance(labels, dict) or not labels:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# --- per-kind rows -----------------------------------------------------------------------------


def _pod_status(pod: Obj) -> str:
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    if meta.get("deletionTimestamp"):
        return "Terminating"
    reason = status.get("reason") or status.get("phase") or "Pending"
    for cs in status.get("initContainerStatuses") or []:
        state = cs.get("state", {})
        if state.get("terminated", {}).get("exitCode", 0) != 0:
            return f"Init:{state['terminated'].get('reason') or 'Error'}"
        if state.get("waiting", {}).get("reason") not in (None, "PodInitializing"):
            return f"Init:{state['waiting']['reason']}"
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state", {})
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif "terminated" in state:
            code = state["terminated"].get("exitCode", 0)
            reason = f"ExitCode:{code}"
    return str(reason)


def _pod_restarts(pod: Obj, now: datetime) -> str:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    total = sum(int(cs.get("restartCount", 0)) for cs in statuses)
    last: datetime | None = None
    for cs in statuses:
        finished = parse_time(cs.get("lastState", {}).get("terminated", {}).get("finishedAt"))
        if finished and (last is None or finished > last):
            last = finished
    if total and last is not None:
        return f"{total} ({human_duration((now - last).total_seconds())} ago)"
    return str(total)


def pod_ready(pod: Obj) -> str:
    containers = pod.get("spec", {}).get("containers") or []
    statuses = pod.get("status", {}).get("containerStatuses") or []
    ready = sum(1 for cs in statuses if cs.get("ready"))
    return f"{ready}/{len(containers)}"


def _pods(obj: Obj, now: datetime, wide: bool) -> list[str]:
    row = [pod_ready(obj), _pod_status(obj), _pod_restarts(obj, now), age(obj, now)]
    if wide:
        row += [obj.get("status", {}).get("podIP") or NONE, obj.get("spec", {}).get("nodeName") or NONE]
    return row


def _containers_images(template_spec: Obj) -> list[str]:
    containers = template_spec.get("containers") or []
    return [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)]


def _deployments(obj: Obj, now: datetime, wide: bool) -> list[str]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    row = [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        str(status.get("updatedReplicas", 0)),
        str(status.get("availableReplicas", 0)),
        age(obj, now),
    ]
    if wide:
        row += _containers_images(spec.get("template", {}).get("spec", {}))
        row.append(selector_text(spec.get("selector")))
    return row


def _replicasets(obj: Obj, now: datetime, wide: bool) -> list[str]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    row = [
        str(spec.get("replicas", 1)),
        str(status.get("replicas", 0)),
        str(status.get("readyReplicas", 0)),
        age(obj, now),
    ]
    if wide:
        row += _containers_images(spec.get("template", {}).get("spec", {}))
        row.append(selector_text(spec.get("selector")))
    return row


def service_ports(spec: Obj) -> str:
    out = []
    for port in spec.get("ports") or []:
        text = str(port.get("port"))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        out.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(out) if out else NONE


def _services(obj: Obj, now: datetime, wide: bool) -> list[str]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    svc_type = spec.get("type", "ClusterIP")
    external = [i.get("ip") or i.get("hostname") for i in status.get("loadBalancer", {}).get("ingress") or []]
    external += spec.get("externalIPs") or []
    if svc_type == "ExternalName":
        external = [spec.get("externalName", "")]
    if not external and svc_type == "LoadBalancer":
        external_text = "<pending>"
    else:
        external_text = join_or_none(str(e) for e in external)
    row = [svc_type, spec.get("clusterIP") or NONE, external_text, service_ports(spec), age(obj, now)]
    if wide:
        row.append(labels_text(spec.get("selector")))
    return row


def endpoints_text(obj: Obj, limit: int = 3) -> str:
    addresses: list[str] = []
    for subset in obj.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for addr in subset.get("addresses") or []:
            for port in ports:
                ip = addr.get("ip", "")
                addresses.append(f"{ip}:{port['port']}" if "port" in port else ip)
    if not addresses:
        return NONE
    shown = ",".join(addresses[:limit])
    if len(addresses) > limit:
        shown += f" + {len(addresses) - limit} more..."
    return shown


def _endpoints(obj: Obj, now: datetime, wide: bool) -> list[str]:
    return [endpoints_text(obj), age(obj, now)]


def _namespaces(obj: Obj, now: datetime, wide: bool) -> list[str]:
    phase = obj.get("status", {}).get("phase") or (
        "Terminating" if obj["metadata"].get("deletionTimestamp") else "Active"
    )
    return [phase, age(obj, now)]


def _configmaps(obj: Obj, now: datetime, wide: bool) -> list[str]:
    return [str(len(obj.get("data") or {}) + len(obj.get("binaryData") or {})), age(obj, now)]


def _secrets(obj: Obj, now: datetime, wide: bool) -> list[str]:
    data = len(obj.get("data") or {}) + len(obj.get("stringData") or {})
    return [obj.get("type", "Opaque"), str(data), age(obj, now)]


def _serviceaccounts(obj: Obj, now: datetime, wide: bool) -> list[str]:
    return [str(len(obj.get("secrets") or [])), age(obj, now)]


def _pdbs(obj: Obj, now: datetime, wide: bool) -> list[str]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    return [
        str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
        str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A",
        str(status.get("disruptionsAllowed", 0)),
        age(obj, now),
    ]


def _event_last_seen(obj: Obj) -> str:
    return str(
        obj.get("lastTimestamp")
        or obj.get("eventTime")
        or obj.get("metadata", {}).get("creationTimestamp")
        or ""
    )


def _events(obj: Obj, now: datetime, wide: bool) -> list[str]:
    involved = obj.get("involvedObject", {})
    last = (
        obj.get("lastTimestamp") or obj.get("eventTime") or obj.get("metadata", {}).get("creationTimestamp")
    )
    return [
        since(last, now),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        obj.get("message", ""),
    ]


def _spec_path(obj: Obj, *path: str) -> Any:
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _virtualservices(obj: Obj, now: datetime, wide: bool) -> list[str]:
    return [
        json_list(_spec_path(obj, "spec", "gateways")),
        json_list(_spec_path(obj, "spec", "hosts")),
        age(obj, now),
    ]


def _destinationrules(obj: Obj, now: datetime, wide: bool) -> list[str]:
    return [str(_spec_path(obj, "spec", "host") or ""), age(obj, now)]


def _serviceentries(obj: Obj, now: datetime, wide: bool) -> list[str]:
    return [
        json_list(_spec_path(obj, "spec", "hosts")),
        str(_spec_path(obj, "spec", "location") or ""),
        str(_spec_path(obj, "spec", "resolution") or ""),
        age(obj, now),
    ]


def _workloadentries(obj: Obj, now: datetime, wide: bool) -> list[str]:
    return [age(obj, now), str(_spec_path(obj, "spec", "address") or "")]


def _authorizationpolicies(obj: Obj, now: datetime, wide: bool) -> list[str]:
    return [str(_spec_path(obj, "spec", "action") or ""), age(obj, now)]


def _peerauthentications(obj: Obj, now: datetime, wide: bool) -> list[str]:
    return [str(_spec_path(obj, "spec", "mtls", "mode") or ""), age(obj, now)]


def _default(obj: Obj, now: datetime, wide: bool) -> list[str]:
    return [age(obj, now)]


RowFn = Callable[[Obj, datetime, bool], list[str]]

# kind -> (columns after NAME, wide-only columns, row function)
TABLES: dict[str, tuple[list[str], list[str], RowFn]] = {
    "Pod": (["READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE"], _pods),
    "Deployment": (
        ["READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        ["CONTAINERS", "IMAGES", "SELECTOR"],
        _deployments,
    ),
    "ReplicaSet": (
        ["DESIRED", "CURRENT", "READY", "AGE"],
        ["CONTAINERS", "IMAGES", "SELECTOR"],
        _replicasets,
    ),
    "Service": (["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], ["SELECTOR"], _services),
    "Endpoints": (["ENDPOINTS", "AGE"], [], _endpoints),
    "Namespace": (["STATUS", "AGE"], [], _namespaces),
    "ConfigMap": (["DATA", "AGE"], [], _configmaps),
    "Secret": (["TYPE", "DATA", "AGE"], [], _secrets),
    "ServiceAccount": (["SECRETS", "AGE"], [], _serviceaccounts),
    "PodDisruptionBudget": (["MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"], [], _pdbs),
    "Event": (["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], [], _events),
    "VirtualService": (["GATEWAYS", "HOSTS", "AGE"], [], _virtualservices),
    "DestinationRule": (["HOST", "AGE"], [], _destinationrules),
    "ServiceEntry": (["HOSTS", "LOCATION", "RESOLUTION", "AGE"], [], _serviceentries),
    "WorkloadEntry": (["AGE", "ADDRESS"], [], _workloadentries),
    "AuthorizationPolicy": (["ACTION", "AGE"], [], _authorizationpolicies),
    "PeerAuthentication": (["MODE", "AGE"], [], _peerauthentications),
}


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns three spaces apart, as kubectl's tabwriter lays them out."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def table(
    kind: str,
    objects: Sequence[Obj],
    now: datetime,
    *,
    wide: bool = False,
    with_namespace: bool = False,
    with_kind_prefix: bool = False,
    show_labels: bool = False,
) -> str:
    """The ``get`` table of one kind (objects all of that kind)."""
    columns, wide_columns, fn = TABLES.get(kind, (["AGE"], [], _default))
    named = kind != "Event"  # kubectl's event table has no NAME column
    if not named:
        objects = sorted(objects, key=_event_last_seen)  # oldest first, as `kubectl events` shows them
    headers = [*(["NAME"] if named else []), *columns, *(wide_columns if wide else [])]
    if with_namespace:
        headers.insert(0, "NAMESPACE")
    if show_labels:
        headers.append("LABELS")
    rows = []
    for obj in objects:
        meta = obj.get("metadata", {})
        name = resource_name(obj) if with_kind_prefix else str(meta.get("name", ""))
        row = [*([name] if named else []), *fn(obj, now, wide)]
        if with_namespace:
            row.insert(0, str(meta.get("namespace", "")))
        if show_labels:
            row.append(labels_text(meta.get("labels")))
        rows.append(row)
    return format_table(headers, rows)


# --- serialisations ----------------------------------------------------------------------------


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (``mesh: |``), as kubectl prints them: a ConfigMap's
    embedded YAML (the istio ConfigMap's ``mesh``) stays readable and copy-pastable."""


def _str_block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML falls back to a quoted style by itself when a block cannot hold the text exactly; text
    # ending in blank lines stays quoted (a "keep" block would end the document with "...")
    style = "|" if "\n" in value and not value.endswith("\n\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_block)


def to_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=4, ensure_ascii=False)


def as_list(items: Sequence[Obj]) -> Obj:
    """What ``-o yaml|json`` prints for several objects (kubectl's ``List``)."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {"resourceVersion": ""}}


# --- describe ----------------------------------------------------------------------------------


def _kv(lines: list[str], key: str, value: Any, indent: int = 0, width: int = 14) -> None:
    pad = " " * indent
    label = f"{key}:"
    width = max(width, len(label) + 1)
    if isinstance(value, dict):
        if not value:
            lines.append(f"{pad}{label.ljust(width)}{NONE}")
            return
        first = True
        for k, v in value.items():
            text = f"{k}={v}"
            lines.append(f"{pad}{label.ljust(width)}{text}" if first else f"{pad}{' ' * width}{text}")
            first = False
        return
    lines.append(f"{pad}{label.ljust(width)}{value if value not in (None, '') else NONE}")


def _title(key: str) -> str:
    """camelCase -> Title Case, as kubectl describes custom resources (``maxSurge`` -> ``Max Surge``)."""
    out = []
    for i, ch in enumerate(key):
        if ch.isupper() and i and (not key[i - 1].isupper() or (i + 1 < len(key) and key[i + 1].islower())):
            out.append(" ")
        out.append(ch)
    text = "".join(out)
    return text[:1].upper() + text[1:]


def _tree(lines: list[str], value: Any, indent: int) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{_title(str(k))}:")
                _tree(lines, v, indent + 2)
            else:
                shown = json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v
                lines.append(f"{pad}{_title(str(k))}:  {shown}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                sub: list[str] = []
                _tree(sub, item, indent + 2)
                if sub:
                    sub[0] = f"{pad}  {sub[0].lstrip()}"
                lines.extend(sub)
            else:
                lines.append(f"{pad}  {item}")


def _container_lines(
    lines: list[str], containers: Sequence[Obj], statuses: Sequence[Obj], now: datetime
) -> None:
    by_name = {s.get("name"): s for s in statuses}
    for c in containers:
        lines.append(f"  {c.get('name')}:")
        status = by_name.get(c.get("name"), {})
        if status.get("containerID"):
            _kv(lines, "Container ID", status["containerID"], 4, 16)
        _kv(lines, "Image", c.get("image"), 4, 16)
        cmd = [*(c.get("command") or []), *(c.get("args") or [])]
        _kv(lines, "Command", " ".join(cmd) if cmd else None, 4, 16)
        ports = ", ".join(
            f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in c.get("ports") or []
        )
        _kv(lines, "Port", ports or None, 4, 16)
        state = status.get("state") or {}
        if "running" in state:
            _kv(lines, "State", "Running", 4, 16)
            _kv(lines, "  Started", state["running"].get("startedAt"), 4, 16)
        elif "waiting" in state:
            _kv(lines, "State", "Waiting", 4, 16)
            _kv(lines, "  Reason", state["waiting"].get("reason"), 4, 16)
        elif "terminated" in state:
            _kv(lines, "State", "Terminated", 4, 16)
            _kv(lines, "  Reason", state["terminated"].get("reason"), 4, 16)
            _kv(lines, "  Exit Code", state["terminated"].get("exitCode"), 4, 16)
        if status:
            _kv(lines, "Ready", str(bool(status.get("ready"))), 4, 16)
            _kv(lines, "Restart Count", status.get("restartCount", 0), 4, 16)
        res = c.get("resources") or {}
        for section in ("limits", "requests"):
            if res.get(section):
                lines.append(f"    {section.capitalize()}:")
                for k, v in res[section].items():
                    lines.append(f"      {k}:  {v}")
        for probe_name, label in (("livenessProbe", "Liveness"), ("readinessProbe", "Readiness")):
            probe = c.get(probe_name)
            if probe:
                _kv(lines, label, _probe_text(probe), 4, 16)
        env = c.get("env") or []
        if env:
            lines.append("    Environment:")
            for e in env:
                value = (
                    e.get("value")
                    if "value" in e
                    else f"<set from {next(iter(e.get('valueFrom', {})), '?')}>"
                )
                lines.append(f"      {e.get('name')}:  {value}")


def _probe_text(probe: Obj) -> str:
    if "httpGet" in probe:
        get = probe["httpGet"]
        what = f"http-get {get.get('scheme', 'HTTP').lower()}://:{get.get('port')}{get.get('path', '/')}"
    elif "tcpSocket" in probe:
        what = f"tcp-socket :{probe['tcpSocket'].get('port')}"
    elif "exec" in probe:
        what = "exec [" + " ".join(probe["exec"].get("command") or []) + "]"
    else:
        what = "unknown"
    return (
        f"{what} delay={probe.get('initialDelaySeconds', 0)}s timeout={probe.get('timeoutSeconds', 1)}s "
        f"period={probe.get('periodSeconds', 10)}s #success={probe.get('successThreshold', 1)} "
        f"#failure={probe.get('failureThreshold', 3)}"
    )


def describe(obj: Obj, events: Sequence[Obj], now: datetime) -> str:
    """``describe KIND NAME``: the header every kind shares, a kind-specific body, then events."""
    meta = obj.get("metadata", {})
    spec, status = obj.get("spec", {}) or {}, obj.get("status", {}) or {}
    kind = obj.get("kind", "")
    lines: list[str] = []
    _kv(lines, "Name", meta.get("name"))
    if meta.get("namespace"):
        _kv(lines, "Namespace", meta.get("namespace"))
    _kv(lines, "Labels", meta.get("labels") or {})
    # As kubectl does, leave out the (long, machine-read) record of the last apply.
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    _kv(lines, "Annotations", annotations)
    if kind == "Pod":
        _kv(lines, "Service Account", spec.get("serviceAccountName"))
        _kv(lines, "Node", spec.get("nodeName"))
        _kv(lines, "Start Time", status.get("startTime"))
        _kv(lines, "Status", _pod_status(obj))
        _kv(lines, "IP", status.get("podIP"))
        owners = meta.get("ownerReferences") or []
        _kv(lines, "Controlled By", ", ".join(f"{o.get('kind')}/{o.get('name')}" for o in owners) or None)
        lines.append("Containers:")
        _container_lines(lines, spec.get("containers") or [], status.get("containerStatuses") or [], now)
        conditions = status.get("conditions") or []
        if conditions:
            lines.append("Conditions:")
            lines.append("  Type              Status")
            for cond in conditions:
                lines.append(f"  {str(cond.get('type')).ljust(18)}{cond.get('status')}")
    elif kind == "Deployment":
        _kv(lines, "CreationTimestamp", meta.get("creationTimestamp"))
        _kv(lines, "Selector", selector_text(spec.get("selector")))
        _kv(
            lines,
            "Replicas",
            f"{spec.get('replicas', 1)} desired | {status.get('updatedReplicas', 0)} updated | "
            f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
            f"{status.get('unavailableReplicas', 0)} unavailable",
        )
        strategy = spec.get("strategy") or {}
        _kv(lines, "StrategyType", strategy.get("type", "RollingUpdate"))
        rolling = strategy.get("rollingUpdate") or {}
        if rolling:
            _kv(
                lines,
                "RollingUpdateStrategy",
                f"{rolling.get('maxUnavailable', '25%')} max unavailable, {rolling.get('maxSurge', '25%')} max surge",
            )
        template = spec.get("template", {})
        lines.append("Pod Template:")
        _kv(lines, "Labels", template.get("metadata", {}).get("labels") or {}, 2, 12)
        tspec = template.get("spec", {})
        if tspec.get("serviceAccountName"):
            _kv(lines, "Service Account", tspec["serviceAccountName"], 2, 12)
        lines.append("  Containers:")
        sub: list[str] = []
        _container_lines(sub, tspec.get("containers") or [], [], now)
        lines.extend("  " + line for line in sub)
        conditions = status.get("conditions") or []
        if conditions:
            lines.append("Conditions:")
            lines.append("  Type           Status  Reason")
            for cond in conditions:
                lines.append(
                    f"  {str(cond.get('type')).ljust(15)}{str(cond.get('status')).ljust(8)}{cond.get('reason', '')}"
                )
    elif kind == "Service":
        _kv(lines, "Selector", labels_text(spec.get("selector")))
        _kv(lines, "Type", spec.get("type", "ClusterIP"))
        _kv(lines, "IP", spec.get("clusterIP"))
        for port in spec.get("ports") or []:
            _kv(
                lines,
                "Port",
                f"{port.get('name', '<unset>')}  {port.get('port')}/{port.get('protocol', 'TCP')}",
            )
            _kv(
                lines,
                "TargetPort",
                f"{port.get('targetPort', port.get('port'))}/{port.get('protocol', 'TCP')}",
            )
        if "endpoints" in obj:
            _kv(lines, "Endpoints", obj["endpoints"])
    elif kind == "Endpoints":
        lines.append("Subsets:")
        for subset in obj.get("subsets") or []:
            _kv(
                lines,
                "Addresses",
                ",".join(a.get("ip", "") for a in subset.get("addresses") or []) or None,
                2,
                20,
            )
            _kv(
                lines,
                "NotReadyAddresses",
                ",".join(a.get("ip", "") for a in subset.get("notReadyAddresses") or []) or None,
                2,
                20,
            )
            lines.append("  Ports:")
            for port in subset.get("ports") or []:
                lines.append(
                    f"    {port.get('name', '<unset>')}  {port.get('port')}  {port.get('protocol', 'TCP')}"
                )
    else:
        if "apiVersion" in obj:
            _kv(lines, "API Version", obj["apiVersion"])
        _kv(lines, "Kind", kind)
        rest = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        _tree(lines, rest, 0)
    lines.append(events_section(events, now))
    return "\n".join(lines)


def events_section(events: Sequence[Obj], now: datetime) -> str:
    if not events:
        return "Events:        <none>"
    rows = []
    for ev in events:
        last = (
            ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("metadata", {}).get("creationTimestamp")
        )
        source = ev.get("source", {}).get("component") or ev.get("reportingComponent") or ""
        seen = since(last, now)
        count = int(ev.get("count") or 1)
        if count > 1:  # kubectl: "2m (x5 over 10m)"
            seen = f"{seen} (x{count} over {since(ev.get('firstTimestamp') or last, now)})"
        rows.append([ev.get("type", ""), ev.get("reason", ""), seen, source, ev.get("message", "")])
    body = format_table(["Type", "Reason", "Age", "From", "Message"], rows)
    return "Events:\n" + "\n".join("  " + line for line in body.splitlines())
