"""Kubernetes core/v1 kinds meshpilot serves: Namespace, Pod, Service, Endpoints, ConfigMap, Secret,
ServiceAccount.

The models cover the fields real manifests use, with Kubernetes' defaults, so that an object read
back from the store looks like the one a real API server would return. Fields that matter only to a
scheduler or a kubelet we don't have (affinity, tolerations, ...) are accepted so that manifests
written for a real cluster apply unchanged.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from meshpilot.api.meta import (
    Condition,
    LabelSelector,
    LocalObjectReference,
    ObjectMeta,
    ObjectReference,
    check_labels,
    string_map,
)
from meshpilot.api.types import (
    DNS1123Label,
    FileMode,
    Int32,
    Int64,
    Model,
    NonEmptyStr,
    NonNegInt,
    NonNegInt32,
    Port,
    PortOrZero,
    PortRef,
    PositiveInt,
    PositiveInt32,
    Quantity,
    dns1123_label_problem,
    invalid,
)

Protocol = Literal["TCP", "UDP", "SCTP"]


def _maybe_string_map(value: object) -> object:
    return None if value is None else string_map(value)


# ---------------------------------------------------------------------------------------------
# containers


class ObjectFieldSelector(Model):
    fieldPath: NonEmptyStr
    apiVersion: str = "v1"


class ResourceFieldSelector(Model):
    resource: NonEmptyStr
    containerName: str | None = None
    divisor: Quantity | None = None


class KeySelector(Model):
    key: NonEmptyStr
    name: str | None = None
    optional: bool | None = None


class FileKeySelector(Model):
    volumeName: NonEmptyStr
    path: NonEmptyStr
    key: NonEmptyStr
    optional: bool | None = None


class EnvVarSource(Model):
    fieldRef: ObjectFieldSelector | None = None
    resourceFieldRef: ResourceFieldSelector | None = None
    configMapKeyRef: KeySelector | None = None
    secretKeyRef: KeySelector | None = None
    fileKeyRef: FileKeySelector | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvVarSource:
        set_ = [n for n in type(self).model_fields if getattr(self, n) is not None]
        if len(set_) != 1:
            raise invalid(
                "exactly one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef, fileKeyRef must be set"
                + (f", got {' and '.join(set_)}" if set_ else "")
            )
        return self


class EnvVar(Model):
    name: NonEmptyStr
    value: str | None = None
    valueFrom: EnvVarSource | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvVar:
        if self.value is not None and self.value != "" and self.valueFrom is not None:
            raise invalid("may not have both value and valueFrom", ["valueFrom"])
        return self


class ConfigMapEnvSource(Model):
    name: str | None = None
    optional: bool | None = None


class EnvFromSource(Model):
    prefix: str | None = None
    configMapRef: ConfigMapEnvSource | None = None
    secretRef: ConfigMapEnvSource | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvFromSource:
        if (self.configMapRef is None) == (self.secretRef is None):
            raise invalid("exactly one of configMapRef or secretRef must be set")
        return self


class ContainerPort(Model):
    containerPort: Port
    name: str | None = None
    protocol: Protocol = "TCP"
    hostPort: PortOrZero | None = None
    hostIP: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _is_iana_svc_name(value):
            raise invalid(
                f'invalid port name "{value}": must be at most 15 lowercase letters, digits or "-", '
                "with at least one letter"
            )
        return value


_IANA = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _is_iana_svc_name(value: str) -> bool:
    return (
        len(value) <= 15
        and bool(_IANA.match(value))
        and "--" not in value
        and any(c.isalpha() for c in value)
    )


class ResourceClaim(Model):
    name: NonEmptyStr
    request: str | None = None


class ResourceRequirements(Model):
    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None
    claims: list[ResourceClaim] | None = None


class HTTPHeader(Model):
    name: NonEmptyStr
    value: str


class ExecAction(Model):
    command: list[str] | None = None


class HTTPGetAction(Model):
    port: PortRef
    path: str | None = None
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    httpHeaders: list[HTTPHeader] | None = None


class TCPSocketAction(Model):
    port: PortRef
    host: str | None = None


class GRPCAction(Model):
    port: Port
    service: str | None = None


class SleepAction(Model):
    seconds: Int64


_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


class Probe(Model):
    """A readiness/liveness/startup probe, with Kubernetes' defaults for its timing."""

    exec: ExecAction | None = None
    httpGet: HTTPGetAction | None = None
    tcpSocket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initialDelaySeconds: NonNegInt32 | None = None
    timeoutSeconds: PositiveInt32 = 1
    periodSeconds: PositiveInt32 = 10
    successThreshold: PositiveInt32 = 1
    failureThreshold: PositiveInt32 = 3
    terminationGracePeriodSeconds: PositiveInt32 | None = None

    @model_validator(mode="after")
    def _handler(self) -> Probe:
        set_ = [h for h in _HANDLERS if getattr(self, h) is not None]
        if not set_:
            raise invalid("must specify a handler type: one of exec, httpGet, tcpSocket, grpc")
        if len(set_) > 1:
            raise invalid(f"may not specify more than one handler type, got {' and '.join(set_)}", [set_[1]])
        return self


