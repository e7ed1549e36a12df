"""What an integrated service may see of consents: those that name it, pseudonymously.

A consumer (scope `consents:read`) sees the consents it holds; a source (`source:consents`) the
consents that name it. To check a token presented to it, a source uses RFC 7662 introspection
at `/oauth/introspect`, which answers for tokens that name that source.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from broker.api.callers import ConsumerCaller, SourceCaller
from broker.api.deps import ReadSession
from broker.api.params import IdPath
from broker.api.problems import documented
from broker.consents.views import ServiceConsent, ServiceRole, consent_naming, consents_naming

router = APIRouter(prefix="/v1", tags=["services"], responses=documented(401, 403, 503))


# OpenAPI links: a client (and schemathesis' stateful run) may follow a list to its items.
_TO_ONE = {
    "links": {
        "FirstConsent": {
            "operationId": "consumer_consent",
            "parameters": {"consent_id": "$response.body#/0/id"},
        }
    }
}


@router.get("/consumer/consents", response_model=list[ServiceConsent], responses={200: _TO_ONE})
def consumer_consents(caller: ConsumerCaller, session: ReadSession) -> list[ServiceConsent]:
    """Every consent the calling consumer holds, newest first, with its status now."""
    return consents_naming(session, caller.service_id, ServiceRole.CONSUMER, datetime.now(UTC))


@router.get(
    "/consumer/consents/{consent_id}",
    operation_id="consumer_consent",
    response_model=ServiceConsent,
    responses=documented(404, 422),
)
def consumer_consent(
    consent_id: IdPath, caller: ConsumerCaller, session: ReadSession
) -> ServiceConsent:
    """One consent the calling consumer holds; 404 for any other."""
    return consent_naming(
        session, caller.service_id, ServiceRole.CONSUMER, consent_id, datetime.now(UTC)
    )


@router.get("/source/consents", response_model=list[ServiceConsent])
def source_consents(caller: SourceCaller, session: ReadSession) -> list[ServiceConsent]:
    """Every consent that names the calling source, newest first, with its status now."""
    return consents_naming(session, caller.service_id, ServiceRole.SOURCE, datetime.now(UTC))
