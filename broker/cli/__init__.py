"""The `broker` command. Domain errors are printed once, plainly, with exit status 1."""

from __future__ import annotations

import typer

from broker.cli import audit, clients, demo, keys, operator

app = typer.Typer(help="OmaData consent broker.", no_args_is_help=True)
app.command()(operator.serve)
app.add_typer(operator.db_app, name="db")
app.add_typer(operator.catalogue_app, name="catalogue")
app.add_typer(operator.person_app, name="person")
app.add_typer(operator.consent_app, name="consent")
app.add_typer(operator.log_app, name="log")
app.add_typer(demo.app, name="demo")
app.add_typer(keys.app, name="keys")
app.add_typer(clients.service_app, name="service")
app.add_typer(clients.auditor_app, name="auditor")
app.command("registration-token")(clients.registration_token)
app.add_typer(audit.app, name="audit")

__all__ = ["app"]
