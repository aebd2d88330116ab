"""Which kinds this cluster serves, under which names, and the model that validates each.

One table answers every naming question the layers above ask: the API server maps URLs
(``/apis/{group}/{version}/{plural}``) to kinds, the CLI maps ``vs`` or
``virtualservices.networking.istio.io`` to a kind, and ``validate`` maps a document's
``apiVersion``/``kind`` to its model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from meshpilot.api.errors import NotServed

NameRule = Literal["subdomain", "label", "label1035"]


@dataclass(frozen=True)
class KindInfo:
    """A served kind: its group, versions, names, scope and model.

    ``versions`` lists every served version; objects are stored in ``storage_version`` (all of
    Istio's served versions of a kind share one schema, so no conversion is needed).
    """

    group: str
    versions: tuple[str, ...]
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    storage_version: str = ""
    model: type[BaseModel] | None = field(default=None, compare=False, repr=False)
    name_rule: NameRule = "subdomain"
    categories: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        """The preferred (storage) version."""
        return self.storage_version or self.versions[0]

    @property
    def api_version(self) -> str:
        """``apiVersion`` of the preferred version: ``v1``, ``apps/v1``, ``networking.istio.io/v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{v}" if self.group else v for v in self.versions)

    @property
    def key(self) -> tuple[str, str]:
        """The store's ``ResourceKey``: ``(group, plural)``."""
        return (self.group, self.plural)

    @property
    def resource(self) -> str:
        """``plural.group`` (``virtualservices.networking.istio.io``), or the plural for the core group."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_KINDS: list[KindInfo] = []


def register(info: KindInfo) -> KindInfo:
    """Add a kind to the table (done at import time by the model modules)."""
    for other in _KINDS:
        if other.group == info.group and (other.kind == info.kind or other.plural == info.plural):
            raise ValueError(f"kind {info.kind} of group {info.group!r} is registered twice")
    _KINDS.append(info)
    return info


def kinds() -> Iterator[KindInfo]:
    """Every served kind, in registration order."""
    _ensure_loaded()
    return iter(list(_KINDS))


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` -> ``("apps", "v1")``; ``v1`` -> ``("", "v1")``."""
    group, slash, version = api_version.rpartition("/")
    return (group, version) if slash else ("", api_version)


def lookup(api_version: str, kind: str) -> KindInfo:
    """The kind served at ``api_version``; raises ``NotServed`` for unknown kinds or versions."""
    _ensure_loaded()
    group, version = split_api_version(api_version)
    for info in _KINDS:
        if info.group == group and info.kind == kind and version in info.versions:
            return info
    raise NotServed(api_version, kind)


def by_plural(group: str, plural: str) -> KindInfo:
    """The kind whose REST resource is ``/apis/{group}/{version}/{plural}``; raises ``NotServed``."""
    _ensure_loaded()
    for info in _KINDS:
        if info.group == group and info.plural == plural:
            return info
    raise NotServed(
        group, plural, message=f'the server doesn\'t have a resource type "{plural}" in group "{group}"'
    )


def resolve(name: str) -> KindInfo:
    """Resolve a CLI resource name as kubectl does.

    Accepts a plural (``pods``), singular (``pod``), kind (``Pod``, case-insensitive), short name
    (``po``, ``vs``), ``plural.group`` (``virtualservices.networking.istio.io``) or
    ``plural.version.group`` (``deployments.v1.apps``). Core and apps kinds win a clash, as the
    built-in resources do in kubectl.
    """
    _ensure_loaded()
    text = name.strip().lower()
    if not text:
        raise NotServed("", name, message="a resource type is required")
    simple, _, rest = text.partition(".")
    for info in _KINDS:
        names = {info.plural, info.singular, info.kind.lower(), *info.short_names}
        if not rest and text in names:
            return info
        if rest and simple in names:
            if rest == info.group:
                return info
            version, _, group = rest.partition(".")
            if group == info.group and version in info.versions:
                return info
    raise NotServed("", name, message=f'the server doesn\'t have a resource type "{name}"')


_loaded = False


def _ensure_loaded() -> None:
    """Import the model modules, which register their kinds (kept lazy to avoid import cycles)."""
    global _loaded
    if not _loaded:
        _loaded = True
        from meshpilot.api import served as _served  # noqa: F401
