"""Validate and default objects; turn pydantic's errors into ``file:line: field.path: message``.

pydantic's own messages ("Input should be a valid integer, unable to parse string as an
integer") and locations (union tags, function names) are written for Python programmers. Users of
meshpilot write Kubernetes YAML, so each error is rewritten here in Kubernetes' vocabulary, at the
field path they typed, with the line it is on, and with a hint when an unknown field is a typo or
belongs somewhere else.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from meshpilot.api.documents import Document, load_documents
from meshpilot.api.errors import FieldError, InvalidObject, NotServed, Path, PathElem, format_path
from meshpilot.api.registry import KindInfo, lookup
from meshpilot.api.types import dns1123_label_problem, dns1123_subdomain_problem


def show(value: Any) -> str:
    """A value as the user wrote it, briefly: ``"ten"``, ``3``, ``true``, ``null``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 64 else text[:60] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_TYPE_WORDS = {
    "string_type": "string",
    "bool_type": "boolean (true or false)",
    "bool_parsing": "boolean (true or false)",
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "list_type": "list",
    "tuple_type": "list",
    "set_type": "list",
    "dict_type": "object (a mapping of fields)",
    "mapping_type": "object (a mapping of fields)",
    "model_type": "object (a mapping of fields)",
    "model_attributes_type": "object (a mapping of fields)",
    "dataclass_type": "object (a mapping of fields)",
}


