"""The broker's public signing keys as a JWKS (RFC 7517), for tokens, receipts, notifications."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from broker.api.deps import RuntimeDep
from keys import KeyUse

router = APIRouter(tags=["keys"])


@router.get("/.well-known/jwks.json", summary="Public keys that verify the broker's JWS and JWTs")
def jwks(runtime: RuntimeDep) -> dict[str, Any]:
    runtime.keystore.refresh()
    return dict(runtime.keystore.jwks([KeyUse.TOKEN, KeyUse.RECEIPT, KeyUse.NOTIFY]))
