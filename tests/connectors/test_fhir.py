"""The FHIR R4 connector against the demo FHIR server, and its mapping as a round trip."""

from __future__ import annotations

from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.demo.sources._common import load_records
from broker.demo.sources.fhir import dumps, to_resource
from connectors import FetchRequest, FhirConnector, Limits, SourceUnavailable, UnsupportedCategory
from connectors._http import parse_json
from connectors.fhir import CATEGORIES, map_resource, read_searchset
from tests.connectors.support import FHIR_AUDIENCE, TokenIssuer

DATA = load_records("patient_record.yaml")
PERSONS = sorted(DATA)


def connector(fhir_url: str, page_size: int = 50) -> FhirConnector:
    return FhirConnector(
        "patient-record",
        base_url=f"{fhir_url}/fhir",
        audience=FHIR_AUDIENCE,
        page_size=page_size,
        limits=Limits(timeout=5),
    )


def ask(
    issuer: TokenIssuer,
    category: str,
    fields: tuple[str, ...],
    *,
    subject: str = "potilas-1001",
    granted: tuple[str, ...] | None = None,
) -> FetchRequest:
    token = issuer.mint(sub=subject, category=category, fields=list(granted or fields))
    return FetchRequest(subject=subject, category=category, fields=fields, token=token)


def holds_no_float(value: Any) -> bool:
    if isinstance(value, dict):
        return all(holds_no_float(v) for v in value.values())
    if isinstance(value, list):
        return all(holds_no_float(v) for v in value)
    return not isinstance(value, float | Decimal)


def test_every_record_of_every_person_comes_whole(issuer: TokenIssuer, fhir_url: str) -> None:
    source = connector(fhir_url)
    try:
        for subject in PERSONS:
            for category, spec in CATEGORIES.items():
                fields = tuple(spec.fields)
                records = source.fetch(ask(issuer, category, fields, subject=subject))
                assert records == DATA[subject][category], (subject, category)
                assert holds_no_float(records)
    finally:
        source.close()


def test_pages_are_followed_and_numbers_stay_exact(issuer: TokenIssuer, fhir_url: str) -> None:
    source = connector(fhir_url, page_size=1)
    fields = ("test_code", "value", "unit")
    records = source.fetch(ask(issuer, "health.lab_results", fields))
    assert [r["test_code"] for r in records] == ["fP-Gluk", "B-HbA1c", "fP-Kol-LDL", "P-Krea"]
    assert [r["value"] for r in records] == ["6.8", "52", "2.40", "78"]
    source.close()


def test_only_the_requested_fields_are_returned(issuer: TokenIssuer, fhir_url: str) -> None:
    source = connector(fhir_url)
    records = source.fetch(ask(issuer, "health.medications", ("dosage", "medication_name")))
    assert records
    assert all(list(r) == ["dosage", "medication_name"] for r in records)
    source.close()


def test_the_source_withholds_what_the_token_does_not_grant(
    issuer: TokenIssuer, fhir_url: str
) -> None:
    # The broker asks for more than the token grants: the source itself masks the rest.
    source = connector(fhir_url)
    everything = tuple(CATEGORIES["health.immunisations"].fields)
    request = ask(issuer, "health.immunisations", everything, granted=("dose_number",))
    records = source.fetch(request)
    assert [r["dose_number"] for r in records] == [1, 1, 6]
    assert all(r["vaccine_name"] is None and r["given_on"] is None for r in records)
    assert all(r["vaccine_code"] is None for r in records)
    source.close()


def test_a_person_unknown_to_the_source_has_no_records(issuer: TokenIssuer, fhir_url: str) -> None:
    source = connector(fhir_url)
    assert source.fetch(ask(issuer, "health.diagnoses", ("icd10_code",), subject="x-1")) == []
    source.close()


