"""Building blocks of the models: a strict base model and the scalar types Kubernetes and Istio use.

Kubernetes decodes manifests strictly: `replicas: "3"` is an error, not 3. pydantic's strict mode
gives that; the custom scalars below add what pydantic lacks (int-or-string, quantities, durations,
bounded integers) and raise errors in one shape, ``expected <what>``, which the validator turns into
``expected integer 0..100, got "ten"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainValidator
from pydantic_core import PydanticCustomError


class Model(BaseModel):
    """Base of every model: unknown fields are errors, no type coercion, JSON names as attribute names."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        populate_by_name=True,
        validate_assignment=False,
        hide_input_in_errors=False,
        protected_namespaces=(),
    )


def expected(what: str) -> PydanticCustomError:
    """The error every custom scalar raises; the translator adds `got <value>`."""
    return PydanticCustomError("expected", "expected {expected}", {"expected": what})


def invalid(message: str, subpath: Sequence[str | int] = ()) -> PydanticCustomError:
    """A semantic error with a complete message, optionally about a field below the current one."""
    return PydanticCustomError("meshpilot", "{message}", {"message": message, "subpath": list(subpath)})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range_text(lo: int | None, hi: int | None) -> str:
    if hi is not None and hi >= 2**31 - 1:
        hi = None  # the int32/int64 ceiling is not worth telling
    if lo is not None and lo <= -(2**31):
        lo = None
    if lo == 0 and hi is None:
        return "non-negative integer"
    if lo == 1 and hi is None:
        return "positive integer"
    if lo is not None and hi is not None:
        return f"integer {lo}..{hi}"
    if lo is not None:
        return f"integer >= {lo}"
    if hi is not None:
        return f"integer <= {hi}"
    return "integer"


def int_range(lo: int | None = None, hi: int | None = None) -> Any:
    """An integer type bounded to ``lo..hi`` (both inclusive)."""
    text = _range_text(lo, hi)

    def check(value: object) -> int:
        if not _is_int(value):
            raise expected(text)
        assert isinstance(value, int)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise expected(text)
        return value

    return Annotated[int, PlainValidator(check)]


if TYPE_CHECKING:  # to mypy these are plain ints; at runtime they carry their bounds
    Int32 = int
    Int64 = int
    UInt32 = int
    NonNegInt32 = int
    NonNegInt = int
    PositiveInt32 = int
    PositiveInt = int
    Port = int
    PortOrZero = int
    FileMode = int
else:
    Int32 = int_range(-(2**31), 2**31 - 1)
    Int64 = int_range(-(2**63), 2**63 - 1)
    UInt32 = int_range(0, 2**32 - 1)
    NonNegInt32 = int_range(0, 2**31 - 1)
    NonNegInt = int_range(0, None)
    PositiveInt32 = int_range(1, 2**31 - 1)
    PositiveInt = int_range(1, None)
    Port = int_range(1, 65535)
    PortOrZero = int_range(0, 65535)
    FileMode = int_range(0, 0o777)


def _number(value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise expected("number")
    if isinstance(value, float) and not math.isfinite(value):
        raise expected("finite number")
    return value


Number = Annotated[float | int, PlainValidator(_number)]


def _percent(value: object) -> float | int:
    number = _number(value)
    if not 0 <= number <= 100:
        raise expected("number 0..100")
    return number


Percent = Annotated[float | int, PlainValidator(_percent)]


def _int_or_string(value: object) -> int | str:
    if _is_int(value) or isinstance(value, str):
        assert isinstance(value, int | str)
        return value
    raise expected("integer or string")


IntOrString = Annotated[int | str, PlainValidator(_int_or_string)]

_PERCENT_RE = re.compile(r"^(100|[1-9]?[0-9])%$")


def _int_or_percent(value: object) -> int | str:
    """maxSurge/maxUnavailable/minAvailable: a count or a percentage such as "25%"."""
    if _is_int(value):
        assert isinstance(value, int)
        if value < 0:
            raise expected("non-negative integer or percentage")
        return value
    if isinstance(value, str) and _PERCENT_RE.match(value):
        return value
    raise expected('non-negative integer or percentage like "25%"')


IntOrPercent = Annotated[int | str, PlainValidator(_int_or_percent)]

_IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _port_ref(value: object) -> int | str:
    """A container port by number (1..65535) or by name (an IANA service name)."""
    if _is_int(value):
        assert isinstance(value, int)
        if 1 <= value <= 65535:
            return value
        raise expected("port number 1..65535 or port name")
    if isinstance(value, str):
        if len(value) <= 15 and _IANA_SVC_NAME.match(value) and "--" not in value:
            return value
        if value.isdigit():
            raise expected("port number 1..65535 or port name (an integer, not a quoted string)")
        raise expected("port number 1..65535 or port name (lowercase letters, digits and '-', at most 15)")
    raise expected("port number 1..65535 or port name")


PortRef = Annotated[int | str, PlainValidator(_port_ref)]

# Kubernetes resource quantities: 100m, 128Mi, 1.5, 2e3, 1Gi ...
_QUANTITY_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[kMGTPE]|m|u|n)?$")


