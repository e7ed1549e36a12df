"""Opaque secrets (client secrets, codes, refresh tokens, cookies) and pairwise subjects.

Every such secret is 256 random bits, so it is stored as a plain SHA-256 hash (a slow password
hash buys nothing against a value that cannot be guessed) and compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from broker.storage.tables import BrokerSecret


def new_secret() -> str:
    """A fresh URL-safe secret of 256 random bits."""
    return secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """The hex SHA-256 under which a secret is stored and looked up."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    """Whether `secret` hashes to `stored_hash`, compared in constant time."""
    if stored_hash is None:
        return False
    return hmac.compare_digest(secret_hash(secret), stored_hash)


def server_secret(session: Session, name: str, now: datetime) -> bytes:
    """A named 256-bit server secret, created on first use (first writer wins across processes)."""
    row = session.get(BrokerSecret, name)
    if row is not None:
        return row.value
    value = secrets.token_bytes(32)
    try:
        with session.begin_nested():
            session.add(BrokerSecret(name=name, value=value, created_at=now))
    except IntegrityError:
        row = session.get(BrokerSecret, name)
        assert row is not None
        return row.value
    return value


def pairwise_subject(secret: bytes, sector: str, person_id: str) -> str:
    """The person's `sub` as one sector (service) sees it; two sectors cannot correlate them."""
    digest = hmac.new(secret, f"{sector}\x00{person_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
