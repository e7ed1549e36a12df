"""Receipts as compact JWS (RFC 7515) signed with the broker's current `receipt` key.

The payload is the receipt's canonical JSON; the protected header names the key (`kid`, found
in /.well-known/jwks.json), the algorithm (`Ed25519`, RFC 9864) and the payload's media type
(`cty`), so a reader knows which of the three formats it holds before parsing it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from joserfc import jws
from joserfc.jwk import OKPKey

from broker.ledger.events import canonical_json
from keys import KeyStore, KeyUse

ALGORITHM = "Ed25519"


class ReceiptFormat(StrEnum):
    """The receipt formats a consent can be downloaded in."""

    ISO27560 = "iso27560"
    KANTARA = "kantara"
    FHIR = "fhir"

    @property
    def content_type(self) -> str:
        """The media type of the payload, put in the JWS header as `cty`."""
        return "application/fhir+json" if self is ReceiptFormat.FHIR else "application/json"

    @property
    def profile(self) -> str:
        """What the payload follows, in words a person can look up."""
        return _PROFILES[self]


_PROFILES = {
    ReceiptFormat.ISO27560: "ISO/IEC TS 27560:2023 consent record (W3C DPV terms)",
    ReceiptFormat.KANTARA: "Kantara Initiative Consent Receipt v1.1",
    ReceiptFormat.FHIR: "HL7 FHIR R4 Consent",
}


def sign_receipt(keystore: KeyStore, fmt: ReceiptFormat, payload: dict[str, Any]) -> str:
    """The compact JWS of `payload` by the current receipt key."""
    key = keystore.current(KeyUse.RECEIPT)
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": "JOSE", "cty": fmt.content_type}
    return jws.serialize_compact(
        header,
        canonical_json(payload),
        OKPKey.import_key(key.private_key()),
        algorithms=[ALGORITHM],
    )
