"""Reads and writes of the log tables. Bulk writes go through SQLAlchemy Core for speed."""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.pool import Pool
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

# The statements of the write path, built once: building a statement costs more than running
# it on SQLite (its cache key is computed from the construct every time).
_HEAD_READ = select(_HEAD.c.size, _HEAD.c.root).where(_HEAD.c.id == 1)
_HEAD_LOCK = _HEAD_READ.with_for_update()
_HEAD_WRITE = update(_HEAD).where(_HEAD.c.id == 1)
_HASHES_IN = select(_HASH.c.id, _HASH.c.hash).where(
    _HASH.c.id.in_(bindparam("ids", expanding=True))
)
_LEAF_INSERT = insert(_LEAF)
_HASH_INSERT = insert(_HASH)
_EVENT_INSERT = insert(_EVENT)
_SECRET_INSERT = insert(_SECRET)

# SQLite allows 32,766 bound parameters per statement; stay well inside it.
_IN_CHUNK = 500
# The positional placeholder of each DBAPI parameter style: pysqlite's qmark and psycopg's
# pyformat (which takes %s too) are those the broker runs on.
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


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
            rows = self._session.execute(_HASHES_IN, {"ids": wanted[start : start + _IN_CHUNK]})
            found.update((int(i), bytes(h)) for i, h in rows)
        missing = [i for i in indexes if i not in found]
        if missing:
            raise LogIntegrityError(f"stored hash {missing[0]} is missing from the log")
        return [found[i] for i in indexes]


