"""Person and delegation use cases. Run inside the caller's transaction; never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from sqlmodel import Session, col, select

from broker.catalogue.schema import DelegationScope, DelegationSpec, Language
from broker.errors import Conflict, InvalidInput, NotFound
from broker.storage.tables import Delegation, Person, PersonIdentity


def find_person(session: Session, person_id: str) -> Person | None:
    """The person with this id, or None."""
    return session.get(Person, person_id)


def get_person(session: Session, person_id: str) -> Person:
    """The person with this id; NotFound otherwise."""
    person = session.get(Person, person_id)
    if person is None:
        raise NotFound(f"There is no person {person_id!r}.")
    return person


def add_person(
    session: Session,
    *,
    display_name: str,
    language: Language | str,
    identities: Iterable[tuple[str, str]] = (),
    birth_date: date | None = None,
    now: datetime,
    person_id: str | None = None,
) -> Person:
    """Create a person with their external identities (issuer, subject), each unique."""
    try:
        lang = Language(language)
    except ValueError:
        raise InvalidInput(f"Language must be fi, sv or en, not {language!r}.") from None
    if not display_name.strip():
        raise InvalidInput("A person needs a name.")
    pid = person_id or uuid.uuid4().hex
    if session.get(Person, pid) is not None:
        raise Conflict(f"Person {pid!r} exists already.")
    person = Person(
        id=pid,
        display_name=display_name.strip(),
        language=lang.value,
        birth_date=birth_date,
        created_at=now,
    )
    session.add(person)
    session.flush()
    for issuer, subject in identities:
        link_identity(session, pid, issuer=issuer, subject=subject)
    return person


def person_by_identity(session: Session, *, issuer: str, subject: str) -> Person | None:
    """The person an external identity (issuer, subject) is linked to, or None."""
    return session.exec(
        select(Person)
        .join(PersonIdentity, col(PersonIdentity.person_id) == col(Person.id))
        .where(PersonIdentity.issuer == issuer, PersonIdentity.subject == subject)
    ).first()


def link_identity(session: Session, person_id: str, *, issuer: str, subject: str) -> bool:
    """Let the person sign in as (issuer, subject); False if already linked to them.

    Conflict if the identity is another person's: one identity signs in one person only.
    """
    get_person(session, person_id)
    if not issuer.strip() or not subject.strip():
        raise InvalidInput("An identity needs an issuer and a subject.")
    owner = person_by_identity(session, issuer=issuer, subject=subject)
    if owner is not None:
        if owner.id == person_id:
            return False
        raise Conflict(f"The identity {subject!r} at {issuer} belongs to another person.")
    session.add(PersonIdentity(person_id=person_id, issuer=issuer, subject=subject))
    session.flush()
    return True


def ensure_delegation(session: Session, spec: DelegationSpec, now: datetime) -> bool:
    """Record `spec` unless the same delegation is already in force; True if it was created."""
    get_person(session, spec.delegate)
    get_person(session, spec.principal)
    existing = session.exec(
        select(Delegation).where(
            Delegation.delegate_id == spec.delegate,
            Delegation.principal_id == spec.principal,
            Delegation.kind == spec.kind.value,
            col(Delegation.ended_at).is_(None),
        )
    ).all()
    wanted = sorted(s.value for s in spec.scope)
    for row in existing:
        if (
            sorted(row.scope) == wanted
            and row.valid_from == spec.valid_from
            and row.valid_until == spec.valid_until
        ):
            return False
    session.add(
        Delegation(
            id=uuid.uuid4().hex,
            delegate_id=spec.delegate,
            principal_id=spec.principal,
            kind=spec.kind.value,
            scope=wanted,
            valid_from=spec.valid_from,
            valid_until=spec.valid_until,
            created_at=now,
        )
    )
    session.flush()
    return True


def active_delegation(
    session: Session, *, delegate_id: str, principal_id: str, scope: DelegationScope, on: date
) -> Delegation | None:
    """A delegation in force on `on` letting `delegate_id` do `scope` for `principal_id`."""
    rows: Sequence[Delegation] = session.exec(
        select(Delegation)
        .where(
            Delegation.delegate_id == delegate_id,
            Delegation.principal_id == principal_id,
            col(Delegation.ended_at).is_(None),
            col(Delegation.valid_from) <= on,
            col(Delegation.valid_until) > on,
        )
        .order_by(col(Delegation.id))
    ).all()
    return next((d for d in rows if scope.value in d.scope), None)


def principals_of(
    session: Session, delegate_id: str, scope: DelegationScope, on: date
) -> list[tuple[Person, Delegation]]:
    """Everyone `delegate_id` may act for within `scope` on `on`, with the delegation."""
    rows = session.exec(
        select(Delegation, Person)
        .join(Person, col(Person.id) == col(Delegation.principal_id))
        .where(
            Delegation.delegate_id == delegate_id,
            col(Delegation.ended_at).is_(None),
            col(Delegation.valid_from) <= on,
            col(Delegation.valid_until) > on,
        )
        .order_by(col(Person.display_name))
    ).all()
    return [(person, d) for d, person in rows if scope.value in d.scope]
