"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from broker import __version__
from broker.api import problems
from broker.api.body_limit import BodyLimit
from broker.api.observe import Observe
from broker.api.routers import (
    audit,
    catalogue,
    data,
    health,
    keys,
    log,
    me,
    metrics,
    oauth,
    services,
)
from broker.api.security import SecurityHeaders
from broker.api.throttle import Throttle
from broker.observability.logs import protect_library_logs
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
    protect_library_logs()
    # The last added runs first: an id and a measurement for every request, headers on every
    # answer (413 and 429 too), bodies capped before the limits read a form.
    app.add_middleware(Throttle, trusted_proxies=settings.trusted_proxies)
    app.add_middleware(
        BodyLimit, max_body=settings.max_body_bytes, max_form=settings.max_form_bytes
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Observe)
    for router in (
        health.router,
        metrics.router,
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
