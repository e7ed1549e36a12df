"""What a source sends back, fuzzed without HTTP: parsing a body and reading records from it gives
records of exactly the requested fields, or SourcePayloadInvalid, never another exception.

test_hostile.py covers the transport (slow, cut short, huge); this covers the payload itself:
arbitrary bytes, and valid FHIR searchsets and REST answers with parts dropped, retyped,
oversized, repeated or nested deeply.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from broker.demo.sources.fhir import to_resource
from connectors import RestCategory, SourcePayloadInvalid
from connectors._http import parse_json
from connectors.base import Record
from connectors.fhir import CATEGORIES, map_resource, read_searchset
from connectors.rest import read_records
from tests.hostile import any_text, mutate

SUBJECT = "potilas-1001"
ANY_TEXT = any_text(20)
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**30, -(10**30), 2**63, 0, -1]),
    st.decimals(allow_nan=False, allow_infinity=False),
    ANY_TEXT,
    st.sampled_from(["", "Patient/potilas-1002", "Patient/" + SUBJECT, "x" * 5000, "\ufeff"]),
    st.integers(1, 200).map(lambda depth: json.loads("[" * depth + "]" * depth)),
    # Built afresh each time: a later mutation may change what an earlier one put in.
    st.builds(lambda: {"reference": "Patient/" + SUBJECT}),
    st.builds(lambda: [{"coding": [{"code": "laboratory"}]}]),
)
SAMPLE: dict[str, dict[str, Any]] = {
    "health.lab_results": {
        "test_code": "B-Hb", "test_name": "Hemoglobiini", "value": "140", "unit": "g/l",
        "reference_range": "134-167", "taken_at": "2026-02-11T09:20:00+02:00",
    },
    "health.medications": {
        "medication_name": "Burana", "atc_code": "M01AE01", "dosage": "1 x 3",
        "started_on": "2026-01-02", "prescriber": "Dr. Virtanen",
    },
    "health.diagnoses": {
        "icd10_code": "J45", "diagnosis_name": "Astma", "diagnosed_on": "2020-05-01",
        "status": "active",
    },
    "health.immunisations": {
        "vaccine_name": "MPR", "vaccine_code": "J07BD52", "given_on": "2019-03-04",
        "dose_number": 2,
    },
}  # fmt: skip


def _is_plain(value: Any) -> bool:
    """JSON as records hold it: no float, no Decimal, string keys."""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


@st.composite
def searchsets(draw: st.DrawFn) -> tuple[str, Any]:
    """A category and a valid searchset of it for SUBJECT, then mutated."""
    category = draw(st.sampled_from(sorted(SAMPLE)))
    fields = tuple(CATEGORIES[category].fields)
    entries = [
        {
            "resource": to_resource(
                category, SAMPLE[category], resource_id=f"r{n}", subject=SUBJECT, fields=fields
            ),
            "search": {"mode": "match"},
        }
        for n in range(draw(st.integers(1, 2)))
    ]
    links = [{"relation": "next", "url": "https://fhir.example/Observation?page=2"}]
    document = {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}
    return category, mutate(draw, copy.deepcopy(document), HOSTILE)


@settings(max_examples=200)
@given(
    st.binary(max_size=200)
    | st.text(alphabet='[]{}",:0123456789.eE-+ tnulrfaNIiy\\', max_size=60).map(str.encode)
)
def test_arbitrary_bytes_parse_as_exact_json_or_are_refused(body: bytes) -> None:
    try:
        value = parse_json(body)
    except SourcePayloadInvalid:
        return
    assert not isinstance(value, float)


@settings(max_examples=100)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | ANY_TEXT.filter(lambda t: t.isprintable()),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
        max_leaves=10,
    )
)
def test_json_without_floats_round_trips(value: Any) -> None:
    try:
        body = json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates are not UTF-8 text; sent escaped instead
        body = json.dumps(value).encode("ascii")
    assert parse_json(body) == value


@settings(max_examples=150)
@given(searchsets(), st.sampled_from(["json", "parsed"]))
def test_a_mutated_searchset_maps_or_is_refused(case: tuple[str, Any], form: str) -> None:
    category, document = case
    if form == "json":
        try:
            # As the source would send it: decimals as JSON numbers.
            document = parse_json(json.dumps(document, default=float).encode())
        except SourcePayloadInvalid:
            return
    try:
        resources, next_url = read_searchset(category, document, SUBJECT)
        fields = tuple(CATEGORIES[category].fields)
        records = [map_resource(category, resource, fields) for resource in resources]
    except SourcePayloadInvalid:
        event("refused")
        return
    event("mapped")
    assert next_url is None or isinstance(next_url, str)
    for record in records:
        assert set(record) == set(CATEGORIES[category].fields)
        assert _is_plain(record)


REST = RestCategory.from_text(
    url="/v1/clients/{subject}/records/{category}",
    records="data.items",
    fields={"a": "value", "b": "nested.list[1]", "c": "[0]", "d": "deep.x.y"},
)
REQUESTED = ("a", "b", "c", "d", "unmapped")


@st.composite
def rest_answers(draw: st.DrawFn) -> Any:
    """A REST answer of the mapped shape (records at data.items), then mutated."""
    item = {"value": "5.40", "nested": {"list": [1, Decimal("2.5")]}, "deep": {"x": {"y": True}}}
    document = {"data": {"items": [dict(item) for _ in range(draw(st.integers(0, 2)))]}}
    return (
        mutate(draw, copy.deepcopy(document), HOSTILE) if draw(st.integers(0, 9)) else draw(HOSTILE)
    )


@settings(max_examples=150)
@given(rest_answers())
def test_a_mutated_rest_answer_maps_or_is_refused(document: Any) -> None:
    try:
        records: list[Record] = read_records(REST, document, REQUESTED)
    except SourcePayloadInvalid:
        return
    for record in records:
        assert set(record) == {"a", "b", "c", "d"}
        assert _is_plain(record)


@pytest.mark.parametrize("depth", [65, 2_000, 5_000])
def test_a_value_nested_too_deeply_is_refused_not_a_recursion_error(depth: int) -> None:
    deep: Any = []
    for _ in range(depth):
        deep = [deep]
    with pytest.raises(SourcePayloadInvalid, match="nested too deeply"):
        read_records(REST, {"data": {"items": [{"value": deep}]}}, ("a",))


def test_a_value_nested_as_deep_as_allowed_is_kept() -> None:
    deep: Any = "leaf"
    for _ in range(64):
        deep = [deep]
    [record] = read_records(REST, {"data": {"items": [{"value": deep}]}}, ("a",))
    assert record["a"] == deep


@pytest.mark.parametrize("resource_type", ["", "Foo", "Bundle", 5, None, ["Observation"]])
@pytest.mark.parametrize("where", ["entry", "contained"])
def test_a_resource_of_a_type_the_fhir_library_cannot_place_is_refused(
    resource_type: Any, where: str
) -> None:
    # fhir.resources looks the type up in its own tables and fails with KeyError on a miss.
    resource = to_resource(
        "health.lab_results",
        SAMPLE["health.lab_results"],
        resource_id="r1",
        subject=SUBJECT,
        fields=tuple(SAMPLE["health.lab_results"]),
    )
    if where == "entry":
        resource["resourceType"] = resource_type
    else:
        resource["contained"] = [{"resourceType": resource_type, "id": "c1"}]
    document = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": resource}]}
    with pytest.raises(SourcePayloadInvalid):
        read_searchset("health.lab_results", document, SUBJECT)
