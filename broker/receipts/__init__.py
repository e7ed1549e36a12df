"""Consent receipts: one consent as an ISO/IEC TS 27560 record, a Kantara Consent Receipt v1.1
and an HL7 FHIR R4 Consent, each signed as a compact JWS with the broker's published `receipt`
key. Nothing here knows HTTP; callers check first that the asker may see the consent.

Public surface: `ReceiptFormat`, `ReceiptSubject`, `load_subject`, `build_receipt`,
`sign_receipt`, `signed_receipt`, `ALGORITHM`.
"""

from __future__ import annotations

import uuid
from typing import Any

from broker.receipts._fhir import fhir_consent
from broker.receipts._iso27560 import iso27560_record
from broker.receipts._kantara import kantara_receipt
from broker.receipts._sign import ALGORITHM, ReceiptFormat, sign_receipt
from broker.receipts._subject import ReceiptSubject, load_subject
from keys import KeyStore, KeyUse

__all__ = [
    "ALGORITHM",
    "ReceiptFormat",
    "ReceiptSubject",
    "build_receipt",
    "load_subject",
    "sign_receipt",
    "signed_receipt",
]


def build_receipt(
    subject: ReceiptSubject, fmt: ReceiptFormat, *, public_key: str | None = None
) -> dict[str, Any]:
    """The unsigned receipt of `subject` in `fmt`, with a fresh receipt id where it has one."""
    receipt_id = uuid.uuid4()
    if fmt is ReceiptFormat.ISO27560:
        return iso27560_record(subject, receipt_id=f"urn:uuid:{receipt_id}")
    if fmt is ReceiptFormat.KANTARA:
        # Kantara asks for a bare UUID v4.
        return kantara_receipt(subject, receipt_id=str(receipt_id), public_key=public_key)
    return fhir_consent(subject)


def signed_receipt(keystore: KeyStore, subject: ReceiptSubject, fmt: ReceiptFormat) -> str:
    """The receipt of `subject` in `fmt` as a compact JWS by the current receipt key."""
    key = keystore.current(KeyUse.RECEIPT)
    payload = build_receipt(subject, fmt, public_key=key.info.public_key_b64)
    return sign_receipt(keystore, fmt, payload)