class LifecycleHandler(Model):
    exec: ExecAction | None = None
    httpGet: HTTPGetAction | None = None
    tcpSocket: TCPSocketAction | None = None
    sleep: SleepAction | None = None

    @model_validator(mode="after")
    def _handler(self) -> LifecycleHandler:
        set_ = [h for h in ("exec", "httpGet", "tcpSocket", "sleep") if getattr(self, h) is not None]
        if len(set_) != 1:
            raise invalid("must specify exactly one handler type: one of exec, httpGet, tcpSocket, sleep")
        return self


class Lifecycle(Model):
    postStart: LifecycleHandler | None = None
    preStop: LifecycleHandler | None = None
    stopSignal: str | None = None


class VolumeMount(Model):
    name: NonEmptyStr
    mountPath: NonEmptyStr
    readOnly: bool | None = None
    subPath: str | None = None
    subPathExpr: str | None = None
    mountPropagation: Literal["None", "HostToContainer", "Bidirectional"] | None = None
    recursiveReadOnly: Literal["Disabled", "IfPossible", "Enabled"] | None = None


class VolumeDevice(Model):
    name: NonEmptyStr
    devicePath: NonEmptyStr


class Capabilities(Model):
    add: list[str] | None = None
    drop: list[str] | None = None


class SeccompProfile(Model):
    type: Literal["Unconfined", "RuntimeDefault", "Localhost"]
    localhostProfile: str | None = None


class SELinuxOptions(Model):
    user: str | None = None
    role: str | None = None
    type: str | None = None
    level: str | None = None


class AppArmorProfile(Model):
    type: Literal["Unconfined", "RuntimeDefault", "Localhost"]
    localhostProfile: str | None = None


class SecurityContext(Model):
    capabilities: Capabilities | None = None
    privileged: bool | None = None
    seLinuxOptions: SELinuxOptions | None = None
    windowsOptions: dict[str, Any] | None = None
    runAsUser: Int64 | None = None
    runAsGroup: Int64 | None = None
    runAsNonRoot: bool | None = None
    readOnlyRootFilesystem: bool | None = None
    allowPrivilegeEscalation: bool | None = None
    procMount: Literal["Default", "Unmasked"] | None = None
    seccompProfile: SeccompProfile | None = None
    appArmorProfile: AppArmorProfile | None = None


class ContainerResizePolicy(Model):
    resourceName: NonEmptyStr
    restartPolicy: Literal["NotRequired", "RestartContainer"]