def _quantity(value: object) -> str:
    if _is_int(value) or isinstance(value, float):
        if isinstance(value, float) and not math.isfinite(value):
            raise expected('quantity like "100m" or "128Mi"')
        return str(value)
    if isinstance(value, str) and _QUANTITY_RE.match(value):
        return value
    raise expected('quantity like "100m" or "128Mi"')


Quantity = Annotated[str, PlainValidator(_quantity)]

# Go's time.ParseDuration syntax, which Istio's CRDs check with CEL's duration().
_DURATION_RE = re.compile(
    r"^(\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))*$"
)
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def duration_seconds(text: str) -> float:
    """Seconds in a Go duration string ("1m30s" -> 90.0); the string must already be valid."""
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def duration(min_seconds: float | None = None, what: str | None = None) -> Any:
    """A duration string like "5s" or "1m30s"; ``min_seconds`` is the smallest accepted (inclusive)."""
    text = what or 'duration like "5s" or "1m30s"'

    def check(value: object) -> str:
        if not isinstance(value, str) or not _DURATION_RE.match(value):
            raise expected(text)
        if min_seconds is not None and duration_seconds(value) < min_seconds - 1e-12:
            raise expected(text)
        return value

    return Annotated[str, PlainValidator(check)]


if TYPE_CHECKING:
    Duration = str
    Duration1ms = str
else:
    Duration = duration()
    # Most Istio durations: "must be a valid duration greater than 1ms".
    Duration1ms = duration(0.001, 'duration of at least 1ms like "5s"')


def pattern_str(pattern: str, what: str, max_length: int | None = None) -> Any:
    """A string matching ``pattern``; ``what`` describes it in errors."""
    rx = re.compile(pattern)

    def check(value: object) -> str:
        if not isinstance(value, str) or not rx.fullmatch(value):
            raise expected(what)
        if max_length is not None and len(value) > max_length:
            raise expected(f"{what} of at most {max_length} characters")
        return value

    return Annotated[str, PlainValidator(check)]


def bounded_str(min_length: int = 0, max_length: int | None = None) -> Any:
    def check(value: object) -> str:
        if not isinstance(value, str):
            raise expected("string")
        if len(value) < min_length:
            raise expected(
                "non-empty string" if min_length == 1 else f"string of at least {min_length} characters"
            )
        if max_length is not None and len(value) > max_length:
            raise expected(f"string of at most {max_length} characters")
        return value

    return Annotated[str, PlainValidator(check)]


if TYPE_CHECKING:
    NonEmptyStr = str
else:
    NonEmptyStr = bounded_str(1)

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def dns1123_label_problem(value: str) -> str | None:
    """Why ``value`` is not an RFC 1123 label (names of namespaces, services, ports), or None."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not DNS1123_LABEL.match(value):
        return (
            "must consist of lowercase alphanumeric characters or '-', and start and end with an alphanumeric"
        )
    return None


def dns1123_subdomain_problem(value: str) -> str | None:
    """Why ``value`` is not an RFC 1123 subdomain (names of most objects), or None."""
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not DNS1123_SUBDOMAIN.match(value):
        return (
            "must consist of lowercase alphanumeric characters, '-' or '.', "
            "and start and end with an alphanumeric"
        )
    return None


def checked_str(problem: Callable[[str], str | None], what: str) -> Any:
    """A string checked by ``problem`` (which returns why it is wrong, or None)."""

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise expected(what)
        why = problem(value)
        if why is not None:
            raise invalid(f"invalid {what} {_quote(value)}: {why}")
        return value

    return Annotated[str, PlainValidator(check)]


if TYPE_CHECKING:
    DNS1123Label = str
    DNS1123Subdomain = str
else:
    DNS1123Label = checked_str(dns1123_label_problem, "name")
    DNS1123Subdomain = checked_str(dns1123_subdomain_problem, "name")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def only_one_of(obj: BaseModel, *names: str, required: bool = False) -> None:
    """Istio's oneOf: at most one (exactly one if ``required``) of ``names`` may be set."""
    present = [n for n in names if getattr(obj, n) is not None]
    if len(present) > 1:
        raise invalid(f"only one of {', '.join(names)} may be set, got {' and '.join(present)}", [present[1]])
    if required and not present:
        raise invalid(f"one of {', '.join(names)} is required")


def field_set(obj: BaseModel, name: str) -> bool:
    return getattr(obj, name) is not None
