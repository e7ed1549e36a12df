"""Data releases to consumers: `GET /v1/data/{category}` and the batch form `GET /v1/data`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from broker.api.callers import ReleaseCaller, ServiceCaller
from broker.api.deps import RuntimeDep
from broker.api.params import Code, CodePath
from broker.api.problems import documented, extensions, status_of
from broker.errors import BrokerError
from broker.releases.service import DataRequest, Release, release
from broker.runtime import Runtime

router = APIRouter(prefix="/v1/data", tags=["releases"], responses=documented(401, 403, 503))

LOG_INDEX_HEADER = "OmaData-Log-Index"
_Fields = Annotated[
    list[Code] | None,
    Query(max_length=64, description="Only these fields (default: all the consent permits)."),
]
_DENIED = documented(
    403, 404, 422, 502, 504, described={403: "No active consent permits it; the denial is logged"}
)


def _release(
    runtime: Runtime, caller: ServiceCaller, category: str, fields: list[str] | None
) -> Release:
    consent_ids = caller.token.claims.get("consent_ids") or []
    return release(
        runtime.engine,
        runtime.ledger,
        runtime.keystore,
        runtime.sources,
        issuer=runtime.settings.effective_public_url,
        request=DataRequest(
            consumer=caller.service_id,
            consent_ids=tuple(str(c) for c in consent_ids),
            category=category,
            fields=frozenset(fields) if fields else None,
        ),
        now=datetime.now(UTC),
    )


@router.get("/{category}", response_model=Release, responses=_DENIED)
def release_one(
    category: CodePath,
    caller: ReleaseCaller,
    runtime: RuntimeDep,
    response: Response,
    fields: _Fields = None,
) -> Release:
    """The person's data of one category, exactly as their consent permits, with its log index."""
    released = _release(runtime, caller, category, fields)
    response.headers[LOG_INDEX_HEADER] = str(released.log_index)
    return released


class BatchItem(BaseModel):
    """One category of a batch: its release, or the problem that stopped it."""

    category: str
    status: int
    release: Release | None = None
    problem: dict[str, Any] | None = None


@router.get("", response_model=list[BatchItem], responses=documented(422))
def release_many(
    caller: ReleaseCaller,
    runtime: RuntimeDep,
    category: Annotated[list[Code], Query(min_length=1, max_length=10)],
) -> list[BatchItem]:
    """Several categories at once; each is decided, fetched and logged on its own."""
    items = []
    for code in dict.fromkeys(category):
        try:
            items.append(
                BatchItem(category=code, status=200, release=_release(runtime, caller, code, None))
            )
        except BrokerError as error:
            problem = {
                "type": f"/problems/{error.code}",
                "title": error.title,
                "status": status_of(error),
                "detail": error.detail,
                **extensions(error),
            }
            items.append(BatchItem(category=code, status=status_of(error), problem=problem))
    return items
