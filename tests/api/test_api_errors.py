"""What users see when a manifest is wrong: one line per problem, ``file:line: field.path: message``.

Covers the bad inputs of issue 2 (malformed YAML, unknown kind, unknown field, wrong type, missing
required field, duplicate names, a selector that doesn't match its template) plus the defaults and
strictness that make a stored object look like one a real API server returns.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpilot.api import (
    InvalidObject,
    NotServed,
    by_plural,
    format_path,
    kinds,
    load_documents,
    load_objects,
    lookup,
    parse_path,
    resolve,
    validate,
)


def errors_of(text: str, filename: str) -> list[str]:
    with pytest.raises(InvalidObject) as info:
        load_objects(text, filename)
    return [str(e) for e in info.value.errors]


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the ``nth`` line containing ``needle``, found without our line mapping."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[nth - 1]


VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: production
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: ten
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: productcatalog-v1
  namespace: production
spec:
  selector:
    matchLabels: {app: productcatalog, version: v1}
  template:
    metadata:
      labels: {app: productcatalog, version: v1}
    spec:
      containers:
      - name: productcatalog
        image: productcatalog:v1
        command: [python, -m, meshpilot.samples.productcatalog]
        ports:
        - containerPort: 8080
          name: http
        readinessProbe:
          httpGet: {path: /healthz, port: http}
"""


# --- the bad inputs of issue 2 ----------------------------------------------------------------


def test_wrong_type_is_reported_exactly_as_the_issue_shows() -> None:
    assert errors_of(VS, "vs.yaml") == [
        'vs.yaml:14: spec.http[0].route[1].weight: expected integer 0..100, got "ten"'
    ]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: [1, 2\n",
            7,
            "while parsing a flow sequence",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n   bad: indent\n",
            5,
            "mapping values are not allowed",
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: x\n", 4, "found character '\\t'"),
        ('apiVersion: v1\nkind: "ConfigMap\n', 3, "while scanning a quoted scalar"),
    ],
)
def test_malformed_yaml_names_file_line_and_what_the_parser_said(text: str, line: int, fragment: str) -> None:
    (error,) = errors_of(text, "bad.yaml")
    assert error.startswith(f"bad.yaml:{line}: "), error
    assert fragment in error
    assert "\n" not in error


def test_unknown_kind_and_unknown_version_are_not_served() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n# a typo\napiVersion: v1\nkind: Servise\nmetadata: {name: x}\n"
    assert errors_of(text, "k.yaml") == ["k.yaml:7: kind Servise (v1) is not served by this cluster"]
    text = "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: x}\n"
    assert errors_of(text, "k.yaml") == [
        "k.yaml:2: kind VirtualService (networking.istio.io/v2) is not served by this cluster"
    ]


def test_missing_api_version_or_kind() -> None:
    assert errors_of("metadata: {name: x}\n", "m.yaml") == [
        "m.yaml:1: apiVersion: required field is missing",
        "m.yaml:1: kind: required field is missing",
    ]


def test_unknown_field_names_path_line_and_a_likely_fix() -> None:
    text = DEPLOYMENT + "        imagePullPolicyy: Always\n"
    line = line_of(text, "imagePullPolicyy")
    assert errors_of(text, "d.yaml") == [
        f"d.yaml:{line}: spec.template.spec.containers[0].imagePullPolicyy: "
        'unknown field "imagePullPolicyy", did you mean "imagePullPolicy"?'
    ]
    text = DEPLOYMENT.replace("spec:\n  selector:", "spec:\n  replica: 3\n  selector:")
    (error,) = errors_of(text, "d.yaml")
    assert (
        error
        == f'd.yaml:{line_of(text, "replica:")}: spec.replica: unknown field "replica", did you mean "replicas"?'
    )


def test_missing_required_field_points_at_its_parent() -> None:
    text = DEPLOYMENT.replace("  selector:\n    matchLabels: {app: productcatalog, version: v1}\n", "")
    assert errors_of(text, "d.yaml") == [
        f"d.yaml:{line_of(text, 'spec:')}: spec.selector: required field is missing"
    ]
    text = DEPLOYMENT.replace("        image: productcatalog:v1\n", "")
    assert errors_of(text, "d.yaml") == [
        f"d.yaml:{line_of(text, '- name: productcatalog')}: spec.template.spec.containers[0].image: "
        "required field is missing"
    ]


