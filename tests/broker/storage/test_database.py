"""The schema the migrations build, and what the database itself enforces."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import SQLModel, select

from broker.consents.service import give_consent
from broker.ledger.sequencer import unit_of_work
from broker.storage import transaction
from broker.storage.migrate import current_revision, head_revision, upgrade
from broker.storage.tables import ConsentEvent, Person, Service
from tests.conftest import NOW

HEAD = head_revision()


def test_migrations_build_exactly_the_declared_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    assert current_revision(engine) == HEAD


def test_upgrade_twice_is_harmless(engine: Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == HEAD


def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        assert engine.dialect.name == "postgresql"
        return
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    from broker.storage.tables import DataCategory

    with pytest.raises(IntegrityError), transaction(engine) as session:
        session.add(DataCategory(code="x.y", source_id="no-such-service", name={}, description={}))
        session.flush()


def test_datetimes_come_back_aware_utc(engine: Engine) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with transaction(engine) as session:
        session.add(Person(id="p1", display_name="P", language="fi", created_at=when))
    with transaction(engine, readonly=True) as session:
        person = session.get(Person, "p1")
        assert person is not None
        assert person.created_at == when
        assert person.created_at.tzinfo is not None


def test_a_failed_transaction_leaves_nothing(engine: Engine) -> None:
    with pytest.raises(RuntimeError), transaction(engine) as session:
        session.add(Person(id="p2", display_name="P", language="fi", created_at=NOW))
        session.flush()
        raise RuntimeError("boom")
    with transaction(engine, readonly=True) as session:
        assert session.get(Person, "p2") is None


def test_consent_history_is_append_only_in_the_database(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        give_consent(
            session,
            log,
            person_id="aino-virtanen",
            agreement_id="selfcare-immunisations",
            actor_id="aino-virtanen",
            now=NOW,
        )
    for statement in ("UPDATE consent_event SET note = 'rewritten'", "DELETE FROM consent_event"):
        with pytest.raises(DBAPIError, match="append-only"), demo.begin() as conn:
            conn.execute(text(statement))
    with transaction(demo, readonly=True) as session:
        events = session.exec(select(ConsentEvent)).all()
        assert [e.note for e in events] == [""]


def test_readonly_transactions_can_read_while_a_writer_holds_the_lock(demo: Engine) -> None:
    with transaction(demo) as writer:
        writer.add(
            Service(
                id="late",
                is_source=True,
                is_consumer=False,
                organisation="o",
                contact="a@b.fi",
                privacy_notice_url="https://x.fi",
                name={},
                description={},
                created_at=NOW,
            )
        )
        writer.flush()
        with transaction(demo, readonly=True) as reader:
            assert reader.get(Service, "patient-record") is not None
            assert reader.get(Service, "late") is None
