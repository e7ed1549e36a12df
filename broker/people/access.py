"""Whose data a signed-in person may see and act on: their own, and their principals'.

Run inside the caller's transaction; never commit.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel
from sqlmodel import Session, col, select

from broker.catalogue.schema import DelegationScope
from broker.errors import NotPermitted
from broker.people.service import active_delegation
from broker.storage.tables import Delegation, Person


def require_may_act(
    session: Session, *, actor_id: str, person_id: str, scope: DelegationScope, on: date
) -> None:
    """NotPermitted unless `actor_id` is `person_id` or holds a delegation for `scope` on `on`.

    The refusal is the same whether or not `person_id` exists, so it tells nothing about them.
    """
    if actor_id == person_id:
        return
    found = active_delegation(
        session, delegate_id=actor_id, principal_id=person_id, scope=scope, on=on
    )
    # Consenting for someone includes seeing what one consents to.
    if found is None and scope is DelegationScope.VIEW:
        found = active_delegation(
            session,
            delegate_id=actor_id,
            principal_id=person_id,
            scope=DelegationScope.CONSENT,
            on=on,
        )
    if found is None:
        raise NotPermitted(f"You may not act for {person_id!r}.")


class DelegationView(BaseModel):
    """One delegation as either side sees it."""

    id: str
    kind: str
    scope: list[str]
    delegate_id: str
    delegate_name: str
    principal_id: str
    principal_name: str
    valid_from: date
    valid_until: date
    in_force: bool


class DelegationsOf(BaseModel):
    """The delegations a person holds for others, and those others hold for them."""

    acting_for: list[DelegationView]
    delegates: list[DelegationView]


def delegations_of(session: Session, person_id: str, now: datetime) -> DelegationsOf:
    """Every delegation naming the person on either side, ended ones left out, oldest first."""
    rows = session.exec(
        select(Delegation)
        .where(
            (col(Delegation.delegate_id) == person_id)
            | (col(Delegation.principal_id) == person_id),
            col(Delegation.ended_at).is_(None),
        )
        .order_by(col(Delegation.valid_from), col(Delegation.id))
    ).all()
    names: dict[str, str] = {}
    ids = {d.delegate_id for d in rows} | {d.principal_id for d in rows}
    if ids:
        for person in session.exec(select(Person).where(col(Person.id).in_(ids))):
            names[person.id] = person.display_name
    today = now.date()
    views = [
        DelegationView(
            id=d.id,
            kind=d.kind,
            scope=list(d.scope),
            delegate_id=d.delegate_id,
            delegate_name=names.get(d.delegate_id, ""),
            principal_id=d.principal_id,
            principal_name=names.get(d.principal_id, ""),
            valid_from=d.valid_from,
            valid_until=d.valid_until,
            in_force=d.valid_from <= today < d.valid_until,
        )
        for d in rows
    ]
    return DelegationsOf(
        acting_for=[v for v in views if v.delegate_id == person_id],
        delegates=[v for v in views if v.principal_id == person_id],
    )
