"""Fixtures that build real objects: migrated databases on SQLite and PostgreSQL, the demo.

Tests that take `engine` run once per database engine. PostgreSQL comes from
BROKER_TEST_POSTGRES_URL (a server URL whose user may create databases). In CI a missing or
unreachable server fails those tests; on a laptop they are skipped, with the reason printed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.catalogue.service import load_catalogue
from broker.demo.stack import free_port
from broker.ledger.sequencer import unit_of_work
from broker.storage import create_db_engine
from broker.storage.migrate import upgrade

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile("default")

POSTGRES_URL = os.environ.get("BROKER_TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available on this machine: {reason}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite database file, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "broker.sqlite3"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped afterwards."""
    if not POSTGRES_URL:
        _missing("BROKER_TEST_POSTGRES_URL is not set")
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"broker_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any driver error means the server is not usable
        admin.dispose()
        _missing(f"cannot create a database at {make_url(POSTGRES_URL).host}: {exc}")
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database on each engine."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "broker.sqlite3"
        shutil.copy(template, path)
        db = create_db_engine(f"sqlite:///{path}")
    else:
        db = create_db_engine(request.getfixturevalue("postgres_url"))
        tables = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
        with db.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            conn.execute(
                text("INSERT INTO log_head (id, size, root) VALUES (1, 0, :root)"),
                {"root": hashlib.sha256(b"").digest()},
            )
    yield db
    db.dispose()


@pytest.fixture
def demo(engine: Engine) -> Engine:
    """The database with the demo catalogue, persons and delegations loaded."""
    with unit_of_work(engine) as (session, log):
        load_catalogue(session, log, read_catalogue(demo_catalogue_path()), NOW)
    return engine


_GUARDED = ("log_leaf", "log_hash", "log_checkpoint")


@pytest.fixture
def unguarded(engine: Engine) -> Iterator[Engine]:
    """The database with the log's append-only triggers dropped, as a malicious owner would.

    On PostgreSQL the database is shared by the session, so the triggers come back afterwards.
    """
    with engine.begin() as conn:
        for table in _GUARDED:
            if engine.dialect.name == "sqlite":
                conn.execute(text(f"DROP TRIGGER {table}_no_update"))
                conn.execute(text(f"DROP TRIGGER {table}_no_delete"))
            else:
                conn.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
    yield engine
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            for table in _GUARDED:
                conn.execute(
                    text(
                        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                        f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
                    )
                )


class LiveBroker:
    """A broker served by uvicorn on loopback in this process, for tests over real HTTP."""

    def __init__(self, engine: Engine, data_dir: Path, **settings: Any) -> None:
        from broker.api import create_app
        from broker.demo.stack import Served
        from broker.settings import Settings

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(
            data_dir=data_dir, public_url=self.url, checkpoint_interval_seconds=0.2, **settings
        )
        self.app = create_app(self.settings, engine=engine)
        self.served = Served(self.app, self.port)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def __enter__(self) -> LiveBroker:
        self.served.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.served.stop()


@pytest.fixture
def live(demo: Engine, tmp_path: Path) -> Iterator[LiveBroker]:
    """The demo broker over real HTTP on a loopback port."""
    with LiveBroker(demo, tmp_path / "broker") as broker:
        yield broker