def test_selector_that_does_not_match_the_template() -> None:
    text = DEPLOYMENT.replace(
        "labels: {app: productcatalog, version: v1}", "labels: {app: productcatalog, version: v2}"
    )
    assert errors_of(text, "d.yaml") == [
        f"d.yaml:{line_of(text, 'labels: {app')}: spec.template.metadata.labels: "
        "`selector` does not match template `labels`"
    ]


def test_two_documents_with_the_same_kind_namespace_and_name() -> None:
    text = DEPLOYMENT + "---\n" + DEPLOYMENT
    second = line_of(text, "name: productcatalog-v1", 2)
    first = line_of(text, "name: productcatalog-v1")
    assert errors_of(text, "d.yaml") == [
        f"d.yaml:{second}: metadata.name: Deployment production/productcatalog-v1 is defined twice "
        f"in one apply (first at d.yaml:{first})"
    ]
    # Same name, other namespace or other kind: two different objects.
    other = DEPLOYMENT.replace("namespace: production", "namespace: staging")
    assert len(load_objects(DEPLOYMENT + "---\n" + other, "d.yaml")) == 2


def test_every_error_of_every_document_is_reported_in_file_order() -> None:
    text = VS + "---\n" + DEPLOYMENT.replace("containerPort: 8080", "containerPort: 0")
    errors = errors_of(text, "all.yaml")
    assert [e.split(": ")[1] for e in errors] == [
        "spec.http[0].route[1].weight",
        "spec.template.spec.containers[0].ports[0].containerPort",
    ]
    assert errors[1].endswith("expected integer 1..65535, got 0")


def test_duplicate_yaml_keys_are_errors() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n"
    assert errors_of(text, "c.yaml") == ['c.yaml:5: metadata.name: duplicate key "name"']


def test_a_document_that_is_not_a_mapping() -> None:
    assert errors_of("- a\n- b\n", "l.yaml") == [
        "l.yaml:1: expected a Kubernetes object (a mapping with apiVersion and kind), got a list"
    ]


@pytest.mark.parametrize(
    ("kind", "name", "fragment"),
    [
        ("ConfigMap", "Product_Catalog", 'invalid name "Product_Catalog"'),
        ("Service", "1api", "must start with a lowercase letter"),
        ("Namespace", "a.b", 'invalid name "a.b"'),
    ],
)
def test_names_follow_kubernetes_rules(kind: str, name: str, fragment: str) -> None:
    text = f"apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {name}\n"
    if kind == "Service":
        text += "spec:\n  ports: [{port: 80}]\n"
    (error,) = errors_of(text, "n.yaml")
    assert error.startswith("n.yaml:4: metadata.name: ")
    assert fragment in error


def test_strict_types_no_coercion_and_hints() -> None:
    text = DEPLOYMENT.replace("spec:\n  selector:", 'spec:\n  replicas: "3"\n  selector:')
    assert errors_of(text, "d.yaml") == [
        'd.yaml:7: spec.replicas: expected non-negative integer, got "3" (a quoted number is a string: remove the quotes)'
    ]
    text = DEPLOYMENT.replace(
        "  namespace: production\n", "  namespace: production\n  labels: {version: 1.0}\n"
    )
    assert errors_of(text, "d.yaml") == [
        f'd.yaml:{line_of(text, "version: 1.0")}: metadata.labels.version: expected string, got 1.0 (quote it: "1.0")'
    ]
    text = DEPLOYMENT + "        env:\n        - {name: PORT, value: 8080}\n"
    assert errors_of(text, "d.yaml")[0].endswith(
        "spec.template.spec.containers[0].env[0].value: expected string, got 8080"
    )


def test_unquoted_yaml_booleans_get_a_hint() -> None:
    text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n  mtls: {mode: ON}\n"
    assert errors_of(text, "pa.yaml") == [
        "pa.yaml:5: spec.mtls.mode: expected one of UNSET, DISABLE, PERMISSIVE, STRICT, got true "
        "(YAML reads unquoted true/false/yes/no/on/off as a boolean: quote it)"
    ]


def test_nulls_are_pruned_as_kubernetes_does() -> None:
    text = DEPLOYMENT.replace("spec:\n  selector:", "spec:\n  replicas: null\n  strategy: ~\n  selector:")
    (obj,) = load_objects(text.replace("        ports:\n", "        env: null\n        ports:\n"), "d.yaml")
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "env" not in obj["spec"]["template"]["spec"]["containers"][0]
    # A required field given as null is a missing field, as kube-apiserver reports it.
    text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: null\n"
    assert errors_of(text, "dr.yaml") == ["dr.yaml:5: spec.host: required field is missing"]
    # Free-form fields keep their nulls: they are data for Envoy, not fields of ours.
    text = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: e}
