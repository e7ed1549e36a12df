"""The public catalogue over HTTP, and problem+json for everything that goes wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from broker.api import create_app
from broker.settings import Settings


@pytest.fixture
def client(demo: Engine, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path), engine=demo)) as test_client:
        yield test_client


def test_health_says_the_database_answers(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_services_are_listed_with_names_in_three_languages(client: TestClient) -> None:
    services = {s["id"]: s for s in client.get("/v1/services").json()}
    assert set(services) == {
        "patient-record",
        "social-care",
        "selfcare-app",
        "research-register",
        "peer-support",
    }
    assert services["patient-record"]["roles"] == ["source"]
    assert services["selfcare-app"]["roles"] == ["consumer"]
    assert set(services["selfcare-app"]["name"]) == {"fi", "sv", "en"}


def test_one_service(client: TestClient) -> None:
    response = client.get("/v1/services/social-care")
    assert response.status_code == 200
    assert response.json()["id"] == "social-care"


def test_categories_carry_their_fields_and_special_category_flags(client: TestClient) -> None:
    labs = client.get("/v1/categories/health.lab_results").json()
    assert labs["source"] == "patient-record"
    fields = {f["name"]: f for f in labs["fields"]}
    assert fields["value"]["special_category"] is True
    assert fields["unit"]["special_category"] is False
    assert len(client.get("/v1/categories").json()) == 6


def test_purposes_name_their_dpv_concept(client: TestClient) -> None:
    purposes = {p["code"]: p for p in client.get("/v1/purposes").json()}
    assert purposes["scientific_research"]["dpv"] == "https://w3id.org/dpv#ScientificResearch"


def test_agreements_show_required_and_optional_fields(client: TestClient) -> None:
    agreement = client.get("/v1/agreements/selfcare-labs-medications").json()
    assert agreement["version"] == 1
    labs = next(i for i in agreement["items"] if i["category"] == "health.lab_results")
    assert "value" in labs["required"]
    assert "reference_range" in labs["optional"]
    assert client.get("/v1/agreements/selfcare-labs-medications?version=1").json() == agreement
    assert len(client.get("/v1/agreements").json()) == 4


@pytest.mark.parametrize(
    ("path", "status", "type_"),
    [
        ("/v1/services/nobody", 404, "/problems/not-found"),
        ("/v1/categories/health.nothing", 404, "/problems/not-found"),
        ("/v1/agreements/selfcare-immunisations?version=9", 404, "/problems/not-found"),
        ("/v1/agreements/selfcare-immunisations?version=zero", 422, "/problems/invalid-request"),
        ("/v1/agreements/selfcare-immunisations?version=0", 422, "/problems/invalid-request"),
        ("/v1/no-such-route", 404, "/problems/not-found"),
    ],
)
def test_errors_are_problem_details(client: TestClient, path: str, status: int, type_: str) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == type_
    assert body["status"] == status
    assert body["detail"]
    assert body["instance"] == path.split("?")[0]


def test_writing_to_the_catalogue_is_not_allowed(client: TestClient) -> None:
    response = client.post("/v1/services", json={"id": "x"})
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "path",
    ["/v1/persons", "/v1/persons/aino-virtanen", "/v1/consents", "/v1/delegations"],
)
def test_nothing_about_persons_is_exposed_without_authentication(
    client: TestClient, path: str
) -> None:
    assert client.get(path).status_code == 404


def test_the_openapi_document_lists_exactly_the_public_operations(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert paths == {
        "/healthz",
        "/v1/services",
        "/v1/services/{service_id}",
        "/v1/categories",
        "/v1/categories/{code}",
        "/v1/purposes",
        "/v1/agreements",
        "/v1/agreements/{agreement_id}",
        "/v1/log/checkpoint",
        "/v1/log/key",
        "/v1/log/keys",
        "/v1/log/proofs/inclusion",
        "/v1/log/proofs/consistency",
        "/v1/log/entries",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/oauth/token",
        "/oauth/register",
        "/oauth/revoke",
        "/oauth/introspect",
        "/v1/me",
        "/v1/me/consents",
        "/v1/me/consents/{consent_id}/withdraw",
        "/v1/me/log-entries",
        "/v1/me/delegations",
        "/v1/consumer/consents",
        "/v1/consumer/consents/{consent_id}",
        "/v1/source/consents",
        "/v1/audit/counts",
        "/v1/data",
        "/v1/data/{category}",
    }


def test_an_unexpected_failure_is_a_plain_500_problem_without_internals(
    demo: Engine, tmp_path: Path
) -> None:
    app = create_app(Settings(data_dir=tmp_path), engine=demo)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret-token-123 leaked")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret-token-123" not in response.text
