"""Sources that fail or lie: every failure is one ConnectorError, and nothing is returned."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from broker.demo.sources.fhir import to_resource
from connectors import (
    Connector,
    ConnectorError,
    FetchRequest,
    FhirConnector,
    Limits,
    RestCategory,
    RestConnector,
    SourcePayloadInvalid,
    SourceTimeout,
    SourceUnavailable,
)
from connectors.fhir import CATEGORIES
from tests.connectors.support import (
    FHIR_AUDIENCE,
    SOCIAL_AUDIENCE,
    Behaviour,
    HostileSource,
    TokenIssuer,
    json_body,
    raw_body,
)

TIMEOUT = 0.5
SUBJECT = "potilas-1001"
LAB_FIELDS = tuple(CATEGORIES["health.lab_results"].fields)

EXPECTED: dict[str, type[ConnectorError]] = {
    "slow": SourceTimeout,
    "drip": SourceTimeout,
    "error": SourceUnavailable,
    "unavailable": SourceUnavailable,
    "unauthorised": SourceUnavailable,
    "forbidden": SourceUnavailable,
    "redirect": SourceUnavailable,
    "reset": SourceUnavailable,
    "hangup": SourceUnavailable,
    "truncated": SourcePayloadInvalid,
    "short": SourcePayloadInvalid,
    "not-json": SourcePayloadInvalid,
    "nan": SourcePayloadInvalid,
    "huge": SourcePayloadInvalid,
    "huge-declared": SourcePayloadInvalid,
    "huge-chunked": SourcePayloadInvalid,
    "gzip-bomb": SourcePayloadInvalid,
}


def lab(n: int, subject: str = SUBJECT, **changes: Any) -> dict[str, Any]:
    record = {
        "test_code": "B-Hb", "test_name": "Hemoglobiini", "value": f"1{n}0", "unit": "g/l",
        "reference_range": "134-167", "taken_at": "2026-02-11T09:20:00+02:00",
    }  # fmt: skip
    resource = to_resource(
        "health.lab_results", record, resource_id=f"o{n}", subject=subject, fields=LAB_FIELDS
    )
    resource.update(changes)
    return {"resource": resource, "search": {"mode": "match"}}


def bundle(*entries: dict[str, Any], next_url: str | None = None, **changes: Any) -> Any:
    links = [] if next_url is None else [{"relation": "next", "url": next_url}]
    document = {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}
    return {**document, **changes}


def _paged(url_of: dict[str, str]) -> Behaviour:
    """Page one is good and links to page two, which fails."""

    def behave(sock: socket.socket, target: str) -> None:
        if "page=2" in target:
            json_body({"resourceType": "OperationOutcome"})(sock, target)  # not a Bundle
        else:
            json_body(bundle(lab(1), next_url=f"{url_of['base']}/paged/Observation?page=2"))(
                sock, target
            )

    return behave


def _loop(url_of: dict[str, str]) -> Behaviour:
    def behave(sock: socket.socket, target: str) -> None:
        json_body(bundle(lab(1), next_url=f"{url_of['base']}/loop/Observation?again=1"))(
            sock, target
        )

    return behave


vital = lab(3)
vital["resource"]["category"] = [{"coding": [{"code": "vital-signs"}]}]

url_of: dict[str, str] = {}
FHIR_ROUTES: dict[str, Behaviour] = {
    "fhir-good": json_body(bundle(lab(1), lab(2))),
    "fhir-invalid": json_body(bundle(lab(1), lab(2, status=None))),
    "fhir-unknown-element": json_body(bundle(lab(1, flavour="sweet"))),
    "fhir-other-patient": json_body(bundle(lab(1), lab(2, subject="potilas-1002"))),
    "fhir-no-patient": json_body(bundle(lab(1, subject=None))),
    "fhir-wrong-type": json_body(
        bundle({"resource": {"resourceType": "Condition", "subject": {"reference": "Patient/x"}}})
    ),
    "fhir-not-searchset": json_body(bundle(lab(1), type="collection")),
    "fhir-not-bundle": json_body({"resourceType": "Observation", "status": "final"}),
    "fhir-foreign-next": json_body(
        bundle(lab(1), next_url="http://127.0.0.1:9/fhir-good/Observation?page=2")
    ),
    "fhir-vitals": json_body(bundle(lab(1), vital, lab(2))),
    "paged": _paged(url_of),
    "loop": _loop(url_of),
    "rest-leaky": json_body(
        {"records": [{"a": 1, "b": {"c": "secret"}, "d": [1, 2]}, {"a": 2, "extra": "secret"}]}
    ),
    "rest-wrong-shape": json_body({"records": {"a": 1}}),
    "rest-float": raw_body(b'{"records": [{"a": 5.40, "b": {"c": 1E+400}}]}'),
}


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileSource]:
    source = HostileSource(FHIR_ROUTES)
    url_of["base"] = source.url
    yield source
    source.close()


def fhir_at(url: str, **limits: Any) -> FhirConnector:
    return FhirConnector(
        "patient-record",
        base_url=url,
        audience=FHIR_AUDIENCE,
        limits=Limits(timeout=TIMEOUT, max_bytes=2 * 1024 * 1024, **limits),
    )


def rest_at(url: str) -> RestConnector:
    mapping = RestCategory.from_text(
        url="/{subject}/{category}", records="records", fields={"a": "a", "c": "b.c"}
    )
    return RestConnector(
        "social-care",
        base_url=url,
        audience=SOCIAL_AUDIENCE,
        categories={"social.client_plan": mapping},
        limits=Limits(timeout=TIMEOUT),
    )


def fhir_request(issuer: TokenIssuer, fields: tuple[str, ...] = LAB_FIELDS) -> FetchRequest:
    token = issuer.mint()
    return FetchRequest(SUBJECT, "health.lab_results", fields, token)


def rest_request(issuer: TokenIssuer, fields: tuple[str, ...] = ("a", "c")) -> FetchRequest:
    token = issuer.mint(aud=SOCIAL_AUDIENCE, category="social.client_plan")
    return FetchRequest(SUBJECT, "social.client_plan", fields, token)


def refused(connector: Connector, request: FetchRequest, kind: type[ConnectorError]) -> str:
    """Fetch, expecting exactly `kind`; the reason, checked to hold no subject or token."""
    started = time.monotonic()
    with pytest.raises(ConnectorError) as caught:
        connector.fetch(request)
    assert type(caught.value) is kind, caught.value.reason
    assert time.monotonic() - started < 4 * TIMEOUT + 1
    reason = caught.value.reason
    assert request.subject not in reason
    assert request.token not in reason
    return reason


@pytest.mark.parametrize("behaviour", sorted(EXPECTED))
@pytest.mark.parametrize("kind", ["fhir", "rest"])
def test_a_failing_source_gives_one_error_and_no_records(
    hostile: HostileSource, issuer: TokenIssuer, behaviour: str, kind: str
) -> None:
    url = f"{hostile.url}/{behaviour}"
    connector: Connector
    if kind == "fhir":
        connector, request = fhir_at(url), fhir_request(issuer)
    else:
        connector, request = rest_at(url), rest_request(issuer)
    refused(connector, request, EXPECTED[behaviour])
    connector.close()


def test_a_source_that_is_not_listening_is_unavailable(issuer: TokenIssuer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        reason = refused(
            fhir_at(f"http://127.0.0.1:{port}/fhir"), fhir_request(issuer), SourceUnavailable
        )
    assert "ConnectError" in reason


def test_the_token_is_sent_as_a_bearer_token(hostile: HostileSource, issuer: TokenIssuer) -> None:
    request = fhir_request(issuer)
    fhir_at(f"{hostile.url}/fhir-good").fetch(request)
    head = hostile.requests[-1]
    assert f"Authorization: Bearer {request.token}".lower() in head.lower()
    assert f"GET /fhir-good/Observation?patient={SUBJECT}&category=laboratory" in head


def test_a_good_searchset_maps(hostile: HostileSource, issuer: TokenIssuer) -> None:
    records = fhir_at(f"{hostile.url}/fhir-good").fetch(fhir_request(issuer, ("value",)))
    assert records == [{"value": "110"}, {"value": "120"}]


FHIR_REFUSED = {
    "fhir-invalid": "not valid FHIR",
    "fhir-unknown-element": "not valid FHIR",
    "fhir-other-patient": "another patient",
    "fhir-no-patient": "another patient",
    "fhir-wrong-type": "another type",
    "fhir-not-searchset": "not a FHIR searchset",
    "fhir-not-bundle": "not a FHIR Bundle",
    "fhir-foreign-next": "leaves the source",
    "paged": "not a FHIR Bundle",
    "loop": "more than 3 pages",
}


@pytest.mark.parametrize("behaviour", sorted(FHIR_REFUSED))
def test_a_searchset_that_cannot_be_trusted_is_refused_whole(
    hostile: HostileSource, issuer: TokenIssuer, behaviour: str
) -> None:
    connector = fhir_at(f"{hostile.url}/{behaviour}", max_pages=3)
    reason = refused(connector, fhir_request(issuer), SourcePayloadInvalid)
    assert FHIR_REFUSED[behaviour] in reason


def test_observations_outside_the_search_are_left_out(
    hostile: HostileSource, issuer: TokenIssuer
) -> None:
    records = fhir_at(f"{hostile.url}/fhir-vitals").fetch(fhir_request(issuer, ("value",)))
    assert records == [{"value": "110"}, {"value": "120"}]


def test_fields_not_requested_never_leave_even_when_the_source_sends_them(
    hostile: HostileSource, issuer: TokenIssuer
) -> None:
    # The FHIR source sends every element; the request names two fields.
    records = fhir_at(f"{hostile.url}/fhir-good").fetch(fhir_request(issuer, ("unit", "taken_at")))
    assert records == [{"unit": "g/l", "taken_at": "2026-02-11T09:20:00+02:00"}] * 2
    # The REST source sends fields nobody mapped or asked for.
    records = rest_at(f"{hostile.url}/rest-leaky").fetch(rest_request(issuer, ("c",)))
    assert records == [{"c": "secret"}, {"c": None}]
    records = rest_at(f"{hostile.url}/rest-leaky").fetch(rest_request(issuer, ("a", "zzz")))
    assert records == [{"a": 1}, {"a": 2}]


def test_rest_numbers_are_exact_text_and_a_wrong_shape_is_refused(
    hostile: HostileSource, issuer: TokenIssuer
) -> None:
    records = rest_at(f"{hostile.url}/rest-float").fetch(rest_request(issuer))
    assert records == [{"a": "5.40", "c": "1E+400"}]
    refused(rest_at(f"{hostile.url}/rest-wrong-shape"), rest_request(issuer), SourcePayloadInvalid)
