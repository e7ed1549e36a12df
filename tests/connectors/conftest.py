"""Fixtures of the connector tests: a token issuer, the demo sources and a hostile source."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.demo.sources import fhir, social_care
from tests.connectors.support import (
    FHIR_AUDIENCE,
    SOCIAL_AUDIENCE,
    HostileSource,
    TokenIssuer,
    served,
)


@pytest.fixture(scope="module")
def issuer() -> Iterator[TokenIssuer]:
    """A token issuer with one published key, shared by a module's tests."""
    made = TokenIssuer()
    yield made
    made.close()


@pytest.fixture(scope="module")
def fhir_url(issuer: TokenIssuer) -> Iterator[str]:
    """The demo FHIR patient-record source on loopback (its FHIR base is `{url}/fhir`)."""
    with served(fhir.create_app(issuer.url, FHIR_AUDIENCE, issuer.jwks_url)) as url:
        yield url


@pytest.fixture(scope="module")
def social_url(issuer: TokenIssuer) -> Iterator[str]:
    """The demo social-care source on loopback."""
    with served(social_care.create_app(issuer.url, SOCIAL_AUDIENCE, issuer.jwks_url)) as url:
        yield url


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileSource]:
    """A source that misbehaves in the way its first path segment names."""
    made = HostileSource()
    yield made
    made.close()