class Container(Model):
    """A container. ``image`` is required (as in Kubernetes) but the local runtime runs ``command``."""

    name: DNS1123Label
    image: NonEmptyStr
    command: list[str] | None = None
    args: list[str] | None = None
    workingDir: str | None = None
    ports: list[ContainerPort] | None = None
    envFrom: list[EnvFromSource] | None = None
    env: list[EnvVar] | None = None
    resources: ResourceRequirements | None = None
    resizePolicy: list[ContainerResizePolicy] | None = None
    restartPolicy: Literal["Always"] | None = None
    volumeMounts: list[VolumeMount] | None = None
    volumeDevices: list[VolumeDevice] | None = None
    livenessProbe: Probe | None = None
    readinessProbe: Probe | None = None
    startupProbe: Probe | None = None
    lifecycle: Lifecycle | None = None
    terminationMessagePath: str = "/dev/termination-log"
    terminationMessagePolicy: Literal["File", "FallbackToLogsOnError"] = "File"
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = None
    securityContext: SecurityContext | None = None
    stdin: bool | None = None
    stdinOnce: bool | None = None
    tty: bool | None = None

    @model_validator(mode="after")
    def _defaults(self) -> Container:
        if self.imagePullPolicy is None:
            # Kubernetes: Always for ":latest" or an untagged image, IfNotPresent otherwise.
            last = self.image.rsplit("/", 1)[-1]
            tagged = ":" in last and not last.endswith(":latest")
            self.imagePullPolicy = "IfNotPresent" if tagged or "@" in last else "Always"
        seen: dict[str, int] = {}
        for i, port in enumerate(self.ports or []):
            if port.name is not None:
                if port.name in seen:
                    raise invalid(f'duplicate port name "{port.name}"', ["ports", i, "name"])
                seen[port.name] = i
        for probe_name in ("livenessProbe", "startupProbe"):
            probe = getattr(self, probe_name)
            if probe is not None and probe.successThreshold != 1:
                raise invalid("must be 1 for liveness and startup probes", [probe_name, "successThreshold"])
        return self


# ---------------------------------------------------------------------------------------------
# volumes


class KeyToPath(Model):
    key: NonEmptyStr
    path: NonEmptyStr
    mode: FileMode | None = None


class ConfigMapVolumeSource(Model):
    name: str | None = None
    items: list[KeyToPath] | None = None
    defaultMode: FileMode = 0o644
    optional: bool | None = None


class SecretVolumeSource(Model):
    secretName: str | None = None
    items: list[KeyToPath] | None = None
    defaultMode: FileMode = 0o644
    optional: bool | None = None


class EmptyDirVolumeSource(Model):
    medium: Literal["", "Memory", "HugePages"] | None = None
    sizeLimit: Quantity | None = None


class HostPathVolumeSource(Model):
    path: NonEmptyStr
    type: (
        Literal[
            "",
            "DirectoryOrCreate",
            "Directory",
            "FileOrCreate",
            "File",
            "Socket",
            "CharDevice",
            "BlockDevice",
        ]
        | None
    ) = None


class PersistentVolumeClaimVolumeSource(Model):
    claimName: NonEmptyStr
    readOnly: bool | None = None


class DownwardAPIVolumeFile(Model):
    path: NonEmptyStr
    fieldRef: ObjectFieldSelector | None = None
    resourceFieldRef: ResourceFieldSelector | None = None
    mode: FileMode | None = None


class DownwardAPIVolumeSource(Model):
    items: list[DownwardAPIVolumeFile] | None = None
    defaultMode: FileMode = 0o644


class ServiceAccountTokenProjection(Model):
    path: NonEmptyStr
    audience: str | None = None
    expirationSeconds: Int64 = 3600


class VolumeProjection(Model):
    configMap: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    downwardAPI: DownwardAPIVolumeSource | None = None
    serviceAccountToken: ServiceAccountTokenProjection | None = None
    clusterTrustBundle: dict[str, Any] | None = None
    podCertificate: dict[str, Any] | None = None


class ProjectedVolumeSource(Model):
    sources: list[VolumeProjection] | None = None
    defaultMode: FileMode = 0o644


