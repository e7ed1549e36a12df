"""Small reads and writes of consent rows. Status changes go only through `append_event`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, func, select

from broker.storage.tables import Consent, ConsentEvent, ConsentField, DataAgreement
from policies import ACTIVE_STATES


def consents_of(session: Session, person_id: str) -> Sequence[tuple[Consent, DataAgreement]]:
    """Every consent of a person with the agreement version it answers, newest first."""
    stmt = (
        select(Consent, DataAgreement)
        .join(DataAgreement, col(DataAgreement.pk) == col(Consent.agreement_pk))
        .where(Consent.person_id == person_id)
        .order_by(col(Consent.created_at).desc(), col(Consent.id))
    )
    return session.exec(stmt).all()


def consents_for_release(
    session: Session, person_id: str, consumer_id: str, source_id: str
) -> Sequence[tuple[Consent, DataAgreement]]:
    """A person's consents that name this consumer and source, in any state."""
    stmt = (
        select(Consent, DataAgreement)
        .join(DataAgreement, col(DataAgreement.pk) == col(Consent.agreement_pk))
        .where(
            Consent.person_id == person_id,
            DataAgreement.consumer_id == consumer_id,
            DataAgreement.source_id == source_id,
        )
    )
    return session.exec(stmt).all()


def consent_with_agreement(
    session: Session, consent_id: str, *, for_update: bool = False
) -> tuple[Consent, DataAgreement] | None:
    """One consent and its agreement version; with `for_update`, locked until commit."""
    stmt = (
        select(Consent, DataAgreement)
        .join(DataAgreement, col(DataAgreement.pk) == col(Consent.agreement_pk))
        .where(Consent.id == consent_id)
    )
    if for_update:
        stmt = stmt.with_for_update(of=Consent)
    return session.exec(stmt).first()


def fields_of(session: Session, consent_id: str) -> Sequence[ConsentField]:
    """The fields a consent grants."""
    stmt = select(ConsentField).where(ConsentField.consent_id == consent_id)
    return session.exec(
        stmt.order_by(col(ConsentField.category_code), col(ConsentField.field_name))
    ).all()


def fields_of_many(session: Session, consent_ids: Sequence[str]) -> dict[str, list[ConsentField]]:
    """The granted fields of several consents, keyed by consent id."""
    out: dict[str, list[ConsentField]] = {cid: [] for cid in consent_ids}
    if consent_ids:
        stmt = select(ConsentField).where(col(ConsentField.consent_id).in_(consent_ids))
        for row in session.exec(stmt):
            out[row.consent_id].append(row)
    return out


def history_of(session: Session, consent_id: str) -> Sequence[ConsentEvent]:
    """A consent's events in order."""
    stmt = select(ConsentEvent).where(ConsentEvent.consent_id == consent_id)
    return session.exec(stmt.order_by(col(ConsentEvent.seq))).all()


def append_event(
    session: Session,
    consent: Consent,
    *,
    event_type: str,
    status: str,
    at: datetime,
    actor_id: str | None,
    actor_role: str,
    note: str = "",
) -> ConsentEvent:
    """Set the consent's status and append the matching history event, in the same transaction."""
    last = session.exec(
        select(func.max(ConsentEvent.seq)).where(ConsentEvent.consent_id == consent.id)
    ).one()
    consent.status = status
    consent.updated_at = at
    session.add(consent)
    event = ConsentEvent(
        consent_id=consent.id,
        seq=(last or 0) + 1,
        event_type=event_type,
        status=status,
        at=at,
        actor_id=actor_id,
        actor_role=actor_role,
        note=note,
    )
    session.add(event)
    session.flush()
    return event


def due_for_expiry(session: Session, now: datetime, *, limit: int) -> Sequence[str]:
    """Ids of consents still stored as active whose `valid_until` is not after `now`."""
    stmt = (
        select(Consent.id)
        .where(
            col(Consent.status).in_(sorted(s.value for s in ACTIVE_STATES)),
            col(Consent.valid_until) <= now,
        )
        .order_by(col(Consent.valid_until), col(Consent.id))
        .limit(limit)
    )
    return session.exec(stmt).all()
