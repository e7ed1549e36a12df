"""REST/JSON connector: a declarative mapping from a source's own API to a category's fields.

For each category: a URL template (relative to the source's base URL) with `{subject}` and
`{category}`, the JSON path of the list of records in the answer, and per field the JSON path of
its value within one record (see `connectors.jsonpath`). An absent value maps to None; a value
of the wrong shape, or an answer without the list, fails the whole fetch.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from connectors._http import JsonSource, Limits
from connectors._values import plain
from connectors.base import FetchRequest, Record, SourcePayloadInvalid, UnsupportedCategory
from connectors.jsonpath import MISSING, PathTypeError, Step, parse, resolve

_PLACEHOLDERS = frozenset({"subject", "category"})


@dataclass(frozen=True)
class RestCategory:
    """Where one category's records are and how their fields are read."""

    url: str
    """A path template such as "/v1/clients/{subject}/records/{category}"."""
    records: tuple[Step, ...]
    """The path of the list of records in the answer (empty: the answer is the list)."""
    fields: Mapping[str, tuple[Step, ...]]
    """Field name -> the path of its value within one record."""

    @classmethod
    def from_text(cls, *, url: str, records: str, fields: Mapping[str, str]) -> RestCategory:
        """A mapping from its textual form; ValueError if a template or path is malformed."""
        check_template(url)
        return cls(
            url=url,
            records=parse(records),
            fields={name: parse(path) for name, path in fields.items()},
        )


def check_template(url: str) -> None:
    """ValueError unless `url` is a path with only {subject} and {category} placeholders."""
    if not url.startswith("/"):
        raise ValueError(f"the URL template must be a path starting with '/': {url!r}")
    for _, name, spec, conversion in string.Formatter().parse(url):
        if name is not None and (name not in _PLACEHOLDERS or spec or conversion):
            raise ValueError(f"the URL template may use only {{subject}} and {{category}}: {url!r}")


def read_records(mapping: RestCategory, document: object, fields: tuple[str, ...]) -> list[Record]:
    """The records of one answer with the requested, mapped fields; SourcePayloadInvalid if the
    answer does not have the mapped shape."""
    try:
        items = resolve(document, mapping.records)
    except PathTypeError:
        items = MISSING
    if not isinstance(items, list):
        raise SourcePayloadInvalid("the source's answer has no list of records where mapped")
    records: list[Record] = []
    for item in items:
        if not isinstance(item, dict):
            raise SourcePayloadInvalid("a record in the source's answer is not an object")
        record: Record = {}
        for name in fields:
            path = mapping.fields.get(name)
            if path is None:
                continue
            try:
                value = resolve(item, path)
            except PathTypeError:
                raise SourcePayloadInvalid("a record has a value of the wrong shape") from None
            record[name] = None if value is MISSING else plain(value)
        records.append(record)
    return records


def _segment(value: str) -> str:
    """`value` as one path segment: a subject such as "../admin" or ".." cannot move the URL."""
    quoted = quote(value, safe="")
    # quote leaves dots alone, and a client normalises "." and ".." segments away.
    return quoted.replace(".", "%2E") if quoted in {".", ".."} else quoted


class RestConnector:
    """Fetches a category's records from a JSON API described by `RestCategory` mappings."""

    def __init__(
        self,
        source_id: str,
        *,
        base_url: str,
        audience: str,
        categories: Mapping[str, RestCategory],
        limits: Limits | None = None,
    ) -> None:
        self.source_id = source_id
        self.audience = audience
        self.base_url = base_url.rstrip("/")
        self.mappings = dict(categories)
        self.categories = frozenset(self.mappings)
        self.limits = limits or Limits()
        self._http = JsonSource(self.limits)

    def fetch(self, request: FetchRequest) -> list[Record]:
        """The mapped records of one GET; all of them or a ConnectorError."""
        mapping = self.mappings.get(request.category)
        if mapping is None:
            raise UnsupportedCategory("this source does not serve the category")
        path = mapping.url.format(
            subject=_segment(request.subject), category=_segment(request.category)
        )
        document = self._http.get_json(
            self.base_url + path, token=request.token, deadline=self._http.deadline()
        )
        return read_records(mapping, document, request.fields)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()
