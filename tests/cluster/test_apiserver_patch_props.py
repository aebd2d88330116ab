"""Properties of RFC 7386 merge patches and of the three-way patch the apply endpoint computes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from meshpilot.cluster.apiserver import three_way_patch
from meshpilot.store import merge_patch

keys = st.sampled_from(["a", "b", "c", "spec", "ports"])
scalars = st.one_of(st.integers(-3, 3), st.text(max_size=3), st.booleans())
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)),
    max_leaves=10,
)
documents = st.dictionaries(keys, values, max_size=4)


@given(documents, documents)
def test_three_way_patch_from_last_to_desired_reaches_desired(
    last: dict[str, Any], desired: dict[str, Any]
) -> None:
    # with nothing set by others, applying the patch to what was applied last yields what is applied now
    assert merge_patch(last, three_way_patch(last, desired)) == desired


@given(documents, documents, st.dictionaries(st.sampled_from(["x", "y"]), scalars, max_size=2))
def test_three_way_patch_keeps_fields_set_by_others(
    last: dict[str, Any], desired: dict[str, Any], others: dict[str, Any]
) -> None:
    # fields the user never applied (a controller's, an admission plugin's) survive a re-apply
    live = {**last, **others}
    assert merge_patch(live, three_way_patch(last, desired)) == {**desired, **others}


@given(documents)
def test_merge_patch_with_itself_is_identity(doc: dict[str, Any]) -> None:
    assert merge_patch(doc, doc) == doc
