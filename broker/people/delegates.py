"""A person chooses who may act for them: add a delegate (a mandate) or end one.

Each change is a log entry about the person (`delegation.granted`, `delegation.ended`), in the
same unit of work as the change. The leaf names no one: only the delegation's id, kind, scope
and dates; who the delegate is stays beside the leaf in the broker's own record.

Only mandates are made here. Guardianship comes from the population register (the catalogue)
and is never changed from a page. Only the person may name delegates for themselves, so a
delegate cannot pass a mandate on. A delegate may step down from a mandate they hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from sqlmodel import Session, col, select

from broker.catalogue.schema import DelegationKind, DelegationScope
from broker.errors import Conflict, InvalidInput, NotFound, NotPermitted
from broker.ledger.events import EventType, LogRecord
from broker.ledger.sequencer import LogAppender
from broker.people.service import find_person
from broker.storage.tables import Delegation

# A mandate given on a page lasts at most this long; it can be given again.
MAX_MANDATE = timedelta(days=5 * 365)


def add_delegate(
    session: Session,
    log: LogAppender,
    *,
    principal_id: str,
    delegate_id: str,
    actor_id: str,
    scope: Iterable[DelegationScope],
    valid_until: date,
    now: datetime,
) -> Delegation:
    """`principal_id` lets `delegate_id` act for them within `scope` from today to `valid_until`.

    NotPermitted unless `actor_id` is the principal; NotFound for an unknown delegate;
    Conflict if that person already holds a mandate in force for the principal.
    """
    if actor_id != principal_id:
        raise NotPermitted("Only the person themselves may choose who acts for them.")
    if delegate_id == principal_id:
        raise InvalidInput("You cannot name yourself.")
    if find_person(session, delegate_id) is None:
        raise NotFound(f"There is no person {delegate_id!r}.")
    wanted = sorted({DelegationScope(s).value for s in scope} | {DelegationScope.VIEW.value})
    today = now.date()
    if not today < valid_until <= today + MAX_MANDATE:
        raise InvalidInput(
            f"The end date must be after today and at most {MAX_MANDATE.days} days away."
        )
    existing = session.exec(
        select(Delegation).where(
            Delegation.delegate_id == delegate_id,
            Delegation.principal_id == principal_id,
            Delegation.kind == DelegationKind.MANDATE.value,
            col(Delegation.ended_at).is_(None),
            col(Delegation.valid_until) > today,
        )
    ).first()
    if existing is not None:
        raise Conflict("This person can already act for you. Remove them first to change it.")
    row = Delegation(
        id=uuid.uuid4().hex,
        delegate_id=delegate_id,
        principal_id=principal_id,
        kind=DelegationKind.MANDATE.value,
        scope=wanted,
        valid_from=today,
        valid_until=valid_until,
        created_at=now,
    )
    session.add(row)
    session.flush()
    _log(log, EventType.DELEGATION_GRANTED, row, actor_id, now)
    return row


def end_delegation(
    session: Session, log: LogAppender, *, delegation_id: str, actor_id: str, now: datetime
) -> Delegation:
    """End a mandate now, by its principal or by the delegate stepping down.

    NotFound for a delegation the actor is not a party to (so it reveals nothing) or that has
    ended already; NotPermitted for a guardianship.
    """
    row = session.get(Delegation, delegation_id)
    if (
        row is None
        or row.ended_at is not None
        or actor_id not in {row.principal_id, row.delegate_id}
    ):
        raise NotFound(f"There is no delegation {delegation_id!r} of yours.")
    if row.kind != DelegationKind.MANDATE.value:
        raise NotPermitted("A guardianship ends only through the population register.")
    row.ended_at = now
    session.add(row)
    session.flush()
    _log(log, EventType.DELEGATION_ENDED, row, actor_id, now)
    return row


def _log(log: LogAppender, kind: EventType, row: Delegation, actor_id: str, now: datetime) -> None:
    log.append(
        LogRecord(
            type=kind,
            at=now,
            person_id=row.principal_id,
            attributes={
                "delegation": row.id,
                "kind": row.kind,
                "scope": list(row.scope),
                "valid_from": row.valid_from.isoformat(),
                "valid_until": row.valid_until.isoformat(),
            },
            private={"actor_id": actor_id, "delegate_id": row.delegate_id},
        )
    )
