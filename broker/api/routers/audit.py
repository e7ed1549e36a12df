"""Reports for auditors (`audit:read`), computed from the log's own leaves."""

from __future__ import annotations

from fastapi import APIRouter

from broker.api.callers import Auditor
from broker.api.deps import ReadSession
from broker.api.problems import documented
from broker.ledger.personal import MonthlyCount, monthly_counts

router = APIRouter(prefix="/v1/audit", tags=["audit log"], responses=documented(401, 403, 503))


@router.get("/counts", response_model=list[MonthlyCount])
def counts(_: Auditor, session: ReadSession) -> list[MonthlyCount]:
    """Consent and release events per consumer service, purpose and month."""
    return monthly_counts(session)
