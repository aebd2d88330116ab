"""Istio's security.istio.io kinds: AuthorizationPolicy, PeerAuthentication, RequestAuthentication.

Fields and rules follow Istio 1.30's CRD schemas (v1 and v1beta1 share one schema).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from meshpilot.api.istio_common import IstioObject, PolicyTargetReference, WorkloadSelector, one_target
from meshpilot.api.types import Duration1ms, Model, invalid


class Source(Model):
    principals: list[str] | None = None
    notPrincipals: list[str] | None = None
    requestPrincipals: list[str] | None = None
    notRequestPrincipals: list[str] | None = None
    namespaces: list[str] | None = None
    notNamespaces: list[str] | None = None
    serviceAccounts: list[str] | None = Field(default=None, max_length=16)
    notServiceAccounts: list[str] | None = Field(default=None, max_length=16)
    ipBlocks: list[str] | None = None
    notIpBlocks: list[str] | None = None
    remoteIpBlocks: list[str] | None = None
    notRemoteIpBlocks: list[str] | None = None
    trustDomains: list[str] | None = None
    notTrustDomains: list[str] | None = None

    @field_validator("serviceAccounts", "notServiceAccounts")
    @classmethod
    def _length(cls, value: list[str] | None) -> list[str] | None:
        for i, item in enumerate(value or []):
            if len(item) > 320:
                raise invalid("service account must be at most 320 characters", [i])
        return value

    @model_validator(mode="after")
    def _exclusive(self) -> Source:
        if self.serviceAccounts is not None or self.notServiceAccounts is not None:
            clash = [
                n
                for n in ("principals", "notPrincipals", "namespaces", "notNamespaces")
                if getattr(self, n) is not None
            ]
            if clash:
                raise invalid("cannot set serviceAccounts with namespaces or principals", [clash[0]])
        return self


class Operation(Model):
    hosts: list[str] | None = None
    notHosts: list[str] | None = None
    ports: list[str] | None = None
    notPorts: list[str] | None = None
    methods: list[str] | None = None
    notMethods: list[str] | None = None
    paths: list[str] | None = None
    notPaths: list[str] | None = None


class RuleFrom(Model):
    source: Source | None = None


class RuleTo(Model):
    operation: Operation | None = None


class Condition(Model):
    key: str
    values: list[str] | None = None
    notValues: list[str] | None = None


class Rule(Model):
    from_: list[RuleFrom] | None = Field(default=None, alias="from", max_length=512)
    to: list[RuleTo] | None = None
    when: list[Condition] | None = None


class ExtensionProvider(Model):
    name: str | None = None


class AuthorizationPolicySpec(Model):
    selector: WorkloadSelector | None = None
    targetRef: PolicyTargetReference | None = None
    targetRefs: list[PolicyTargetReference] | None = Field(default=None, max_length=16)
    rules: list[Rule] | None = Field(default=None, max_length=512)
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] | None = None
    provider: ExtensionProvider | None = None

    @model_validator(mode="after")
    def _check(self) -> AuthorizationPolicySpec:
        one_target(self)
        return self


class AuthorizationPolicy(IstioObject):
    """An authorization policy; with no ``spec`` (or an empty one) it allows nothing."""

    spec: AuthorizationPolicySpec | None = None


MTLSMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class MutualTLS(Model):
    mode: MTLSMode | None = None


class PeerAuthenticationSpec(Model):
    selector: WorkloadSelector | None = None
    mtls: MutualTLS | None = None
    portLevelMtls: dict[str, MutualTLS] | None = Field(default=None, min_length=1)

    @field_validator("portLevelMtls")
    @classmethod
    def _ports(cls, value: dict[str, MutualTLS] | None) -> dict[str, MutualTLS] | None:
        for key in value or {}:
            if not (key.isdigit() and 0 < int(key) <= 65535):
                raise invalid(f'port must be between 1-65535, got "{key}"', [key])
        return value

    @model_validator(mode="after")
    def _check(self) -> PeerAuthenticationSpec:
        if self.portLevelMtls is not None and not (self.selector and self.selector.matchLabels):
            raise invalid("portLevelMtls requires a selector with matchLabels", ["portLevelMtls"])
        return self


class PeerAuthentication(IstioObject):
    spec: PeerAuthenticationSpec | None = None


class JWTHeader(Model):
    name: str = Field(min_length=1)
    prefix: str | None = None


class ClaimToHeader(Model):
    header: str = Field(min_length=1, pattern=r"^[-_A-Za-z0-9]+$")
    claim: str = Field(min_length=1)


def _url(value: str | None) -> str | None:
    if value is not None and not (value.startswith("http://") or value.startswith("https://")):
        raise invalid("url must have scheme http:// or https://")
    return value


def _non_empty_items(value: list[str] | None) -> list[str] | None:
    for i, item in enumerate(value or []):
        if not item:
            raise invalid("must not be empty", [i])
    return value


class JWTRule(Model):
    issuer: str | None = Field(default=None, min_length=1)
    audiences: list[str] | None = None
    jwksUri: str | None = Field(default=None, min_length=1, max_length=2048)
    jwks_uri: str | None = Field(default=None, min_length=1, max_length=2048)
    jwks: str | None = None
    fromHeaders: list[JWTHeader] | None = None
    fromParams: list[str] | None = None
    fromCookies: list[str] | None = None
    outputPayloadToHeader: str | None = None
    forwardOriginalToken: bool | None = None
    outputClaimToHeaders: list[ClaimToHeader] | None = None
    spaceDelimitedClaims: list[str] | None = Field(default=None, max_length=64)
    timeout: Duration1ms | None = None

    _urls = field_validator("jwksUri", "jwks_uri")(_url)
    _items = field_validator("audiences", "fromParams", "fromCookies", "spaceDelimitedClaims")(
        _non_empty_items
    )

    @model_validator(mode="after")
    def _one(self) -> JWTRule:
        present = [n for n in ("jwksUri", "jwks_uri", "jwks") if getattr(self, n) is not None]
        if len(present) > 1:
            raise invalid("only one of jwks or jwksUri can be set", [present[1]])
        return self


class RequestAuthenticationSpec(Model):
    selector: WorkloadSelector | None = None
    targetRef: PolicyTargetReference | None = None
    targetRefs: list[PolicyTargetReference] | None = Field(default=None, max_length=16)
    jwtRules: list[JWTRule] | None = Field(default=None, max_length=4096)

    @model_validator(mode="after")
    def _check(self) -> RequestAuthenticationSpec:
        one_target(self)
        return self


class RequestAuthentication(IstioObject):
    spec: RequestAuthenticationSpec | None = None
