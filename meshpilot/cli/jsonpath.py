"""kubectl's ``-o jsonpath=TEMPLATE``: the subset of Kubernetes' JSONPath templates people script with.

Supported, with kubectl's meaning: text outside braces printed as is; ``{.a.b}``, ``{$.a}``, ``{@.a}``;
``[n]`` (negative from the end), ``[a:b]``, ``[*]`` and ``.*``; ``..name`` (recursive descent);
``['key']`` and escaped dots (``{.data.cert-chain\\.pem}``); filters ``[?(@.name=="istio-proxy")]``
with ``== != < <= > >=`` or bare existence ``[?(@.x)]``; ``{range EXPR}...{end}``; string literals
``{"\\n"}``. Several results of one expression are joined by a space; strings print raw, everything
else as JSON. Missing keys print nothing (kubectl's default ``--allow-missing-template-keys``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


class JSONPathError(ValueError):
    """The template does not parse; the message says where."""


# --- path steps --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str  # "*" for every value


@dataclass(frozen=True)
class Recursive:
    name: str  # the field looked for at any depth


@dataclass(frozen=True)
class Index:
    index: int


@dataclass(frozen=True)
class Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True)
class Wildcard:
    pass


@dataclass(frozen=True)
class Filter:
    path: tuple[Step, ...]
    op: str | None  # None: existence test
    value: Any


Step = Field | Recursive | Index | Slice | Wildcard | Filter

_MISSING = object()
_IDENT_END = re.compile(r"[.\[\]\s]")
_OPERATOR = re.compile(r"\s*(==|!=|<=|>=|<|>)\s*")


def parse_path(text: str) -> tuple[Step, ...]:
    """``.items[*].spec.containers[?(@.name=="x")].image`` -> steps."""
    src = text.strip()
    if src.startswith(("$", "@")):
        src = src[1:]
    steps: list[Step] = []
    i = 0
    while i < len(src):
        ch = src[i]
        if src.startswith("..", i):
            name, i = _read_name(src, i + 2)
            if not name:
                raise JSONPathError(f"expected a field name after '..' in {text!r}")
            steps.append(Recursive(name))
        elif ch == ".":
            name, i = _read_name(src, i + 1)
            if name == "*":
                steps.append(Wildcard())
            elif name:
                steps.append(Field(name))
        elif ch == "[":
            close = _matching_bracket(src, i, text)
            steps.append(_parse_bracket(src[i + 1 : close], text))
            i = close + 1
        elif ch.isspace():
            i += 1
        else:
            # kubectl accepts a bare first field ("{items[0]}").
            name, i = _read_name(src, i)
            if not name:
                raise JSONPathError(f"unexpected {ch!r} in {text!r}")
            steps.append(Field(name))
    return tuple(steps)


def _read_name(src: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    while i < len(src):
        ch = src[i]
        if ch == "\\" and i + 1 < len(src):
            out.append(src[i + 1])
            i += 2
            continue
        if _IDENT_END.match(ch):
            break
        out.append(ch)
        i += 1
    return "".join(out), i


def _matching_bracket(src: str, start: int, text: str) -> int:
    depth = 0
    quote: str | None = None
    i = start
    while i < len(src):
        ch = src[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise JSONPathError(f"unclosed '[' in {text!r}")


def _parse_bracket(inner: str, text: str) -> Step:
    body = inner.strip()
    if body == "*":
        return Wildcard()
    if body.startswith("?"):
        expr = body[1:].strip()
        if not (expr.startswith("(") and expr.endswith(")")):
            raise JSONPathError(f'a filter must look like [?(@.field=="value")] in {text!r}')
        return _parse_filter(expr[1:-1], text)
    if len(body) >= 2 and body[0] == body[-1] and body[0] in "'\"":
        return Field(body[1:-1])
    if ":" in body:
        parts = body.split(":")
        if len(parts) > 3:
            raise JSONPathError(f"invalid slice [{body}] in {text!r}")
        try:
            nums = [int(p) if p.strip() else None for p in parts] + [None] * (3 - len(parts))
        except ValueError:
            raise JSONPathError(f"invalid slice [{body}] in {text!r}") from None
        return Slice(nums[0], nums[1], nums[2])
    try:
        return Index(int(body))
    except ValueError:
        raise JSONPathError(f"invalid array index [{body}] in {text!r}") from None


def _parse_filter(expr: str, text: str) -> Filter:
    body = expr.strip()
    if not body.startswith("@"):
        raise JSONPathError(f"invalid filter ({expr}) in {text!r}: it must start with @")
    match = _OPERATOR.search(body)
    if match is None:
        return Filter(parse_path(body), None, None)
    path, literal = body[: match.start()], body[match.end() :].strip()
    if not literal:
        raise JSONPathError(f"invalid filter ({expr}) in {text!r}: nothing to compare with")
    return Filter(parse_path(path), match.group(1), _parse_literal(literal, text))


def _parse_literal(literal: str, text: str) -> Any:
    if len(literal) >= 2 and literal[0] == literal[-1] and literal[0] in "'\"":
        return literal[1:-1].replace('\\"', '"').replace("\\'", "'")
    if literal in ("true", "false"):
        return literal == "true"
    try:
        return int(literal)
    except ValueError:
        pass
    try:
        return float(literal)
    except ValueError:
        raise JSONPathError(f"invalid literal {literal!r} in filter of {text!r}") from None


def evaluate(steps: tuple[Step, ...], root: Any) -> list[Any]:
    """Every value the path selects, in document order."""
    nodes = [root]
    for step in steps:
        nxt: list[Any] = []
        for node in nodes:
            nxt.extend(_apply(step, node))
        nodes = nxt
    return nodes


def _apply(step: Step, node: Any) -> list[Any]:
    if isinstance(step, Field):
        if isinstance(node, dict) and step.name in node:
            return [node[step.name]]
        return []
    if isinstance(step, Wildcard):
        if isinstance(node, dict):
            return list(node.values())
        if isinstance(node, list):
            return list(node)
        return []
    if isinstance(step, Index):
        if isinstance(node, list) and -len(node) <= step.index < len(node):
            return [node[step.index]]
        return []
    if isinstance(step, Slice):
        if isinstance(node, list):
            return list(node[step.start : step.stop : step.step])
        return []
    if isinstance(step, Recursive):
        found: list[Any] = []
        _descend(node, step.name, found)
        return found
    return [item for item in _children(node) if _matches(step, item)]


def _children(node: Any) -> list[Any]:
    if isinstance(node, list):
        return node
    if isinstance(node, dict):
        return list(node.values())
    return []


def _descend(node: Any, name: str, found: list[Any]) -> None:
    if isinstance(node, dict):
        if name in node:
            found.append(node[name])
        for value in node.values():
            _descend(value, name, found)
    elif isinstance(node, list):
        for value in node:
            _descend(value, name, found)


def _matches(flt: Filter, item: Any) -> bool:
    values = evaluate(flt.path, item)
    if flt.op is None:
        return bool(values)
    if not values:
        return flt.op == "!="
    left = values[0]
    right = flt.value
    try:
        if flt.op == "==":
            return bool(left == right)
        if flt.op == "!=":
            return bool(left != right)
        if isinstance(left, bool) or isinstance(right, bool):
            return False
        if flt.op == "<":
            return bool(left < right)
        if flt.op == "<=":
            return bool(left <= right)
        if flt.op == ">":
            return bool(left > right)
        return bool(left >= right)
    except TypeError:
        return False


# --- templates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Expr:
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class _Range:
    steps: tuple[Step, ...]
    body: tuple[_Node, ...]


_Node = _Text | _Expr | _Range

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(_ESCAPES.get(text[i + 1], "\\" + text[i + 1]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _tokens(template: str) -> list[tuple[str, str]]:
    """("text", ...) and ("action", ...) pieces; braces inside quotes don't end an action."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(template):
        open_at = template.find("{", i)
        if open_at < 0:
            out.append(("text", template[i:]))
            break
        if open_at > i:
            out.append(("text", template[i:open_at]))
        j = open_at + 1
        quote: str | None = None
        while j < len(template):
            ch = template[j]
            if quote:
                if ch == "\\":
                    j += 2
                    continue
                if ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch == "}":
                break
            j += 1
        if j >= len(template):
            raise JSONPathError(f"unclosed action in template {template!r}")
        out.append(("action", template[open_at + 1 : j]))
        i = j + 1
    return out


