"""`broker service add`, `broker auditor add`, `broker registration-token`: OAuth clients."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.cli._common import err, logged_unit, now, print_json, run
from broker.errors import InvalidInput
from broker.oauth import clients

service_app = typer.Typer(help="Integrated services' OAuth clients.", no_args_is_help=True)
auditor_app = typer.Typer(help="Auditors of the log.", no_args_is_help=True)


@service_app.command("add")
def service_add(
    service_id: Annotated[str, typer.Argument(help="A service in the catalogue.")],
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="Consent redirect URI (consumers); may repeat.")
    ] = None,
    jwks: Annotated[
        Path | None, typer.Option(help="Public JWKS file: authenticate with private_key_jwt.")
    ] = None,
    webhook: Annotated[str | None, typer.Option(help="URL for withdrawal notifications.")] = None,
) -> None:
    """Register an OAuth client for a service and print its credentials (shown only once)."""

    def action() -> None:
        keys: dict[str, Any] | None = None
        if jwks is not None:
            try:
                keys = json.loads(jwks.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InvalidInput(f"{jwks} is not a readable JWKS: {exc}") from None
        with logged_unit() as (session, _):
            issued = clients.register_service_client(
                session,
                service_id=service_id,
                redirect_uris=redirect_uri or [],
                now=now(),
                auth_method="private_key_jwt" if keys else "client_secret_basic",
                jwks=keys,
                webhook_url=webhook,
            )
        print_json(issued.as_json())

    run(action)


@auditor_app.command("add")
def auditor_add(name: Annotated[str, typer.Argument(help="Who the auditor is.")]) -> None:
    """Register an auditor (client credentials, scope audit:read); prints id and secret once."""

    def action() -> None:
        with logged_unit() as (session, _):
            issued = clients.register_auditor(session, name=name, now=now())
        print_json({"client_id": issued.client_id, "client_secret": issued.client_secret})

    run(action)


def registration_token(
    service_id: Annotated[str, typer.Argument(help="The service that may register a client.")],
    hours: Annotated[int, typer.Option(min=1, max=24 * 30, help="How long it stays valid.")] = 24,
) -> None:
    """Print a one-time initial access token for RFC 7591 registration by that service."""

    def action() -> None:
        with logged_unit() as (session, _):
            token = clients.issue_registration_token(
                session, service_id=service_id, now=now(), lifetime=timedelta(hours=hours)
            )
        print_json({"service_id": service_id, "initial_access_token": token})
        err.print("Give the token to the service; it works once.")

    run(action)
