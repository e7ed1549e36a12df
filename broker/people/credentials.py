"""Local accounts: argon2id password hashes, checked in the same time whether or not the person
exists, so that sign-in does not reveal who has an account."""

from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError, VerifyMismatchError
from sqlmodel import Session

from broker.errors import InvalidInput
from broker.people.service import get_person
from broker.storage.tables import PersonCredential

MIN_LENGTH = 12
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("this password belongs to nobody at all")


def set_password(session: Session, person_id: str, password: str, now: datetime) -> None:
    """Give the person a local password (at least 12 characters)."""
    get_person(session, person_id)
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"A password needs at least {MIN_LENGTH} characters.")
    row = session.get(PersonCredential, person_id)
    hashed = _hasher.hash(password)
    if row is None:
        session.add(PersonCredential(person_id=person_id, password_hash=hashed, updated_at=now))
    else:
        row.password_hash, row.updated_at = hashed, now
        session.add(row)


def check_password(session: Session, person_id: str, password: str) -> bool:
    """True when the password is the person's; unknown persons cost the same time."""
    row = session.get(PersonCredential, person_id)
    stored = row.password_hash if row is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError):
        return False
    return row is not None
