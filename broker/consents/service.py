"""Consent use cases. Each runs inside the caller's transaction and never commits.

A consent's status changes only through `repository.append_event`, which writes the history
event in the same transaction, so no consent is ever changed without its history.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel
from sqlmodel import Session

from broker.catalogue import repository as catalogue
from broker.catalogue.schema import DelegationKind, DelegationScope
from broker.consents import repository as repo
from broker.errors import Conflict, ConsentNotActive, InvalidInput, NotFound, NotPermitted
from broker.ledger.events import EventType, LogRecord, timestamp
from broker.ledger.sequencer import LogAppender
from broker.notifications import outbox
from broker.people import access
from broker.people import service as people
from broker.storage.tables import Consent, ConsentField, DataAgreement
from policies import (
    ACTIVE_STATES,
    ActorRole,
    ConsentGrant,
    ConsentStatus,
    FieldRef,
    ReleaseDecision,
    ReleaseRequest,
    decide,
    effective_status,
)


class ConsentEventType(StrEnum):
    """History event types, `subject.action` as in the audit log."""

    GIVEN = "consent.given"
    REFUSED = "consent.refused"
    WITHDRAWN = "consent.withdrawn"
    REVOKED = "consent.revoked"
    EXPIRED = "consent.expired"


class ConsentHistoryEntry(BaseModel):
    """One event in a consent's history."""

    seq: int
    event_type: str
    status: ConsentStatus
    at: datetime
    actor_id: str | None
    actor_role: ActorRole
    note: str


class GrantedField(BaseModel):
    """A field the consent lets the consumer receive."""

    category: str
    field: str


class ConsentRecord(BaseModel):
    """A consent as its person sees it: what, to whom, why, until when, and its history."""

    id: str
    person_id: str
    agreement_id: str
    agreement_version: int
    consumer: str
    source: str
    purpose: str
    status: ConsentStatus
    valid_from: datetime
    valid_until: datetime
    fields: list[GrantedField]
    given_by: str
    actor_role: ActorRole
    history: list[ConsentHistoryEntry]


def give_consent(
    session: Session,
    log: LogAppender,
    *,
    person_id: str,
    agreement_id: str,
    version: int | None = None,
    fields: Iterable[FieldRef] | None = None,
    actor_id: str,
    now: datetime,
    valid_days: int | None = None,
) -> ConsentRecord:
    """Record that the person (or someone acting for them) consents to an agreement version.

    `fields=None` means every field the agreement asks for; otherwise the chosen fields must be
    the agreement's required fields plus any of its optional ones. Validity defaults to, and
    may not exceed, the agreement's longest consent duration.
    """
    person = people.get_person(session, person_id)
    agreement = _agreement(session, agreement_id, version)
    role, delegation_id = _actor_for(session, person.id, actor_id, now)
    offered = {
        FieldRef(f.category_code, f.field_name): f.required
        for f in catalogue.agreement_fields(session, _pk(agreement))
    }
    chosen = set(offered) if fields is None else set(fields)
    unknown = chosen - set(offered)
    if unknown:
        names = ", ".join(f"{r.category}.{r.field}" for r in sorted(unknown))
        raise InvalidInput(f"The agreement does not ask for: {names}.")
    missing = {ref for ref, required in offered.items() if required} - chosen
    if missing:
        names = ", ".join(f"{r.category}.{r.field}" for r in sorted(missing))
        raise InvalidInput(f"These fields are required by the agreement: {names}.")
    days = agreement.max_consent_days if valid_days is None else valid_days
    if not 1 <= days <= agreement.max_consent_days:
        raise InvalidInput(
            f"A consent to this agreement lasts 1 to {agreement.max_consent_days} days, not {days}."
        )
    _refuse_duplicate(session, person.id, agreement.agreement_id, now)
    consent = Consent(
        id=uuid.uuid4().hex,
        person_id=person.id,
        agreement_pk=_pk(agreement),
        status=ConsentStatus.GIVEN.value,
        valid_from=now,
        valid_until=now + timedelta(days=days),
        given_by_id=actor_id,
        actor_role=role.value,
        delegation_id=delegation_id,
        created_at=now,
        updated_at=now,
    )
    session.add(consent)
    session.flush()
    for ref in sorted(chosen):
        session.add(
            ConsentField(consent_id=consent.id, category_code=ref.category, field_name=ref.field)
        )
    return _change(
        session,
        log,
        consent,
        agreement,
        ConsentEventType.GIVEN,
        ConsentStatus.GIVEN,
        now=now,
        actor_id=actor_id,
        role=role,
    )


