"""The short-lived token the broker presents to a source when it fetches for a consent.

It names the source as audience, the person by their identifier at that source, and exactly
the category and fields the consent permits, so a source that checks it with
`connectors.guard.SourceGuard` learns what it may return without trusting the broker's word
for anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from broker.auth.tokens import issue_access_token
from keys import KeyStore

BROKER_CLIENT_ID = "omadata-broker"
SOURCE_SCOPE = "source:read"
LIFETIME = timedelta(seconds=60)


def source_audience(source_id: str) -> str:
    """The default `aud` of tokens for a source that names no audience of its own."""
    return f"urn:omadata:source:{source_id}"


def issue_source_token(
    keystore: KeyStore,
    *,
    issuer: str,
    audience: str,
    subject: str,
    consent_id: str,
    category: str,
    fields: Sequence[str],
    purpose: str,
    now: datetime,
) -> str:
    """A signed at+jwt for one fetch from one source, valid for a minute."""
    return issue_access_token(
        keystore,
        issuer=issuer,
        audience=audience,
        subject=subject,
        client_id=BROKER_CLIENT_ID,
        scopes=[SOURCE_SCOPE],
        now=now,
        lifetime=LIFETIME,
        extra={
            "consent_id": consent_id,
            "category": category,
            "fields": list(fields),
            "purpose": purpose,
        },
    )