def test_a_token_for_another_person_is_refused_by_the_source(
    issuer: TokenIssuer, fhir_url: str
) -> None:
    source = connector(fhir_url)
    matti = issuer.mint(sub="potilas-1002", category="health.diagnoses", fields=["icd10_code"])
    request = FetchRequest("potilas-1001", "health.diagnoses", ("icd10_code",), matti)
    with pytest.raises(SourceUnavailable) as refused:
        source.fetch(request)
    assert refused.value.reason == "the source answered HTTP 403"
    source.close()


def test_a_category_the_source_does_not_serve_is_refused(issuer: TokenIssuer) -> None:
    source = FhirConnector(
        "patient-record",
        base_url="http://127.0.0.1:9/fhir",
        audience=FHIR_AUDIENCE,
        categories=["health.lab_results"],
    )
    for category in ("health.diagnoses", "social.client_plan"):
        with pytest.raises(UnsupportedCategory):
            source.fetch(ask(issuer, category, ("x",)))
    with pytest.raises(UnsupportedCategory):
        FhirConnector("p", base_url="http://x", audience="a", categories=["social.client_plan"])


# -- the mapping as a round trip: record -> FHIR resource (demo source) -> record (connector) --

_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), min_size=1
).filter(lambda text: text.strip() == text)
_CODE = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,9}", fullmatch=True)
_DATE = st.dates().map(lambda day: day.isoformat())
# FHIR offsets are whole minutes: a zone offset with seconds (old LMT zones) is not a dateTime.
_ZONE = st.integers(min_value=-12 * 4, max_value=14 * 4).map(
    lambda quarters: timezone(timedelta(minutes=15 * quarters))
)
_DATETIME = st.datetimes(timezones=_ZONE).map(
    lambda moment: moment.replace(microsecond=0).isoformat()
)
_DECIMAL = st.decimals(min_value=-10_000, max_value=10_000, places=2).map(str)
_STATUS = st.sampled_from(["active", "recurrence", "relapse", "inactive", "remission", "resolved"])

RECORD = {
    "health.lab_results": st.fixed_dictionaries(
        {"test_code": _CODE, "test_name": _TEXT, "value": _DECIMAL, "unit": _TEXT,
         "reference_range": _TEXT, "taken_at": _DATETIME}
    ),
    "health.medications": st.fixed_dictionaries(
        {"medication_name": _TEXT, "atc_code": _CODE, "dosage": _TEXT, "started_on": _DATE,
         "prescriber": _TEXT}
    ),
    "health.diagnoses": st.fixed_dictionaries(
        {"icd10_code": _CODE, "diagnosis_name": _TEXT, "diagnosed_on": _DATE, "status": _STATUS}
    ),
    "health.immunisations": st.fixed_dictionaries(
        {"vaccine_name": _TEXT, "vaccine_code": _CODE, "given_on": _DATE,
         "dose_number": st.integers(min_value=1, max_value=20)}
    ),
}  # fmt: skip


Case = tuple[str, list[dict[str, Any]], frozenset[str]]
"""A category, records of it, and the fields a token grants."""


@st.composite
def category_records(draw: st.DrawFn) -> Case:
    category = draw(st.sampled_from(sorted(RECORD)))
    records = draw(st.lists(RECORD[category], max_size=4))
    granted = draw(st.frozensets(st.sampled_from(sorted(CATEGORIES[category].fields))))
    return category, records, granted


@given(category_records())
def test_the_fhir_mapping_round_trips(
    case: tuple[str, list[dict[str, Any]], frozenset[str]],
) -> None:
    category, records, granted = case
    subject = "potilas-1001"
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": to_resource(
                    category, r, resource_id=f"r{n}", subject=subject, fields=granted
                ),
                "search": {"mode": "match"},
            }
            for n, r in enumerate(records)
        ],
    }
    resources, next_url = read_searchset(category, parse_json(dumps(bundle).encode()), subject)
    assert next_url is None
    everything = tuple(CATEGORIES[category].fields)
    mapped = [map_resource(category, resource, everything) for resource in resources]
    assert mapped == [
        {name: (record[name] if name in granted else None) for name in everything}
        for record in records
    ]
    assert holds_no_float(mapped)
