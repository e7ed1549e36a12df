"""SQLite writers of one process queue on a lock of the process, not on SQLite's busy handler."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from broker.errors import DatabaseUnavailable
from broker.storage import create_db_engine, transaction

THREADS = 6
EACH = 15


@pytest.fixture
def impatient(tmp_path: Path) -> Any:
    """A SQLite engine whose busy handler gives up at once: only the process's lock can queue."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'w.sqlite3'}")

    @event.listens_for(engine, "connect")
    def no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 0")

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO counter (n) VALUES (0)"))
    yield engine
    engine.dispose()


def _count(engine: Engine) -> int:
    with transaction(engine, readonly=True) as session:
        return int(session.execute(text("SELECT n FROM counter")).scalar_one())


def test_concurrent_write_transactions_all_commit(impatient: Engine) -> None:
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(EACH):
                with transaction(impatient) as session:
                    n = session.execute(text("SELECT n FROM counter")).scalar_one()
                    time.sleep(0.001)  # held across a pause, so that writers overlap
                    session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
        except BaseException as exc:  # reported below, with the thread's count
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert _count(impatient) == THREADS * EACH


def test_a_failed_transaction_lets_the_next_writer_in(impatient: Engine) -> None:
    with pytest.raises(RuntimeError), transaction(impatient) as session:
        session.execute(text("UPDATE counter SET n = 5"))
        raise RuntimeError("rolled back")
    done = threading.Event()

    def write() -> None:
        with transaction(impatient) as session:
            session.execute(text("UPDATE counter SET n = n + 1"))
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(60)
    assert done.is_set()
    assert _count(impatient) == 1


def test_a_unit_that_has_not_written_does_not_hold_up_a_nested_one(impatient: Engine) -> None:
    with transaction(impatient), transaction(impatient) as inner:
        inner.execute(text("UPDATE counter SET n = 7"))
    assert _count(impatient) == 7


def test_a_writer_nested_in_a_writing_one_is_refused_by_sqlite_not_stuck(
    impatient: Engine,
) -> None:
    # It could never get the lock its own thread holds; SQLite refuses it, as before the lock.
    with transaction(impatient) as session:
        session.execute(text("UPDATE counter SET n = 1"))
        with pytest.raises(DatabaseUnavailable), transaction(impatient) as other:
            other.execute(text("UPDATE counter SET n = 2"))
