"""Istio's telemetry.istio.io Telemetry kind (v1 and v1alpha1 share one schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from meshpilot.api.istio_common import IstioObject, PolicyTargetReference, WorkloadSelector, one_target
from meshpilot.api.types import Duration1ms, Model, Percent, invalid, only_one_of


class ProviderRef(Model):
    name: str = Field(min_length=1)


WorkloadMode = Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"]


class TracingSelector(Model):
    mode: WorkloadMode | None = None


class Literal_(Model):
    value: str = Field(min_length=1)


class EnvironmentTag(Model):
    name: str = Field(min_length=1)
    defaultValue: str | None = None


class RequestHeaderTag(Model):
    name: str = Field(min_length=1)
    defaultValue: str | None = None


class Formatter(Model):
    value: str = Field(min_length=1)


class CustomTag(Model):
    literal: Literal_ | None = None
    environment: EnvironmentTag | None = None
    header: RequestHeaderTag | None = None
    formatter: Formatter | None = None

    @model_validator(mode="after")
    def _one(self) -> CustomTag:
        only_one_of(self, "literal", "environment", "header", "formatter")
        return self


class Tracing(Model):
    match: TracingSelector | None = None
    providers: list[ProviderRef] | None = None
    randomSamplingPercentage: Percent | None = None
    disableSpanReporting: bool | None = None
    customTags: dict[str, CustomTag] | None = None
    useRequestIdForTraceSampling: bool | None = None
    enableIstioTags: bool | None = None
    disableContextPropagation: bool | None = None


MetricName = Literal[
    "ALL_METRICS",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
]


class MetricSelector(Model):
    metric: MetricName | None = None
    customMetric: str | None = Field(default=None, min_length=1)
    mode: WorkloadMode | None = None

    @model_validator(mode="after")
    def _one(self) -> MetricSelector:
        only_one_of(self, "metric", "customMetric")
        return self


class TagOverride(Model):
    operation: Literal["UPSERT", "REMOVE"] | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TagOverride:
        if self.operation == "UPSERT" and not self.value:
            raise invalid("value must be set when operation is UPSERT", ["value"])
        if self.operation == "REMOVE" and self.value is not None:
            raise invalid("value must not be set when operation is REMOVE", ["value"])
        return self


class MetricsOverrides(Model):
    match: MetricSelector | None = None
    disabled: bool | None = None
    tagOverrides: dict[str, TagOverride] | None = None


class Metrics(Model):
    providers: list[ProviderRef] | None = None
    overrides: list[MetricsOverrides] | None = None
    reportingInterval: Duration1ms | None = None


class AccessLoggingFilter(Model):
    expression: str | None = None


class AccessLogging(Model):
    match: TracingSelector | None = None
    providers: list[ProviderRef] | None = None
    disabled: bool | None = None
    filter: AccessLoggingFilter | None = None


class TelemetrySpec(Model):
    selector: WorkloadSelector | None = None
    targetRef: PolicyTargetReference | None = None
    targetRefs: list[PolicyTargetReference] | None = Field(default=None, max_length=16)
    tracing: list[Tracing] | None = None
    metrics: list[Metrics] | None = None
    accessLogging: list[AccessLogging] | None = None

    @model_validator(mode="after")
    def _check(self) -> TelemetrySpec:
        one_target(self)
        return self


class Telemetry(IstioObject):
    spec: TelemetrySpec | None = None
