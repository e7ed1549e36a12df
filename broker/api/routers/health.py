"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from broker.api.deps import ReadSession
from broker.api.problems import documented

router = APIRouter(tags=["health"], responses=documented(503))


class Health(BaseModel):
    """The broker is up and its database answers."""

    status: str
    database: str


@router.get("/healthz", summary="Liveness and database readiness")
def healthz(session: ReadSession) -> Health:
    session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    return Health(status="ok", database="ok")
