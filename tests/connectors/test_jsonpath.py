"""Simple JSON paths: parsing, formatting and resolving, by property."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.jsonpath import MISSING, PathTypeError, Step, format_path, parse, resolve

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True)
STEPS = st.lists(st.one_of(NAMES, st.integers(min_value=0, max_value=5)), max_size=6).map(tuple)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=10,
)


def place(steps: tuple[Step, ...], value: Any) -> Any:
    """The smallest document that holds `value` at `steps`."""
    for step in reversed(steps):
        value = [None] * step + [value] if isinstance(step, int) else {step: value}
    return value


@given(STEPS)
def test_a_path_parses_back_to_its_steps(steps: tuple[Step, ...]) -> None:
    assert parse(format_path(steps)) == steps


@given(STEPS, JSON)
def test_a_placed_value_resolves(steps: tuple[Step, ...], value: Any) -> None:
    assert resolve(place(steps, value), steps) == value


@given(JSON, STEPS, st.integers(min_value=0, max_value=6))
def test_resolving_composes_over_any_split_of_the_path(
    document: Any, steps: tuple[Step, ...], cut: int
) -> None:
    head, tail = steps[:cut], steps[cut:]
    try:
        whole = resolve(document, steps)
    except PathTypeError:
        return
    middle = resolve(document, head)
    if middle is MISSING:
        assert whole is MISSING
    else:
        assert resolve(middle, tail) == whole


def test_examples() -> None:
    document = {"items": [{"name": "a"}, {"name": None}], "decision": {"type": "x"}}
    assert resolve(document, parse("decision.type")) == "x"
    assert resolve(document, parse("items[0].name")) == "a"
    assert resolve(document, parse("items[1].name")) is None
    assert resolve(document, parse("items[1].name.first")) is MISSING
    assert resolve(document, parse("items[5].name")) is MISSING
    assert resolve(document, parse("absent.deeper")) is MISSING
    assert resolve(document, parse("")) is document
    assert resolve([1, 2], parse("[1]")) == 2
    with pytest.raises(PathTypeError):
        resolve(document, parse("decision[0]"))
    with pytest.raises(PathTypeError):
        resolve(document, parse("decision.type.more"))


@pytest.mark.parametrize(
    "bad", ["a..b", ".a", "a.", "a[01]", "a[-1]", "a[x]", "a b", "1a", "a.[0]"]
)
def test_malformed_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a simple JSON path"):
        parse(bad)