_VOLUME_SOURCES = (
    "emptyDir",
    "configMap",
    "secret",
    "hostPath",
    "persistentVolumeClaim",
    "projected",
    "downwardAPI",
    "csi",
    "ephemeral",
    "nfs",
    "image",
)


class Volume(Model):
    name: DNS1123Label
    emptyDir: EmptyDirVolumeSource | None = None
    configMap: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    hostPath: HostPathVolumeSource | None = None
    persistentVolumeClaim: PersistentVolumeClaimVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    downwardAPI: DownwardAPIVolumeSource | None = None
    # Kinds of storage the local runtime cannot provide; accepted so real manifests apply.
    csi: dict[str, Any] | None = None
    ephemeral: dict[str, Any] | None = None
    nfs: dict[str, Any] | None = None
    image: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> Volume:
        set_ = [s for s in _VOLUME_SOURCES if getattr(self, s) is not None]
        if len(set_) > 1:
            raise invalid(f"may not specify more than one volume type, got {' and '.join(set_)}", [set_[1]])
        if not set_:
            # Kubernetes defaults a volume with no source to an emptyDir.
            self.emptyDir = EmptyDirVolumeSource()
        return self


# ---------------------------------------------------------------------------------------------
# pods


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: Int64 | None = None


class TopologySpreadConstraint(Model):
    maxSkew: PositiveInt32
    topologyKey: NonEmptyStr
    whenUnsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    labelSelector: LabelSelector | None = None
    minDomains: PositiveInt32 | None = None
    nodeAffinityPolicy: Literal["Honor", "Ignore"] | None = None
    nodeTaintsPolicy: Literal["Honor", "Ignore"] | None = None
    matchLabelKeys: list[str] | None = None


class PodDNSConfigOption(Model):
    name: str | None = None
    value: str | None = None


class PodDNSConfig(Model):
    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[PodDNSConfigOption] | None = None


class HostAlias(Model):
    ip: NonEmptyStr
    hostnames: list[str] | None = None


class Sysctl(Model):
    name: NonEmptyStr
    value: str


class PodSecurityContext(Model):
    seLinuxOptions: SELinuxOptions | None = None
    windowsOptions: dict[str, Any] | None = None
    runAsUser: Int64 | None = None
    runAsGroup: Int64 | None = None
    runAsNonRoot: bool | None = None
    supplementalGroups: list[Int64] | None = None
    supplementalGroupsPolicy: Literal["Merge", "Strict"] | None = None
    fsGroup: Int64 | None = None
    fsGroupChangePolicy: Literal["OnRootMismatch", "Always"] | None = None
    sysctls: list[Sysctl] | None = None
    seccompProfile: SeccompProfile | None = None
    appArmorProfile: AppArmorProfile | None = None
    seLinuxChangePolicy: str | None = None


class PodReadinessGate(Model):
    conditionType: NonEmptyStr


class PodOS(Model):
    name: Literal["linux", "windows"]


class PodSchedulingGate(Model):
    name: NonEmptyStr


