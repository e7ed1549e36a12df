"""The audit log over HTTP: checkpoint, verifier keys, proofs (public); entries (auditors)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from broker.api.callers import Auditor
from broker.api.deps import ReadSession, RuntimeDep
from broker.api.problems import documented
from broker.ledger import reader
from broker.ledger.note import format_vkey
from keys import KeyUse

router = APIRouter(prefix="/v1/log", tags=["audit log"], responses=documented(503))

_TEXT: dict[int | str, dict[str, Any]] = {200: {"content": {"text/plain": {}}}}
_Index = Annotated[int, Query(ge=0, le=2**62)]
_Size = Annotated[int, Query(ge=1, le=2**62)]


def _b64(values: list[bytes]) -> list[str]:
    return [base64.b64encode(v).decode("ascii") for v in values]


class InclusionProof(BaseModel):
    """RFC 9162 inclusion proof of one entry in a tree of `tree_size` entries."""

    index: int
    tree_size: int
    hashes: list[str]


class ConsistencyProof(BaseModel):
    """RFC 9162 consistency proof between two tree sizes."""

    first: int
    second: int
    hashes: list[str]


class LogEntry(BaseModel):
    """One entry: its index and the exact leaf bytes, base64."""

    index: int
    leaf: str


class LogKey(BaseModel):
    """A checkpoint-signing key with its validity window."""

    vkey: str
    kid: str
    created_at: datetime
    not_before: datetime
    not_after: datetime | None
    current: bool


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    responses=_TEXT,
    summary="The latest signed checkpoint (C2SP tlog-checkpoint)",
)
def checkpoint(session: ReadSession) -> PlainTextResponse:
    return PlainTextResponse(reader.latest_checkpoint(session).decode("utf-8"))


@router.get(
    "/key",
    response_class=PlainTextResponse,
    responses=_TEXT,
    summary="The current verifier key (C2SP signed-note vkey)",
)
def key(runtime: RuntimeDep) -> PlainTextResponse:
    current = runtime.keystore.current(KeyUse.LOG)
    return PlainTextResponse(format_vkey(runtime.settings.log_origin, current.public_key) + "\n")


@router.get("/keys", summary="Every checkpoint-signing key ever used, with validity windows")
def keys(runtime: RuntimeDep) -> list[LogKey]:
    runtime.keystore.refresh()
    current = runtime.keystore.current(KeyUse.LOG).kid
    return [
        LogKey(
            vkey=format_vkey(runtime.settings.log_origin, info.public_key),
            kid=info.kid,
            created_at=info.created_at,
            not_before=info.not_before,
            not_after=info.not_after,
            current=info.kid == current,
        )
        for info in runtime.keystore.public_keys(KeyUse.LOG)
    ]


@router.get("/proofs/inclusion", summary="Inclusion proof of an entry", responses=documented(422))
def inclusion(session: ReadSession, index: _Index, tree_size: _Size) -> InclusionProof:
    hashes = reader.inclusion_proof(session, index, tree_size)
    return InclusionProof(index=index, tree_size=tree_size, hashes=_b64(hashes))


@router.get(
    "/proofs/consistency",
    summary="Consistency proof between two tree sizes",
    responses=documented(422),
)
def consistency(session: ReadSession, first: _Size, second: _Size) -> ConsistencyProof:
    hashes = reader.consistency_proof(session, first, second)
    return ConsistencyProof(first=first, second=second, hashes=_b64(hashes))


@router.get(
    "/entries",
    summary="Entries start <= index < end, a bounded page (scope audit:read)",
    responses=documented(401, 403, 422),
)
def entries(
    session: ReadSession, runtime: RuntimeDep, _: Auditor, start: _Index, end: _Size
) -> list[LogEntry]:
    page = reader.entries(session, start, end, runtime.settings.log_entries_page_size)
    return [LogEntry(index=i, leaf=base64.b64encode(leaf).decode("ascii")) for i, leaf in page]
