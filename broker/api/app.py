"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from broker import __version__
from broker.api import problems
from broker.api.routers import audit, catalogue, data, health, keys, log, me, oauth, services
from broker.api.security import SecurityHeaders
from broker.runtime import Runtime
from broker.settings import Settings, get_settings
from broker.web import consent, my, oidc, signin
from connectors.base import Connector


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    sources: dict[str, Connector] | None = None,
) -> FastAPI:
    """A broker app for `settings`, on `engine` and with `sources` if given (else from settings);
    the runtime starts with the app."""
    settings = settings or get_settings()
    runtime = Runtime.create(settings, engine, sources)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.start()
        try:
            yield
        finally:
            runtime.stop()

    app = FastAPI(
        title="OmaData consent broker",
        version=__version__,
        description="Consent and personal data broker: catalogue, consents, releases, audit log.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    problems.install(app)
    app.add_middleware(SecurityHeaders)
    for router in (
        health.router,
        catalogue.router,
        log.router,
        audit.router,
        me.router,
        services.router,
        data.router,
        keys.router,
        oauth.router,
        signin.router,
        oidc.router,
        consent.router,
        my.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(packages=[("broker.web", "static")]), name="static")
    return app