class PodSpec(Model):
    """A pod's spec with Kubernetes' defaults (restartPolicy Always, 30s grace, ClusterFirst DNS)."""

    containers: list[Container] = Field(min_length=1)
    initContainers: list[Container] | None = None
    ephemeralContainers: list[dict[str, Any]] | None = None
    volumes: list[Volume] | None = None
    restartPolicy: Literal["Always", "OnFailure", "Never"] = "Always"
    terminationGracePeriodSeconds: NonNegInt = 30
    activeDeadlineSeconds: PositiveInt | None = None
    dnsPolicy: Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] = "ClusterFirst"
    dnsConfig: PodDNSConfig | None = None
    nodeSelector: dict[str, str] | None = None
    serviceAccountName: str | None = None
    serviceAccount: str | None = None
    automountServiceAccountToken: bool | None = None
    nodeName: str | None = None
    hostNetwork: bool | None = None
    hostPID: bool | None = None
    hostIPC: bool | None = None
    hostUsers: bool | None = None
    shareProcessNamespace: bool | None = None
    securityContext: PodSecurityContext = Field(default_factory=PodSecurityContext)
    imagePullSecrets: list[LocalObjectReference] | None = None
    hostname: str | None = None
    subdomain: str | None = None
    setHostnameAsFQDN: bool | None = None
    affinity: dict[str, Any] | None = None
    schedulerName: str = "default-scheduler"
    tolerations: list[Toleration] | None = None
    hostAliases: list[HostAlias] | None = None
    priorityClassName: str | None = None
    priority: Int32 | None = None
    preemptionPolicy: Literal["PreemptLowerPriority", "Never"] | None = None
    readinessGates: list[PodReadinessGate] | None = None
    runtimeClassName: str | None = None
    enableServiceLinks: bool | None = None
    overhead: dict[str, Quantity] | None = None
    topologySpreadConstraints: list[TopologySpreadConstraint] | None = None
    os: PodOS | None = None
    schedulingGates: list[PodSchedulingGate] | None = None
    resourceClaims: list[dict[str, Any]] | None = None
    resources: ResourceRequirements | None = None

    @model_validator(mode="after")
    def _check(self) -> PodSpec:
        names: dict[str, tuple[str, int]] = {}
        for group in ("initContainers", "containers"):
            for i, container in enumerate(getattr(self, group) or []):
                if container.name in names:
                    raise invalid(f'duplicate container name "{container.name}"', [group, i, "name"])
                names[container.name] = (group, i)
        volumes: set[str] = set()
        for i, volume in enumerate(self.volumes or []):
            if volume.name in volumes:
                raise invalid(f'duplicate volume name "{volume.name}"', ["volumes", i, "name"])
            volumes.add(volume.name)
        for group in ("initContainers", "containers"):
            for i, container in enumerate(getattr(self, group) or []):
                for j, mount in enumerate(container.volumeMounts or []):
                    if mount.name not in volumes:
                        raise invalid(
                            f'volume "{mount.name}" is not defined in spec.volumes',
                            [group, i, "volumeMounts", j, "name"],
                        )
        if self.serviceAccountName is None and self.serviceAccount is not None:
            self.serviceAccountName = self.serviceAccount
        return self


class PodTemplateSpec(Model):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec


class ContainerStateWaiting(Model):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(Model):
    startedAt: str | None = None


class ContainerStateTerminated(Model):
    exitCode: Int32
    signal: Int32 | None = None
    reason: str | None = None
    message: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    containerID: str | None = None


class ContainerState(Model):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(Model):
    name: str
    state: ContainerState | None = None
    lastState: ContainerState | None = None
    ready: bool = False
    restartCount: Int32 = 0
    image: str = ""
    imageID: str = ""
    containerID: str | None = None
    started: bool | None = None
    allocatedResources: dict[str, Quantity] | None = None
    resources: ResourceRequirements | None = None
    volumeMounts: list[dict[str, Any]] | None = None
    user: dict[str, Any] | None = None
    allocatedResourcesStatus: list[dict[str, Any]] | None = None
    stopSignal: str | None = None


class PodIP(Model):
    ip: str


class PodStatus(Model):
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] | None = None
    conditions: list[Condition] | None = None
    message: str | None = None
    reason: str | None = None
    nominatedNodeName: str | None = None
    hostIP: str | None = None
    hostIPs: list[PodIP] | None = None
    podIP: str | None = None
    podIPs: list[PodIP] | None = None
    startTime: str | None = None
    initContainerStatuses: list[ContainerStatus] | None = None
    containerStatuses: list[ContainerStatus] | None = None
    ephemeralContainerStatuses: list[ContainerStatus] | None = None
    qosClass: Literal["Guaranteed", "Burstable", "BestEffort"] | None = None
    resize: str | None = None
    resourceClaimStatuses: list[dict[str, Any]] | None = None
    observedGeneration: Int64 | None = None


