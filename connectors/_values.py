"""Values as records hold them: plain JSON with exact numbers, never a float."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors.base import SourcePayloadInvalid


def plain(value: Any) -> Any:
    """`value` with every Decimal as its exact text (e.g. "5.40"), so hashes never see floats."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    # Parsed JSON holds nothing else; anything more means a bug upstream, not a value to pass on.
    raise SourcePayloadInvalid("the source's answer holds a value that is not JSON")
