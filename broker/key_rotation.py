"""Rotating a signing key, with a `key.rotated` entry in the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from broker.ledger.events import EventType, LogRecord, timestamp
from broker.ledger.sequencer import LogAppender
from keys import KeyStore, KeyUse, PublicKeyInfo


def rotate_key(
    session: Session,
    log: LogAppender,
    keystore: KeyStore,
    *,
    use: KeyUse,
    overlap: timedelta,
    now: datetime,
) -> PublicKeyInfo:
    """Add a new key for `use`; the old one keeps signing for `overlap`. Logged in this unit.

    The new key is on disk before the entry commits; if the commit fails, the key exists
    unannounced, which is harmless: nothing it signs verifies against the published log keys
    until the next rotation is logged.
    """
    previous = keystore.current(use).info
    new = keystore.rotate(use, overlap, now).info
    log.append(
        LogRecord(
            type=EventType.KEY_ROTATED,
            at=now,
            attributes={
                "use": use.value,
                "new_kid": new.kid,
                "previous_kid": previous.kid,
                "previous_not_after": timestamp(now + overlap),
            },
        )
    )
    del session  # the rotation itself lives in the key store, not in the database
    return new