def give_or_renew_consent(
    session: Session,
    log: LogAppender,
    *,
    person_id: str,
    agreement_id: str,
    version: int | None = None,
    fields: Iterable[FieldRef] | None = None,
    actor_id: str,
    now: datetime,
) -> ConsentRecord:
    """Give a consent; an active consent to the same agreement is withdrawn first, so the
    person's latest answer is the one in force (both changes are in the history and the log)."""
    for consent, agreement in repo.consents_of(session, person_id):
        if agreement.agreement_id == agreement_id and _is_active(consent, agreement, now):
            withdraw_consent(
                session,
                log,
                consent_id=consent.id,
                actor_id=actor_id,
                now=now,
                note="Replaced by a new answer to the same request.",
            )
    return give_consent(
        session,
        log,
        person_id=person_id,
        agreement_id=agreement_id,
        version=version,
        fields=fields,
        actor_id=actor_id,
        now=now,
    )


def refuse_consent(
    session: Session,
    log: LogAppender,
    *,
    person_id: str,
    agreement_id: str,
    version: int | None = None,
    actor_id: str,
    now: datetime,
) -> ConsentRecord:
    """Record that the person said no to an agreement version; the refusal grants nothing."""
    person = people.get_person(session, person_id)
    agreement = _agreement(session, agreement_id, version)
    role, delegation_id = _actor_for(session, person.id, actor_id, now)
    consent = Consent(
        id=uuid.uuid4().hex,
        person_id=person.id,
        agreement_pk=_pk(agreement),
        status=ConsentStatus.REFUSED.value,
        valid_from=now,
        valid_until=now,
        given_by_id=actor_id,
        actor_role=role.value,
        delegation_id=delegation_id,
        created_at=now,
        updated_at=now,
    )
    session.add(consent)
    session.flush()
    return _change(
        session,
        log,
        consent,
        agreement,
        ConsentEventType.REFUSED,
        ConsentStatus.REFUSED,
        now=now,
        actor_id=actor_id,
        role=role,
    )


def withdraw_consent(
    session: Session,
    log: LogAppender,
    *,
    consent_id: str,
    actor_id: str,
    now: datetime,
    note: str = "",
) -> ConsentRecord:
    """The person (or someone acting for them) withdraws an active consent, from `now` on."""
    consent, agreement = _locked(session, consent_id)
    role, _ = _actor_for(session, consent.person_id, actor_id, now)
    _require_active(consent, agreement, now)
    return _change(
        session,
        log,
        consent,
        agreement,
        ConsentEventType.WITHDRAWN,
        ConsentStatus.WITHDRAWN,
        now=now,
        actor_id=actor_id,
        role=role,
        note=note,
    )


def revoke_consent(
    session: Session, log: LogAppender, *, consent_id: str, now: datetime, note: str
) -> ConsentRecord:
    """An operator ends an active consent on the controller's side (DPV ConsentRevoked)."""
    if not note.strip():
        raise InvalidInput("Say why the consent is revoked; the person will see it.")
    consent, agreement = _locked(session, consent_id)
    _require_active(consent, agreement, now)
    return _change(
        session,
        log,
        consent,
        agreement,
        ConsentEventType.REVOKED,
        ConsentStatus.REVOKED,
        now=now,
        actor_id=None,
        role=ActorRole.OPERATOR,
        note=note.strip(),
    )


def expire_consent(
    session: Session, log: LogAppender, *, consent_id: str, now: datetime
) -> ConsentRecord | None:
    """Mark a consent past its `valid_until` expired (the broker acts, not a person).

    None, changing nothing, if it is not stored as active or not yet past its window, so that
    sweeps in several processes mark each consent once.
    """
    consent, agreement = _locked(session, consent_id)
    if ConsentStatus(consent.status) not in ACTIVE_STATES or consent.valid_until > now:
        return None
    return _change(
        session,
        log,
        consent,
        agreement,
        ConsentEventType.EXPIRED,
        ConsentStatus.EXPIRED,
        now=now,
        actor_id=None,
        role=ActorRole.SYSTEM,
    )


