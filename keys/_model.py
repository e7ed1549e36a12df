"""What a key is for, and what may be published about it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keys._jwk import b64url


class KeyUse(StrEnum):
    """The one job a key does; every use has its own keys so one leak cannot forge another."""

    LOG = "log"
    """Signs audit-log checkpoints."""
    TOKEN = "token"  # noqa: S105 - a key use, not a credential
    """Signs OAuth access tokens."""
    RECEIPT = "receipt"
    """Signs consent receipts."""
    NOTIFY = "notify"
    """Signs webhook notifications."""


@dataclass(frozen=True, slots=True)
class PublicKeyInfo:
    """A key's public half and its validity window: safe to publish, kept forever.

    The key signs from `not_before` until `not_after` (exclusive); `not_after` is None while it
    is the current key. `retired_at` is when a newer key replaced it.
    """

    kid: str
    use: KeyUse
    public_key: bytes
    created_at: datetime
    not_before: datetime
    not_after: datetime | None
    retired_at: datetime | None

    @property
    def public_key_b64(self) -> str:
        """The raw 32-byte public key, base64url without padding (the JWK "x")."""
        return b64url(self.public_key)

    def valid_at(self, now: datetime) -> bool:
        """Whether the key's signing window includes `now`."""
        return self.not_before <= now and (self.not_after is None or now < self.not_after)

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether `signature` is this key's Ed25519 signature of `data` (window not checked)."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, data)
        except InvalidSignature:
            return False
        return True
