"""Multi-document YAML with a line number for every field.

Users fix what we report in their editor, so every error must carry a line. PyYAML's composer
keeps a mark on every node; we build the plain JSON-like objects ourselves from the node tree and
record, for each field path, the line of its key (or of the list item). Building the objects here,
rather than with ``yaml.safe_load``, also lets us do what Kubernetes' YAML reader does: keep
timestamps as strings, turn non-string keys into strings, and refuse duplicate keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from meshpilot.api.errors import FieldError, InvalidObject, Path, PathElem, parse_path


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver: Kubernetes keeps `2024-01-01T00:00:00Z` a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_MAX_DEPTH = 200


@dataclass
class Document:
    """One YAML document: the object, where it came from, and the line of each of its fields."""

    obj: Any
    filename: str
    line: int
    index: int = 0
    lines: dict[Path, int] = field(default_factory=dict, repr=False)

    def line_of(self, path: str | Sequence[PathElem]) -> int:
        """Line of ``path`` (``"spec.http[0].weight"`` or a tuple); missing fields give their parent's line."""
        elems: tuple[PathElem, ...] = parse_path(path) if isinstance(path, str) else tuple(path)
        while elems:
            found = self.lines.get(elems)
            if found is not None:
                return found
            elems = elems[:-1]
        return self.line

    def error(self, path: Sequence[PathElem], message: str) -> FieldError:
        """A ``FieldError`` located in this document."""
        return FieldError(message, tuple(path), self.filename, self.line_of(path))


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.constructor = SafeConstructor()
        self.lines: dict[Path, int] = {}
        self.errors: list[FieldError] = []

    def build(self, node: Node, path: Path, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise _TooDeep(node)
        if isinstance(node, ScalarNode):
            return self.constructor.construct_object(node, deep=True)
        if isinstance(node, SequenceNode):
            out: list[Any] = []
            for i, item in enumerate(node.value):
                self.lines[(*path, i)] = item.start_mark.line + 1
                out.append(self.build(item, (*path, i), depth + 1))
            return out
        if isinstance(node, MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in self._entries(node):
                raw_key = self.build(key_node, path, depth + 1)
                key = _key_text(raw_key)
                line = key_node.start_mark.line + 1
                if key in result:
                    self.errors.append(
                        FieldError(f'duplicate key "{key}"', (*path, key), self.filename, line)
                    )
                    continue
                self.lines[(*path, key)] = line
                result[key] = self.build(value_node, (*path, key), depth + 1)
            return result
        raise _TooDeep(node)  # pragma: no cover - the composer yields only these three

    def _entries(self, node: MappingNode) -> list[tuple[Node, Node]]:
        """Mapping entries with YAML merge keys (``<<: *base``) expanded, explicit keys winning."""
        merged: list[tuple[Node, Node]] = []
        own: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for src in sources:
                    if isinstance(src, MappingNode):
                        merged.extend(self._entries(src))
            else:
                own.append((key_node, value_node))
        if not merged:
            return own
        own_keys = {k.value for k, _ in own if isinstance(k, ScalarNode)}
        seen: set[Any] = set()
        out: list[tuple[Node, Node]] = []
        for key_node, value_node in merged:
            if isinstance(key_node, ScalarNode) and (key_node.value in own_keys or key_node.value in seen):
                continue
            seen.add(key_node.value)
            out.append((key_node, value_node))
        return out + own


class _TooDeep(Exception):
    def __init__(self, node: Node) -> None:
        self.node = node


def _key_text(key: Any) -> str:
    """Kubernetes' YAML-to-JSON step turns every key into a string (`80:` -> "80", `true:` -> "true")."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


def _yaml_error(exc: yaml.YAMLError, filename: str) -> FieldError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            ctx_line = f" started at line {exc.context_mark.line + 1}" if exc.context_mark else ""
            problem = f"{problem} ({exc.context}{ctx_line})"
        return FieldError(problem, (), filename, mark.line + 1 if mark else None)
    return FieldError(f"invalid YAML: {exc}", (), filename, None)


def load_documents(text: str, filename: str = "<stdin>") -> list[Document]:
    """Parse every document of a multi-document YAML (or JSON) text; empty documents are skipped.

    Raises ``InvalidObject`` for malformed YAML (``file:line: <what the parser said>``), duplicate
    keys, and documents that are not mappings.
    """
    loader = _Loader(text)
    docs: list[Document] = []
    errors: list[FieldError] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said there is one
                break
            start = node.start_mark.line + 1
            if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
                index += 1
                continue
            builder = _Builder(filename)
            try:
                obj = builder.build(node, ())
            except _TooDeep as deep:
                errors.append(
                    FieldError(
                        "document nests too deeply (a recursive alias?)",
                        (),
                        filename,
                        deep.node.start_mark.line + 1,
                    )
                )
                index += 1
                continue
            except yaml.YAMLError as exc:
                errors.append(_yaml_error(exc, filename))
                index += 1
                continue
            errors.extend(builder.errors)
            if not isinstance(obj, dict):
                what = "a list" if isinstance(obj, list) else f"the scalar {obj!r}"
                errors.append(
                    FieldError(
                        f"expected a Kubernetes object (a mapping with apiVersion and kind), got {what}",
                        (),
                        filename,
                        start,
                    )
                )
            else:
                docs.append(Document(obj, filename, start, index, builder.lines))
            index += 1
    except yaml.YAMLError as exc:
        errors.append(_yaml_error(exc, filename))
    finally:
        loader.dispose()
    if errors:
        raise InvalidObject(errors)
    return docs