def get_consent(session: Session, consent_id: str, now: datetime) -> ConsentRecord:
    """One consent with its history; NotFound if unknown."""
    found = repo.consent_with_agreement(session, consent_id)
    if found is None:
        raise NotFound(f"There is no consent {consent_id!r}.")
    return _record(session, *found, now)


def list_consents(session: Session, person_id: str, now: datetime) -> list[ConsentRecord]:
    """All of a person's consents, newest first, each with its state at `now` and history."""
    people.get_person(session, person_id)
    return [_record(session, c, a, now) for c, a in repo.consents_of(session, person_id)]


def consents_seen_by(
    session: Session, *, viewer_id: str, person_id: str, now: datetime
) -> list[ConsentRecord]:
    """The person's consents, for themselves or for someone who may see them for the person."""
    access.require_may_act(
        session, actor_id=viewer_id, person_id=person_id, scope=DelegationScope.VIEW, on=now.date()
    )
    return list_consents(session, person_id, now)


def withdraw_as(
    session: Session, log: LogAppender, *, consent_id: str, actor_id: str, now: datetime
) -> ConsentRecord:
    """Withdraw for a signed-in person: NotFound for a consent they may not even see."""
    found = repo.consent_with_agreement(session, consent_id)
    unknown = NotFound(f"There is no consent {consent_id!r}.")
    if found is None:
        raise unknown
    try:
        access.require_may_act(
            session,
            actor_id=actor_id,
            person_id=found[0].person_id,
            scope=DelegationScope.VIEW,
            on=now.date(),
        )
    except NotPermitted:
        raise unknown from None
    return withdraw_consent(session, log, consent_id=consent_id, actor_id=actor_id, now=now)


def decide_release(
    session: Session,
    request: ReleaseRequest,
    now: datetime,
    *,
    under: Collection[str] | None = None,
) -> ReleaseDecision:
    """Find the person's consents for this consumer and source and decide `request` at `now`.

    `under` limits the decision to these consents, those an access token was issued for.
    """
    # Only the asked category matters to `decide`: a grant answers for it if its agreement
    # asks about it or it grants a field in it, and only its fields in it can be released.
    rows = repo.release_rows(
        session,
        request.person_id,
        request.consumer,
        request.source,
        request.category,
        under=under,
    )
    fields: dict[str, set[str]] = {}
    first: dict[str, repo.ReleaseRow] = {}
    for row in rows:
        first.setdefault(row.id, row)
        granted = fields.setdefault(row.id, set())
        if row.field_name is not None:
            granted.add(row.field_name)
    grants = [_release_grant(row, fields[cid], request.category) for cid, row in first.items()]
    return decide(request, grants, now)


def _release_grant(row: repo.ReleaseRow, fields: Iterable[str], category: str) -> ConsentGrant:
    return ConsentGrant(
        asked_categories=frozenset({category}) if row.asked else frozenset(),
        consent_id=row.id,
        person_id=row.person_id,
        consumer=row.consumer_id,
        source=row.source_id,
        purpose=row.purpose_code,
        fields=frozenset(FieldRef(category, name) for name in fields),
        status=ConsentStatus(row.status),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
    )


def _grant(
    consent: Consent,
    agreement: DataAgreement,
    fields: Sequence[ConsentField],
    asked: Iterable[str] = (),
) -> ConsentGrant:
    return ConsentGrant(
        asked_categories=frozenset(asked),
        consent_id=consent.id,
        person_id=consent.person_id,
        consumer=agreement.consumer_id,
        source=agreement.source_id,
        purpose=agreement.purpose_code,
        fields=frozenset(FieldRef(f.category_code, f.field_name) for f in fields),
        status=ConsentStatus(consent.status),
        valid_from=consent.valid_from,
        valid_until=consent.valid_until,
    )