spec:
  configPatches:
  - applyTo: CLUSTER
    patch: {operation: MERGE, value: {circuit_breakers: null}}
"""
    (ef,) = load_objects(text, "ef.yaml")
    assert ef["spec"]["configPatches"][0]["patch"]["value"] == {"circuit_breakers": None}


def test_kind_list_is_expanded_with_lines() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n  data: {k: 1}\n"
    assert errors_of(text, "list.yaml") == ['list.yaml:7: data.k: expected string, got 1 (quote it: "1")']


# --- defaults and normalization ---------------------------------------------------------------


def _nulls(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_nulls(v) for v in value.values())
    if isinstance(value, list):
        return any(_nulls(v) for v in value)
    return False


def test_deployment_gets_kubernetes_defaults() -> None:
    (obj,) = load_objects(DEPLOYMENT, "d.yaml")
    spec = obj["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["dnsPolicy"] == "ClusterFirst"
    container = pod["containers"][0]
    assert container["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    assert container["imagePullPolicy"] == "IfNotPresent"
    probe = container["readinessProbe"]
    assert probe == {
        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert not _nulls(obj)
    assert validate(obj) == obj  # normalizing is idempotent


def test_service_defaults_and_target_port() -> None:
    text = """\
apiVersion: v1
kind: Service
metadata: {name: productcatalog, namespace: production}
spec:
  selector: {app: productcatalog}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: grpc, port: 9090}
"""
    (svc,) = load_objects(text, "s.yaml")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [
        {"port": 80, "name": "http", "protocol": "TCP", "targetPort": "http"},
        {"port": 9090, "name": "grpc", "protocol": "TCP", "targetPort": 9090},
    ]
    assert not _nulls(svc)
    assert validate(svc) == svc


@pytest.mark.parametrize(
    ("patch", "ok"),
    [
        ({"maxSurge": 1, "maxUnavailable": 0}, True),
        ({"maxSurge": "30%", "maxUnavailable": "10%"}, True),
        ({"maxSurge": "ten"}, False),
        ({"maxSurge": 0, "maxUnavailable": 0}, False),
        ({"maxSurge": -1}, False),
    ],
)
def test_rolling_update_int_or_percent(patch: dict[str, Any], ok: bool) -> None:
    (obj,) = load_objects(DEPLOYMENT, "d.yaml")
    obj["spec"]["strategy"]["rollingUpdate"] = patch
    if ok:
        validate(obj)
    else:
        with pytest.raises(InvalidObject) as info:
            validate(obj)
        assert "spec.strategy.rollingUpdate.max" in str(info.value)


def test_pdb_and_secret() -> None:
    text = """\
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: productcatalog, namespace: production}
spec:
  minAvailable: 50%
  selector: {matchLabels: {app: productcatalog}}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: production}
