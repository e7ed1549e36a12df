"""Which driver errors mean "the database is unavailable, try again" and which are bugs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from broker.demo.stack import free_port
from broker.errors import DatabaseUnavailable
from broker.storage import create_db_engine, transaction
from broker.storage.database import unavailable


def test_a_locked_sqlite_database_is_unavailable_but_a_missing_table_is_a_bug() -> None:
    locked = OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
    assert isinstance(unavailable(locked), DatabaseUnavailable)
    missing = OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: consent"))
    assert unavailable(missing) is None
    constraint = IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert unavailable(constraint) is None
    assert unavailable(ValueError("not a driver error")) is None


def test_a_query_on_a_missing_table_still_raises_the_driver_error(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with pytest.raises(OperationalError), transaction(engine) as session:
        session.execute(text("SELECT * FROM consent"))
    engine.dispose()


def test_a_postgresql_server_that_refuses_connections_is_unavailable_with_retry_after() -> None:
    # Nothing listens on a free port: the connection is refused at once.
    engine = create_db_engine(f"postgresql+psycopg://broker@127.0.0.1:{free_port()}/broker")
    with pytest.raises(DatabaseUnavailable) as caught, transaction(engine) as session:
        session.execute(text("SELECT 1"))
    assert caught.value.headers == {"Retry-After": "5"}
    assert isinstance(caught.value.__cause__, OperationalError)
    engine.dispose()
