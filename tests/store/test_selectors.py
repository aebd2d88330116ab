"""Label and field selectors parse Kubernetes' syntax and match as kubectl users expect."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshpilot.store import SelectorError, parse_field_selector, parse_label_selector, selector_from_match

LABELS = {"app": "productcatalog", "version": "v1", "tier": "backend"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("app=productcatalog", True),
        ("app==productcatalog", True),
        ("app!=productcatalog", False),
        ("app=frontend", False),
        ("version in (v1,v2)", True),
        ("version in (v2, v3)", False),
        ("version notin (v2)", True),
        ("missing notin (v2)", True),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("app=productcatalog,version in (v1),!canary", True),
        ("app=productcatalog, version!=v1", False),
        ("example.com/team!=x", True),
    ],
)
def test_label_selector_matches(text: str, expected: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is expected


@pytest.mark.parametrize("text", ["app=", "=x", "a in (b", "a b c", "a=b=c", "a in ()", "-bad=x"])
def test_label_selector_rejects_bad_syntax(text: str) -> None:
    if text == "app=":
        # an empty value is legal in Kubernetes ("app=" matches app: "")
        assert parse_label_selector(text).matches({"app": ""})
        return
    with pytest.raises(SelectorError):
        parse_label_selector(text)


def test_structured_selector() -> None:
    sel = selector_from_match(
        {
            "matchLabels": {"app": "productcatalog"},
            "matchExpressions": [{"key": "version", "operator": "In", "values": ["v1"]}],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({"app": "productcatalog", "version": "v2"})
    assert selector_from_match({"app": "productcatalog"}).matches(LABELS)
    assert selector_from_match(None).matches({})


def test_field_selector() -> None:
    pod = {
        "metadata": {"name": "a", "namespace": "prod"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    assert parse_field_selector("metadata.name=a,status.phase!=Pending").matches(pod)
    assert not parse_field_selector("metadata.namespace==default").matches(pod)
    assert parse_field_selector("spec.missing=").matches(pod)
    with pytest.raises(SelectorError):
        parse_field_selector("status.phase")


keys = st.from_regex(r"\A[a-z][a-z0-9]{0,8}\Z")
values = st.from_regex(r"\A[a-z0-9]{1,8}\Z")


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("="), keys, values),
            st.tuples(st.just("!="), keys, values),
            st.tuples(st.just("in"), keys, st.lists(values, min_size=1, max_size=3)),
            st.tuples(st.just("notin"), keys, st.lists(values, min_size=1, max_size=3)),
            st.tuples(st.just("exists"), keys, st.just("")),
            st.tuples(st.just("!"), keys, st.just("")),
        ),
        max_size=4,
    ),
    st.dictionaries(keys, values, max_size=4),
)
def test_selector_string_round_trips(parts: list[tuple[str, str, object]], labels: dict[str, str]) -> None:
    text_parts = []
    for op, key, value in parts:
        if op in ("=", "!="):
            text_parts.append(f"{key}{op}{value}")
        elif op in ("in", "notin"):
            text_parts.append(f"{key} {op} ({','.join(value)})")  # type: ignore[arg-type]
        elif op == "exists":
            text_parts.append(key)
        else:
            text_parts.append(f"!{key}")
    selector = parse_label_selector(",".join(text_parts))
    again = parse_label_selector(str(selector))
    assert again == selector
    assert again.matches(labels) == selector.matches(labels)