stringData: {token: s3cret}
"""
    pdb, secret = load_objects(text, "p.yaml")
    assert pdb["spec"]["minAvailable"] == "50%"
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "token", "namespace": "production"},
        "data": {"token": "czNjcmV0"},
        "type": "Opaque",
    }
    bad = text.replace("minAvailable: 50%", "minAvailable: 1\n  maxUnavailable: 1")
    assert errors_of(bad, "p.yaml") == [
        "p.yaml:6: spec.maxUnavailable: minAvailable and maxUnavailable cannot be both set"
    ]


def test_status_is_accepted_as_the_store_returns_it() -> None:
    (obj,) = load_objects(DEPLOYMENT, "d.yaml")
    obj["metadata"].update(
        uid="1b4e28ba", resourceVersion="42", generation=3, creationTimestamp="2026-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl"}],
    )  # fmt: skip
    obj["status"] = {
        "observedGeneration": 3,
        "replicas": 1,
        "readyReplicas": 1,
        "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2026-01-01T00:00:00Z"}],
    }
    out = validate(obj)
    assert out["status"]["readyReplicas"] == 1
    assert "managedFields" not in out["metadata"]
    assert out["metadata"]["creationTimestamp"] == "2026-01-01T00:00:00Z"


def test_timestamps_stay_strings_when_loaded_from_yaml() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  creationTimestamp: 2026-01-01T00:00:00Z\n"
    )
    (cm,) = load_objects(text, "c.yaml")
    assert cm["metadata"]["creationTimestamp"] == "2026-01-01T00:00:00Z"


# --- registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("po", "Pod"), ("pods", "Pod"), ("pod", "Pod"), ("Pod", "Pod"), ("svc", "Service"), ("ep", "Endpoints"),
        ("deploy", "Deployment"), ("deployments.v1.apps", "Deployment"), ("deployments.apps", "Deployment"),
        ("rs", "ReplicaSet"), ("pdb", "PodDisruptionBudget"), ("cm", "ConfigMap"), ("sa", "ServiceAccount"),
        ("ns", "Namespace"), ("secrets", "Secret"), ("vs", "VirtualService"),
        ("virtualservices.networking.istio.io", "VirtualService"), ("dr", "DestinationRule"),
        ("se", "ServiceEntry"), ("gw", "Gateway"), ("sidecar", "Sidecar"), ("we", "WorkloadEntry"),
        ("wg", "WorkloadGroup"), ("ap", "AuthorizationPolicy"), ("pa", "PeerAuthentication"),
        ("ra", "RequestAuthentication"), ("telemetry", "Telemetry"), ("envoyfilters", "EnvoyFilter"),
    ],
)  # fmt: skip
def test_resolve_cli_names(name: str, kind: str) -> None:
    assert resolve(name).kind == kind


def test_lookup_by_plural_and_not_served() -> None:
    for version in ("v1", "v1beta1", "v1alpha3"):
        assert lookup(f"networking.istio.io/{version}", "VirtualService").plural == "virtualservices"
    info = lookup("apps/v1", "Deployment")
    assert (info.key, info.api_version, info.resource, info.namespaced) == (
        ("apps", "deployments"), "apps/v1", "deployments.apps", True,
    )  # fmt: skip
    assert by_plural("", "pods").kind == "Pod"
    assert by_plural("security.istio.io", "authorizationpolicies").storage_version == "v1"
    assert not lookup("v1", "Namespace").namespaced
    with pytest.raises(NotServed, match=r"kind IstioOperator \(install.istio.io/v1alpha1\) is not served"):
        lookup("install.istio.io/v1alpha1", "IstioOperator")
    with pytest.raises(NotServed, match='resource type "nope"'):
        resolve("nope")
    with pytest.raises(NotServed):
        by_plural("apps", "pods")
    assert len({k.kind for k in kinds()}) == len(list(kinds())) == 23


# --- line mapping and paths (property tests) -------------------------------------------------

_KEYS = st.from_regex(r"[a-z][a-zA-Z0-9]{0,7}", fullmatch=True)
_SCALARS = st.one_of(
    st.integers(-1000, 1000), st.booleans(), st.from_regex(r"[a-z][a-z0-9 ]{0,10}", fullmatch=True)
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(st.lists(children, min_size=1, max_size=3), st.dictionaries(_KEYS, children, min_size=1, max_size=4)),
    max_leaves=20,
)  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((*prefix, key))
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.append((*prefix, i))
            out.extend(_paths(item, (*prefix, i)))
    return out


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_KEYS, _TREES, min_size=1, max_size=4), st.integers(0, 3))
def test_every_field_maps_to_the_line_it_is_written_on(data: dict[str, Any], blank: int) -> None:
    text = (
        "\n" * blank + "# leading comment\n" + yaml.safe_dump(data, default_flow_style=False, sort_keys=False)
    )
    lines = text.splitlines()
    (doc,) = load_documents(text, "h.yaml")
    assert doc.obj == data
    for path in _paths(data):
        line = lines[doc.line_of(path) - 1]
        if isinstance(path[-1], str):
            assert re.search(rf"(^|[\s'\"]){re.escape(path[-1])}['\"]?:", line), (path, line)
        else:
            assert line.lstrip().startswith("-"), (path, line)
    # A field that doesn't exist maps to its deepest existing ancestor.
    first = next(iter(data))
    assert doc.line_of((first, "no-such-field", 3)) == doc.line_of((first,))


@given(
    st.lists(
        st.one_of(st.integers(0, 50), st.from_regex(r"[A-Za-z0-9_.\-/]{1,12}", fullmatch=True)), max_size=6
    )
)
def test_paths_round_trip(path: list[Any]) -> None:
    assert parse_path(format_path(path)) == tuple(path)


REAL_WORLD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: frontend
  namespace: frontend
  labels: {app.kubernetes.io/name: frontend, app: frontend}
  annotations: {deployment.kubernetes.io/revision: "3"}
spec:
  replicas: 3
  minReadySeconds: 5
  selector:
    matchExpressions:
    - {key: app, operator: In, values: [frontend]}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 25%}}
  template:
    metadata:
      labels: {app: frontend, version: v1}
      annotations: {sidecar.istio.io/inject: "true", prometheus.io/port: "9090"}
    spec:
      serviceAccountName: frontend
      terminationGracePeriodSeconds: 45
      nodeSelector: {kubernetes.io/os: linux}
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {app: frontend}}
      tolerations:
      - {key: dedicated, operator: Equal, value: web, effect: NoSchedule}
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway,
         labelSelector: {matchLabels: {app: frontend}}}
      securityContext: {runAsNonRoot: true, runAsUser: 1000, fsGroup: 2000}
      initContainers:
      - name: migrate
        image: frontend:v1
        command: [sh, -c, "echo migrating"]
      containers:
      - name: frontend
        image: registry.example.com/shop/frontend:v1.2.3
        imagePullPolicy: IfNotPresent
        workingDir: /app
        command: [python, -m, meshpilot.samples.frontend]
        args: ["--port", "$(PORT)"]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: API_TOKEN, valueFrom: {secretKeyRef: {name: api, key: token, optional: true}}}
        - {name: MODE, valueFrom: {configMapKeyRef: {name: frontend, key: mode}}}
        - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
        envFrom:
        - configMapRef: {name: frontend-env}
          prefix: FE_
        ports:
        - {name: http, containerPort: 8080}
        - {name: metrics, containerPort: 9090, protocol: TCP}
        resources:
          requests: {cpu: 100m, memory: 128Mi}
          limits: {cpu: 1, memory: 256Mi}
        readinessProbe:
          httpGet: {path: /ready, port: http, httpHeaders: [{name: X-Probe, value: "1"}]}
          initialDelaySeconds: 2
        livenessProbe:
          tcpSocket: {port: 8080}
          failureThreshold: 5
        startupProbe:
          grpc: {port: 9091}
          periodSeconds: 2
        lifecycle:
          preStop:
            exec: {command: [sleep, "5"]}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: config, mountPath: /etc/frontend, readOnly: true}
        - {name: cache, mountPath: /tmp}
      volumes:
      - name: config
        configMap: {name: frontend, items: [{key: app.yaml, path: app.yaml}]}
      - name: cache
        emptyDir: {medium: Memory, sizeLimit: 64Mi}
"""