def compile_template(template: str) -> tuple[_Node, ...]:
    tokens = _tokens(template)
    pos = 0

    def block(inside_range: bool) -> tuple[_Node, ...]:
        nonlocal pos
        nodes: list[_Node] = []
        while pos < len(tokens):
            kind, value = tokens[pos]
            pos += 1
            if kind == "text":
                nodes.append(_Text(value))
                continue
            action = value.strip()
            if action == "end":
                if not inside_range:
                    raise JSONPathError(f"{{end}} without {{range}} in template {template!r}")
                return tuple(nodes)
            if action.startswith("range ") or action == "range":
                steps = parse_path(action[len("range") :])
                nodes.append(_Range(steps, block(True)))
                continue
            if len(action) >= 2 and action[0] == action[-1] and action[0] in "'\"":
                nodes.append(_Text(_unescape(action[1:-1])))
                continue
            if not action:
                raise JSONPathError(f"empty action {{}} in template {template!r}")
            nodes.append(_Expr(parse_path(action)))
        if inside_range:
            raise JSONPathError(f"{{range}} without {{end}} in template {template!r}")
        return tuple(nodes)

    return block(False)


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def _render(nodes: tuple[_Node, ...], data: Any, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Expr):
            out.append(" ".join(format_value(v) for v in evaluate(node.steps, data)))
        else:
            results = evaluate(node.steps, data)
            # `{range .items}` iterates the list itself, like `{range .items[*]}`.
            last = node.steps[-1] if node.steps else None
            if not isinstance(last, Wildcard | Slice | Filter):
                results = [each for item in results for each in (item if isinstance(item, list) else [item])]
            for item in results:
                _render(node.body, item, out)


def render(template: str, data: Any) -> str:
    """Fill ``template`` from ``data`` as ``kubectl get -o jsonpath=`` does."""
    nodes = compile_template(_strip_shell_quotes(template))
    out: list[str] = []
    _render(nodes, data, out)
    return "".join(out)


def _strip_shell_quotes(template: str) -> str:
    # `-o jsonpath='{...}'` written in a YAML file or passed through a non-shell keeps its quotes.
    if len(template) >= 2 and template[0] == template[-1] == "'":
        return template[1:-1]
    return template
