"""Giving, refusing and withdrawing consents, and deciding releases from stored consents."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.catalogue.schema import AgreementSpec
from broker.catalogue.service import publish_agreement
from broker.consents import service as consents
from broker.errors import Conflict, ConsentNotActive, InvalidInput, NotFound, NotPermitted
from broker.ledger.sequencer import unit_of_work
from broker.storage import transaction
from broker.storage.tables import Consent, ConsentEvent
from policies import ActorRole, ConsentStatus, DenyReason, FieldRef, ReleaseRequest
from tests.conftest import NOW

AINO, MATTI, EELIS, KARIN = "aino-virtanen", "matti-korhonen", "eelis-korhonen", "karin-lindqvist"
LABS = "health.lab_results"


def _lab_request(person: str, fields: frozenset[str] | None = None) -> ReleaseRequest:
    return ReleaseRequest(
        person_id=person,
        consumer="selfcare-app",
        source="patient-record",
        category=LABS,
        purpose="self_care_guidance",
        fields=fields,
    )


def test_aino_consents_to_the_selfcare_app_and_it_may_read_her_lab_results(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        record = consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-labs-medications",
            actor_id=AINO,
            now=NOW,
        )
    assert record.status is ConsentStatus.GIVEN
    assert record.valid_until == NOW + timedelta(days=365)
    assert [(e.event_type, e.actor_role) for e in record.history] == [
        ("consent.given", ActorRole.SELF)
    ]
    with transaction(demo, readonly=True) as session:
        decision = consents.decide_release(
            session, _lab_request(AINO, frozenset({"value", "unit"})), NOW + timedelta(hours=1)
        )
    assert decision.permitted
    assert decision.consent_id == record.id
    assert decision.fields == {"value", "unit"}


def test_leaving_out_an_optional_field_means_it_is_never_released(demo: Engine) -> None:
    required = ["test_name", "value", "unit", "taken_at"]
    chosen = [FieldRef(LABS, f) for f in required] + [
        FieldRef("health.medications", f) for f in ("medication_name", "dosage")
    ]
    with unit_of_work(demo) as (session, log):
        consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-labs-medications",
            fields=chosen,
            actor_id=AINO,
            now=NOW,
        )
        decision = consents.decide_release(session, _lab_request(AINO), NOW)
    assert decision.fields == set(required)
    assert "reference_range" not in decision.fields


def test_required_fields_cannot_be_left_out(demo: Engine) -> None:
    with pytest.raises(InvalidInput, match="required"), unit_of_work(demo) as (session, log):
        consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-labs-medications",
            fields=[FieldRef(LABS, "value")],
            actor_id=AINO,
            now=NOW,
        )


def test_fields_outside_the_agreement_cannot_be_granted(demo: Engine) -> None:
    with (
        pytest.raises(InvalidInput, match="does not ask for"),
        unit_of_work(demo) as (session, log),
    ):
        consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-immunisations",
            fields=[FieldRef(LABS, "value")],
            actor_id=AINO,
            now=NOW,
        )


def test_a_consent_cannot_outlast_the_agreement_maximum(demo: Engine) -> None:
    with pytest.raises(InvalidInput, match="1 to 365 days"), unit_of_work(demo) as (session, log):
        consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-labs-medications",
            actor_id=AINO,
            now=NOW,
            valid_days=366,
        )


def test_withdrawal_stops_the_next_release_and_is_kept_in_the_history(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        given = consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-labs-medications",
            actor_id=AINO,
            now=NOW,
        )
    later = NOW + timedelta(minutes=5)
    with unit_of_work(demo) as (session, log):
        withdrawn = consents.withdraw_consent(
            session, log, consent_id=given.id, actor_id=AINO, now=later, note="I stopped using it"
        )
    assert withdrawn.status is ConsentStatus.WITHDRAWN
    assert [e.status for e in withdrawn.history] == [ConsentStatus.GIVEN, ConsentStatus.WITHDRAWN]
    assert withdrawn.history[1].note == "I stopped using it"
    with transaction(demo, readonly=True) as session:
        decision = consents.decide_release(session, _lab_request(AINO), later)
    assert not decision.permitted
    assert decision.reason is DenyReason.CONSENT_WITHDRAWN
    with pytest.raises(ConsentNotActive), unit_of_work(demo) as (session, log):
        consents.withdraw_consent(session, log, consent_id=given.id, actor_id=AINO, now=later)


def test_an_expired_consent_denies_without_any_background_task(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-labs-medications",
            actor_id=AINO,
            now=NOW,
            valid_days=1,
        )
    with transaction(demo, readonly=True) as session:
        decision = consents.decide_release(session, _lab_request(AINO), NOW + timedelta(days=1))
        listed = consents.list_consents(session, AINO, NOW + timedelta(days=1))
    assert decision.reason is DenyReason.CONSENT_EXPIRED
    assert listed[0].status is ConsentStatus.EXPIRED


def test_a_refusal_is_recorded_and_grants_nothing(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        record = consents.refuse_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-labs-medications",
            actor_id=AINO,
            now=NOW,
        )
        decision = consents.decide_release(session, _lab_request(AINO), NOW)
    assert record.status is ConsentStatus.REFUSED
    assert record.fields == []
    assert decision.reason is DenyReason.CONSENT_REFUSED


def test_a_guardian_consents_for_the_child_and_the_record_says_so(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        record = consents.give_consent(
            session,
            log,
            person_id=EELIS,
            agreement_id="selfcare-immunisations",
            actor_id=MATTI,
            now=NOW,
        )
    assert record.person_id == EELIS
    assert record.given_by == MATTI
    assert record.actor_role is ActorRole.GUARDIAN
    with transaction(demo, readonly=True) as session:
        stored = session.get(Consent, record.id)
        assert stored is not None
        assert stored.delegation_id is not None


def test_a_mandate_to_view_does_not_allow_consenting(demo: Engine) -> None:
    with pytest.raises(NotPermitted), unit_of_work(demo) as (session, log):
        consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-immunisations",
            actor_id=KARIN,
            now=NOW,
        )


def test_a_stranger_cannot_withdraw_someone_elses_consent(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        given = consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-immunisations",
            actor_id=AINO,
            now=NOW,
        )
    with pytest.raises(NotPermitted), unit_of_work(demo) as (session, log):
        consents.withdraw_consent(session, log, consent_id=given.id, actor_id=MATTI, now=NOW)
    with transaction(demo, readonly=True) as session:
        assert consents.get_consent(session, given.id, NOW).status is ConsentStatus.GIVEN


def test_a_guardianship_ends_when_the_child_comes_of_age(demo: Engine) -> None:
    adulthood = NOW.replace(year=2034, month=3, day=14)
    with pytest.raises(NotPermitted), unit_of_work(demo) as (session, log):
        consents.give_consent(
            session,
            log,
            person_id=EELIS,
            agreement_id="selfcare-immunisations",
            actor_id=MATTI,
            now=adulthood,
        )


def test_one_active_consent_per_agreement(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-immunisations",
            actor_id=AINO,
            now=NOW,
        )
    with (
        pytest.raises(Conflict, match="already an active consent"),
        unit_of_work(demo) as (session, log),
    ):
        consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-immunisations",
            actor_id=AINO,
            now=NOW,
        )


def test_a_new_agreement_version_never_widens_an_existing_consent(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        given = consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-immunisations",
            fields=None,
            actor_id=AINO,
            now=NOW,
        )
    spec = next(
        a
        for a in read_catalogue(demo_catalogue_path()).agreements
        if a.id == "selfcare-immunisations"
    )
    wider = spec.model_dump()
    wider["version"] = 2
    wider["items"].append({"category": LABS, "required": ["value"], "optional": []})
    with unit_of_work(demo) as (session, log):
        publish_agreement(session, log, AgreementSpec.model_validate(wider), NOW)
    with transaction(demo, readonly=True) as session:
        record = consents.get_consent(session, given.id, NOW)
        decision = consents.decide_release(
            session,
            ReleaseRequest(
                person_id=AINO,
                consumer="selfcare-app",
                source="patient-record",
                category=LABS,
                purpose="self_care_guidance",
            ),
            NOW,
        )
    assert record.agreement_version == 1
    assert all(f.category == "health.immunisations" for f in record.fields)
    assert not decision.permitted


def test_revocation_by_an_operator_needs_a_reason_and_ends_the_consent(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        given = consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-immunisations",
            actor_id=AINO,
            now=NOW,
        )
    with pytest.raises(InvalidInput), unit_of_work(demo) as (session, log):
        consents.revoke_consent(session, log, consent_id=given.id, now=NOW, note=" ")
    with unit_of_work(demo) as (session, log):
        revoked = consents.revoke_consent(
            session, log, consent_id=given.id, now=NOW, note="The app lost its licence."
        )
    assert revoked.status is ConsentStatus.REVOKED
    assert revoked.history[-1].actor_role is ActorRole.OPERATOR


def test_a_failed_give_leaves_no_half_written_consent(demo: Engine) -> None:
    with pytest.raises(InvalidInput), unit_of_work(demo) as (session, log):
        consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-labs-medications",
            fields=[FieldRef(LABS, "value")],
            actor_id=AINO,
            now=NOW,
        )
    with transaction(demo, readonly=True) as session:
        assert session.exec(select(func.count()).select_from(Consent)).one() == 0
        assert session.exec(select(func.count()).select_from(ConsentEvent)).one() == 0


def test_unknown_people_and_agreements_are_named_in_the_error(demo: Engine) -> None:
    with pytest.raises(NotFound, match="nobody"), unit_of_work(demo) as (session, log):
        consents.give_consent(
            session,
            log,
            person_id="nobody",
            agreement_id="selfcare-immunisations",
            actor_id="nobody",
            now=NOW,
        )
    with pytest.raises(NotFound, match="no-such"), unit_of_work(demo) as (session, log):
        consents.give_consent(
            session, log, person_id=AINO, agreement_id="no-such", actor_id=AINO, now=NOW
        )


def test_list_shows_each_consent_with_its_history(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        first = consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-immunisations",
            actor_id=AINO,
            now=NOW,
        )
        consents.refuse_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="research-diagnoses",
            actor_id=AINO,
            now=NOW + timedelta(seconds=1),
        )
        consents.withdraw_consent(
            session, log, consent_id=first.id, actor_id=AINO, now=NOW + timedelta(seconds=2)
        )
    with transaction(demo, readonly=True) as session:
        listed = consents.list_consents(session, AINO, NOW + timedelta(seconds=3))
        assert consents.list_consents(session, MATTI, NOW) == []
    assert [(c.agreement_id, c.status) for c in listed] == [
        ("research-diagnoses", ConsentStatus.REFUSED),
        ("selfcare-immunisations", ConsentStatus.WITHDRAWN),
    ]
    assert len(listed[1].history) == 2
