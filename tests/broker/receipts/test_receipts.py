"""Consent receipts: each format validates against its schema or model, says what the consent
says (granted, left out, refused, withdrawn, by a guardian), and is a JWS by the receipt key."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.consent import Consent
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet, OKPKey
from jsonschema import Draft202012Validator
from sqlalchemy import Engine

from broker.consents import service as consents
from broker.ledger.sequencer import unit_of_work
from broker.receipts import (
    ReceiptFormat,
    ReceiptSubject,
    build_receipt,
    load_subject,
    signed_receipt,
)
from broker.storage import transaction
from keys import KeyStore, KeyUse
from policies import FieldRef
from tests.conftest import NOW

AINO, MATTI, EELIS = "aino-virtanen", "matti-korhonen", "eelis-korhonen"
LABS = "selfcare-labs-medications"
BROKER = "https://omadata.example.fi"
SCHEMAS = Path(__file__).resolve().parents[3] / "docs" / "receipts"
GRANTED = [
    FieldRef("health.lab_results", f) for f in ("test_name", "value", "unit", "taken_at")
] + [FieldRef("health.medications", f) for f in ("medication_name", "dosage")]


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


ISO = _validator("iso27560-record.schema.json")
KANTARA = _validator("kantara-cr-v1.1.schema.json")


def _subject(engine: Engine, consent_id: str, language: str = "en") -> ReceiptSubject:
    with transaction(engine, readonly=True) as session:
        return load_subject(
            session, consent_id, now=NOW + timedelta(hours=1), language=language, broker_url=BROKER
        )


def _given(engine: Engine, work: Callable[..., Any]) -> str:
    with unit_of_work(engine) as (session, log):
        record = work(session, log)
    return str(record.id)


def _labs(engine: Engine) -> str:
    return _given(
        engine,
        lambda s, log: consents.give_consent(
            s, log, person_id=AINO, agreement_id=LABS, fields=GRANTED, actor_id=AINO, now=NOW
        ),
    )


def _codes(items: list[dict[str, Any]]) -> set[str]:
    return {c["coding"][0]["code"] for c in items}


def test_every_format_of_a_partial_consent_validates_and_says_what_was_left_out(
    demo: Engine,
) -> None:
    subject = _subject(demo, _labs(demo))
    iso = build_receipt(subject, ReceiptFormat.ISO27560)
    kantara = build_receipt(subject, ReceiptFormat.KANTARA)
    fhir = build_receipt(subject, ReceiptFormat.FHIR)

    assert not list(ISO.iter_errors(iso)), list(ISO.iter_errors(iso))
    assert not list(KANTARA.iter_errors(kantara)), list(KANTARA.iter_errors(kantara))
    Consent.model_validate(fhir)

    granted = {f"{f.category}.{f.field}" for f in GRANTED}
    asked = {p["pii_attribute_id"] for p in iso["processing"][0]["pii_information"]}
    left_out = asked - granted
    assert left_out == {
        "health.lab_results.reference_range",
        "health.lab_results.test_code",
        "health.medications.atc_code",
        "health.medications.started_on",
    }
    shown = {
        p["pii_attribute_id"]: p["pii_granted"] for p in iso["processing"][0]["pii_information"]
    }
    assert {k for k, v in shown.items() if v} == granted
    assert iso["consent_status"] == "https://w3id.org/dpv#ConsentGiven"
    assert (
        iso["processing"][0]["purposes"][0]["purpose_type"]
        == "https://w3id.org/dpv#ServiceProvision"
    )
    assert iso["processing"][0]["withdrawal_method"].startswith(f"{BROKER}/my/consents/")
    assert [e["event_type"] for e in iso["events"]] == ["consent.given"]

    assert kantara["piiPrincipalId"] == AINO
    assert kantara["sensitive"] is True
    assert set(kantara["services"][0]["purposes"][0]["piiCategory"]) == {"Lab results", "Medicines"}

    # The permit names exactly the granted fields; what was left out is an explicit deny.
    provision = fhir["provision"]
    assert (fhir["status"], provision["type"]) == ("active", "permit")
    assert _codes(provision["code"]) == granted
    assert [p["type"] for p in provision["provision"]] == ["deny"]
    assert _codes(provision["provision"][0]["code"]) == left_out
    assert provision["period"]["end"] == "2027-11-23T09:00:00Z"
    assert {a["reference"]["identifier"]["value"] for a in provision["actor"]} == {
        "selfcare-app",
        "patient-record",
    }


def test_a_refusal_denies_everything_asked_and_grants_nothing(demo: Engine) -> None:
    refused = _given(
        demo,
        lambda s, log: consents.refuse_consent(
            s, log, person_id=AINO, agreement_id="research-diagnoses", actor_id=AINO, now=NOW
        ),
    )
    subject = _subject(demo, refused)
    fhir = build_receipt(subject, ReceiptFormat.FHIR)
    Consent.model_validate(fhir)
    assert (fhir["status"], fhir["provision"]["type"]) == ("rejected", "deny")
    assert "provision" not in fhir["provision"]
    assert _codes(fhir["provision"]["code"]) == {f.ref for f in subject.fields}
    iso = build_receipt(subject, ReceiptFormat.ISO27560)
    assert not list(ISO.iter_errors(iso))
    assert iso["consent_status"] == "https://w3id.org/dpv#ConsentRefused"
    assert not any(p["pii_granted"] for p in iso["processing"][0]["pii_information"])
    kantara = build_receipt(subject, ReceiptFormat.KANTARA)
    assert not list(KANTARA.iter_errors(kantara))
    assert kantara["services"][0]["purposes"][0]["piiCategory"] == []
    assert "Ended" in kantara["services"][0]["purposes"][0]["termination"]


def test_a_withdrawn_consent_is_inactive_from_the_moment_of_withdrawal(demo: Engine) -> None:
    consent_id = _labs(demo)
    later = NOW + timedelta(minutes=30)
    _given(
        demo,
        lambda s, log: consents.withdraw_consent(
            s, log, consent_id=consent_id, actor_id=AINO, now=later
        ),
    )
    subject = _subject(demo, consent_id, language="fi")
    fhir = build_receipt(subject, ReceiptFormat.FHIR)
    Consent.model_validate(fhir)
    assert fhir["status"] == "inactive"
    assert fhir["provision"]["period"]["end"] == "2026-11-23T09:30:00Z"
    iso = build_receipt(subject, ReceiptFormat.ISO27560)
    assert [e["event_state"] for e in iso["events"]] == [
        "https://w3id.org/dpv#ConsentGiven",
        "https://w3id.org/dpv#ConsentWithdrawn",
    ]
    assert iso["language"] == "fi"
    assert iso["processing"][0]["purposes"][0]["purpose"] == "Omahoidon tuki"


def test_a_guardians_consent_names_the_guardian_as_the_one_who_gave_it(demo: Engine) -> None:
    consent_id = _given(
        demo,
        lambda s, log: consents.give_consent(
            s,
            log,
            person_id=EELIS,
            agreement_id="selfcare-immunisations",
            actor_id=MATTI,
            now=NOW,
        ),
    )
    subject = _subject(demo, consent_id)
    fhir = build_receipt(subject, ReceiptFormat.FHIR)
    assert fhir["patient"]["identifier"]["value"] == EELIS
    assert fhir["performer"][0]["identifier"]["value"] == MATTI
    assert fhir["performer"][0]["display"] == "Matti Korhonen"
    iso = build_receipt(subject, ReceiptFormat.ISO27560)
    assert iso["events"][0]["entity_id"] == MATTI
    assert iso["events"][0]["entity_role"] == "https://w3id.org/dpv#GuardianOfDataSubject"


@pytest.mark.parametrize("fmt", list(ReceiptFormat))
def test_receipts_are_signed_with_the_published_receipt_key_only(
    demo: Engine, tmp_path: Path, fmt: ReceiptFormat
) -> None:
    keystore = KeyStore.open(tmp_path / "keys", None, production=False)
    for use in KeyUse:
        keystore.ensure(use, NOW)
    token = signed_receipt(keystore, _subject(demo, _labs(demo)), fmt)
    published = KeySet.import_key_set(keystore.jwks([KeyUse.RECEIPT]))  # type: ignore[arg-type]
    verified = jws.deserialize_compact(token, published, algorithms=["Ed25519"])
    header = verified.protected
    assert header["kid"] == keystore.current(KeyUse.RECEIPT).kid
    assert header["cty"] == fmt.content_type
    payload = json.loads(verified.payload)
    if fmt is ReceiptFormat.FHIR:
        Consent.model_validate(payload)
    else:
        assert not list((ISO if fmt is ReceiptFormat.ISO27560 else KANTARA).iter_errors(payload))

    # Another key of the broker (the token key) must not verify it, nor a changed payload.
    token_key = OKPKey.import_key(keystore.jwks([KeyUse.TOKEN])["keys"][0])  # type: ignore[arg-type]
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(token, token_key, algorithms=["Ed25519"])
    head, body, signature = token.split(".")
    forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(f"{head}.{forged}.{signature}", published, algorithms=["Ed25519"])
