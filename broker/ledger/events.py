"""What goes into the audit log: event types and the exact bytes of each leaf.

A leaf is canonical JSON (sorted keys, no insignificant white space, UTF-8, no floats) and
carries no personal data: services, category codes, purpose, field names, timestamps, the
consent id, and a per-person tag HMAC-SHA256(person secret, nonce). The broker and the person,
who hold the secret, can find the person's entries; nobody else can link them.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from broker.errors import InvalidInput

LEAF_VERSION = 1
NONCE_BYTES = 16

JsonScalar = str | int | bool | None
JsonValue = JsonScalar | Sequence[str]


class EventType(StrEnum):
    """Every kind of log entry, `subject.action`."""

    CONSENT_GIVEN = "consent.given"
    CONSENT_REFUSED = "consent.refused"
    CONSENT_WITHDRAWN = "consent.withdrawn"
    CONSENT_EXPIRED = "consent.expired"
    CONSENT_REVOKED = "consent.revoked"
    AGREEMENT_PUBLISHED = "agreement.published"
    DATA_RELEASED = "data.released"
    DATA_RELEASE_DENIED = "data.release_denied"
    DATA_RELEASE_FAILED = "data.release_failed"
    KEY_ROTATED = "key.rotated"
    DELEGATION_GRANTED = "delegation.granted"
    DELEGATION_ENDED = "delegation.ended"


_RESERVED = frozenset({"v", "type", "at", "subject"})


@dataclass(frozen=True)
class LogRecord:
    """One event to append. `person_id` never enters the leaf: it becomes the tag.

    `attributes` hold only non-personal values; `private` holds what the broker keeps beside the
    leaf in its own table (for example who acted), never in the log itself.
    """

    type: EventType
    at: datetime
    attributes: Mapping[str, JsonValue]
    person_id: str | None = None
    consent_id: str | None = None
    private: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = _RESERVED & set(self.attributes)
        if clash:
            raise InvalidInput(f"log attributes may not be named {sorted(clash)}")
        if self.at.tzinfo is None:
            raise InvalidInput("log timestamps must be timezone-aware")
        for key, value in self.attributes.items():
            if isinstance(value, float):
                raise InvalidInput(f"log attribute {key} is a float; leaves hold no floats")


# One encoder for every leaf: json.dumps with options builds a new one per call.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant white space, UTF-8: one value, one byte string."""
    return _CANONICAL.encode(value).encode("utf-8")


def timestamp(at: datetime) -> str:
    """RFC 3339 UTC with microseconds and a Z, the only time format in leaves."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_nonce() -> bytes:
    """A fresh random nonce for one entry's person tag."""
    return secrets.token_bytes(NONCE_BYTES)


def person_tag(secret: bytes, nonce: bytes) -> bytes:
    """HMAC-SHA256(secret, nonce): links an entry to a person only for who holds the secret."""
    return hmac.digest(secret, nonce, "sha256")


def encode_leaf(record: LogRecord, subject: tuple[bytes, bytes] | None) -> bytes:
    """The leaf bytes for `record`; `subject` is (nonce, tag) when the event is about a person."""
    body: dict[str, Any] = {
        "v": LEAF_VERSION,
        "type": record.type.value,
        "at": timestamp(record.at),
    }
    for key, value in record.attributes.items():
        body[key] = value if isinstance(value, JsonScalar) else list(value)
    if subject is not None:
        nonce, tag = subject
        body["subject"] = {"nonce": nonce.hex(), "tag": tag.hex()}
    return canonical_json(body)


def decode_leaf(leaf: bytes) -> dict[str, Any]:
    """Parse leaf bytes; raises ValueError unless they are canonical JSON of a leaf object."""
    value = json.loads(leaf.decode("utf-8"))
    if not isinstance(value, dict) or value.get("v") != LEAF_VERSION or "type" not in value:
        raise ValueError("not a broker log leaf")
    if canonical_json(value) != leaf:
        raise ValueError("leaf bytes are not in canonical form")
    return value


def leaf_is_about(leaf: Mapping[str, Any], secret: bytes) -> bool:
    """True when the leaf's tag was made with this person's secret (constant-time compare)."""
    subject = leaf.get("subject")
    if not isinstance(subject, dict):
        return False
    try:
        nonce = bytes.fromhex(str(subject["nonce"]))
        tag = bytes.fromhex(str(subject["tag"]))
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(person_tag(secret, nonce), tag)
