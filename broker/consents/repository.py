"""Small reads and writes of consent rows. Status changes go only through `append_event`."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from broker.storage.tables import (
    AgreementField,
    Consent,
    ConsentEvent,
    ConsentField,
    DataAgreement,
)
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


class ReleaseRow(NamedTuple):
    """One consent for a release decision, with one of its granted fields in the asked category
    (None if it grants none there) and whether its agreement asks about that category."""

    id: str
    person_id: str
    status: str
    valid_from: datetime
    valid_until: datetime
    consumer_id: str
    source_id: str
    purpose_code: str
    field_name: str | None
    asked: bool


# Built once: building a statement and its cache key costs several times what running it on
# SQLite does, and the release path runs this twice per release.
_ASKED = (
    sa.select(col(AgreementField.agreement_pk))
    .where(
        col(AgreementField.agreement_pk) == col(DataAgreement.pk),
        col(AgreementField.category_code) == sa.bindparam("category"),
    )
    .exists()
)
_RELEASE_ROWS = (
    sa.select(
        col(Consent.id),
        col(Consent.person_id),
        col(Consent.status),
        col(Consent.valid_from),
        col(Consent.valid_until),
        col(DataAgreement.consumer_id),
        col(DataAgreement.source_id),
        col(DataAgreement.purpose_code),
        col(ConsentField.field_name),
        _ASKED,
    )
    .join(DataAgreement, col(DataAgreement.pk) == col(Consent.agreement_pk))
    .outerjoin(
        ConsentField,
        sa.and_(
            col(ConsentField.consent_id) == col(Consent.id),
            col(ConsentField.category_code) == sa.bindparam("category"),
        ),
    )
    .where(
        col(Consent.person_id) == sa.bindparam("person_id"),
        col(DataAgreement.consumer_id) == sa.bindparam("consumer_id"),
        col(DataAgreement.source_id) == sa.bindparam("source_id"),
    )
)
_RELEASE_ROWS_UNDER = _RELEASE_ROWS.where(
    col(Consent.id).in_(sa.bindparam("under", expanding=True))
)


def release_rows(
    session: Session,
    person_id: str,
    consumer_id: str,
    source_id: str,
    category: str,
    *,
    under: Collection[str] | None = None,
) -> Sequence[ReleaseRow]:
    """A person's consents naming this consumer and source (only those in `under`, if given),
    in any state, one row per granted field in `category`: what a decision needs, in one query.

    Plain columns rather than ORM objects, and one round trip rather than three: this runs on
    every release, twice.
    """
    params: dict[str, object] = {
        "person_id": person_id,
        "consumer_id": consumer_id,
        "source_id": source_id,
        "category": category,
    }
    stmt = _RELEASE_ROWS
    if under is not None:
        stmt, params["under"] = _RELEASE_ROWS_UNDER, sorted(under)
    return [ReleaseRow(*row) for row in session.execute(stmt, params)]


class Parties(NamedTuple):
    """Whose consent it is, to whom and from where it lets data go, and for what."""

    person_id: str
    consumer_id: str
    source_id: str
    purpose_code: str


_PARTIES = (
    sa.select(
        col(Consent.id),
        col(Consent.person_id),
        col(DataAgreement.consumer_id),
        col(DataAgreement.source_id),
        col(DataAgreement.purpose_code),
    )
    .join(DataAgreement, col(DataAgreement.pk) == col(Consent.agreement_pk))
    .where(col(Consent.id).in_(sa.bindparam("ids", expanding=True)))
)


def parties_of(session: Session, consent_ids: Collection[str]) -> dict[str, Parties]:
    """The parties of each of these consents that exists, keyed by consent id, in one query."""
    if not consent_ids:
        return {}
    rows = session.execute(_PARTIES, {"ids": sorted(set(consent_ids))})
    return {cid: Parties(*rest) for cid, *rest in rows}


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
