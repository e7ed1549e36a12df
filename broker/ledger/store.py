"""Reads and writes of the log tables. Bulk writes go through SQLAlchemy Core for speed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlmodel import Session

from broker.ledger.errors import LogIntegrityError
from broker.storage.tables import (
    LogCheckpoint,
    LogEvent,
    LogHash,
    LogHead,
    LogLeaf,
    PersonSecret,
)

_LEAF = LogLeaf.__table__  # type: ignore[attr-defined]
_HASH = LogHash.__table__  # type: ignore[attr-defined]
_HEAD = LogHead.__table__  # type: ignore[attr-defined]
_EVENT = LogEvent.__table__  # type: ignore[attr-defined]
_CHECKPOINT = LogCheckpoint.__table__  # type: ignore[attr-defined]
_SECRET = PersonSecret.__table__  # type: ignore[attr-defined]

# SQLite allows 32,766 bound parameters per statement; stay well inside it.
_IN_CHUNK = 500


class DbHashReader:
    """Reads stored Merkle hashes by stored-hash index from the current transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.reads = 0

    def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
        """The hashes at `indexes`, in that order; LogIntegrityError if any is missing."""
        self.reads += len(indexes)
        found: dict[int, bytes] = {}
        wanted = sorted(set(indexes))
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            rows = self._session.execute(
                select(_HASH.c.id, _HASH.c.hash).where(_HASH.c.id.in_(chunk))
            )
            found.update((int(i), bytes(h)) for i, h in rows)
        missing = [i for i in indexes if i not in found]
        if missing:
            raise LogIntegrityError(f"stored hash {missing[0]} is missing from the log")
        return [found[i] for i in indexes]


def head(session: Session, *, lock: bool = False) -> tuple[int, bytes]:
    """The log's size and root; with `lock`, held until commit so that one writer appends."""
    stmt = select(_HEAD.c.size, _HEAD.c.root).where(_HEAD.c.id == 1)
    if lock and session.get_bind().dialect.name != "sqlite":
        # SQLite's BEGIN IMMEDIATE already made this transaction the only writer.
        stmt = stmt.with_for_update()
    row = session.execute(stmt).one()
    return int(row.size), bytes(row.root)


def set_head(session: Session, size: int, root: bytes) -> None:
    """Record the log's new size and root."""
    session.execute(update(_HEAD).where(_HEAD.c.id == 1).values(size=size, root=root))


def insert_leaves(session: Session, rows: Sequence[tuple[int, bytes]]) -> None:
    """Append leaves (index, exact bytes)."""
    if rows:
        session.execute(insert(_LEAF), [{"idx": i, "leaf": leaf} for i, leaf in rows])


def insert_hashes(session: Session, first_id: int, hashes: Sequence[bytes]) -> None:
    """Append stored hashes with consecutive stored-hash indexes from `first_id`."""
    if hashes:
        session.execute(
            insert(_HASH), [{"id": first_id + k, "hash": h} for k, h in enumerate(hashes)]
        )


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Append the full event records that stand beside the leaves."""
    if rows:
        session.execute(insert(_EVENT), list(rows))


def leaves(session: Session, start: int, end: int) -> list[tuple[int, bytes]]:
    """Leaves with start <= index < end, in order (gaps show as missing indexes)."""
    rows = session.execute(
        select(_LEAF.c.idx, _LEAF.c.leaf)
        .where(_LEAF.c.idx >= start, _LEAF.c.idx < end)
        .order_by(_LEAF.c.idx)
    )
    return [(int(i), bytes(leaf)) for i, leaf in rows]


def iter_leaves(session: Session, *, page: int = 10_000) -> Iterator[tuple[int, bytes]]:
    """Every leaf in index order, read page by page."""
    start = 0
    while True:
        rows = session.execute(
            select(_LEAF.c.idx, _LEAF.c.leaf)
            .where(_LEAF.c.idx >= start)
            .order_by(_LEAF.c.idx)
            .limit(page)
        ).all()
        if not rows:
            return
        for i, leaf in rows:
            yield int(i), bytes(leaf)
        start = int(rows[-1][0]) + 1


def leaf_count(session: Session) -> int:
    """How many leaf rows there are (equals the head's size in an intact log)."""
    return int(session.execute(select(func.count()).select_from(_LEAF)).scalar_one())


def stored_hash_rows(session: Session, first_id: int, limit: int) -> list[tuple[int, bytes]]:
    """Stored hashes with id >= first_id, in order, at most `limit`."""
    rows = session.execute(
        select(_HASH.c.id, _HASH.c.hash)
        .where(_HASH.c.id >= first_id)
        .order_by(_HASH.c.id)
        .limit(limit)
    )
    return [(int(i), bytes(h)) for i, h in rows]


def secret_for(session: Session, person_id: str, now: datetime) -> bytes:
    """The person's tag secret, created on first use."""
    row = session.execute(select(_SECRET.c.secret).where(_SECRET.c.person_id == person_id)).first()
    if row is not None:
        return bytes(row[0])
    secret = secrets.token_bytes(32)
    session.execute(insert(_SECRET).values(person_id=person_id, secret=secret, created_at=now))
    return secret


def find_secret(session: Session, person_id: str) -> bytes | None:
    """The person's tag secret, or None if they have none (or it was shredded)."""
    row = session.execute(select(_SECRET.c.secret).where(_SECRET.c.person_id == person_id)).first()
    return None if row is None else bytes(row[0])


def latest_checkpoint(session: Session) -> LogCheckpoint | None:
    """The checkpoint of the largest size, or None before the first is signed."""
    stmt = select(LogCheckpoint).order_by(LogCheckpoint.size.desc()).limit(1)  # type: ignore[attr-defined]
    return session.execute(stmt).scalars().first()


def checkpoints(session: Session) -> list[LogCheckpoint]:
    """Every signed checkpoint, smallest first."""
    stmt = select(LogCheckpoint).order_by(LogCheckpoint.size)  # type: ignore[arg-type]
    return list(session.execute(stmt).scalars())


def add_checkpoint(session: Session, size: int, root: bytes, note: bytes, at: datetime) -> bool:
    """Store a signed checkpoint; False if one of that size exists (another process signed it)."""
    if session.get(LogCheckpoint, size) is not None:
        return False
    session.execute(insert(_CHECKPOINT).values(size=size, root=root, note=note, signed_at=at))
    return True


def events_of_person(session: Session, person_id: str) -> list[LogEvent]:
    """The broker's records of every entry about a person, oldest first."""
    stmt = select(LogEvent).where(LogEvent.person_id == person_id).order_by(LogEvent.idx)  # type: ignore[arg-type]
    return list(session.execute(stmt).scalars())
