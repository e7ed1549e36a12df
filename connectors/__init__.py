"""Connectors: how the broker fetches a person's records from a source, and how a source checks
the broker's token.

Public surface: the protocol and errors (`connectors.base`), `load_connectors`
(`connectors.config`), the FHIR R4 and REST/JSON connectors, and the source-side `SourceGuard`
(`connectors.guard`). Nothing here imports the broker: a source service can use the guard alone.
"""

from connectors._http import Limits
from connectors.base import (
    Connector,
    ConnectorError,
    FetchRequest,
    Record,
    SourcePayloadInvalid,
    SourceTimeout,
    SourceUnavailable,
    UnsupportedCategory,
)
from connectors.config import ConnectorConfigError, load_connectors
from connectors.fhir import FhirConnector
from connectors.guard import SourceGrant, SourceGuard, SourceRefused
from connectors.rest import RestCategory, RestConnector

__all__ = [
    "Connector",
    "ConnectorConfigError",
    "ConnectorError",
    "FetchRequest",
    "FhirConnector",
    "Limits",
    "Record",
    "RestCategory",
    "RestConnector",
    "SourceGrant",
    "SourceGuard",
    "SourcePayloadInvalid",
    "SourceRefused",
    "SourceTimeout",
    "SourceUnavailable",
    "UnsupportedCategory",
    "load_connectors",
]
