"""Simple JSON paths for declarative mappings: `decision.type`, `items[0].name`, `[2]`.

A path is a sequence of steps, each an object member name or a list index. Resolving a path
gives `MISSING` where a member or index is absent (or a step meets null), and raises
`PathTypeError` where a step meets a value of the wrong kind (a member of a list, an index of a
string): the first is an absent field, the second a source sending the wrong shape.
"""

from __future__ import annotations

import re
from typing import Any, Final

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_STEP = re.compile(rf"(?:^|\.)({_NAME})|\[(0|[1-9][0-9]*)\]")
_WHOLE = re.compile(rf"(?:{_NAME}|\[(?:0|[1-9][0-9]*)\])(?:\.{_NAME}|\[(?:0|[1-9][0-9]*)\])*")

Step = str | int
"""A member name (str) or a list index (int)."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What `resolve` gives for an absent value (distinct from JSON null)."""


class PathTypeError(ValueError):
    """A path step met a value of the wrong kind."""


def parse(path: str) -> tuple[Step, ...]:
    """The steps of `path`; the empty path (or "$") is the document itself. ValueError if bad."""
    if path in {"", "$"}:
        return ()
    if not _WHOLE.fullmatch(path):
        raise ValueError(f"not a simple JSON path: {path!r}")
    return tuple(name if name else int(index) for name, index in _STEP.findall(path))


def format_path(steps: tuple[Step, ...]) -> str:
    """The text of a path, so that `parse(format_path(steps)) == steps`."""
    text = ""
    for step in steps:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else step
    return text


def resolve(document: Any, steps: tuple[Step, ...]) -> Any:
    """The value at `steps` in `document`, MISSING if absent; PathTypeError on a wrong shape."""
    value = document
    for step in steps:
        if value is None:
            return MISSING
        if isinstance(step, int):
            if not isinstance(value, list):
                raise PathTypeError("an index step met a value that is not a list")
            if step >= len(value):
                return MISSING
            value = value[step]
        else:
            if not isinstance(value, dict):
                raise PathTypeError("a member step met a value that is not an object")
            if step not in value:
                return MISSING
            value = value[step]
    return value
