"""Engines and transactions. SQLite runs in WAL mode with foreign keys enforced.

A database that cannot be reached (PostgreSQL restarting, SQLite locked past its busy timeout)
surfaces as `DatabaseUnavailable`, never as a driver error: `transaction` translates it, and
`unavailable` does so for callers that reach the database another way. After a PostgreSQL
restart, the requests that were using the pool's old connections get DatabaseUnavailable and
the pool reconnects without anyone's help.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session, create_engine

from broker.errors import DatabaseUnavailable
from broker.observability.logs import protect_library_logs

# Seconds to wait for a PostgreSQL connection: a server that is unreachable (rather than
# refusing) would otherwise hold a request for the kernel's TCP timeout, minutes.
CONNECT_TIMEOUT_SECONDS = 10
# Seconds a SQLite writer waits for the write lock before giving up (DatabaseUnavailable).
SQLITE_BUSY_SECONDS = 30


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url`; for SQLite, creates the directory and sets WAL and foreign keys."""
    # Whoever turns SQLAlchemy's logging up must not get parameters (names, identity codes).
    protect_library_logs()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS},
        )
        writers = _SqliteWriters()
        _sqlite_writers[engine] = writers
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: _sqlite_begin(conn, writers))
        return engine
    connect_args = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    # No pool_pre_ping: it costs a round trip on every checkout. A pooled connection that died
    # with a restarted server fails its first statement instead; SQLAlchemy then sees a
    # disconnect and discards every connection of the pool made before it, so that request gets
    # DatabaseUnavailable (503, try again) and the next ones connect afresh.
    # pool_recycle: a firewall or proxy may close a long-lived connection without a word; one
    # older than ten minutes is replaced at its next checkout, at no cost per request.
    return create_engine(url, echo=echo, pool_recycle=600, connect_args=connect_args)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is switched off so that the "begin" hook above
    # decides when a transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


class _SqliteWriters:
    """This process's writers to one SQLite database, queued on a lock of the process.

    SQLite has one write lock per database, and a writer that finds it taken sleeps in the busy
    handler and polls (sleeps of up to 100 ms), leaving the CPU idle and giving long tails. A
    `transaction` takes this lock just before its BEGIN IMMEDIATE, when SQLite's would be taken,
    and releases it after the COMMIT, so that writers in this process are handed the lock in
    turn at once; writers in other processes still meet at the busy handler.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None  # the thread holding the lock

    def acquire(self) -> None:
        """Take the lock for the innermost open `transaction`, unless it holds it already."""
        unit = _writing.get()
        if unit is None or unit.writers is not self or unit.holds:
            return  # not in a `transaction` (migrations, tests): SQLite's busy handler alone
        if self.owner == threading.get_ident():
            # A writer nested in this thread's own: waiting here would never end; SQLite
            # refuses it after its busy timeout, as without this lock.
            return
        if not self.lock.acquire(timeout=SQLITE_BUSY_SECONDS):
            raise DatabaseUnavailable(
                "The broker's database cannot be reached just now; try again shortly."
            )
        self.owner = threading.get_ident()
        unit.holds = True

    def release(self) -> None:
        """Hand the lock to the next writer."""
        self.owner = None
        self.lock.release()


class _WriteUnit:
    """One open `transaction` that may write, and whether it holds its writers' lock."""

    __slots__ = ("holds", "writers")

    def __init__(self, writers: _SqliteWriters) -> None:
        self.writers = writers
        self.holds = False


_sqlite_writers: weakref.WeakKeyDictionary[Engine, _SqliteWriters] = weakref.WeakKeyDictionary()
# A context variable rather than a thread-local: correct for coroutines too.
_writing: ContextVar[_WriteUnit | None] = ContextVar("broker_sqlite_writing", default=None)


def _sqlite_begin(conn: Connection, writers: _SqliteWriters) -> None:
    # A writer takes the write lock at BEGIN, so two writers queue instead of failing when both
    # try to upgrade a read lock; readers stay concurrent.
    readonly = conn.get_execution_options().get(_READONLY, False)
    if not readonly:
        writers.acquire()
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


_READONLY = "broker_readonly"


def _readonly_options(engine: Engine) -> dict[str, Any]:
    if engine.dialect.name == "postgresql":
        # PostgreSQL's default READ COMMITTED takes a new snapshot per statement, so a reader
        # of the log head and then its leaves could see two moments of a writer in another
        # process. SQLite's read transaction is one snapshot already.
        return {_READONLY: True, "isolation_level": "REPEATABLE READ"}
    return {_READONLY: True}


_READONLY_ENGINE = "_broker_readonly_engine"


def _readonly_engine(engine: Engine) -> Engine:
    # One option engine per engine, kept on it (a cycle the collector frees with the engine):
    # making one per read transaction costs more than many a read.
    bound: Engine | None = getattr(engine, _READONLY_ENGINE, None)
    if bound is None:
        bound = engine.execution_options(**_readonly_options(engine))
        setattr(engine, _READONLY_ENGINE, bound)
    return bound


@contextmanager
def transaction(engine: Engine, *, readonly: bool = False) -> Iterator[Session]:
    """One unit of work: commits if the block succeeds, rolls everything back if it raises.

    A `readonly` unit reads one snapshot of the database, even while other processes write.
    Raises DatabaseUnavailable if the database cannot be reached (if that happened during the
    commit itself, the database may or may not have kept the work).
    """
    bind = _readonly_engine(engine) if readonly else engine
    writers = None if readonly else _sqlite_writers.get(engine)
    unit = _WriteUnit(writers) if writers is not None else None
    entered = _writing.set(unit) if unit is not None else None
    try:
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session
    except (OperationalError, InterfaceError) as exc:
        translated = unavailable(exc)
        if translated is None:
            raise
        raise translated from exc
    finally:
        if unit is not None and unit.holds:
            unit.writers.release()
        if entered is not None:
            _writing.reset(entered)


# SQLite reports a missing table as an OperationalError too; only these mean "try again".
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o")


def unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The DatabaseUnavailable that driver error `exc` amounts to, or None if it is not one.

    Lost or refused connections, a server shutting down, and on SQLite a lock held past the
    busy timeout are transient; anything else (a constraint, a missing table) is not.
    """
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if not isinstance(exc, DBAPIError):
        return None
    transient = exc.connection_invalidated or isinstance(exc, InterfaceError)
    if isinstance(exc, OperationalError):
        if type(exc.orig).__module__.startswith("sqlite3"):
            message = str(exc.orig).lower()
            transient = transient or any(word in message for word in _SQLITE_TRANSIENT)
        else:
            # psycopg's OperationalError: connection refused or lost, the server shutting
            # down, and the like; retrying later is the right answer to each.
            transient = True
    if not transient:
        return None
    return DatabaseUnavailable(
        "The broker's database cannot be reached just now; try again shortly."
    )
