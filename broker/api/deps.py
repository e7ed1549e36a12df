"""Dependencies shared by routers: the database session for one request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session

from broker.storage import transaction


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _read_session(engine: Annotated[Engine, Depends(_engine)]) -> Iterator[Session]:
    with transaction(engine, readonly=True) as session:
        yield session


ReadSession = Annotated[Session, Depends(_read_session)]
