"""Migrations run whatever characters the database URL holds, `%` included."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from broker.storage import create_db_engine
from broker.storage.migrate import alembic_config, current_revision, head_revision, upgrade


def test_a_password_with_a_percent_sign_reaches_alembic_unchanged() -> None:
    # Alembic's config is a ConfigParser: an unescaped `%` was an interpolation error.
    url = make_url("postgresql+psycopg://broker@db.example/broker").set(password="100%-s3cret%")
    engine = create_engine(url)
    try:
        configured = alembic_config(engine).get_main_option("sqlalchemy.url")
    finally:
        engine.dispose()
    assert configured is not None
    assert make_url(configured).password == "100%-s3cret%"
    assert configured == url.render_as_string(hide_password=False)


def test_a_database_in_a_directory_with_a_percent_sign_migrates(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / '100% data' / 'broker.sqlite3'}")
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


# pysqlite takes no application_name (the directory test covers SQLite): PostgreSQL only.
@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_url_with_an_escaped_percent_migrates(engine: Engine) -> None:
    # A real connection: the URL renders the `%` of the application name as %25.
    url = engine.url.update_query_dict({"application_name": "broker 100%"})
    assert "%25" in url.render_as_string(hide_password=False)
    other = create_db_engine(url.render_as_string(hide_password=False))
    try:
        upgrade(other)
        assert current_revision(other) == head_revision()
    finally:
        other.dispose()
