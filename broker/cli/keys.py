"""`broker keys`: list and rotate the broker's signing keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from broker.cli._common import logged_unit, now, print_json, run
from broker.key_rotation import rotate_key
from broker.ledger.note import format_vkey
from broker.runtime import open_keystore
from broker.settings import get_settings
from keys import KeyUse

app = typer.Typer(help="Signing keys.", no_args_is_help=True)


@app.command("list")
def list_keys() -> None:
    """Print every public key with its use and validity window."""
    settings = get_settings()
    keystore = open_keystore(settings)
    rows = []
    for info in keystore.public_keys():
        row = {
            "kid": info.kid,
            "use": info.use.value,
            "created_at": info.created_at.isoformat(),
            "not_before": info.not_before.isoformat(),
            "not_after": info.not_after.isoformat() if info.not_after else None,
        }
        if info.use is KeyUse.LOG:
            row["vkey"] = format_vkey(settings.log_origin, info.public_key)
        rows.append(row)
    print_json(rows)


@app.command("rotate")
def rotate(
    use: Annotated[KeyUse, typer.Option(help="Which key to rotate.")] = KeyUse.LOG,
    overlap_days: Annotated[
        int | None, typer.Option(help="Days the old key keeps signing (default from settings).")
    ] = None,
) -> None:
    """Add a new signing key; during the overlap both old and new sign. Logged."""
    settings = get_settings()
    days = settings.key_overlap_days if overlap_days is None else overlap_days

    def action() -> None:
        keystore = open_keystore(settings)
        with logged_unit() as (session, log):
            info = rotate_key(
                session, log, keystore, use=use, overlap=timedelta(days=days), now=now()
            )
        print_json({"use": use.value, "kid": info.kid, "overlap_days": days})

    run(action)
