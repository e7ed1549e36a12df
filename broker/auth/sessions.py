"""Signed-in browser sessions: a random cookie, stored by its hash, with a CSRF token.

The cookie is HttpOnly and SameSite=Lax (the consent redirect from a consumer is a top-level
navigation, which Lax allows); Secure whenever the broker is served over https.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session

from broker.auth.secrets import new_secret, secret_hash
from broker.storage.tables import PersonSession

COOKIE = "omadata_session"
LOGIN_CSRF_COOKIE = "omadata_login_csrf"


def start_session(
    session: Session, *, person_id: str, language: str, now: datetime, lifetime: timedelta
) -> tuple[str, PersonSession]:
    """A new session for the person; returns the cookie value (shown only to the browser)."""
    cookie = new_secret()
    row = PersonSession(
        id_hash=secret_hash(cookie),
        person_id=person_id,
        csrf_token=secrets.token_urlsafe(24),
        language=language,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    return cookie, row


def find_session(session: Session, cookie: str | None, now: datetime) -> PersonSession | None:
    """The live session for a cookie value, or None."""
    if not cookie:
        return None
    row = session.get(PersonSession, secret_hash(cookie))
    if row is None or row.expires_at <= now:
        return None
    return row


def end_session(session: Session, cookie: str | None) -> None:
    """Sign out: the cookie stops working at once."""
    if cookie:
        row = session.get(PersonSession, secret_hash(cookie))
        if row is not None:
            session.delete(row)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token."""
    return bool(expected and given and hmac.compare_digest(expected, given))
