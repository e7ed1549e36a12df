"""Client lookup: recently read clients are kept briefly, and never unknown or disabled ones."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import update

from broker.oauth import clients
from broker.storage import create_db_engine, transaction
from broker.storage.migrate import upgrade
from broker.storage.tables import OAuthClient

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _auditor(engine: Engine) -> str:
    with transaction(engine) as session:
        return clients.register_auditor(session, name="Auditor", now=NOW).client_id


def _find(engine: Engine, client_id: str) -> clients.Client | None:
    with transaction(engine, readonly=True) as session:
        return clients.find_client(session, client_id)


def _disable(engine: Engine, client_id: str) -> None:
    with transaction(engine) as session:
        session.exec(
            update(OAuthClient)
            .where(OAuthClient.client_id == client_id)  # type: ignore[arg-type]
            .values(disabled_at=NOW)
        )


def test_a_disabled_client_is_refused_once_the_kept_copy_is_too_old(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clients, "CLIENT_CACHE_SECONDS", 0.2)
    client_id = _auditor(engine)
    found = _find(engine, client_id)
    assert found is not None
    assert found.client_id == client_id
    _disable(engine, client_id)
    # Within the window the copy may still answer; after it, the database does.
    time.sleep(0.3)
    assert _find(engine, client_id) is None
    assert _find(engine, client_id) is None  # a disabled client is not kept either


def test_an_unknown_client_is_not_remembered(engine: Engine) -> None:
    assert _find(engine, "auditor-later") is None
    with transaction(engine) as session:
        session.add(
            OAuthClient(
                client_id="auditor-later",
                kind="auditor",
                client_name="Later",
                redirect_uris=[],
                grant_types=["client_credentials"],
                scope="audit:read",
                token_endpoint_auth_method="client_secret_basic",
                created_at=NOW,
            )
        )
    found = _find(engine, "auditor-later")
    assert found is not None
    assert found.scopes == {"audit:read"}


def test_kept_clients_belong_to_their_database(engine: Engine, tmp_path: Path) -> None:
    client_id = _auditor(engine)
    assert _find(engine, client_id) is not None
    other = create_db_engine(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    try:
        upgrade(other)
        assert _find(other, client_id) is None
    finally:
        other.dispose()
