"""The demo sources over real HTTP: they answer only the broker's tokens, and only with the
fields a token allows (their own half of the defence in depth)."""

from __future__ import annotations

from typing import Any

import httpx

from connectors.fhir import DATA_ABSENT_REASON
from tests.connectors.support import SOCIAL_AUDIENCE, TokenIssuer


def get(url: str, token: str | None = None, **params: str) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.get(url, params=params, headers=headers, timeout=5)


def leaves(document: Any, path: str = "") -> set[str]:
    """The dotted paths of every scalar in `document` (list indexes left out)."""
    if isinstance(document, dict):
        return {leaf for k, v in document.items() for leaf in leaves(v, f"{path}.{k}".lstrip("."))}
    if isinstance(document, list):
        return {leaf for item in document for leaf in leaves(item, path)}
    return {path}


def test_fhir_resources_hold_only_the_granted_elements(issuer: TokenIssuer, fhir_url: str) -> None:
    token = issuer.mint(fields=["value"])
    response = get(f"{fhir_url}/fhir/Observation", token, patient="potilas-1001")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json"
    bundle = response.json()
    assert bundle["total"] == 4
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert resource["code"]["extension"][0]["url"] == DATA_ABSENT_REASON
        assert set(resource["valueQuantity"]) == {"value"}
        assert leaves(resource) == {
            "resourceType", "id", "status", "subject.reference", "category.coding.system",
            "category.coding.code", "code.extension.url", "code.extension.valueCode",
            "valueQuantity.value",
        }  # fmt: skip


def test_fhir_search_checks_its_parameters(issuer: TokenIssuer, fhir_url: str) -> None:
    token = issuer.mint()
    assert get(f"{fhir_url}/fhir/Observation", token).status_code == 400
    assert (
        get(f"{fhir_url}/fhir/Observation", token, patient="Patient/potilas-1002").status_code
        == 403
    )
    assert get(f"{fhir_url}/fhir/Observation").status_code == 401
    assert get(f"{fhir_url}/fhir/Condition", token, patient="potilas-1001").status_code == 403
    bad = get(f"{fhir_url}/fhir/Observation", token, patient="potilas-1001", _count="x")
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"
    vitals = get(
        f"{fhir_url}/fhir/Observation",
        token,
        patient="Patient/potilas-1001",
        category="vital-signs",
    )
    assert vitals.json()["total"] == 0
    page = get(f"{fhir_url}/fhir/Observation", token, patient="potilas-1001", _count="3").json()
    assert [link["relation"] for link in page["link"]] == ["self", "next"]
    assert len(page["entry"]) == 3


def test_fhir_patient_and_metadata(issuer: TokenIssuer, fhir_url: str) -> None:
    token = issuer.mint()
    assert get(f"{fhir_url}/fhir/Patient/potilas-1001", token).json() == {
        "resourceType": "Patient", "id": "potilas-1001", "active": True
    }  # fmt: skip
    assert get(f"{fhir_url}/fhir/Patient/potilas-1002", token).status_code == 403
    unknown = issuer.mint(sub="potilas-9999")
    assert get(f"{fhir_url}/fhir/Patient/potilas-9999", unknown).status_code == 404
    assert get(f"{fhir_url}/fhir/metadata").json()["fhirVersion"] == "4.0.1"


def test_social_care_answers_hold_only_the_granted_fields(
    issuer: TokenIssuer, social_url: str
) -> None:
    token = issuer.mint(
        aud=SOCIAL_AUDIENCE,
        sub="asiakas-2005",
        category="social.service_decisions",
        fields=["decided_on", "service_type"],
    )
    response = get(f"{social_url}/v1/clients/asiakas-2005/social.service_decisions", token)
    assert response.status_code == 200
    body = response.json()
    assert leaves(body["records"]) == {"decision.date", "service.type"}
    assert [r["service"]["type"] for r in body["records"]] == [
        "Rehabilitative work activity", "Social assistance"
    ]  # fmt: skip


def test_social_care_refuses_what_the_token_does_not_cover(
    issuer: TokenIssuer, social_url: str
) -> None:
    def token(**claims: Any) -> str:
        base = {"aud": SOCIAL_AUDIENCE, "sub": "asiakas-2001", "category": "social.client_plan"}
        return issuer.mint(**{**base, **claims})

    plan = f"{social_url}/v1/clients/asiakas-2001/social.client_plan"
    assert get(plan, token()).status_code == 200
    assert get(plan.replace("2001", "2002"), token()).status_code == 403
    assert get(plan.replace("client_plan", "service_decisions"), token()).status_code == 403
    assert get(plan, token(aud="urn:omadata:source:patient-record")).status_code == 401
    assert (
        get(plan, issuer.mint(sub="asiakas-2001", category="social.client_plan")).status_code == 401
    )
    other = get(plan.replace("client_plan", "other"), token(category="social.other"))
    assert other.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
