"""Operator commands: serve, migrate, load the catalogue, add persons, record consents.

Each command opens one transaction and calls one service function.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from broker.catalogue import service as catalogue_service
from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.cli._common import engine, err, logged_unit, now, print_json, run
from broker.consents import service as consents
from broker.errors import CatalogueInvalid, InvalidInput
from broker.ledger.signer import CheckpointSigner
from broker.observability.logs import logging_config
from broker.people import service as people
from broker.people.credentials import set_password
from broker.runtime import open_keystore
from broker.settings import get_settings
from broker.storage import migrate as migrations
from broker.storage import transaction
from policies import FieldRef

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
catalogue_app = typer.Typer(help="The service catalogue.", no_args_is_help=True)
person_app = typer.Typer(help="Persons (data subjects).", no_args_is_help=True)
consent_app = typer.Typer(help="Consents, for operators.", no_args_is_help=True)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes; more than one needs PostgreSQL.")
    ] = 1,
) -> None:
    """Serve the broker over HTTP, in one process or in `--workers` processes on one port."""
    import uvicorn

    settings = get_settings()
    if workers > 1 and make_url(settings.effective_database_url).get_backend_name() == "sqlite":
        err.print(
            "--workers above 1 needs PostgreSQL (set BROKER_DATABASE_URL): SQLite lets one "
            "process write at a time, so more workers would only queue on its lock."
        )
        raise typer.Exit(2)
    # Each worker builds its app from the environment (uvicorn spawns them and calls the
    # factory), so the options chosen here go there too; the issuer URL derives from them.
    os.environ["BROKER_HOST"] = host or settings.host
    os.environ["BROKER_PORT"] = str(port or settings.port)
    get_settings.cache_clear()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its counters here and any worker's /metrics sums them all; the
        # files of an earlier run would be added in, so the directory starts empty.
        shared = settings.data_dir / "metrics"
        shared.mkdir(parents=True, exist_ok=True)
        for stale in shared.glob("*.db"):
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    uvicorn.run(
        "broker.api.app:create_app",
        factory=True,
        host=os.environ["BROKER_HOST"],
        port=int(os.environ["BROKER_PORT"]),
        workers=workers,
        log_config=logging_config(settings.effective_log_format, settings.log_level),
        log_level=settings.log_level.lower(),
        # broker.access logs each request by route template; uvicorn's line has the raw path.
        access_log=False,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    with engine() as db:
        migrations.upgrade(db)
        err.print(f"Database at revision {migrations.current_revision(db)}.")


@catalogue_app.command("load")
def catalogue_load(
    file: Annotated[
        Path | None, typer.Argument(help="YAML or JSON catalogue file.", show_default=False)
    ] = None,
    demo: Annotated[bool, typer.Option(help="Load the demo catalogue shipped with the broker.")] = (
        False
    ),
) -> None:
    """Load services, categories, purposes and agreements: all of the file, or nothing."""
    if (file is None) == (not demo):
        err.print("Give a FILE or --demo.")
        raise typer.Exit(2)
    path = demo_catalogue_path() if demo else file
    assert path is not None

    def action() -> None:
        spec = read_catalogue(path)
        with logged_unit() as (session, log):
            report = catalogue_service.load_catalogue(session, log, spec, now())
        print_json(
            {"created": report.created, "updated": report.updated, "unchanged": report.unchanged}
        )

    run(action)


@person_app.command("add")
def person_add(
    name: Annotated[str, typer.Argument(help="Display name.")],
    language: Annotated[str, typer.Option(help="fi, sv or en.")] = "fi",
    identity: Annotated[
        list[str] | None,
        typer.Option(help="External identity as ISSUER=SUBJECT; may repeat."),
    ] = None,
) -> None:
    """Add a person and print their id."""

    def action() -> None:
        pairs: list[tuple[str, str]] = []
        for item in identity or []:
            issuer, sep, subject = item.partition("=")
            if not sep or not issuer or not subject:
                raise CatalogueInvalid(f"--identity must be ISSUER=SUBJECT, not {item!r}.")
            pairs.append((issuer, subject))
        with logged_unit() as (session, _):
            person = people.add_person(
                session, display_name=name, language=language, identities=pairs, now=now()
            )
            print_json({"id": person.id, "display_name": person.display_name})

    run(action)


def _field_refs(fields: list[str] | None) -> list[FieldRef] | None:
    if not fields:
        return None
    refs = []
    for item in fields:
        category, sep, name = item.rpartition(".")
        if not sep or not category:
            raise CatalogueInvalid(f"--field must be CATEGORY.FIELD, not {item!r}.")
        refs.append(FieldRef(category, name))
    return refs


@consent_app.command("give")
def consent_give(
    person: Annotated[str, typer.Option(help="The person the consent is about.")],
    agreement: Annotated[str, typer.Option(help="Agreement id.")],
    version: Annotated[
        int | None, typer.Option(help="Agreement version; latest if absent.")
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(help="CATEGORY.FIELD to share; may repeat; all fields if absent."),
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--as", help="Who gives it, if not the person (a guardian).")
    ] = None,
    days: Annotated[int | None, typer.Option(help="Validity in days.")] = None,
) -> None:
    """Record a consent given by the person or someone entitled to act for them."""

    def action() -> None:
        with logged_unit() as (session, log):
            record = consents.give_consent(
                session,
                log,
                person_id=person,
                agreement_id=agreement,
                version=version,
                fields=_field_refs(field),
                actor_id=actor or person,
                now=now(),
                valid_days=days,
            )
            print_json(record)

    run(action)


@consent_app.command("withdraw")
def consent_withdraw(
    consent_id: Annotated[str, typer.Argument(help="The consent to withdraw.")],
    actor: Annotated[str, typer.Option("--as", help="The person, or who acts for them.")],
    note: Annotated[str, typer.Option(help="Why, in the person's words.")] = "",
) -> None:
    """Withdraw an active consent on the person's behalf."""

    def action() -> None:
        with logged_unit() as (session, log):
            record = consents.withdraw_consent(
                session, log, consent_id=consent_id, actor_id=actor, now=now(), note=note
            )
            print_json(record)

    run(action)


