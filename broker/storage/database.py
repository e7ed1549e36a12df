"""Engines and transactions. SQLite runs in WAL mode with foreign keys enforced."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url`; for SQLite, creates the directory and sets WAL and foreign keys."""
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
    return create_engine(url, echo=echo, pool_pre_ping=True)


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


@contextmanager
def transaction(engine: Engine, *, readonly: bool = False) -> Iterator[Session]:
    """One unit of work: commits if the block succeeds, rolls everything back if it raises."""
    bind = engine.execution_options(**{_READONLY: True}) if readonly else engine
    with Session(bind, expire_on_commit=False) as session, session.begin():
        yield session
