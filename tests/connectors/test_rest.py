"""The REST/JSON connector against the demo social-care source, and its mapping by property."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.demo.sources._common import load_records
from connectors import (
    FetchRequest,
    RestCategory,
    RestConnector,
    SourcePayloadInvalid,
    SourceUnavailable,
    UnsupportedCategory,
    load_connectors,
)
from connectors.jsonpath import format_path
from connectors.rest import read_records
from tests.connectors.support import SOCIAL_AUDIENCE, HostileSource, TokenIssuer, json_body
from tests.connectors.test_jsonpath import JSON, STEPS, place

DEMO_YAML = Path(str(files("broker.demo") / "connectors.yaml"))
DATA = load_records("social_care.yaml")
CATEGORIES = ("social.client_plan", "social.service_decisions")


def social(social_url: str) -> RestConnector:
    connector = load_connectors(DEMO_YAML, base_urls={"social-care": social_url})["social-care"]
    assert isinstance(connector, RestConnector)
    return connector


def ask(
    issuer: TokenIssuer,
    category: str,
    fields: tuple[str, ...],
    *,
    subject: str = "asiakas-2001",
    granted: tuple[str, ...] | None = None,
) -> FetchRequest:
    token = issuer.mint(
        aud=SOCIAL_AUDIENCE, sub=subject, category=category, fields=list(granted or fields)
    )
    return FetchRequest(subject=subject, category=category, fields=fields, token=token)


def test_every_record_of_every_client_comes_whole(issuer: TokenIssuer, social_url: str) -> None:
    source = social(social_url)
    for subject in sorted(DATA):
        for category in CATEGORIES:
            fields = tuple(source.mappings[category].fields)
            records = source.fetch(ask(issuer, category, fields, subject=subject))
            assert records == DATA[subject][category], (subject, category)
    source.close()


def test_only_the_requested_fields_are_returned(issuer: TokenIssuer, social_url: str) -> None:
    source = social(social_url)
    records = source.fetch(ask(issuer, "social.client_plan", ("goals",)))
    assert records == [{"goals": DATA["asiakas-2001"]["social.client_plan"][0]["goals"]}]
    source.close()


def test_the_source_withholds_what_the_token_does_not_grant(
    issuer: TokenIssuer, social_url: str
) -> None:
    source = social(social_url)
    request = ask(
        issuer,
        "social.service_decisions",
        ("service_type", "decision"),
        granted=("service_type",),
    )
    records = source.fetch(request)
    assert [r["service_type"] for r in records] == ["Kotihoito", "Turvapuhelin", "Kuljetuspalvelu"]
    assert all(r["decision"] is None for r in records)
    source.close()


def test_a_token_for_another_client_is_refused_by_the_source(
    issuer: TokenIssuer, social_url: str
) -> None:
    source = social(social_url)
    token = issuer.mint(
        aud=SOCIAL_AUDIENCE, sub="asiakas-2002", category="social.client_plan", fields=["goals"]
    )
    with pytest.raises(SourceUnavailable, match="HTTP 403"):
        source.fetch(FetchRequest("asiakas-2001", "social.client_plan", ("goals",), token))
    source.close()


def test_a_subject_cannot_move_the_url(issuer: TokenIssuer) -> None:
    hostile = HostileSource({"clients": json_body({"records": []})})
    try:
        mapping = RestCategory.from_text(
            url="/clients/{subject}/{category}", records="records", fields={}
        )
        source = RestConnector(
            "s", base_url=hostile.url, audience="a", categories={"social.client_plan": mapping}
        )
        for subject in ("../admin", "..", "a/b?c#d"):
            source.fetch(ask(issuer, "social.client_plan", (), subject=subject))
        targets = [head.split(" ")[1] for head in hostile.requests]
        assert targets == [
            "/clients/..%2Fadmin/social.client_plan",
            "/clients/%2E%2E/social.client_plan",
            "/clients/a%2Fb%3Fc%23d/social.client_plan",
        ]
        with pytest.raises(UnsupportedCategory):
            source.fetch(ask(issuer, "social.service_decisions", ()))
    finally:
        hostile.close()


# -- the mapping, by property ------------------------------------------------------------------

MAPPINGS = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), STEPS, max_size=4)


@given(MAPPINGS, st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True), JSON)
def test_a_record_holds_exactly_the_requested_mapped_fields(
    fields: dict[str, Any], requested: list[str], value: Any
) -> None:
    mapping = RestCategory.from_text(
        url="/x", records="data.items", fields={k: format_path(v) for k, v in fields.items()}
    )
    items = [place(fields[name], value) if name in fields else {} for name in sorted(fields)]
    items = [item if isinstance(item, dict) else {"wrapped": item} for item in items]
    try:
        records = read_records(mapping, {"data": {"items": items}}, tuple(requested))
    except SourcePayloadInvalid:
        return  # a path crossing a value of the wrong kind: the whole answer is refused
    assert len(records) == len(items)
    for record in records:
        assert list(record) == [name for name in requested if name in fields]


@given(STEPS, JSON)
def test_a_value_placed_at_a_field_path_is_read_back(path: Any, value: Any) -> None:
    if not path or isinstance(path[0], int):
        path = ("root", *path)  # a record is an object
    mapping = RestCategory.from_text(url="/x", records="", fields={"f": format_path(path)})
    assert read_records(mapping, [place(path, value)], ("f",)) == [{"f": value}]


@pytest.mark.parametrize(
    ("document", "records"),
    [
        ({"records": {"a": 1}}, "records"),
        ({"records": [1, 2]}, "records"),
        ({"other": []}, "records"),
        ({"records": None}, "records"),
        ("text", "records"),
        ({"records": []}, "records[0]"),
    ],
)
def test_an_answer_without_the_mapped_list_is_refused(document: Any, records: str) -> None:
    mapping = RestCategory.from_text(url="/x", records=records, fields={"f": "f"})
    with pytest.raises(SourcePayloadInvalid):
        read_records(mapping, document, ("f",))


def test_a_value_of_the_wrong_shape_is_refused_and_an_absent_one_is_none() -> None:
    mapping = RestCategory.from_text(url="/x", records="", fields={"f": "decision.outcome"})
    assert read_records(mapping, [{"decision": None}, {}], ("f",)) == [{"f": None}, {"f": None}]
    with pytest.raises(SourcePayloadInvalid):
        read_records(mapping, [{"decision": "granted"}], ("f",))
