"""An ISO/IEC TS 27560:2023 consent record, with the field names of the W3C DPV guide
"consent-27560" and DPV concepts as values (purposes, lawful basis, consent states, roles).

Mandatory fields all present: schema_version, record_id, receipt_id, pii_principal_id; per
processing: privacy_notice, language, purposes, pii_information, pii_controllers,
storage_locations, retention_period, jurisdiction, recipient_third_parties, withdrawal_method;
parties with id, name, address, contact and type; events with time, validity duration, entity,
type and state. The JSON Schema is docs/receipts/iso27560-record.schema.json.
"""

from __future__ import annotations

from typing import Any

from broker.catalogue.views import ServiceView
from broker.receipts._common import (
    COLLECTION_METHOD,
    DPV,
    JURISDICTION,
    RIGHT_TO_WITHDRAW,
    actor_role_iri,
    days,
    rfc3339,
    validity_days,
)
from broker.receipts._subject import ReceiptSubject

SCHEMA_VERSION = "ISO/IEC TS 27560:2023"


def iso27560_record(subject: ReceiptSubject, *, receipt_id: str) -> dict[str, Any]:
    """The consent record of `subject` as a JSON object, identified as receipt `receipt_id`."""
    consent = subject.consent
    validity = days(validity_days(consent.valid_from, consent.valid_until))
    special = any(f.special_category for f in subject.fields)
    return {
        "schema_version": SCHEMA_VERSION,
        "record_id": consent.id,
        "receipt_id": receipt_id,
        "receipt_time": rfc3339(subject.now),
        "issuer": subject.broker_url,
        "pii_principal_id": subject.person_id,
        "language": subject.language,
        "consent_status": consent.status.dpv_iri,
        "valid_from": rfc3339(consent.valid_from),
        "valid_until": rfc3339(consent.valid_until),
        "processing": [
            {
                "privacy_notice": subject.consumer.privacy_notice_url,
                "notice_id": f"{subject.agreement_id}/v{subject.agreement_version}",
                "notice_text": subject.text(subject.agreement_title),
                "notice_published": rfc3339(subject.published_at),
                "language": subject.language,
                "purposes": [
                    {
                        "purpose": subject.text(subject.purpose.name),
                        "purpose_description": subject.text(subject.purpose.description),
                        "purpose_type": subject.purpose.dpv,
                        "lawful_basis": subject.lawful_basis,
                    }
                ],
                "pii_information": [
                    {
                        "pii_type": f.category,
                        "pii_attribute_id": f.ref,
                        "pii_description": subject.text(f.description),
                        "pii_optional": not f.required,
                        "pii_granted": f.granted,
                        **(
                            {"special_pii_category": DPV + "SpecialCategoryPersonalData"}
                            if f.special_category
                            else {}
                        ),
                    }
                    for f in subject.fields
                ],
                "pii_controllers": [subject.consumer.id, subject.source.id],
                "collection_method": COLLECTION_METHOD,
                "processing_method": [DPV + "Disclose", DPV + "Use"],
                "storage_locations": [JURISDICTION],
                "retention_period": days(subject.retention_days),
                "jurisdiction": JURISDICTION,
                "service": subject.text(subject.consumer.name),
                "recipient_third_parties": [],
                "withdrawal_method": subject.withdrawal_url,
                "privacy_rights": [RIGHT_TO_WITHDRAW],
                "sensitive_pii": special,
            }
        ],
        "parties": [
            _party(subject, subject.consumer, "recipient"),
            _party(subject, subject.source, "source"),
        ],
        "events": [
            {
                "event_time": rfc3339(event.at),
                "validity_duration": validity,
                "entity_id": event.actor_id or "broker",
                "entity_role": actor_role_iri(event.actor_role),
                "event_type": event.event_type,
                "event_state": event.status.dpv_iri,
                **({"note": event.note} if event.note else {}),
            }
            for event in consent.history
        ],
    }


def _party(subject: ReceiptSubject, service: ServiceView, role: str) -> dict[str, Any]:
    return {
        "party_id": service.id,
        "party_name": service.organisation,
        "party_service": subject.text(service.name),
        # The catalogue holds no postal address: the privacy notice is where to find one.
        "party_address": service.privacy_notice_url,
        "party_contact": service.contact,
        "party_email": service.contact,
        "party_url": service.privacy_notice_url,
        "party_type": DPV + "DataController",
        "party_role": role,
    }
