"""Refusing a one-time JWT id the second time, across every broker process."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete

from broker.storage.tables import SeenJti


def first_use(session: Session, namespace: str, jti: str, expires_at: datetime) -> bool:
    """Record (namespace, jti); False if it was recorded before (a replay)."""
    if session.get(SeenJti, (namespace, jti)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(SeenJti(namespace=namespace, jti=jti, expires_at=expires_at))
    except IntegrityError:  # another process recorded it a moment ago
        return False
    return True


def forget_expired(session: Session, now: datetime) -> None:
    """Drop ids that could no longer be replayed anyway."""
    session.exec(delete(SeenJti).where(col(SeenJti.expires_at) < now))


class DatabaseReplayCache:
    """The DPoP replay cache, shared by every broker process through the database."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def seen(self, jkt: str, jti: str, expires_at: datetime) -> bool:
        """True if this key already used this proof id (a replay); otherwise remember it."""
        return not first_use(self._session, f"dpop:{jkt}", jti, expires_at)
