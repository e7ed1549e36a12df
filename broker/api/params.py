"""Constraints shared by the routers' path and query parameters, documented in the OpenAPI."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import StringConstraints

# No identifier, code or field name holds a control character, and PostgreSQL text cannot hold
# NUL (its driver raises, which was a 500): such input is malformed (422) before any query.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

# A path segment naming a service, agreement or consent.
IdPath = Annotated[str, Path(max_length=64, pattern=PRINTABLE)]
# A path segment naming a data category.
CodePath = Annotated[str, Path(max_length=100, pattern=PRINTABLE)]
# One item of a repeated query parameter naming a category or a field.
Code = Annotated[str, StringConstraints(max_length=100, pattern=PRINTABLE)]