def test_a_real_world_deployment_is_accepted() -> None:
    (obj,) = load_objects(REAL_WORLD, "frontend.yaml")
    pod = obj["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "256Mi"}
    assert pod["volumes"][0]["configMap"]["defaultMode"] == 0o644
    assert pod["containers"][0]["startupProbe"]["grpc"] == {"port": 9091}
    assert validate(obj) == obj


@pytest.mark.parametrize(
    ("old", "new", "path", "fragment"),
    [
        ("mountPath: /tmp}", "mountPath: /tmp}\n        - {name: logs, mountPath: /logs}",
         "spec.template.spec.containers[0].volumeMounts[2].name", 'volume "logs" is not defined'),
        ("- name: migrate", "- name: frontend", "spec.template.spec.containers[0].name", "duplicate container name"),
        ("tcpSocket: {port: 8080}", "tcpSocket: {port: 8080}\n          exec: {command: [ls]}",
         "spec.template.spec.containers[0].livenessProbe.tcpSocket", "more than one handler"),
        ("grpc: {port: 9091}", "terminationGracePeriodSeconds: 3", "spec.template.spec.containers[0].startupProbe",
         "must specify a handler type"),
        ("{name: metrics, containerPort: 9090, protocol: TCP}", "{name: metrics, containerPort: 9090, protocol: tcp}",
         "spec.template.spec.containers[0].ports[1].protocol", 'expected one of TCP, UDP, SCTP, got "tcp"'),
        ("limits: {cpu: 1, memory: 256Mi}", "limits: {cpu: 1, memory: lots}",
         "spec.template.spec.containers[0].resources.limits.memory", 'expected quantity like "100m" or "128Mi"'),
        ("operator: In", "operator: Within", "spec.selector.matchExpressions[0].operator", "expected one of In"),
    ],
)  # fmt: skip
def test_real_world_mistakes(old: str, new: str, path: str, fragment: str) -> None:
    assert old in REAL_WORLD
    (error,) = errors_of(REAL_WORLD.replace(old, new), "frontend.yaml")
    assert f": {path}: " in error, error
    assert fragment in error, error
