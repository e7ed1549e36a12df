"""The broker's tables. Migrations in `broker/migrations` create exactly these.

Localised texts are JSON objects `{"fi": ..., "sv": ..., "en": ...}`. Consent history is
append-only: the migration adds database triggers that refuse UPDATE and DELETE on it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from broker.storage.types import LogIndex, UTCDateTime


def _utc(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


def _json() -> Any:
    return Field(sa_column=Column(JSON, nullable=False))


class Person(SQLModel, table=True):
    """A data subject."""

    id: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(max_length=200)
    language: str = Field(max_length=2)
    birth_date: date | None = None
    created_at: datetime = _utc()


class PersonIdentity(SQLModel, table=True):
    """An external identity (issuer, subject) a person signs in with."""

    __tablename__ = "person_identity"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: int | None = Field(default=None, primary_key=True)
    person_id: str = Field(foreign_key="person.id", index=True, max_length=64)
    issuer: str = Field(max_length=500)
    subject: str = Field(max_length=500)


class Service(SQLModel, table=True):
    """An integrated service: a data source, a consumer, or both."""

    id: str = Field(primary_key=True, max_length=64)
    is_source: bool
    is_consumer: bool
    organisation: str = Field(max_length=300)
    contact: str = Field(max_length=300)
    privacy_notice_url: str = Field(max_length=2000)
    name: dict[str, str] = _json()
    description: dict[str, str] = _json()
    created_at: datetime = _utc()


class DataCategory(SQLModel, table=True):
    """A kind of data that one source service holds."""

    __tablename__ = "data_category"

    code: str = Field(primary_key=True, max_length=100)
    source_id: str = Field(foreign_key="service.id", index=True, max_length=64)
    name: dict[str, str] = _json()
    description: dict[str, str] = _json()


class DataField(SQLModel, table=True):
    """One field of a data category, with its plain-language description."""

    __tablename__ = "data_field"

    category_code: str = Field(foreign_key="data_category.code", primary_key=True, max_length=100)
    name: str = Field(primary_key=True, max_length=63)
    description: dict[str, str] = _json()
    special_category: bool = False


class Purpose(SQLModel, table=True):
    """A purpose of processing, refining a W3C DPV purpose."""

    code: str = Field(primary_key=True, max_length=63)
    dpv: str = Field(max_length=200)
    name: dict[str, str] = _json()
    description: dict[str, str] = _json()


class DataAgreement(SQLModel, table=True):
    """One published, immutable version of what a consumer asks of a source for a purpose."""

    __tablename__ = "data_agreement"
    __table_args__ = (UniqueConstraint("agreement_id", "version"),)

    pk: int | None = Field(default=None, primary_key=True)
    agreement_id: str = Field(max_length=64, index=True)
    version: int
    consumer_id: str = Field(foreign_key="service.id", max_length=64)
    source_id: str = Field(foreign_key="service.id", max_length=64)
    purpose_code: str = Field(foreign_key="purpose.code", max_length=63)
    lawful_basis: str = Field(max_length=200)
    retention_days: int
    max_consent_days: int
    title: dict[str, str] = _json()
    published_at: datetime = _utc()


class AgreementField(SQLModel, table=True):
    """A field an agreement version asks for; optional ones the person may leave out."""

    __tablename__ = "agreement_field"
    __table_args__ = (
        ForeignKeyConstraint(
            ["category_code", "field_name"], ["data_field.category_code", "data_field.name"]
        ),
    )

    agreement_pk: int = Field(foreign_key="data_agreement.pk", primary_key=True)
    category_code: str = Field(primary_key=True, max_length=100)
    field_name: str = Field(primary_key=True, max_length=63)
    required: bool


class Delegation(SQLModel, table=True):
    """Person `delegate_id` may act for person `principal_id` within `scope`, in a date window."""

    id: str = Field(primary_key=True, max_length=64)
    delegate_id: str = Field(foreign_key="person.id", index=True, max_length=64)
    principal_id: str = Field(foreign_key="person.id", index=True, max_length=64)
    kind: str = Field(max_length=20)
    scope: list[str] = Field(sa_column=Column(JSON, nullable=False))
    valid_from: date
    valid_until: date
    created_at: datetime = _utc()
    ended_at: datetime | None = _utc(default=None)


class Consent(SQLModel, table=True):
    """A person's answer to one agreement version. Changed only together with a ConsentEvent."""

    __table_args__ = (Index("ix_consent_person_agreement", "person_id", "agreement_pk"),)

    id: str = Field(primary_key=True, max_length=64)
    person_id: str = Field(foreign_key="person.id", max_length=64)
    agreement_pk: int = Field(foreign_key="data_agreement.pk", index=True)
    status: str = Field(max_length=20)
    valid_from: datetime = _utc()
    valid_until: datetime = _utc()
    given_by_id: str = Field(foreign_key="person.id", max_length=64)
    actor_role: str = Field(max_length=20)
    delegation_id: str | None = Field(default=None, foreign_key="delegation.id", max_length=64)
    created_at: datetime = _utc()
    updated_at: datetime = _utc()