class TypeMeta(Model):
    apiVersion: str
    kind: str


class Pod(TypeMeta):
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus | None = None


# ---------------------------------------------------------------------------------------------
# services


class ServicePort(Model):
    port: Port
    name: str | None = None
    protocol: Protocol = "TCP"
    appProtocol: str | None = None
    targetPort: PortRef | None = None
    nodePort: PortOrZero | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and value != "":
            why = dns1123_label_problem(value)
            if why is not None:
                raise invalid(f'invalid port name "{value}": {why}')
        return value

    @model_validator(mode="after")
    def _default_target(self) -> ServicePort:
        if self.targetPort is None:
            self.targetPort = self.port
        return self


class SessionAffinityConfig(Model):
    clientIP: dict[str, Any] | None = None


class ServiceSpec(Model):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    selector: dict[str, str] | None = None
    ports: list[ServicePort] | None = None
    clusterIP: str | None = None
    clusterIPs: list[str] | None = None
    externalIPs: list[str] | None = None
    externalName: str | None = None
    sessionAffinity: Literal["None", "ClientIP"] = "None"
    sessionAffinityConfig: SessionAffinityConfig | None = None
    loadBalancerIP: str | None = None
    loadBalancerSourceRanges: list[str] | None = None
    loadBalancerClass: str | None = None
    externalTrafficPolicy: Literal["Cluster", "Local"] | None = None
    internalTrafficPolicy: Literal["Cluster", "Local"] | None = None
    healthCheckNodePort: Int32 | None = None
    publishNotReadyAddresses: bool | None = None
    ipFamilies: list[Literal["IPv4", "IPv6"]] | None = None
    ipFamilyPolicy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = None
    allocateLoadBalancerNodePorts: bool | None = None
    trafficDistribution: str | None = None

    _strings = field_validator("selector", mode="before")(_maybe_string_map)

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_labels(value)

    @model_validator(mode="after")
    def _check(self) -> ServiceSpec:
        ports = self.ports or []
        if self.type == "ExternalName":
            if not self.externalName:
                raise invalid("required when type is ExternalName", ["externalName"])
        else:
            if not ports and self.clusterIP != "None":
                raise invalid("at least one port is required", ["ports"])
            if self.internalTrafficPolicy is None:
                self.internalTrafficPolicy = "Cluster"
        if self.type in ("NodePort", "LoadBalancer") and self.externalTrafficPolicy is None:
            self.externalTrafficPolicy = "Cluster"
        names: set[str] = set()
        for i, port in enumerate(ports):
            if len(ports) > 1 and not port.name:
                raise invalid("name is required when a service has more than one port", ["ports", i, "name"])
            if port.name:
                if port.name in names:
                    raise invalid(f'duplicate port name "{port.name}"', ["ports", i, "name"])
                names.add(port.name)
            if port.nodePort and self.type not in ("NodePort", "LoadBalancer"):
                raise invalid("may not be used when type is " + self.type, ["ports", i, "nodePort"])
        return self


class LoadBalancerIngress(Model):
    ip: str | None = None
    hostname: str | None = None
    ipMode: str | None = None
    ports: list[dict[str, Any]] | None = None


class LoadBalancerStatus(Model):
    ingress: list[LoadBalancerIngress] | None = None


class ServiceStatus(Model):
    loadBalancer: LoadBalancerStatus | None = None
    conditions: list[Condition] | None = None


class Service(TypeMeta):
    metadata: ObjectMeta
    spec: ServiceSpec
    status: ServiceStatus | None = None


# ---------------------------------------------------------------------------------------------
# endpoints


class EndpointAddress(Model):
    ip: NonEmptyStr
    hostname: str | None = None
    nodeName: str | None = None
    targetRef: ObjectReference | None = None


