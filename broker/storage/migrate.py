"""Apply the Alembic migrations shipped inside the package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect


def alembic_config(engine: Engine) -> Config:
    """An Alembic config for the package's migrations, bound to `engine`."""
    config = Config()
    config.set_main_option("script_location", "broker:migrations")
    url = engine.url.render_as_string(hide_password=False)
    # Alembic's config is a ConfigParser, which reads `%` as interpolation: a password or path
    # with a `%` in it (and the URL's own %-escapes) must reach it doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of the broker."""
    config = Config()
    config.set_main_option("script_location", "broker:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (default: the newest)."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, None if never migrated."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        return None if row is None else str(row[0])
