"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from broker import __version__
from broker.api import problems
from broker.api.routers import catalogue, health
from broker.settings import Settings, get_settings
from broker.storage import create_db_engine


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """A broker app bound to `engine` (default: the one `settings` name)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="OmaData consent broker",
        version=__version__,
        description="Consent and personal data broker: catalogue, consents, releases, audit log.",
    )
    app.state.settings = settings
    app.state.engine = engine or create_db_engine(settings.effective_database_url)
    problems.install(app)
    app.include_router(health.router)
    app.include_router(catalogue.router)
    return app