def _change(
    session: Session,
    log: LogAppender,
    consent: Consent,
    agreement: DataAgreement,
    event_type: ConsentEventType,
    status: ConsentStatus,
    *,
    now: datetime,
    actor_id: str | None,
    role: ActorRole,
    note: str = "",
) -> ConsentRecord:
    """Change the consent's status with its history event, its log entry and, for an ending,
    the notifications to the consumer's webhooks, all in this unit."""
    repo.append_event(
        session,
        consent,
        event_type=event_type,
        status=status,
        at=now,
        actor_id=actor_id,
        actor_role=role,
        note=note,
    )
    record = _record(session, consent, agreement, now)
    log.append(
        LogRecord(
            type=EventType(event_type.value),
            at=now,
            person_id=consent.person_id,
            consent_id=consent.id,
            attributes={
                "consent": consent.id,
                "agreement": agreement.agreement_id,
                "agreement_version": agreement.version,
                "consumer": agreement.consumer_id,
                "source": agreement.source_id,
                "purpose": agreement.purpose_code,
                "fields": [f"{f.category}.{f.field}" for f in record.fields],
                "status": status.value,
                "actor_role": role.value,
                "valid_until": timestamp(consent.valid_until),
            },
            private={"actor_id": actor_id, "note": note},
        )
    )
    outbox.enqueue(
        session, consent_id=consent.id, consumer_id=agreement.consumer_id, event=event_type, at=now
    )
    return record


def _record(
    session: Session, consent: Consent, agreement: DataAgreement, now: datetime
) -> ConsentRecord:
    fields = repo.fields_of(session, consent.id)
    return ConsentRecord(
        id=consent.id,
        person_id=consent.person_id,
        agreement_id=agreement.agreement_id,
        agreement_version=agreement.version,
        consumer=agreement.consumer_id,
        source=agreement.source_id,
        purpose=agreement.purpose_code,
        status=effective_status(_grant(consent, agreement, fields), now),
        valid_from=consent.valid_from,
        valid_until=consent.valid_until,
        fields=[GrantedField(category=f.category_code, field=f.field_name) for f in fields],
        given_by=consent.given_by_id,
        actor_role=ActorRole(consent.actor_role),
        history=[
            ConsentHistoryEntry(
                seq=e.seq,
                event_type=e.event_type,
                status=ConsentStatus(e.status),
                at=e.at,
                actor_id=e.actor_id,
                actor_role=ActorRole(e.actor_role),
                note=e.note,
            )
            for e in repo.history_of(session, consent.id)
        ],
    )


def _agreement(session: Session, agreement_id: str, version: int | None) -> DataAgreement:
    agreement = catalogue.get_agreement(session, agreement_id, version)
    if agreement is None:
        which = "any version" if version is None else f"version {version}"
        raise NotFound(f"There is no agreement {agreement_id!r} at {which}.")
    return agreement


def _pk(agreement: DataAgreement) -> int:
    assert agreement.pk is not None
    return agreement.pk


def _locked(session: Session, consent_id: str) -> tuple[Consent, DataAgreement]:
    found = repo.consent_with_agreement(session, consent_id, for_update=True)
    if found is None:
        raise NotFound(f"There is no consent {consent_id!r}.")
    return found


def _is_active(consent: Consent, agreement: DataAgreement, now: datetime) -> bool:
    return effective_status(_grant(consent, agreement, ()), now) in ACTIVE_STATES


def _require_active(consent: Consent, agreement: DataAgreement, now: datetime) -> None:
    if not _is_active(consent, agreement, now):
        status = effective_status(_grant(consent, agreement, ()), now)
        raise ConsentNotActive(f"Consent {consent.id} is already {status.value}.")


def _refuse_duplicate(session: Session, person_id: str, agreement_id: str, now: datetime) -> None:
    for consent, agreement in repo.consents_of(session, person_id):
        if agreement.agreement_id == agreement_id and _is_active(consent, agreement, now):
            raise Conflict(
                f"There is already an active consent ({consent.id}) to {agreement_id}; "
                "withdraw it before giving a new one."
            )


def _actor_for(
    session: Session, person_id: str, actor_id: str, now: datetime
) -> tuple[ActorRole, str | None]:
    """Whether `actor_id` may answer for `person_id`, and in which role."""
    if actor_id == person_id:
        return ActorRole.SELF, None
    people.get_person(session, actor_id)
    delegation = people.active_delegation(
        session,
        delegate_id=actor_id,
        principal_id=person_id,
        scope=DelegationScope.CONSENT,
        on=now.date(),
    )
    if delegation is None:
        raise NotPermitted(f"{actor_id} may not give or withdraw consents for {person_id}.")
    role = ActorRole.GUARDIAN if delegation.kind == DelegationKind.GUARDIAN else ActorRole.DELEGATE
    return role, delegation.id
