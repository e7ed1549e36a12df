"""The broker's settings: one class, read from `BROKER_*` environment variables (and `.env`).

The defaults run a development broker out of the box: SQLite under `var/`, loopback only.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    """Development allows insecure conveniences; production refuses them at start."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Everything the broker reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="BROKER_", env_file=".env", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path("var")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means the embedded SQLite database under data_dir.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = Field(default="", description="The broker's external base URL.")
    catalogue_page_size: int = Field(default=100, ge=1, le=1000)
    log_origin: str = Field(
        default="omadata.localhost/audit/v1",
        pattern=r"^[^\s+]+$",
        description="The audit log's name: first line of every checkpoint and the key name.",
    )
    keys_dir: Path | None = Field(default=None, description="Signing keys; default data_dir/keys.")
    key_passphrase: SecretStr | None = Field(
        default=None, description="Encrypts private keys at rest; required in production."
    )
    key_overlap_days: int = Field(default=7, ge=0, le=365)
    checkpoint_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    log_entries_page_size: int = Field(default=1000, ge=1, le=10_000)
    access_token_lifetime_seconds: int = Field(default=300, ge=30, le=3600)
    refresh_token_lifetime_days: int = Field(default=30, ge=1, le=365)
    session_lifetime_minutes: int = Field(default=30, ge=5, le=24 * 60)
    connectors_file: Path | None = Field(
        default=None,
        description="The sources and how to reach them (YAML, see docs/connectors.md); "
        "default: the demo's sources in development, none in production.",
    )
    source_base_urls: dict[str, str] = Field(
        default_factory=dict, description="Base URL per source id, overriding the file's."
    )
    source_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    notify_retry_base_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Delay after a webhook's first failed attempt."
    )
    notify_retry_max_seconds: float = Field(
        default=3600.0, gt=0, le=86_400, description="The longest delay between two attempts."
    )
    notify_max_attempts: int = Field(
        default=10, ge=1, le=50, description="Attempts before a notification is given up."
    )
    notify_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    notify_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often the outbox is checked for due rows."
    )
    notify_batch_size: int = Field(default=20, ge=1, le=1000)
    expiry_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="How often consents past their valid_until are marked expired.",
    )
    oidc_issuer: str = Field(default="", description="External OpenID provider (e.g. Suomi.fi).")
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr | None = None
    oidc_scope: str = Field(
        default="openid",
        pattern=r"(^| )openid( |$)",
        description="Scopes asked of the provider; must include openid.",
    )
    oidc_person_claim: str = Field(
        default="sub",
        min_length=1,
        description="The ID token claim matched against persons' linked identities.",
    )
    oidc_display_name: str = Field(
        default="Suomi.fi", min_length=1, max_length=60, description="The provider's name."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="The largest request body accepted (413 above)."
    )
    max_form_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="The largest form body (pages, OAuth endpoints) accepted (413 above).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies whose X-Forwarded-For is believed.",
    )
    rate_signin_per_minute: int = Field(
        default=60, ge=0, description="Sign-in requests per address and minute; 0: no limit."
    )
    rate_failures_per_hour: int = Field(
        default=30,
        ge=0,
        description="Failed sign-ins or client authentications per address, and per user "
        "name or client, in an hour; 0: no limit.",
    )
    rate_oauth_per_minute: int = Field(
        default=1200, ge=0, description="OAuth endpoint requests per address and minute."
    )
    rate_client_per_minute: int = Field(
        default=600, ge=0, description="OAuth endpoint requests per authenticated client."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for GET /metrics; without it, only direct loopback requests.",
    )
    log_format: Literal["json", "text"] | None = Field(
        default=None, description="Log lines as JSON objects or text; default json in production."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            if not self.database_url:
                raise ValueError("production needs BROKER_DATABASE_URL (a managed database)")
            if not self.public_url.startswith("https://"):
                raise ValueError("production needs an https:// BROKER_PUBLIC_URL")
            if self.oidc_enabled and not self.oidc_issuer.startswith("https://"):
                raise ValueError("production needs an https:// BROKER_OIDC_ISSUER")
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL in force: the configured one, or SQLite in `data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'broker.sqlite3').as_posix()}"

    @property
    def effective_log_format(self) -> Literal["json", "text"]:
        """The log format in force: the configured one, else json in production, text otherwise."""
        if self.log_format is not None:
            return self.log_format
        return "json" if self.environment is Environment.PRODUCTION else "text"

    @property
    def oidc_enabled(self) -> bool:
        """Whether sign-in through an external OpenID Connect provider is configured."""
        return bool(self.oidc_issuer and self.oidc_client_id)

    @property
    def api_audience(self) -> str:
        """The `aud` of access tokens for the broker's own API."""
        return f"{self.effective_public_url}/v1"

    @property
    def effective_keys_dir(self) -> Path:
        """Where the signing keys live: `keys_dir`, or `keys` under `data_dir`."""
        return self.keys_dir or self.data_dir / "keys"

    @property
    def effective_public_url(self) -> str:
        """The broker's base URL as others reach it, without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
