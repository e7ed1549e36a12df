"""Values as records hold them: plain JSON with exact numbers, never a float."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors.base import SourcePayloadInvalid

# Deeper than any record value a source has reason to send, and far inside Python's recursion
# limit, so that a value nested thousands deep is refused instead of failing with RecursionError.
MAX_DEPTH = 64


def plain(value: Any) -> Any:
    """`value` with every Decimal as its exact text (e.g. "5.40"), so hashes never see floats.

    SourcePayloadInvalid for anything that is not parsed JSON, or nested deeper than MAX_DEPTH.
    """
    return _plain(value, 0)


def _plain(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if depth >= MAX_DEPTH and isinstance(value, list | dict):
        raise SourcePayloadInvalid("the source's answer holds a value nested too deeply")
    if isinstance(value, list):
        return [_plain(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    # Parsed JSON holds nothing else; anything more means a bug upstream, not a value to pass on.
    raise SourcePayloadInvalid("the source's answer holds a value that is not JSON")
