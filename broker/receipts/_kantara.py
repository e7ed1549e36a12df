"""A Kantara Initiative Consent Receipt, specification v1.1 (KI-CR-v1.1.0), as JSON.

One service (the consumer) with one purpose, the categories it may get, the controllers (the
consumer, and the source that discloses on the consent), and the sensitive categories. The
JSON Schema is docs/receipts/kantara-cr-v1.1.schema.json.
"""

from __future__ import annotations

from typing import Any

from broker.catalogue.views import ServiceView
from broker.receipts._common import COLLECTION_METHOD, JURISDICTION, is_active, rfc3339
from broker.receipts._subject import ReceiptSubject

VERSION = "KI-CR-v1.1.0"

# When the consent ends, in the receipt's language: while it runs, and once it has ended.
_TERMINATION = {
    "fi": (
        "Voimassa {until} asti tai kunnes peruutat suostumuksen: {url}",
        "Päättynyt ({status}). Tietoja ei enää luovuteta tämän suostumuksen perusteella.",
    ),
    "sv": (
        "Gäller till {until} eller tills du återkallar samtycket: {url}",
        "Har upphört ({status}). Inga uppgifter lämnas längre ut med stöd av detta samtycke.",
    ),
    "en": (
        "Valid until {until} or until you withdraw the consent: {url}",
        "Ended ({status}). No data is released on this consent any more.",
    ),
}


def kantara_receipt(
    subject: ReceiptSubject, *, receipt_id: str, public_key: str | None
) -> dict[str, Any]:
    """The Kantara receipt of `subject`; `public_key` is the signing key's JWK "x" (optional)."""
    consent = subject.consent
    granted = [c for c in subject.categories if any(f.granted for f in c.fields)]
    sensitive = [c for c in granted if any(f.granted and f.special_category for f in c.fields)]
    until = rfc3339(consent.valid_until)
    running, ended = _TERMINATION.get(subject.language, _TERMINATION["en"])
    if is_active(consent.status):
        termination = running.format(until=until, url=subject.withdrawal_url)
    else:
        termination = ended.format(status=consent.status.dpv_iri)
    receipt: dict[str, Any] = {
        "version": VERSION,
        "jurisdiction": JURISDICTION,
        "consentTimestamp": int(consent.valid_from.timestamp()),
        "collectionMethod": COLLECTION_METHOD,
        "consentReceiptID": receipt_id,
        "language": subject.language,
        "piiPrincipalId": subject.person_id,
        "piiControllers": [
            _controller(subject.consumer, on_behalf=False),
            _controller(subject.source, on_behalf=False),
        ],
        "policyUrl": subject.consumer.privacy_notice_url,
        "services": [
            {
                "service": subject.text(subject.consumer.name),
                "purposes": [
                    {
                        "purpose": subject.text(subject.purpose.name),
                        "purposeCategory": [subject.purpose.dpv],
                        "consentType": "EXPLICIT",
                        "piiCategory": [subject.text(c.name) for c in granted],
                        "primaryPurpose": True,
                        "termination": termination,
                        "thirdPartyDisclosure": False,
                    }
                ],
            }
        ],
        "sensitive": bool(sensitive),
        "spiCat": [subject.text(c.name) for c in sensitive],
    }
    if public_key is not None:
        receipt["publicKey"] = public_key
    return receipt


def _controller(service: ServiceView, *, on_behalf: bool) -> dict[str, Any]:
    return {
        "piiController": service.organisation,
        "onBehalf": on_behalf,
        "contact": service.contact,
        # The catalogue keeps no street address; the country is what is known for certain.
        "address": {"addressCountry": JURISDICTION},
        "email": service.contact,
        "phone": "",
        "piiControllerUrl": service.privacy_notice_url,
    }
