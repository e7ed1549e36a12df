"""`broker demo ...`: sign-ins for the demo persons, the demo stack, and the scripted walk."""

from __future__ import annotations

import secrets
import signal
import threading
from typing import Annotated

import typer
from rich.console import Console

from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.cli._common import logged_unit, now, print_json, run
from broker.errors import InvalidInput
from broker.people.credentials import set_password
from broker.settings import Environment, get_settings

app = typer.Typer(help="The demo.", no_args_is_help=True)


def _refuse_in_production() -> None:
    if get_settings().environment is Environment.PRODUCTION:
        raise InvalidInput("The demo does not run in production.")


def _new_passwords() -> list[dict[str, str]]:
    spec = read_catalogue(demo_catalogue_path())
    rows = []
    with logged_unit() as (session, _):
        for person in spec.persons:
            password = "-".join(secrets.token_hex(3) for _ in range(3))
            set_password(session, person.id, password, now())
            rows.append({"user": person.id, "password": password, "name": person.display_name})
    return rows


@app.command("credentials")
def credentials() -> None:
    """Give every demo person a fresh random password and print the sign-ins as JSON."""

    def action() -> None:
        _refuse_in_production()
        print_json(_new_passwords())

    run(action)


@app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="The broker's port; the others follow it.")] = 8000,
) -> None:
    """Serve the broker, the two demo sources and the self-care app until interrupted."""
    from broker.demo.stack import DemoPorts, start_demo

    def action() -> None:
        _refuse_in_production()
        sign_ins = _new_passwords()
        settings = get_settings()
        ports = DemoPorts(port, port + 1, port + 2, port + 3)
        stack = start_demo(settings.model_copy(update={"public_url": ""}), ports=ports)
        console = Console()
        console.print(f"OmaData broker      {stack.broker.url}")
        console.print(f"Patient records     {stack.patient_record.url}/fhir  (FHIR R4 source)")
        console.print(f"Social care         {stack.social_care.url}  (REST source)")
        console.print(f"Self-care app       {stack.selfcare_app.url}  <- start here")
        console.print("Demo sign-ins (new passwords every start):")
        for row in sign_ins:
            console.print(f"  {row['user']:<18} {row['password']}  ({row['name']})")
        console.print("Press Ctrl+C to stop.")
        stopped = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stopped.set())
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        stopped.wait()
        stack.stop()

    run(action)


@app.command("walk")
def walk() -> None:
    """Run the whole story over real HTTP on free ports; exit non-zero if any step fails."""
    from broker.demo.walk import main

    raise typer.Exit(main())
