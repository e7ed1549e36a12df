"""Hypothesis strategies for hostile input, shared by the fuzz tests: any text, and valid
documents with parts dropped, replaced, repeated, buried or widened."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st


def any_text(max_size: int) -> st.SearchStrategy[str]:
    """Text of every category, lone surrogates included (what a "\\ud800" escape gives)."""
    # Surrogates are 2048 of 1.1 million code points: asked for explicitly, or almost never drawn.
    return st.text(
        st.characters(exclude_categories=())
        | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        max_size=max_size,
    )


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) into a JSON-like value, the empty path first."""
    found = [prefix]
    if len(prefix) > 30:  # inside a value buried deep by an earlier mutation
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(json_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(json_paths(item, (*prefix, index)))
    return found


def mutate(draw: st.DrawFn, document: Any, hostile: st.SearchStrategy[Any]) -> Any:
    """`document`, changed in place: one to three parts dropped, replaced by a draw of
    `hostile`, repeated (in a list), buried in lists, or (text) repeated many times."""
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in json_paths(document) if p]
        if not paths:
            return document
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        current = parent[path[-1]]
        operation = draw(st.sampled_from(["drop", "replace", "replace", "repeat", "bury", "widen"]))
        if operation == "drop":
            del parent[path[-1]]
        elif operation == "replace":
            parent[path[-1]] = draw(hostile)
        elif operation == "repeat" and isinstance(parent, list):
            parent.append(copy.deepcopy(current))
        elif operation == "bury":
            parent[path[-1]] = [[[current]]]
        elif operation == "widen" and isinstance(current, str):
            parent[path[-1]] = current * draw(st.sampled_from([2, 40, 200]))
    return document
