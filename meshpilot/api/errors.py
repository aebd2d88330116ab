"""Errors of the resource model.

Every error a user sees points at a place in their file: ``file:line: field.path: what is wrong``.
``FieldError`` carries those three parts separately so the API server can answer with a
Kubernetes ``Status`` (causes with ``field``) and the CLI can print one line per error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathElem = str | int
Path = tuple[PathElem, ...]

_IDENT = re.compile(r"^[A-Za-z_$@][A-Za-z0-9_$@-]*$")


def format_path(path: Sequence[PathElem]) -> str:
    """``("spec", "http", 0, "route")`` -> ``spec.http[0].route``; odd keys are quoted."""
    out: list[str] = []
    for elem in path:
        if isinstance(elem, int):
            out.append(f"[{elem}]")
        elif _IDENT.match(elem):
            out.append(f".{elem}" if out else elem)
        else:
            out.append(f'["{elem}"]')
    return "".join(out)


_TOKEN = re.compile(r'\.?([A-Za-z_$@][A-Za-z0-9_$@-]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


def parse_path(text: str) -> Path:
    """Inverse of :func:`format_path`; raises ``ValueError`` on text that is not a path."""
    out: list[PathElem] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"not a field path: {text!r}")
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(m.group(3).replace('\\"', '"'))
        pos = m.end()
    return tuple(out)


@dataclass(frozen=True)
class FieldError:
    """One problem in one document: where (file, line, field path) and what."""

    message: str
    path: Path = ()
    filename: str | None = None
    line: int | None = None

    @property
    def field(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        parts: list[str] = []
        if self.filename is not None:
            parts.append(f"{self.filename}:{self.line}" if self.line is not None else self.filename)
        if self.path:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class InvalidObject(ValueError):
    """One or more documents are invalid; ``errors`` lists every problem found, in file order."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class NotServed(LookupError):
    """The cluster has no resource for this apiVersion/kind (a CRD that is not installed, a typo)."""

    def __init__(self, api_version: str, kind: str, *, message: str | None = None) -> None:
        self.api_version = api_version
        self.kind = kind
        self.message = message or f"kind {kind} ({api_version}) is not served by this cluster"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message
