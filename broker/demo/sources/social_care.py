"""A social-care REST API: client plans and service decisions of the demo persons.

One route, `GET /v1/clients/{subject}/{category}`, guarded by `SourceGuard` exactly as
docs/connectors.md shows: the token must be the broker's, for this audience, this client and
this category, and the answer holds only the fields the token allows. The JSON has the
service's own shape (nested objects); broker/demo/connectors.yaml maps it to the catalogue's
fields.

ALL DATA IS SYNTHETIC (social_care.yaml beside this module): the demo catalogue's persons,
by their ids at this source.
"""

# No `from __future__ import annotations` here: FastAPI must see the route's guard (a local of
# create_app) in its evaluated annotation.

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from broker.demo.sources._common import load_records
from connectors.guard import PROBLEM_JSON, SourceGrant, SourceGuard

AUDIENCE = "urn:omadata:source:social-care"

Record = dict[str, Any]

# Where each catalogue field lives in this API's own JSON (the mapping's other half).
LAYOUT: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "social.client_plan": {
        "plan_summary": ("summary",),
        "goals": ("goals",),
        "responsible_worker": ("worker", "name"),
        "updated_on": ("updated", "date"),
    },
    "social.service_decisions": {
        "service_type": ("service", "type"),
        "decision": ("decision", "outcome"),
        "decided_on": ("decision", "date"),
        "valid_until": ("validity", "until"),
    },
}


def to_document(category: str, record: Record, fields: tuple[str, ...]) -> dict[str, Any]:
    """One record in this API's own JSON shape, with only the allowed `fields` in it."""
    document: dict[str, Any] = {}
    for name, path in LAYOUT[category].items():
        if name not in fields:
            continue
        node = document
        for step in path[:-1]:
            node = node.setdefault(step, {})
        node[path[-1]] = record[name]
    return document


def create_app(
    issuer: str,
    audience: str,
    jwks_url: str,
    *,
    records: Mapping[str, Mapping[str, list[Record]]] | None = None,
) -> FastAPI:
    """The social-care source, admitting only the broker's tokens for `audience`.

    `records` replaces the synthetic data file (subject -> category -> records)."""
    if records is None:
        records = load_records("social_care.yaml")
    guard = SourceGuard(issuer=issuer, audience=audience, jwks_url=jwks_url)
    app = FastAPI(title="Demo social-care client records", docs_url=None, redoc_url=None)
    guard.install(app)

    @app.get("/v1/clients/{subject}/{category}")
    def client_records(
        subject: str, category: str, grant: Annotated[SourceGrant, Depends(guard)]
    ) -> JSONResponse:
        # The guard has checked that `subject` and `category` are the token's.
        if category not in LAYOUT:
            problem = {
                "type": "/problems/not-found",
                "title": "No such category here",
                "status": 404,
                "detail": "This service keeps no records of that category.",
            }
            return JSONResponse(problem, status_code=404, media_type=PROBLEM_JSON)
        found = records.get(subject, {}).get(category, [])
        return JSONResponse(
            {
                "client": subject,
                "category": category,
                "records": [to_document(category, record, grant.fields) for record in found],
            }
        )

    return app


if __name__ == "__main__":
    from broker.demo.sources._common import main

    main(create_app, audience=AUDIENCE, port=8002)
