"""GET /metrics: Prometheus metrics, for the operator's scraper only.

With BROKER_METRICS_TOKEN set, a scraper sends it as a bearer token (compared in constant
time). Without it, metrics are served only to requests straight from loopback that no proxy
forwarded (no X-Forwarded-For or Forwarded header), so a broker behind a reverse proxy on the
same host does not publish them by accident.
"""

from __future__ import annotations

import hmac
import ipaddress
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from broker.errors import NotAuthenticated, NotPermitted
from broker.observability.metrics import exposition
from broker.runtime import Runtime

router = APIRouter(include_in_schema=False)


def _loopback(request: Request) -> bool:
    if "x-forwarded-for" in request.headers or "forwarded" in request.headers:
        return False
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(request: Request, runtime: Runtime) -> None:
    """NotAuthenticated without the configured bearer token; NotPermitted, when none is
    configured, for anything but a direct loopback request."""
    token = runtime.settings.metrics_token
    if token is None:
        if not _loopback(request):
            raise NotPermitted(
                "Metrics are served only on loopback unless BROKER_METRICS_TOKEN is set."
            )
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise NotAuthenticated("Metrics need the bearer token.", token_given=False)
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise NotAuthenticated("The metrics token is not valid.")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition, to the scraper `check_access` lets through."""
    runtime: Runtime = request.app.state.runtime
    check_access(request, runtime)
    body = await run_in_threadpool(exposition, runtime.engine, datetime.now(UTC))
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