class EndpointPort(Model):
    port: Port
    name: str | None = None
    protocol: Protocol = "TCP"
    appProtocol: str | None = None


class EndpointSubset(Model):
    addresses: list[EndpointAddress] | None = None
    notReadyAddresses: list[EndpointAddress] | None = None
    ports: list[EndpointPort] | None = None


class Endpoints(TypeMeta):
    metadata: ObjectMeta
    subsets: list[EndpointSubset] | None = None


# ---------------------------------------------------------------------------------------------
# namespaces, config, identity


class NamespaceSpec(Model):
    finalizers: list[str] | None = None


class NamespaceStatus(Model):
    phase: Literal["Active", "Terminating"] | None = None
    conditions: list[Condition] | None = None


class Namespace(TypeMeta):
    metadata: ObjectMeta
    spec: NamespaceSpec | None = None
    status: NamespaceStatus | None = None


_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _config_keys(value: dict[str, str] | None) -> dict[str, str] | None:
    for key in value or {}:
        if len(key) > 253 or not _CONFIG_KEY.match(key) or key in (".", ".."):
            raise invalid(f'invalid key "{key}": must consist of alphanumerics, "-", "_" or "."', [key])
    return value


class ConfigMap(TypeMeta):
    metadata: ObjectMeta
    data: dict[str, str] | None = None
    binaryData: dict[str, str] | None = None
    immutable: bool | None = None

    _keys = field_validator("data", "binaryData")(_config_keys)
    _strings = field_validator("data", "binaryData", mode="before")(_maybe_string_map)


class Secret(TypeMeta):
    """A Secret; ``stringData`` is folded into base64 ``data`` as the API server does."""

    metadata: ObjectMeta
    data: dict[str, str] | None = None
    stringData: dict[str, str] | None = None
    type: str = "Opaque"
    immutable: bool | None = None

    _keys = field_validator("data", "stringData")(_config_keys)
    _strings = field_validator("data", "stringData", mode="before")(_maybe_string_map)

    @field_validator("data")
    @classmethod
    def _base64(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, item in (value or {}).items():
            try:
                base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                raise invalid("expected base64-encoded data (use stringData for plain text)", [key]) from None
        return value

    @model_validator(mode="after")
    def _fold(self) -> Secret:
        if self.stringData:
            data = dict(self.data or {})
            for key, text in self.stringData.items():
                data[key] = base64.b64encode(text.encode()).decode()
            self.data = data
            self.stringData = None
        return self


class ServiceAccount(TypeMeta):
    metadata: ObjectMeta
    secrets: list[ObjectReference] | None = None
    imagePullSecrets: list[LocalObjectReference] | None = None
    automountServiceAccountToken: bool | None = None


# ---------------------------------------------------------------------------------------------
# events


class EventSource(Model):
    component: str | None = None
    host: str | None = None


class EventSeries(Model):
    count: Int32 | None = None
    lastObservedTime: str | None = None


class Event(TypeMeta):
    """core/v1 Event: what a controller or the runtime did to an object, and why.

    Events are reports, not desired state: controllers write them best effort, repeated ones
    aggregate by ``count``, and the cluster deletes them after a TTL.
    """

    metadata: ObjectMeta
    involvedObject: ObjectReference
    reason: str | None = None
    message: str | None = None
    source: EventSource | None = None
    firstTimestamp: str | None = None
    lastTimestamp: str | None = None
    count: Int32 | None = None
    type: str | None = None
    eventTime: str | None = None
    series: EventSeries | None = None
    action: str | None = None
    related: ObjectReference | None = None
    reportingComponent: str | None = None
    reportingInstance: str | None = None


__all__ = [
    "ConfigMap",
    "Container",
    "Endpoints",
    "Event",
    "Namespace",
    "Pod",
    "PodSpec",
    "PodTemplateSpec",
    "Secret",
    "Service",
    "ServiceAccount",
    "TypeMeta",
]
