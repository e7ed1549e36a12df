"""Engines and transactions. SQLite runs in WAL mode with foreign keys enforced.

A database that cannot be reached (PostgreSQL restarting, SQLite locked past its busy timeout)
surfaces as `DatabaseUnavailable`, never as a driver error: `transaction` translates it, and
`unavailable` does so for callers that reach the database another way. The PostgreSQL pool
checks each connection before lending it, so a restarted server is reconnected to without
anyone's help.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url`; for SQLite, creates the directory and sets WAL and foreign keys."""
    # Whoever turns SQLAlchemy's logging up must not get parameters (names, identity codes).
    protect_library_logs()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    # pool_pre_ping: a pooled connection that died with a restarted server is replaced before
    # use, so the first requests after a restart do not fail.
    return create_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is switched off so that the "begin" hook above
    # decides when a transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock at BEGIN, so two writers queue on the busy timeout instead
    # of failing when both try to upgrade a read lock; readers stay concurrent.
    readonly = conn.get_execution_options().get(_READONLY, False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


_READONLY = "broker_readonly"


def _readonly_options(engine: Engine) -> dict[str, Any]:
    if engine.dialect.name == "postgresql":
        # PostgreSQL's default READ COMMITTED takes a new snapshot per statement, so a reader
        # of the log head and then its leaves could see two moments of a writer in another
        # process. SQLite's read transaction is one snapshot already.
        return {_READONLY: True, "isolation_level": "REPEATABLE READ"}
    return {_READONLY: True}


@contextmanager
def transaction(engine: Engine, *, readonly: bool = False) -> Iterator[Session]:
    """One unit of work: commits if the block succeeds, rolls everything back if it raises.

    A `readonly` unit reads one snapshot of the database, even while other processes write.
    Raises DatabaseUnavailable if the database cannot be reached (if that happened during the
    commit itself, the database may or may not have kept the work).
    """
    bind = engine.execution_options(**_readonly_options(engine)) if readonly else engine
    try:
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session
    except (OperationalError, InterfaceError) as exc:
        translated = unavailable(exc)
        if translated is None:
            raise
        raise translated from exc


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