class ConsentField(SQLModel, table=True):
    """A field the person chose to share under a consent."""

    __tablename__ = "consent_field"
    __table_args__ = (
        ForeignKeyConstraint(
            ["category_code", "field_name"], ["data_field.category_code", "data_field.name"]
        ),
    )

    consent_id: str = Field(foreign_key="consent.id", primary_key=True, max_length=64)
    category_code: str = Field(primary_key=True, max_length=100)
    field_name: str = Field(primary_key=True, max_length=63)


class ConsentEvent(SQLModel, table=True):
    """One entry of a consent's append-only history."""

    __tablename__ = "consent_event"
    __table_args__ = (UniqueConstraint("consent_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    consent_id: str = Field(foreign_key="consent.id", index=True, max_length=64)
    seq: int
    event_type: str = Field(max_length=40)
    status: str = Field(max_length=20)
    at: datetime = _utc()
    # None when the broker itself (expiry) or an operator acted, not a person.
    actor_id: str | None = Field(default=None, foreign_key="person.id", max_length=64)
    actor_role: str = Field(max_length=20)
    note: str = Field(default="", max_length=1000)


class LogLeaf(SQLModel, table=True):
    """One audit-log entry: the exact canonical-JSON bytes that were hashed. Never rewritten."""

    __tablename__ = "log_leaf"

    idx: int = Field(primary_key=True, sa_type=LogIndex, sa_column_kwargs={"autoincrement": False})
    leaf: bytes = Field(sa_type=LargeBinary)


class LogHash(SQLModel, table=True):
    """A stored Merkle hash, by tlog stored-hash index: leaf hashes and completed subtrees."""

    __tablename__ = "log_hash"

    id: int = Field(primary_key=True, sa_type=LogIndex, sa_column_kwargs={"autoincrement": False})
    hash: bytes = Field(sa_type=LargeBinary)


class LogHead(SQLModel, table=True):
    """The single row that says how big the log is; writers lock it to sequence appends."""

    __tablename__ = "log_head"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    size: int = Field(sa_type=BigInteger)
    root: bytes = Field(sa_type=LargeBinary)


class LogCheckpoint(SQLModel, table=True):
    """A signed checkpoint (C2SP signed note) of the log at one size."""

    __tablename__ = "log_checkpoint"

    size: int = Field(primary_key=True, sa_type=LogIndex, sa_column_kwargs={"autoincrement": False})
    root: bytes = Field(sa_type=LargeBinary)
    note: bytes = Field(sa_type=LargeBinary)
    signed_at: datetime = _utc()


class LogEvent(SQLModel, table=True):
    """The full record behind one log entry, for the broker's own queries; may name the person."""

    __tablename__ = "log_event"

    idx: int = Field(
        primary_key=True,
        foreign_key="log_leaf.idx",
        sa_type=LogIndex,
        sa_column_kwargs={"autoincrement": False},
    )
    event_type: str = Field(max_length=40, index=True)
    at: datetime = _utc()
    person_id: str | None = Field(default=None, foreign_key="person.id", index=True, max_length=64)
    consent_id: str | None = Field(default=None, index=True, max_length=64)
    record: dict[str, Any] = _json()


class PersonSecret(SQLModel, table=True):
    """The per-person key of the log tags; deleting it unlinks the person from their entries."""

    __tablename__ = "person_secret"

    person_id: str = Field(primary_key=True, foreign_key="person.id", max_length=64)
    secret: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = _utc()


class OAuthClient(SQLModel, table=True):
    """An OAuth client: an integrated service, or an auditor. Secrets are stored as hashes."""

    __tablename__ = "oauth_client"

    client_id: str = Field(primary_key=True, max_length=64)
    client_secret_hash: str | None = Field(default=None, max_length=128)
    service_id: str | None = Field(
        default=None, foreign_key="service.id", index=True, max_length=64
    )
    kind: str = Field(max_length=20)
    client_name: str = Field(max_length=200)
    redirect_uris: list[str] = Field(sa_column=Column(JSON, nullable=False))
    grant_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    scope: str = Field(max_length=500)
    token_endpoint_auth_method: str = Field(max_length=40)
    jwks: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    webhook_url: str | None = Field(default=None, max_length=2000)
    created_at: datetime = _utc()
    disabled_at: datetime | None = _utc(default=None)


class AuthorizationCode(SQLModel, table=True):
    """A one-time authorization code, stored by its hash until redeemed or expired."""

    __tablename__ = "oauth_code"

    code_hash: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(foreign_key="oauth_client.client_id", max_length=64)
    person_id: str = Field(foreign_key="person.id", max_length=64)
    actor_id: str = Field(foreign_key="person.id", max_length=64)
    redirect_uri: str = Field(max_length=2000)
    scope: str = Field(max_length=500)
    code_challenge: str = Field(max_length=128)
    code_challenge_method: str = Field(max_length=10)
    authorization_details: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    consent_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    auth_time: datetime = _utc()
    expires_at: datetime = _utc()
    used_at: datetime | None = _utc(default=None)


class RefreshToken(SQLModel, table=True):
    """A refresh token (by hash), bound to its consents; rotated on every use."""

    __tablename__ = "oauth_refresh_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    family_id: str = Field(index=True, max_length=64)
    client_id: str = Field(foreign_key="oauth_client.client_id", index=True, max_length=64)
    person_id: str = Field(foreign_key="person.id", max_length=64)
    scope: str = Field(max_length=500)
    authorization_details: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    consent_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    dpop_jkt: str | None = Field(default=None, max_length=64)
    issued_at: datetime = _utc()
    expires_at: datetime = _utc()
    used_at: datetime | None = _utc(default=None)
    revoked_at: datetime | None = _utc(default=None)


class RevokedAccessToken(SQLModel, table=True):
    """An access token revoked before its expiry (RFC 7009), by `jti`."""

    __tablename__ = "oauth_revoked_jti"

    jti: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = _utc()


class RegistrationToken(SQLModel, table=True):
    """An operator-issued initial access token for RFC 7591 dynamic registration (by hash)."""

    __tablename__ = "oauth_registration_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    service_id: str = Field(foreign_key="service.id", max_length=64)
    created_at: datetime = _utc()
    expires_at: datetime = _utc()
    used_at: datetime | None = _utc(default=None)


class SeenJti(SQLModel, table=True):
    """A one-time JWT id already used (DPoP proofs, client assertions), kept while it could
    still be fresh, so a replay is refused in every broker process."""

    __tablename__ = "oauth_seen_jti"

    namespace: str = Field(primary_key=True, max_length=100)
    jti: str = Field(primary_key=True, max_length=256)
    expires_at: datetime = _utc()


class PersonCredential(SQLModel, table=True):
    """A local account's argon2 password hash."""

    __tablename__ = "person_credential"

    person_id: str = Field(primary_key=True, foreign_key="person.id", max_length=64)
    password_hash: str = Field(max_length=200)
    updated_at: datetime = _utc()


class PersonSession(SQLModel, table=True):
    """A signed-in browser session (by the hash of its cookie), with its CSRF token."""

    __tablename__ = "person_session"

    id_hash: str = Field(primary_key=True, max_length=64)
    person_id: str = Field(foreign_key="person.id", index=True, max_length=64)
    csrf_token: str = Field(max_length=64)
    language: str = Field(max_length=2)
    acting_for: str | None = Field(default=None, foreign_key="person.id", max_length=64)
    created_at: datetime = _utc()
    expires_at: datetime = _utc()


class BrokerSecret(SQLModel, table=True):
    """A server-side secret created on first use (e.g. the key of pairwise subjects)."""

    __tablename__ = "broker_secret"

    name: str = Field(primary_key=True, max_length=64)
    value: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = _utc()


class NotificationOutbox(SQLModel, table=True):
    """A consent change still to tell (or already told) one consumer client's webhook.

    Written in the transaction of the change itself, so no change is lost or told before it
    commits. `id` is the notification's `jti`. `next_attempt_at` is None once nothing more is
    to be done (delivered, or given up). Holds no personal data: the person's pairwise subject
    is derived when the notification is signed, and `last_error` says only what failed.
    """

    __tablename__ = "notification_outbox"
    # A consent ends once, so each client hears of each ending at most once.
    __table_args__ = (UniqueConstraint("consent_id", "client_id", "event"),)

    id: str = Field(primary_key=True, max_length=32)
    consent_id: str = Field(foreign_key="consent.id", max_length=64)
    client_id: str = Field(foreign_key="oauth_client.client_id", max_length=64)
    event: str = Field(max_length=40)
    at: datetime = _utc()
    attempts: int = 0
    next_attempt_at: datetime | None = _utc(default=None, index=True)
    delivered_at: datetime | None = _utc(default=None)
    failed_at: datetime | None = _utc(default=None)
    last_error: str | None = Field(default=None, max_length=200)
    created_at: datetime = _utc()
