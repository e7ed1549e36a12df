"""What every `broker` command shares: the clock, the database, JSON output, error reporting."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from sqlalchemy import Engine
from sqlmodel import Session

from broker.errors import BrokerError, CatalogueInvalid
from broker.ledger.sequencer import LogAppender, unit_of_work
from broker.settings import get_settings
from broker.storage import create_db_engine

err = Console(stderr=True)


def now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


@contextmanager
def engine() -> Iterator[Engine]:
    """An engine for the configured database, disposed afterwards."""
    db = create_db_engine(get_settings().effective_database_url)
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def logged_unit() -> Iterator[tuple[Session, LogAppender]]:
    """One transaction whose state changes and log entries commit together."""
    with engine() as db, unit_of_work(db) as (session, log):
        yield session, log


def print_json(value: Any) -> None:
    """Write `value` (a pydantic model or plain data) to stdout as indented JSON."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def run(action: Callable[[], None]) -> None:
    """Run a command body; print a domain error plainly and exit 1 instead of a traceback."""
    try:
        action()
    except CatalogueInvalid as exc:
        err.print(f"[bold red]Error:[/] {exc.detail}", highlight=False)
        for problem in exc.problems:
            err.print(f"  - {problem}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    except BrokerError as exc:
        err.print(f"[bold red]Error:[/] {exc.detail}", highlight=False)
        raise typer.Exit(1) from None
