"""Settings: defaults that work out of the box, and production refusing insecure ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from broker.settings import Settings


def test_defaults_give_an_embedded_database_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BROKER_DATABASE_URL", "BROKER_DATA_DIR", "BROKER_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.effective_database_url == "sqlite:///var/broker.sqlite3"
    assert settings.effective_public_url == "http://127.0.0.1:8000"


def test_settings_come_from_broker_prefixed_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BROKER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BROKER_PORT", "9001")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.effective_database_url == f"sqlite:///{tmp_path.as_posix()}/broker.sqlite3"
    assert settings.effective_public_url == "http://127.0.0.1:9001"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "BROKER_DATABASE_URL"),
        ({"database_url": "postgresql+psycopg://db/broker"}, "https://"),
        (
            {"database_url": "postgresql+psycopg://db/broker", "public_url": "http://x.fi"},
            "https://",
        ),
    ],
)
def test_production_refuses_insecure_defaults(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None, environment="production", **values)  # type: ignore[call-arg, arg-type]


def test_production_starts_when_configured() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="production",  # type: ignore[arg-type]
        database_url="postgresql+psycopg://db/broker",
        public_url="https://omadata.example.fi",
    )
    assert settings.effective_public_url == "https://omadata.example.fi"