def _unwrap(annotation: Any) -> Any:
    """A field's type seen through Optional and Annotated (list and dict are left to the caller)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None
            annotation = args[0]
        else:
            return annotation


def _model_at(root: type[BaseModel], path: Sequence[PathElem]) -> type[BaseModel] | None:
    current: Any = root
    for elem in path:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if origin in (list, dict):
            current = typing.get_args(current)[-1]
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        if not isinstance(elem, str):
            return None
        found = _field_by_name(current, elem)
        if found is None:
            return None
        current = found
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _child_models(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """("model" | "list" | "dict", model) when a field holds models, else None (scalars, free-form)."""
    inner = _unwrap(annotation)
    shape = "model"
    origin = typing.get_origin(inner)
    if origin in (list, dict):
        shape = "list" if origin is list else "dict"
        inner = _unwrap(typing.get_args(inner)[-1])
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return shape, inner
    return None


def _is_typed_map(annotation: Any) -> bool:
    """A map whose values have a type (``labels``, ``headers``), not a free-form ``dict[str, Any]``."""
    inner = _unwrap(annotation)
    return typing.get_origin(inner) is dict and typing.get_args(inner)[-1] is not Any


def prune_nulls(model: type[BaseModel], obj: Any) -> Any:
    """Drop fields whose value is ``null``, as Kubernetes does before validating.

    kube-apiserver prunes ``null`` fields and map values of custom resources that are not
    ``nullable`` (apiextensions-apiserver's PruneNonNullableNullsWithoutDefaults; Istio's nullable
    fields are optional anyway), and decoding a built-in kind turns ``null`` into "unset".
    Free-form fields (an EnvoyFilter patch ``value``, istiod's ``status``) keep their nulls.
    """
    if not isinstance(obj, dict):
        return obj
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if value is None and key in fields:
            continue
        info = fields.get(key)
        if info is not None and isinstance(value, dict) and _is_typed_map(info.annotation):
            value = {k: v for k, v in value.items() if v is not None}
        children = _child_models(info.annotation) if info is not None else None
        if children is not None:
            shape, child = children
            if shape == "model":
                value = prune_nulls(child, value)
            elif shape == "list" and isinstance(value, list):
                value = [prune_nulls(child, item) for item in value]
            elif shape == "dict" and isinstance(value, dict):
                value = {k: prune_nulls(child, item) for k, item in value.items()}
        out[key] = value
    return out


def _field_by_name(model: type[BaseModel], name: str) -> Any:
    for attr, info in model.model_fields.items():
        if (info.alias or attr) == name:
            return info.annotation
    return None


def _json_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or attr for attr, info in model.model_fields.items() if not info.exclude]


def _find_elsewhere(model: type[BaseModel], name: str, depth: int = 3) -> list[str]:
    """Relative paths below ``model`` where a field called ``name`` exists (breadth-first)."""
    out: list[str] = []
    frontier: list[tuple[str, type[BaseModel]]] = [("", model)]
    for _ in range(depth):
        nxt: list[tuple[str, type[BaseModel]]] = []
        for prefix, current in frontier:
            for attr, info in current.model_fields.items():
                json_name = info.alias or attr
                child = _unwrap(info.annotation)
                is_list = typing.get_origin(child) is list
                if typing.get_origin(child) in (list, dict):
                    child = _unwrap(typing.get_args(child)[-1])
                if not (isinstance(child, type) and issubclass(child, BaseModel)):
                    continue
                here = f"{prefix}.{json_name}" if prefix else json_name
                here_item = here + ("[]" if is_list else "")
                if name in _json_names(child):
                    out.append(f"{here_item}.{name}")
                nxt.append((here_item, child))
        if out:
            return out
        frontier = nxt
    return out


def _unknown_field_message(root: type[BaseModel], loc: Path) -> str:
    name = str(loc[-1])
    message = f'unknown field "{name}"'
    parent = _model_at(root, loc[:-1])
    if parent is None:
        return message
    known = _json_names(parent)
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.75)
    if close:
        return f'{message}, did you mean "{by_lower[close[0]]}"?'
    elsewhere = _find_elsewhere(parent, name)
    if elsewhere:
        base = format_path([e for e in loc[:-1]])
        places = " or ".join(f"{base}.{p}" if base else p for p in elsewhere[:2])
        return f"{message}: {name} belongs under {places.rsplit('.', 1)[0]}"
    return message


def _literal_choices(ctx: dict[str, Any]) -> str:
    text = str(ctx.get("expected", ""))
    return text.replace("'", "").replace(" or ", ", ")


def _hint(value: Any, message: str) -> str:
    """The two YAML traps behind most type errors: unquoted yes/on/off, and quoted numbers."""
    if isinstance(value, bool) and "boolean" not in message:
        return f"{message} (YAML reads unquoted true/false/yes/no/on/off as a boolean: quote it)"
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and "integer" in message:
        return f"{message} (a quoted number is a string: remove the quotes)"
    return message


def _translate(root: type[BaseModel], err: ErrorDetails) -> tuple[Path, str]:
    path, message = _translate_plain(root, err)
    if err["type"] != "meshpilot":
        message = _hint(err.get("input"), message)
    return path, message


def _translate_plain(root: type[BaseModel], err: ErrorDetails) -> tuple[Path, str]:
    loc: Path = tuple(e for e in err["loc"] if isinstance(e, str | int))
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err.get("input")
    if kind == "meshpilot":
        return (*loc, *ctx.get("subpath", ())), str(ctx["message"])
    if kind == "expected":
        return loc, f"expected {ctx['expected']}, got {show(value)}"
    if kind == "missing":
        return loc, "required field is missing"
    if kind == "extra_forbidden":
        return loc, _unknown_field_message(root, loc)
    if kind in _TYPE_WORDS:
        return loc, f"expected {_TYPE_WORDS[kind]}, got {show(value)}"
    if kind == "literal_error":
        return loc, f"expected one of {_literal_choices(ctx)}, got {show(value)}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return loc, f"must have at least {n} item{'s' if n != 1 else ''}"
    if kind == "too_long":
        n = ctx.get("max_length")
        return loc, f"must have at most {n} item{'s' if n != 1 else ''}"
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return loc, "must not be empty" if n == 1 else f"must be at least {n} characters"
    if kind == "string_too_long":
        return loc, f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return loc, f"{show(value)} does not match the pattern {ctx.get('pattern')}"
    bounds = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()), "")
        return loc, f"must be {bounds[kind]} {limit}, got {show(value)}"
    if kind == "value_error":
        return loc, str(ctx.get("error", err["msg"]))
    return loc, err["msg"]


def _errors(root: type[BaseModel], exc: ValidationError, source: Document | None) -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        path, message = _translate(root, err)
        out.append(_located(path, message, source))
    return out


def _located(path: Path, message: str, source: Document | None) -> FieldError:
    if source is None:
        return FieldError(message, path)
    return source.error(path, message)


def _name_problem(rule: str, name: str) -> str | None:
    if rule == "label":
        return dns1123_label_problem(name)
    if rule == "label1035":
        why = dns1123_label_problem(name)
        if why is None and not name[0].isalpha():
            why = "must start with a lowercase letter (an RFC 1035 label)"
        return why
    return dns1123_subdomain_problem(name)


def _meta_errors(info: KindInfo, obj: dict[str, Any], source: Document | None) -> list[FieldError]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return []
    errors: list[FieldError] = []
    name = meta.get("name")
    if isinstance(name, str):
        why = _name_problem(info.name_rule, name)
        if why is not None:
            errors.append(_located(("metadata", "name"), f'invalid name "{name}": {why}', source))
    elif name is None and not meta.get("generateName"):
        errors.append(_located(("metadata", "name"), "name or generateName is required", source))
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and info.namespaced:
        why = dns1123_label_problem(namespace)
        if why is not None:
            errors.append(
                _located(("metadata", "namespace"), f'invalid namespace "{namespace}": {why}', source)
            )
    return errors


def validate(obj: Any, source: Document | None = None) -> dict[str, Any]:
    """Validate one object and return it normalized: camelCase JSON, defaults applied, no nulls.

    ``source`` (the document the object came from) adds file and line to every error. Raises
    ``InvalidObject``; a kind the cluster doesn't serve is reported as one such error.
    """
    if not isinstance(obj, dict):
        raise InvalidObject([_located((), f"expected a Kubernetes object, got {show(obj)}", source)])
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    head: list[FieldError] = []
    for field_name, value in (("apiVersion", api_version), ("kind", kind)):
        if value is None:
            head.append(_located((field_name,), "required field is missing", source))
        elif not isinstance(value, str) or not value:
            head.append(_located((field_name,), f"expected non-empty string, got {show(value)}", source))
    if head:
        raise InvalidObject(head)
    assert isinstance(api_version, str) and isinstance(kind, str)
    try:
        info = lookup(api_version, kind)
    except NotServed as exc:
        where = source.line_of(("kind",)) if source is not None else None
        raise InvalidObject([FieldError(str(exc), (), source.filename if source else None, where)]) from None
    model = info.model
    assert model is not None, f"kind {kind} has no model"
    errors = _meta_errors(info, obj, source)
    try:
        instance = model.model_validate(prune_nulls(model, obj))
    except ValidationError as exc:
        errors.extend(_errors(model, exc, source))
        raise InvalidObject(_sorted(errors, source)) from None
    if errors:
        raise InvalidObject(errors)
    out = instance.model_dump(mode="json", by_alias=True, exclude_none=True)
    meta = out.get("metadata")
    if isinstance(meta, dict) and not info.namespaced:
        meta.pop("namespace", None)
    return out


def _sorted(errors: list[FieldError], source: Document | None) -> list[FieldError]:
    if source is None:
        return errors
    return sorted(errors, key=lambda e: e.line or 0)


def expand_lists(docs: Iterable[Document]) -> list[Document]:
    """Replace each ``kind: List`` document (what ``get -o yaml`` prints) by one document per item."""
    out: list[Document] = []
    for doc in docs:
        obj = doc.obj
        if (
            isinstance(obj, dict)
            and obj.get("kind") == "List"
            and obj.get("apiVersion") == "v1"
            and isinstance(obj.get("items"), list)
        ):
            for i, item in enumerate(obj["items"]):
                prefix = ("items", i)
                lines = {p[2:]: ln for p, ln in doc.lines.items() if p[:2] == prefix}
                out.append(Document(item, doc.filename, doc.lines.get(prefix, doc.line), doc.index, lines))
        else:
            out.append(doc)
    return out


def object_key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """``(group, kind, namespace, name)``: what makes two documents describe the same object."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    meta = obj.get("metadata") or {}
    return (group, str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def validate_documents(docs: Iterable[Document]) -> list[dict[str, Any]]:
    """Validate every document and check them against each other; one ``InvalidObject`` with all errors."""
    objects: list[dict[str, Any]] = []
    errors: list[FieldError] = []
    seen: dict[tuple[str, str, str, str], Document] = {}
    for doc in expand_lists(docs):
        try:
            obj = validate(doc.obj, doc)
        except InvalidObject as exc:
            errors.extend(exc.errors)
            continue
        key = object_key(obj)
        if key[3]:
            first = seen.get(key)
            if first is not None:
                where = f"{key[2]}/{key[3]}" if key[2] else key[3]
                errors.append(
                    doc.error(
                        ("metadata", "name"),
                        f"{key[1]} {where} is defined twice in one apply "
                        f"(first at {first.filename}:{first.line_of(('metadata', 'name'))})",
                    )
                )
                continue
            seen[key] = doc
        objects.append(obj)
    if errors:
        raise InvalidObject(errors)
    return objects


def load_objects(text: str, filename: str = "<stdin>") -> list[dict[str, Any]]:
    """Load a multi-document YAML text, validate every object, refuse duplicates: all or nothing."""
    return validate_documents(load_documents(text, filename))
