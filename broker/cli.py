"""The `broker` command: serve, migrate, load the catalogue, and operator actions.

Each command opens one transaction and calls one service function; domain errors are printed
once, here, and give exit status 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from sqlmodel import Session

from broker.catalogue import service as catalogue_service
from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.consents import service as consents
from broker.errors import BrokerError, CatalogueInvalid
from broker.people import service as people
from broker.settings import get_settings
from broker.storage import create_db_engine, transaction
from broker.storage import migrate as migrations
from policies import FieldRef

app = typer.Typer(help="OmaData consent broker.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
catalogue_app = typer.Typer(help="The service catalogue.", no_args_is_help=True)
person_app = typer.Typer(help="Persons (data subjects).", no_args_is_help=True)
consent_app = typer.Typer(help="Consents, for operators.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(person_app, name="person")
app.add_typer(consent_app, name="consent")

_err = Console(stderr=True)


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _unit_of_work() -> Iterator[Session]:
    engine = create_db_engine(get_settings().effective_database_url)
    try:
        with transaction(engine) as session:
            yield session
    finally:
        engine.dispose()


def _print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _run(action: Callable[[], None]) -> None:
    try:
        action()
    except CatalogueInvalid as exc:
        _err.print(f"[bold red]Error:[/] {exc.detail}", highlight=False)
        for problem in exc.problems:
            _err.print(f"  - {problem}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    except BrokerError as exc:
        _err.print(f"[bold red]Error:[/] {exc.detail}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Serve the broker over HTTP."""
    import uvicorn

    from broker.api import create_app

    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    engine = create_db_engine(get_settings().effective_database_url)
    try:
        migrations.upgrade(engine)
        _err.print(f"Database at revision {migrations.current_revision(engine)}.")
    finally:
        engine.dispose()


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
        _err.print("Give a FILE or --demo.")
        raise typer.Exit(2)
    path = demo_catalogue_path() if demo else file
    assert path is not None

    def action() -> None:
        spec = read_catalogue(path)
        with _unit_of_work() as session:
            report = catalogue_service.load_catalogue(session, spec, _now())
        _print_json(
            {"created": report.created, "updated": report.updated, "unchanged": report.unchanged}
        )

    _run(action)


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
        with _unit_of_work() as session:
            person = people.add_person(
                session, display_name=name, language=language, identities=pairs, now=_now()
            )
            _print_json({"id": person.id, "display_name": person.display_name})

    _run(action)


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
        with _unit_of_work() as session:
            record = consents.give_consent(
                session,
                person_id=person,
                agreement_id=agreement,
                version=version,
                fields=_field_refs(field),
                actor_id=actor or person,
                now=_now(),
                valid_days=days,
            )
            _print_json(record)

    _run(action)


@consent_app.command("withdraw")
def consent_withdraw(
    consent_id: Annotated[str, typer.Argument(help="The consent to withdraw.")],
    actor: Annotated[str, typer.Option("--as", help="The person, or who acts for them.")],
    note: Annotated[str, typer.Option(help="Why, in the person's words.")] = "",
) -> None:
    """Withdraw an active consent on the person's behalf."""

    def action() -> None:
        with _unit_of_work() as session:
            record = consents.withdraw_consent(
                session, consent_id=consent_id, actor_id=actor, now=_now(), note=note
            )
            _print_json(record)

    _run(action)


@consent_app.command("list")
def consent_list(person: Annotated[str, typer.Argument(help="The person.")]) -> None:
    """List a person's consents with their history."""

    def action() -> None:
        with _unit_of_work() as session:
            records = consents.list_consents(session, person, _now())
            _print_json([r.model_dump(mode="json") for r in records])

    _run(action)


if __name__ == "__main__":
    app()
