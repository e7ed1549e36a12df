"""The broker's sources, from a YAML file: which connector reaches each, where, as which audience.

    sources:
      patient-record:
        kind: fhir                      # FhirConnector: the categories it knows by default
        base_url: http://127.0.0.1:8001/fhir
        audience: urn:omadata:source:patient-record
      social-care:
        kind: rest                      # RestConnector: a mapping per category
        base_url: http://127.0.0.1:8002
        audience: urn:omadata:source:social-care
        url: /v1/clients/{subject}/records/{category}
        categories:
          social.client_plan:
            records: plans
            fields: {goals: goals, responsible_worker: worker.name}

Optional per source: `max_bytes` and `max_pages` (see `Limits`); for fhir `categories` (a
list) and `page_size`; for rest a `url` per category overriding the source's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError

from connectors._http import DEFAULT_MAX_BYTES, Limits
from connectors.base import Connector
from connectors.fhir import CATEGORIES as FHIR_CATEGORIES
from connectors.fhir import FhirConnector
from connectors.rest import RestCategory, RestConnector


class ConnectorConfigError(ValueError):
    """The connectors file is missing, malformed, or names something unknown."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Source(_Strict):
    base_url: HttpUrl
    audience: Annotated[str, Field(min_length=1)]
    max_bytes: Annotated[int, Field(gt=0)] = DEFAULT_MAX_BYTES
    max_pages: Annotated[int, Field(gt=0)] = 20


class _FhirSource(_Source):
    kind: Literal["fhir"]
    categories: list[str] = Field(default_factory=lambda: sorted(FHIR_CATEGORIES))
    page_size: Annotated[int, Field(gt=0, le=1000)] = 50


class _RestCategory(_Strict):
    url: str | None = None
    records: str = ""
    fields: dict[str, str]


class _RestSource(_Source):
    kind: Literal["rest"]
    url: str | None = None
    categories: dict[str, _RestCategory]


class _File(_Strict):
    sources: dict[str, Annotated[_FhirSource | _RestSource, Field(discriminator="kind")]]


def load_connectors(
    path: Path,
    *,
    base_urls: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> dict[str, Connector]:
    """A connector per source id in the YAML file at `path`; `base_urls` overrides the file's
    base URL per source id. ConnectorConfigError if anything in the file is wrong."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConnectorConfigError(f"cannot read the connectors file {path}: {exc}") from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConnectorConfigError(f"the connectors file {path} is not valid: {exc}") from None
    overrides = dict(base_urls or {})
    unknown = sorted(set(overrides) - set(parsed.sources))
    if unknown:
        raise ConnectorConfigError(f"base URLs given for unknown sources: {', '.join(unknown)}")
    connectors: dict[str, Connector] = {}
    for source_id, source in parsed.sources.items():
        base_url = overrides.get(source_id, str(source.base_url))
        limits = Limits(timeout=timeout, max_bytes=source.max_bytes, max_pages=source.max_pages)
        try:
            connectors[source_id] = _build(source_id, source, base_url, limits)
        except ValueError as exc:  # a bad template or path; UnsupportedCategory is no ValueError
            raise ConnectorConfigError(f"source {source_id!r}: {exc}") from None
    return connectors


def _build(
    source_id: str, source: _FhirSource | _RestSource, base_url: str, limits: Limits
) -> Connector:
    if isinstance(source, _FhirSource):
        unknown = sorted(set(source.categories) - set(FHIR_CATEGORIES))
        if unknown:
            raise ValueError(f"the FHIR connector has no mapping for {', '.join(unknown)}")
        return FhirConnector(
            source_id,
            base_url=base_url,
            audience=source.audience,
            categories=source.categories,
            page_size=source.page_size,
            limits=limits,
        )
    categories: dict[str, RestCategory] = {}
    for code, category in source.categories.items():
        url = category.url or source.url
        if url is None:
            raise ValueError(f"category {code!r} has no url and the source has none either")
        categories[code] = RestCategory.from_text(
            url=url, records=category.records, fields=category.fields
        )
    return RestConnector(
        source_id, base_url=base_url, audience=source.audience, categories=categories, limits=limits
    )
