"""An HL7 FHIR R4 Consent resource, validated with `fhir.resources` (its R4B models, which
read and write R4's Consent unchanged).

The consent is one `permit` provision for the consumer (role IRCP, information recipient)
and the source (role CST, custodian), with the DPV purpose and one code per granted field.
Fields the agreement asks for but the person left out are a nested `deny` provision, so a
reader that only looks at the top level still cannot mistake them for permitted. A refusal is
a `deny` of everything asked, with status `rejected`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir.resources.R4B.consent import Consent

from broker.catalogue.views import ServiceView
from broker.receipts._common import DPV, is_active, rfc3339
from broker.receipts._subject import ReceiptField, ReceiptSubject
from policies import ConsentStatus

_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
_LOINC = "http://loinc.org"


def fhir_consent(subject: ReceiptSubject) -> dict[str, Any]:
    """The FHIR R4 Consent of `subject`; ValueError if it does not validate (a bug of ours)."""
    consent = subject.consent
    refused = consent.status is ConsentStatus.REFUSED
    active = is_active(consent.status)
    status = "active" if active else ("rejected" if refused else "inactive")
    granted = [f for f in subject.fields if f.granted]
    left_out = [f for f in subject.fields if not f.granted]
    provision: dict[str, Any] = {
        "type": "deny" if refused else "permit",
        "period": {
            "start": rfc3339(consent.valid_from),
            "end": rfc3339(_ended_at(subject) if not active else consent.valid_until),
        },
        "actor": [
            _actor(subject, subject.consumer, "IRCP", "information recipient"),
            _actor(subject, subject.source, "CST", "custodian"),
        ],
        "action": [{"coding": [{"system": _ACTION, "code": "disclose", "display": "Disclose"}]}],
        "purpose": [
            {
                "system": DPV.rstrip("#"),
                "code": subject.purpose.dpv.removeprefix(DPV),
                "display": subject.text(subject.purpose.name),
            }
        ],
        "code": [_code(subject, f) for f in (subject.fields if refused else granted)],
    }
    if any(f.special_category for f in granted):
        provision["securityLabel"] = [
            {"system": _CONFIDENTIALITY, "code": "R", "display": "restricted"}
        ]
    if left_out and not refused:
        provision["provision"] = [
            {"type": "deny", "code": [_code(subject, f) for f in left_out]},
        ]
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": consent.id,
        "language": subject.language,
        "meta": {"lastUpdated": rfc3339(subject.now), "source": subject.broker_url},
        "identifier": [{"system": f"{subject.broker_url}/consents", "value": consent.id}],
        "status": status,
        "scope": {
            "coding": [{"system": _SCOPE, "code": "patient-privacy", "display": "Privacy Consent"}]
        },
        "category": [{"coding": [{"system": _LOINC, "code": "59284-0"}]}],
        "patient": {
            "identifier": {"system": f"{subject.broker_url}/persons", "value": subject.person_id},
            "display": subject.person_name,
        },
        "dateTime": rfc3339(consent.valid_from),
        "performer": [
            {
                "identifier": {
                    "system": f"{subject.broker_url}/persons",
                    "value": consent.given_by,
                },
                "display": subject.actor_names.get(consent.given_by, consent.given_by),
            }
        ],
        "policy": [{"authority": subject.broker_url, "uri": subject.consumer.privacy_notice_url}],
        "provision": provision,
    }
    Consent.model_validate(resource)
    return resource


def _ended_at(subject: ReceiptSubject) -> datetime:
    """When an inactive consent stopped: its last event, or its end of validity if sooner."""
    consent = subject.consent
    if consent.status is ConsentStatus.EXPIRED or not consent.history:
        return consent.valid_until
    return min(consent.history[-1].at, consent.valid_until)


def _actor(
    subject: ReceiptSubject, service: ServiceView, code: str, display: str
) -> dict[str, Any]:
    return {
        "role": {"coding": [{"system": _PARTICIPATION, "code": code, "display": display}]},
        "reference": {
            "identifier": {"system": f"{subject.broker_url}/services", "value": service.id},
            "display": f"{subject.text(service.name)} ({service.organisation})",
        },
    }


def _code(subject: ReceiptSubject, field: ReceiptField) -> dict[str, Any]:
    return {
        "coding": [
            {
                "system": f"{subject.broker_url}/v1/categories",
                "code": field.ref,
                "display": subject.text(field.description),
            }
        ]
    }
