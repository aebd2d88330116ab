"""apps/v1 Deployment and ReplicaSet, and policy/v1 PodDisruptionBudget.

ReplicaSets are here because a Deployment's revision history (``rollout undo``) is kept in them,
as Kubernetes does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from meshpilot.api.core import PodTemplateSpec, TypeMeta
from meshpilot.api.meta import Condition, LabelSelector, ObjectMeta
from meshpilot.api.types import Int32, Int64, IntOrPercent, Model, NonNegInt32, invalid


class RollingUpdateDeployment(Model):
    maxUnavailable: IntOrPercent = "25%"
    maxSurge: IntOrPercent = "25%"

    @model_validator(mode="after")
    def _not_both_zero(self) -> RollingUpdateDeployment:
        if _is_zero(self.maxSurge) and _is_zero(self.maxUnavailable):
            raise invalid("may not be 0 when maxSurge is 0", ["maxUnavailable"])
        return self


def _is_zero(value: int | str) -> bool:
    return value == 0 or value == "0%"


class DeploymentStrategy(Model):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rollingUpdate: RollingUpdateDeployment | None = None

    @model_validator(mode="after")
    def _defaults(self) -> DeploymentStrategy:
        if self.type == "Recreate" and self.rollingUpdate is not None:
            raise invalid("may not be specified when strategy type is 'Recreate'", ["rollingUpdate"])
        if self.type == "RollingUpdate" and self.rollingUpdate is None:
            self.rollingUpdate = RollingUpdateDeployment()
        return self


def check_selector(selector: LabelSelector, template: PodTemplateSpec) -> None:
    """Kubernetes: a non-empty selector that selects the pods of the template."""
    if selector.is_empty():
        raise invalid("empty selector is invalid for deployment", ["selector"])
    labels = template.metadata.labels or {}
    if not selector.matches(labels):
        raise invalid(
            "`selector` does not match template `labels`",
            ["template", "metadata", "labels"],
        )


class DeploymentSpec(Model):
    selector: LabelSelector
    template: PodTemplateSpec
    replicas: NonNegInt32 = 1
    strategy: DeploymentStrategy = Field(default_factory=DeploymentStrategy)
    minReadySeconds: NonNegInt32 = 0
    revisionHistoryLimit: NonNegInt32 = 10
    paused: bool | None = None
    progressDeadlineSeconds: NonNegInt32 = 600

    @model_validator(mode="after")
    def _check(self) -> DeploymentSpec:
        check_selector(self.selector, self.template)
        if self.template.spec.restartPolicy != "Always":
            raise invalid(
                f'unsupported value "{self.template.spec.restartPolicy}": a Deployment\'s pods must restart "Always"',
                ["template", "spec", "restartPolicy"],
            )
        if self.progressDeadlineSeconds <= self.minReadySeconds:
            raise invalid("must be greater than minReadySeconds", ["progressDeadlineSeconds"])
        return self


class DeploymentStatus(Model):
    observedGeneration: Int64 | None = None
    replicas: Int32 | None = None
    updatedReplicas: Int32 | None = None
    readyReplicas: Int32 | None = None
    availableReplicas: Int32 | None = None
    unavailableReplicas: Int32 | None = None
    terminatingReplicas: Int32 | None = None
    conditions: list[Condition] | None = None
    collisionCount: Int32 | None = None


class Deployment(TypeMeta):
    metadata: ObjectMeta
    spec: DeploymentSpec
    status: DeploymentStatus | None = None


class ReplicaSetSpec(Model):
    selector: LabelSelector
    template: PodTemplateSpec | None = None
    replicas: NonNegInt32 = 1
    minReadySeconds: NonNegInt32 = 0

    @model_validator(mode="after")
    def _check(self) -> ReplicaSetSpec:
        if self.template is not None:
            check_selector(self.selector, self.template)
        elif self.selector.is_empty():
            raise invalid("empty selector is invalid", ["selector"])
        return self


class ReplicaSetStatus(Model):
    replicas: Int32 = 0
    fullyLabeledReplicas: Int32 | None = None
    readyReplicas: Int32 | None = None
    availableReplicas: Int32 | None = None
    terminatingReplicas: Int32 | None = None
    observedGeneration: Int64 | None = None
    conditions: list[Condition] | None = None


class ReplicaSet(TypeMeta):
    metadata: ObjectMeta
    spec: ReplicaSetSpec
    status: ReplicaSetStatus | None = None


class PodDisruptionBudgetSpec(Model):
    minAvailable: IntOrPercent | None = None
    maxUnavailable: IntOrPercent | None = None
    selector: LabelSelector | None = None
    unhealthyPodEvictionPolicy: Literal["IfHealthyBudget", "AlwaysAllow"] | None = None

    @model_validator(mode="after")
    def _one(self) -> PodDisruptionBudgetSpec:
        if self.minAvailable is not None and self.maxUnavailable is not None:
            raise invalid("minAvailable and maxUnavailable cannot be both set", ["maxUnavailable"])
        return self


class PodDisruptionBudgetStatus(Model):
    observedGeneration: Int64 | None = None
    disruptedPods: dict[str, Any] | None = None
    disruptionsAllowed: Int32 = 0
    currentHealthy: Int32 = 0
    desiredHealthy: Int32 = 0
    expectedPods: Int32 = 0
    conditions: list[Condition] | None = None


class PodDisruptionBudget(TypeMeta):
    metadata: ObjectMeta
    spec: PodDisruptionBudgetSpec = Field(default_factory=PodDisruptionBudgetSpec)
    status: PodDisruptionBudgetStatus | None = None