class CommittedHashReader:
    """Reads committed stored hashes on a connection of its own, the upper levels from memory.

    For serving proofs. Stored hashes never change once committed (the tables are append-only),
    so what one read saw stays true: the hashes of levels every proof needs are kept per
    database, up to `CACHE_CAPACITY`, and the largest committed log size seen is remembered, as
    a log never shrinks. Each read is one plain SELECT outside the caller's transaction, so it
    sees only committed rows and costs no ORM round trip.
    """

    CACHE_CAPACITY = 1 << 16
    """Hashes kept per database (~7 MB): all but the lowest few levels of a 1M-entry log."""

    def __init__(self, engine: Engine, memory: _Committed) -> None:
        self._engine = engine
        self._memory = memory
        self.reads = 0

    @classmethod
    def of(cls, session: Session) -> CommittedHashReader | None:
        """The reader for the session's database; None if the session is bound to a connection
        (whose uncommitted rows it might see), where only `DbHashReader` is right."""
        bind = session.get_bind()
        if not isinstance(bind, Engine):
            return None
        memory = _MEMORY.get(bind.pool)
        if memory is None:
            memory = _MEMORY.setdefault(bind.pool, _Committed())
        return cls(bind, memory)

    def size(self, *, at_least: int = 0) -> int:
        """The log's committed size; read from storage only if `at_least` exceeds what was seen."""
        memory = self._memory
        if 0 < at_least <= memory.size:
            return memory.size
        rows = self._select("SELECT size, 0 FROM log_head WHERE id = 1")
        size = int(rows[0][0]) if rows else 0
        memory.size = max(memory.size, size)
        return size

    def read_hashes(self, indexes: Sequence[int], levels: Sequence[int] = ()) -> Sequence[bytes]:
        """The hashes at `indexes`, in order; LogIntegrityError if any is missing.

        With `levels` (the level of each index), the upper levels are kept for later reads.
        """
        memory = self._memory
        known = memory.hashes.get
        hashes = [known(i) for i in indexes]
        gaps = [k for k, h in enumerate(hashes) if h is None]
        if not gaps:
            return hashes  # type: ignore[return-value]  # no None left
        wanted = sorted({indexes[k] for k in gaps})
        self.reads += len(wanted)
        found: dict[int, bytes] = {}
        mark = _PLACEHOLDERS[self._engine.dialect.paramstyle]
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = tuple(wanted[start : start + _IN_CHUNK])
            # Only placeholders are put into the text; parameters keep it the same for the same
            # count, so the driver's statement cache spares a parse (half a small read's cost).
            sql = f"SELECT id, hash FROM log_hash WHERE id IN ({','.join([mark] * len(chunk))})"  # noqa: S608
            found.update((int(i), bytes(h)) for i, h in self._select(sql, chunk))
        if len(found) != len(wanted):
            missing = next(i for i in wanted if i not in found)
            raise LogIntegrityError(f"stored hash {missing} is missing from the log")
        # Keep the levels from the one where the nodes of that level and above, about
        # 2n / 2^level of them, fit the capacity; the lower ones are read from storage each time.
        lowest = max(1, (2 * memory.size // self.CACHE_CAPACITY).bit_length()) if levels else 99
        if len(memory.hashes) >= self.CACHE_CAPACITY:
            memory.hashes.clear()
        for k in gaps:
            index = indexes[k]
            hashes[k] = found[index]
            if levels and levels[k] >= lowest:
                memory.hashes[index] = found[index]
        return hashes  # type: ignore[return-value]  # every gap filled

    def _select(self, sql: str, params: tuple[int, ...] = ()) -> list[tuple[Any, Any]]:
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        finally:
            # Back to the pool, which rolls back whatever the driver began.
            raw.close()


class _Committed:
    """What is known to be committed in one database: its size and some stored hashes."""

    __slots__ = ("hashes", "size")

    def __init__(self) -> None:
        self.size = 0
        self.hashes: dict[int, bytes] = {}


# Per connection pool: an engine and the engines derived from it with execution_options share
# one, and a disposed engine's memory goes with it.
_MEMORY: weakref.WeakKeyDictionary[Pool, _Committed] = weakref.WeakKeyDictionary()


def note_committed_size(engine: Engine, size: int) -> None:
    """Tell the proof readers of this process that a log of `size` entries is committed."""
    memory = _MEMORY.get(engine.pool)
    if memory is not None and size > memory.size:
        memory.size = size


def head(session: Session, *, lock: bool = False) -> tuple[int, bytes]:
    """The log's size and root; with `lock`, held until commit so that one writer appends."""
    stmt = _HEAD_READ
    if lock and session.get_bind().dialect.name != "sqlite":
        # SQLite's BEGIN IMMEDIATE already made this transaction the only writer.
        stmt = _HEAD_LOCK
    row = session.execute(stmt).one()
    return int(row.size), bytes(row.root)


def set_head(session: Session, size: int, root: bytes) -> None:
    """Record the log's new size and root."""
    session.execute(_HEAD_WRITE, {"size": size, "root": root})


def insert_leaves(session: Session, rows: Sequence[tuple[int, bytes]]) -> None:
    """Append leaves (index, exact bytes)."""
    if rows:
        session.execute(_LEAF_INSERT, [{"idx": i, "leaf": leaf} for i, leaf in rows])


def insert_hashes(session: Session, first_id: int, hashes: Sequence[bytes]) -> None:
    """Append stored hashes with consecutive stored-hash indexes from `first_id`."""
    if hashes:
        session.execute(
            _HASH_INSERT, [{"id": first_id + k, "hash": h} for k, h in enumerate(hashes)]
        )


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Append the full event records that stand beside the leaves."""
    if rows:
        session.execute(_EVENT_INSERT, list(rows))


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
    return secrets_for(session, {person_id: now})[person_id]


def secrets_for(session: Session, persons: dict[str, datetime]) -> dict[str, bytes]:
    """The tag secrets of `persons` (person id: when first needed), created where missing.

    One read for all of them, and one write for those created: a batch's tags cost two
    statements, not one per entry. Nothing is kept beyond the transaction, so a secret deleted
    to shred a person's link is never used again.
    """
    found: dict[str, bytes] = {}
    wanted = sorted(persons)
    # On the transaction's own driver connection: this read runs once per batch of the writer,
    # where the ORM's handling of a 32-id IN list costs more than the read itself. The session
    # has nothing unflushed here (the writer flushes after each unit).
    connection = session.connection()
    mark = _PLACEHOLDERS[connection.dialect.paramstyle]
    cursor = connection.connection.cursor()
    try:
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = tuple(wanted[start : start + _IN_CHUNK])
            marks = ",".join([mark] * len(chunk))
            cursor.execute(
                f"SELECT person_id, secret FROM person_secret WHERE person_id IN ({marks})",  # noqa: S608
                chunk,
            )
            found.update((str(p), bytes(s)) for p, s in cursor.fetchall())
    finally:
        cursor.close()
    created = {p: secrets.token_bytes(32) for p in wanted if p not in found}
    if created:
        session.execute(
            _SECRET_INSERT,
            [{"person_id": p, "secret": s, "created_at": persons[p]} for p, s in created.items()],
        )
        found.update(created)
    return found


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