@consent_app.command("list")
def consent_list(person: Annotated[str, typer.Argument(help="The person.")]) -> None:
    """List a person's consents with their history."""

    def action() -> None:
        with engine() as db, transaction(db, readonly=True) as session:
            records = consents.list_consents(session, person, now())
            print_json([r.model_dump(mode="json") for r in records])

    run(action)


log_app = typer.Typer(help="The audit log, for operators.", no_args_is_help=True)


@log_app.command("check")
def log_check() -> None:
    """Rebuild the log from its leaves and check every stored hash and checkpoint."""

    def action() -> None:
        settings = get_settings()
        with engine() as db:
            size = CheckpointSigner(
                db, open_keystore(settings), settings.log_origin
            ).verify_stored_log()
        print_json({"ok": True, "tree_size": size})

    run(action)


@log_app.command("sign")
def log_sign() -> None:
    """Sign a checkpoint now if the log grew (a running broker does this every second)."""

    def action() -> None:
        settings = get_settings()
        with engine() as db:
            signed = CheckpointSigner(
                db, open_keystore(settings), settings.log_origin
            ).sign_if_grown()
        print_json({"signed": signed is not None, "tree_size": signed.size if signed else None})

    run(action)


@person_app.command("password")
def person_password(
    person: Annotated[str, typer.Argument(help="The person's id (their user name).")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Set a person's local password (at least 12 characters)."""

    def action() -> None:
        with logged_unit() as (session, _):
            set_password(session, person, password, now())
        err.print(f"Password set for {person}.")

    run(action)


@person_app.command("link-identity")
def person_link_identity(
    person: Annotated[str, typer.Argument(help="The person's id.")],
    subject: Annotated[
        str, typer.Option(help="The value of the provider's BROKER_OIDC_PERSON_CLAIM claim.")
    ],
    issuer: Annotated[
        str | None, typer.Option(help="The provider's issuer; default BROKER_OIDC_ISSUER.")
    ] = None,
) -> None:
    """Let a person sign in through an external OpenID provider as SUBJECT."""

    def action() -> None:
        chosen = issuer or get_settings().oidc_issuer
        if not chosen:
            raise InvalidInput("Give --issuer, or set BROKER_OIDC_ISSUER.")
        with engine() as db, transaction(db) as session:
            created = people.link_identity(session, person, issuer=chosen, subject=subject)
        print_json({"person": person, "issuer": chosen, "linked": True, "new": created})

    run(action)
