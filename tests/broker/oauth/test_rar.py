"""RFC 9396 `omadata_release` details: parsing, resolving against the catalogue, granted details.

The catalogue is the demo's agreements (read from the shipped YAML, as the API would show them)
plus a second version of selfcare-labs-medications and a labs-only agreement of the same app,
so that "latest", "exact version" and "ambiguous" all have something to find.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.catalogue.schema import AgreementItem, AgreementSpec
from broker.catalogue.views import AgreementItemView, AgreementView
from broker.oauth.rar import (
    MAX_DETAILS,
    MAX_JSON_BYTES,
    TYPE,
    AuthorizationDetailsError,
    GrantedDetailsError,
    GrantedRelease,
    ReleaseDetailRequest,
    ResolvedRelease,
    granted_detail,
    parse_authorization_details,
    parse_granted,
    resolve,
    resolve_all,
)
from policies import FieldRef

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SELFCARE, RESEARCH, PEER = "selfcare-app", "research-register", "peer-support"
LABS_MEDS = "selfcare-labs-medications"
API = "https://broker.example.fi/v1"
# RFC 6749 §5.2: the characters an error_description may hold.
DESCRIPTION = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")


def _view(spec: AgreementSpec) -> AgreementView:
    return AgreementView(
        id=spec.id,
        version=spec.version,
        consumer=spec.consumer,
        source=spec.source,
        purpose=spec.purpose,
        lawful_basis=str(spec.lawful_basis),
        retention_days=spec.retention_days,
        max_consent_days=spec.max_consent_days,
        title=spec.title,
        items=[
            AgreementItemView(
                category=i.category, required=list(i.required), optional=list(i.optional)
            )
            for i in spec.items
        ],
        published_at=NOW,
    )


def _catalogue() -> list[AgreementView]:
    specs = {a.id: a for a in read_catalogue(demo_catalogue_path()).agreements}
    labs_meds = specs[LABS_MEDS]
    # v2: the reference range becomes required, and the prescriber may be shared.
    v2 = labs_meds.model_copy(
        update={
            "version": 2,
            "items": [
                AgreementItem(
                    category="health.lab_results",
                    required=["test_name", "value", "unit", "taken_at", "reference_range"],
                    optional=["test_code"],
                ),
                AgreementItem(
                    category="health.medications",
                    required=["medication_name", "dosage"],
                    optional=["atc_code", "started_on", "prescriber"],
                ),
            ],
        }
    )
    trends = labs_meds.model_copy(
        update={
            "id": "selfcare-lab-trends",
            "items": [AgreementItem(category="health.lab_results", required=["value", "taken_at"])],
        }
    )
    return [_view(s) for s in [*specs.values(), v2, trends]]


CATALOGUE = _catalogue()


def _one(detail: dict[str, Any]) -> ReleaseDetailRequest:
    [parsed] = parse_authorization_details([detail])
    return parsed


def _resolve(detail: dict[str, Any], client: str = SELFCARE, **kw: Any) -> ResolvedRelease:
    return resolve(_one(detail), client_service=client, agreements=CATALOGUE, **kw)


def _refused(raw: Any) -> str:
    with pytest.raises(AuthorizationDetailsError) as caught:
        parse_authorization_details(raw)
    assert caught.value.error == "invalid_authorization_details"
    return caught.value.description


def _refused_by_catalogue(detail: dict[str, Any], client: str = SELFCARE, **kw: Any) -> str:
    with pytest.raises(AuthorizationDetailsError) as caught:
        _resolve(detail, client, **kw)
    return caught.value.description


# --- resolving by agreement id -----------------------------------------------------------------


def test_an_agreement_named_without_version_resolves_to_its_latest_version() -> None:
    release = _resolve({"type": TYPE, "agreement": LABS_MEDS})
    assert (release.agreement.id, release.agreement.version) == (LABS_MEDS, 2)
    assert "health.medications.prescriber" in release.fields
    assert "health.lab_results.reference_range" in release.required


def test_an_exact_version_is_honoured_and_fields_default_to_all_in_agreement_order() -> None:
    release = _resolve({"type": TYPE, "agreement": LABS_MEDS, "version": 1})
    assert release.agreement.version == 1
    assert release.fields == (
        "health.lab_results.test_name",
        "health.lab_results.value",
        "health.lab_results.unit",
        "health.lab_results.taken_at",
        "health.lab_results.reference_range",
        "health.lab_results.test_code",
        "health.medications.medication_name",
        "health.medications.dosage",
        "health.medications.atc_code",
        "health.medications.started_on",
    )
    assert release.required == (
        "health.lab_results.test_name",
        "health.lab_results.value",
        "health.lab_results.unit",
        "health.lab_results.taken_at",
        "health.medications.medication_name",
        "health.medications.dosage",
    )
    assert release.optional == (
        "health.lab_results.reference_range",
        "health.lab_results.test_code",
        "health.medications.atc_code",
        "health.medications.started_on",
    )


def test_a_version_that_was_never_published_is_refused_naming_the_latest() -> None:
    text = _refused_by_catalogue({"type": TYPE, "agreement": LABS_MEDS, "version": 3})
    assert text == f"Agreement {LABS_MEDS} has no version 3; the latest is 2."


def test_an_unknown_agreement_is_refused() -> None:
    text = _refused_by_catalogue({"type": TYPE, "agreement": "no-such-agreement"})
    assert text == "There is no published agreement no-such-agreement."


def test_a_consumer_asking_for_an_agreement_of_another_consumer_is_refused() -> None:
    text = _refused_by_catalogue({"type": TYPE, "agreement": "research-diagnoses"}, SELFCARE)
    assert "another consumer" in text
    # The owner may.
    assert _resolve({"type": TYPE, "agreement": "research-diagnoses"}, RESEARCH).agreement.id


def test_a_client_without_a_service_gets_no_agreement() -> None:
    assert "another consumer" in _refused_by_catalogue({"type": TYPE, "agreement": LABS_MEDS}, "")


# --- resolving by source, purpose and datatypes ------------------------------------------------


def _described(client: str, datatypes: list[str], **extra: Any) -> dict[str, Any]:
    source, purpose = {
        SELFCARE: ("patient-record", "self_care_guidance"),
        RESEARCH: ("patient-record", "scientific_research"),
        PEER: ("social-care", "peer_support_guidance"),
    }[client]
    return {"type": TYPE, "source": source, "purpose": purpose, "datatypes": datatypes, **extra}


def test_source_purpose_and_datatypes_find_the_one_matching_agreement() -> None:
    release = _resolve(_described(RESEARCH, ["health.diagnoses"]), RESEARCH)
    assert release.agreement.id == "research-diagnoses"
    peer = _resolve(_described(PEER, ["social.client_plan", "social.service_decisions"]), PEER)
    assert peer.agreement.id == "peer-support-plan"


def test_a_description_resolves_to_the_latest_matching_version() -> None:
    release = _resolve(_described(SELFCARE, ["health.lab_results", "health.medications"]))
    assert (release.agreement.id, release.agreement.version) == (LABS_MEDS, 2)


def test_a_description_skips_a_newer_version_that_no_longer_matches() -> None:
    v1 = next(a for a in CATALOGUE if a.id == LABS_MEDS and a.version == 1)
    v2_labs_only = v1.model_copy(update={"version": 2, "items": v1.items[:1]})
    detail = _one(_described(SELFCARE, ["health.medications"]))
    release = resolve(detail, client_service=SELFCARE, agreements=[v2_labs_only, v1])
    assert release.agreement.version == 1


def test_datatypes_only_select_the_agreement_whose_fields_are_then_all_asked_for() -> None:
    release = _resolve(_described(SELFCARE, ["health.immunisations"]))
    assert release.agreement.id == "selfcare-immunisations"
    assert release.fields == (
        "health.immunisations.vaccine_name",
        "health.immunisations.given_on",
        "health.immunisations.dose_number",
        "health.immunisations.vaccine_code",
    )


def test_a_description_matching_two_agreements_is_ambiguous() -> None:
    text = _refused_by_catalogue(_described(SELFCARE, ["health.lab_results"]))
    assert text == (
        "2 agreements ask patient-record for self_care_guidance with health.lab_results "
        f"(selfcare-lab-trends, {LABS_MEDS}); name one with agreement."
    )


def test_a_description_matching_nothing_is_refused() -> None:
    text = _refused_by_catalogue(_described(SELFCARE, ["health.diagnoses"]))
    assert text.startswith("No agreement of this client asks patient-record")


def test_a_description_never_matches_another_consumers_agreement() -> None:
    # research-diagnoses would match these datatypes, but it is not the self-care app's.
    detail = _described(RESEARCH, ["health.diagnoses"])
    assert "No agreement of this client" in _refused_by_catalogue(detail, SELFCARE)


# --- requested fields --------------------------------------------------------------------------


def test_a_subset_of_fields_is_kept_in_agreement_order() -> None:
    asked = [
        "health.medications.atc_code",
        "health.medications.dosage",
        "health.medications.medication_name",
        "health.lab_results.taken_at",
        "health.lab_results.unit",
        "health.lab_results.value",
        "health.lab_results.test_name",
    ]
    release = _resolve({"type": TYPE, "agreement": LABS_MEDS, "version": 1, "fields": asked})
    assert release.fields == (
        "health.lab_results.test_name",
        "health.lab_results.value",
        "health.lab_results.unit",
        "health.lab_results.taken_at",
        "health.medications.medication_name",
        "health.medications.dosage",
        "health.medications.atc_code",
    )
    assert release.optional == ("health.medications.atc_code",)


def test_fields_the_agreement_does_not_ask_for_are_refused() -> None:
    text = _refused_by_catalogue(
        {
            "type": TYPE,
            "agreement": "research-diagnoses",
            "fields": [
                "health.diagnoses.icd10_code",
                "health.diagnoses.diagnosed_on",
                "health.diagnoses.diagnosis_name",
                "health.medications.dosage",
            ],
        },
        RESEARCH,
    )
    assert text == (
        "Agreement research-diagnoses version 1 does not ask for "
        "health.diagnoses.diagnosis_name, health.medications.dosage."
    )


def test_fields_that_leave_out_a_required_field_are_refused() -> None:
    text = _refused_by_catalogue(
        {"type": TYPE, "agreement": "research-diagnoses", "fields": ["health.diagnoses.status"]},
        RESEARCH,
    )
    assert text == (
        "Agreement research-diagnoses version 1 requires health.diagnoses.icd10_code, "
        "health.diagnoses.diagnosed_on; fields must include every required field."
    )


def test_an_agreement_with_no_required_fields_in_a_category_accepts_only_optional_ones() -> None:
    release = _resolve(
        {
            "type": TYPE,
            "agreement": "peer-support-plan",
            "fields": ["social.client_plan.goals", "social.service_decisions.service_type"],
        },
        PEER,
    )
    assert release.required == ("social.client_plan.goals",)
    assert release.optional == ("social.service_decisions.service_type",)


# --- common fields: actions and locations ------------------------------------------------------


def test_actions_read_is_accepted() -> None:
    assert _one({"type": TYPE, "agreement": LABS_MEDS, "actions": ["read"]}).actions == ("read",)


def test_locations_must_be_resource_servers_the_caller_names() -> None:
    detail = {"type": TYPE, "agreement": LABS_MEDS, "locations": [API]}
    assert "not a resource server" in _refused_by_catalogue(detail)
    release = _resolve(detail, resource_servers={API})
    assert release.locations == (API,)
    claim = granted_detail(release, consent_id="c1", granted_fields=release.fields, valid_until=NOW)
    assert claim["locations"] == [API]


# --- the request's shape -----------------------------------------------------------------------

# RFC 9396 §2 and its examples, none of them our type, and near misses of our own type.
NOT_OURS: list[tuple[Any, str]] = [
    (
        [
            {
                "type": "account_information",
                "actions": ["list_accounts", "read_balances", "read_transactions"],
                "locations": ["https://example.com/accounts"],
            }
        ],
        "has type account_information, which this server does not support",
    ),
    (
        [
            {
                "type": "payment_initiation",
                "actions": ["initiate", "status", "cancel"],
                "locations": ["https://example.com/payments"],
                "instructedAmount": {"currency": "EUR", "amount": "123.50"},
                "creditorName": "Merchant A",
                "creditorAccount": {"iban": "DE02100100109307118603"},
                "remittanceInformationUnstructured": "Ref Number Merchant",
            }
        ],
        "has type payment_initiation",
    ),
    (
        [
            {
                "type": "customer_information",
                "locations": ["https://example.com/customers"],
                "actions": ["read", "write"],
                "datatypes": ["contacts", "photos"],
            }
        ],
        "has type customer_information",
    ),
    (
        [{"type": "https://scheme.example.org/files", "actions": ["read"]}],
        "has type https://scheme.example.org/files",
    ),
    ([{"type": "photo api", "privileges": ["admin"]}], "has type (not shown)"),
    ([{"actions": ["read"], "locations": ["https://example.com"]}], "[0] has no type."),
    ([{"type": ["omadata_release"]}], "[0].type is not a string."),
    ({"type": TYPE, "agreement": LABS_MEDS}, "must be a JSON array of objects"),
    (["omadata_release"], "[0] is not a JSON object."),
    (
        [{"type": TYPE, "agreement": LABS_MEDS, "identifier": "account-14-32-32-3"}],
        "[0].identifier is not a member of the omadata_release type.",
    ),
    (
        [{"type": TYPE, "agreement": LABS_MEDS, "privileges": ["admin"]}],
        "[0].privileges is not a member",
    ),
    ([{"type": TYPE, "agreement": LABS_MEDS, "actions": ["write"]}], "[0].actions[0] must be"),
    ([{"type": TYPE, "agreement": LABS_MEDS, "actions": []}], "[0].actions is empty"),
    (
        [{"type": TYPE, "agreement": LABS_MEDS, "locations": ["http://example.com"]}],
        "[0].locations[0] is not an https URI.",
    ),
    ([{"type": TYPE}], "name either agreement, or all of source, purpose and datatypes"),
    (
        [{"type": TYPE, "agreement": LABS_MEDS, "source": "patient-record"}],
        "not both",
    ),
    (
        [{"type": TYPE, "source": "patient-record", "purpose": "self_care_guidance"}],
        "name either agreement, or all of",
    ),
    (
        [{"type": TYPE, "source": "x-y", "purpose": "p_q", "datatypes": ["a.b"], "version": 1}],
        "version is given without agreement",
    ),
    ([{"type": TYPE, "agreement": LABS_MEDS, "version": None}], "member version is null"),
    ([{"type": TYPE, "agreement": LABS_MEDS, "version": "2"}], "[0].version must be an integer."),
    ([{"type": TYPE, "agreement": LABS_MEDS, "version": True}], "[0].version must be an integer."),
    ([{"type": TYPE, "agreement": LABS_MEDS, "version": 2.0}], "[0].version must be an integer."),
    ([{"type": TYPE, "agreement": LABS_MEDS, "version": 0}], "[0].version is not between 1 and"),
    ([{"type": TYPE, "agreement": "Selfcare Labs"}], "[0].agreement is not an agreement id"),
    (
        [{"type": TYPE, "agreement": LABS_MEDS, "fields": "health.lab_results.value"}],
        "[0].fields must be an array.",
    ),
    (
        [{"type": TYPE, "agreement": LABS_MEDS, "fields": ["health.value"]}],
        "[0].fields[0] is not a field reference",
    ),
    ([{"type": TYPE, "agreement": LABS_MEDS, "fields": []}], "[0].fields is empty"),
    (
        [{"type": TYPE, "agreement": LABS_MEDS, "fields": ["a.b.c", "a.b.c"]}],
        "member fields lists a value twice",
    ),
    (
        [
            {
                "type": TYPE,
                "source": "patient-record",
                "purpose": "self_care_guidance",
                "datatypes": ["health.lab_results", "health.lab_results"],
            }
        ],
        "member datatypes lists a value twice",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), NOT_OURS)
def test_what_is_not_an_omadata_release_is_refused_precisely(raw: Any, expected: str) -> None:
    as_list = _refused(raw)
    assert expected in as_list
    assert _refused(json.dumps(raw)) == as_list
    assert DESCRIPTION.match(as_list)


def test_a_json_string_and_parsed_json_give_the_same_details() -> None:
    raw = [
        {"type": TYPE, "agreement": LABS_MEDS, "version": 1, "actions": ["read"]},
        _described(SELFCARE, ["health.immunisations"], fields=["health.immunisations.given_on"]),
    ]
    from_text = parse_authorization_details(json.dumps(raw))
    assert from_text == parse_authorization_details(raw)
    assert from_text[0].version == 1
    assert from_text[1].datatypes == ("health.immunisations",)
    assert from_text[1].fields == ("health.immunisations.given_on",)


@pytest.mark.parametrize("raw", [None, "", "[]", []])
def test_no_details_is_an_empty_list(raw: Any) -> None:
    assert parse_authorization_details(raw) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[{]", "not valid JSON"),
        ("not json", "not valid JSON"),
        ('[{"type": "omadata_release", "type": "omadata_release"}]', "not valid JSON"),
        ('[{"type": "omadata_release", "agreement": "a-b", "version": NaN}]', "not valid JSON"),
        ("[" * 3000 + "]" * 3000, "not valid JSON"),
        ('"omadata_release"', "must be a JSON array"),
        ("\ufeff[]", "not valid JSON"),
        (
            '[{"type": "omadata_release", "agreement": "a-b", "version": 1' + "0" * 5000 + "}]",
            "not valid JSON",
        ),
    ],
)
def test_malformed_json_is_refused(raw: str, expected: str) -> None:
    assert expected in _refused(raw)


def test_parsed_input_that_is_not_json_is_refused() -> None:
    assert "not JSON" in _refused([{"type": TYPE, "agreement": LABS_MEDS, "version": float("nan")}])
    assert "not JSON" in _refused([{"type": TYPE, "agreement": object()}])
    assert "JSON array" in _refused(42)  # type: ignore[arg-type]


def test_at_most_ten_details() -> None:
    many = [{"type": TYPE, "agreement": f"agreement-{i}"} for i in range(MAX_DETAILS + 1)]
    expected = "authorization_details has 11 objects; at most 10 are accepted."
    assert _refused(many) == expected
    assert _refused(json.dumps(many)) == expected
    assert len(parse_authorization_details(many[:MAX_DETAILS])) == MAX_DETAILS


def test_at_most_16_kib_of_json() -> None:
    detail = {"type": TYPE, "agreement": LABS_MEDS}
    text = json.dumps([detail])
    padded = text[:-1] + " " * (MAX_JSON_BYTES - len(text)) + "]"
    assert len(padded) == MAX_JSON_BYTES
    assert len(parse_authorization_details(padded)) == 1
    too_long = text[:-1] + " " * (MAX_JSON_BYTES + 1 - len(text)) + "]"
    assert "longer than 16384 bytes" in _refused(too_long)
    # Size counts UTF-8 bytes, not characters, and applies to parsed input as well.
    wide = json.dumps([{**detail, "x": "ä" * 9000}], ensure_ascii=False)
    assert len(wide) < MAX_JSON_BYTES < len(wide.encode())
    assert "longer than" in _refused(wide)
    assert "longer than" in _refused([{**detail, "x": "ä" * 9000}])


def test_strings_and_lists_are_bounded() -> None:
    long_ref = "health." + "a" * 200 + ".value"
    assert "[0].fields[0] is longer than 200 characters" in _refused(
        [{"type": TYPE, "agreement": LABS_MEDS, "fields": [long_ref]}]
    )
    refs = [f"health.lab_results.f{i}" for i in range(101)]
    assert "[0].fields has more than 100 items" in _refused(
        [{"type": TYPE, "agreement": LABS_MEDS, "fields": refs}]
    )
    assert (
        len(_one({"type": TYPE, "agreement": LABS_MEDS, "fields": refs[:100]}).fields or ()) == 100
    )


def test_repeated_details_are_refused() -> None:
    same = {"type": TYPE, "agreement": LABS_MEDS}
    assert _refused([same, same]) == (
        "authorization_details[1] repeats authorization_details[0]; ask for each agreement once."
    )
    assert "[1] names agreement selfcare-labs-medications as does authorization_details[0]" in (
        _refused([same, {**same, "version": 1}])
    )


def test_two_details_that_come_to_one_agreement_are_refused_after_resolving() -> None:
    details = parse_authorization_details(
        [
            {"type": TYPE, "agreement": "selfcare-immunisations"},
            _described(SELFCARE, ["health.immunisations"]),
        ]
    )
    with pytest.raises(AuthorizationDetailsError) as caught:
        resolve_all(details, client_service=SELFCARE, agreements=CATALOGUE)
    assert caught.value.description == (
        "authorization_details[1] and authorization_details[0] both come to agreement "
        "selfcare-immunisations; ask for each agreement once."
    )


def test_resolve_all_names_the_object_that_failed() -> None:
    details = parse_authorization_details(
        [
            {"type": TYPE, "agreement": "selfcare-immunisations"},
            {"type": TYPE, "agreement": "research-diagnoses"},
        ]
    )
    with pytest.raises(AuthorizationDetailsError) as caught:
        resolve_all(details, client_service=SELFCARE, agreements=CATALOGUE)
    assert caught.value.description.startswith("authorization_details[1]: Agreement research-")
    ok = resolve_all(details[:1], client_service=SELFCARE, agreements=CATALOGUE)
    assert [r.agreement.id for r in ok] == ["selfcare-immunisations"]


def test_a_description_never_quotes_what_the_client_sent() -> None:
    text = _refused([{"type": 'x"\\<script>', "agreement": "a"}])
    assert text == (
        "authorization_details[0] has type (not shown), which this server does not support; "
        "the supported type is omadata_release."
    )
    assert "(a member)" in _refused([{"type": TYPE, "agreement": LABS_MEDS, 'a"b': 1}])
    error = AuthorizationDetailsError('bad "quote" \\ and\nnewline ' + "x" * 1000)
    assert DESCRIPTION.match(error.description)
    assert len(error.description) == 600


# --- granted details ---------------------------------------------------------------------------


def test_the_granted_detail_names_exactly_the_granted_fields_and_their_categories() -> None:
    release = _resolve({"type": TYPE, "agreement": "research-diagnoses"}, RESEARCH)
    claim = granted_detail(
        release,
        consent_id="0123456789abcdef0123456789abcdef",
        granted_fields=["health.diagnoses.diagnosed_on", "health.diagnoses.icd10_code"],
        valid_until=datetime(2031, 11, 22, 9, 0, 0, 987654, tzinfo=timezone(timedelta(hours=2))),
    )
    assert claim == {
        "type": "omadata_release",
        "agreement": "research-diagnoses",
        "version": 1,
        "consumer": "research-register",
        "source": "patient-record",
        "purpose": "scientific_research",
        "datatypes": ["health.diagnoses"],
        "fields": ["health.diagnoses.icd10_code", "health.diagnoses.diagnosed_on"],
        "actions": ["read"],
        "consent_id": "0123456789abcdef0123456789abcdef",
        "valid_until": "2031-11-22T07:00:00Z",
    }
    [granted] = parse_granted(json.loads(json.dumps([claim])))
    assert granted.field_refs == {
        FieldRef("health.diagnoses", "icd10_code"),
        FieldRef("health.diagnoses", "diagnosed_on"),
    }
    assert granted.valid_until == datetime(2031, 11, 22, 7, 0, tzinfo=UTC)


def test_granted_detail_refuses_what_the_consent_cannot_be() -> None:
    release = _resolve({"type": TYPE, "agreement": LABS_MEDS, "version": 1})
    cases: list[tuple[list[str], datetime, str]] = [
        (["health.lab_results.value"], NOW, "required fields are not granted"),
        ([*release.fields, "health.immunisations.given_on"], NOW, "were not requested"),
        ([*release.fields, release.fields[0]], NOW, "twice"),
        (list(release.fields), NOW.replace(tzinfo=None), "no time zone"),
    ]
    for fields, valid_until, expected in cases:
        with pytest.raises(ValueError, match=expected):
            granted_detail(release, consent_id="c1", granted_fields=fields, valid_until=valid_until)
    with pytest.raises(ValueError, match="consent_id is not a consent id"):
        granted_detail(
            release, consent_id="not an id", granted_fields=release.fields, valid_until=NOW
        )


def _good_claim() -> dict[str, Any]:
    release = _resolve({"type": TYPE, "agreement": LABS_MEDS, "version": 1})
    return granted_detail(
        release, consent_id="c1", granted_fields=release.required, valid_until=NOW
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"extra": 1}, "[0].extra is not a member"),
        ({"version": "1"}, "[0].version must be an integer."),
        ({"valid_until": "2026-11-23T09:00:00"}, "valid_until is not an RFC 3339"),
        ({"valid_until": 1795424400}, "valid_until is not an RFC 3339"),
        ({"datatypes": ["health.lab_results"]}, "datatypes are not the categories"),
        ({"actions": ["read", "read"]}, "[0].actions"),
        ({"actions": []}, "[0].actions"),
        ({"fields": ["health.lab_results.value", "health.lab_results.value"]}, "twice"),
        ({"type": "account_information"}, "is not an omadata_release object"),
        ({"consent_id": "a b"}, "[0].consent_id is not a consent id."),
    ],
)
def test_parse_granted_is_strict(change: dict[str, Any], expected: str) -> None:
    claim = {**_good_claim(), **change}
    with pytest.raises(GrantedDetailsError) as caught:
        parse_granted([claim])
    assert caught.value.error == "invalid_token"
    assert expected in caught.value.description


def test_parse_granted_reads_none_as_no_details_and_refuses_other_shapes() -> None:
    assert parse_granted(None) == []
    assert parse_granted([]) == []
    for claim in ({"type": TYPE}, "[]", [_good_claim()] * 11, [None]):
        with pytest.raises(GrantedDetailsError):
            parse_granted(claim)


# --- properties --------------------------------------------------------------------------------


@st.composite
def _grants(draw: st.DrawFn) -> tuple[ResolvedRelease, list[str], str, datetime]:
    agreement = draw(st.sampled_from(CATALOGUE))
    detail: dict[str, Any] = {"type": TYPE, "agreement": agreement.id, "version": agreement.version}
    required = [f"{i.category}.{f}" for i in agreement.items for f in i.required]
    optional = [f"{i.category}.{f}" for i in agreement.items for f in i.optional]
    asked_optional = draw(st.lists(st.sampled_from(optional), unique=True)) if optional else []
    if draw(st.booleans()) and (required or asked_optional):
        detail["fields"] = draw(st.permutations(required + asked_optional))
    else:
        asked_optional = optional
    if draw(st.booleans()):
        detail["locations"] = [API]
    release = resolve(
        _one(detail),
        client_service=agreement.consumer,
        agreements=CATALOGUE,
        resource_servers={API},
    )
    kept = draw(st.lists(st.sampled_from(asked_optional), unique=True)) if asked_optional else []
    granted = draw(st.permutations(required + kept))
    consent_id = draw(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
    offset = draw(st.integers(min_value=-23 * 60, max_value=23 * 60))
    moment = draw(
        st.datetimes(
            min_value=datetime(2000, 1, 2),
            max_value=datetime(9998, 12, 30),
            timezones=st.just(timezone(timedelta(minutes=offset))),
        )
    )
    return release, granted, consent_id, moment


@settings(max_examples=250)
@given(_grants())
def test_granted_details_round_trip_through_a_token(
    case: tuple[ResolvedRelease, list[str], str, datetime],
) -> None:
    release, granted, consent_id, moment = case
    claim = granted_detail(
        release, consent_id=consent_id, granted_fields=granted, valid_until=moment
    )
    [back] = parse_granted(json.loads(json.dumps([claim])))
    assert isinstance(back, GrantedRelease)
    assert back.to_claim() == claim
    assert set(back.fields) == set(granted)
    assert list(back.fields) == [f for f in release.fields if f in set(granted)]
    assert set(back.datatypes) == {f.rsplit(".", 1)[0] for f in granted}
    assert (back.agreement, back.version) == (release.agreement.id, release.agreement.version)
    assert back.consumer == release.agreement.consumer
    assert back.consent_id == consent_id
    assert back.actions == ("read",)
    assert back.locations == (release.locations or None)
    assert timedelta(0) <= moment - back.valid_until < timedelta(seconds=1)
    assert back.valid_until.tzinfo is UTC


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=40,
)
_MEMBERS = st.sampled_from(
    [
        "type",
        "agreement",
        "version",
        "source",
        "purpose",
        "datatypes",
        "fields",
        "actions",
        "locations",
        "identifier",
        "privileges",
    ]
)
_REFS = sorted(
    {f"{i.category}.{f}" for a in CATALOGUE for i in a.items for f in i.required + i.optional}
)
_CATEGORIES = sorted({i.category for a in CATALOGUE for i in a.items})
_OPTIONAL_MEMBERS = {
    "fields": st.lists(st.sampled_from([*_REFS, "health.lab_results.secret"]), max_size=12),
    "actions": st.sampled_from([["read"], ["read", "write"], ["read", "read"], []]),
    "locations": st.sampled_from([[API], ["https://elsewhere.example"], ["http://x"]]),
}
# Objects of our type with plausible members (real ids, codes and fields, in both forms) and
# wild ones, so that the fuzzing reaches every check of parsing and resolving, not only the
# JSON parser.
_NEAR_DETAIL = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just(TYPE), "agreement": st.sampled_from(sorted({a.id for a in CATALOGUE}))},
        optional={"version": st.sampled_from([1, 1, 2, 3, 0]), **_OPTIONAL_MEMBERS},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just(TYPE),
            "source": st.sampled_from(["patient-record", "social-care"]),
            "purpose": st.sampled_from(
                ["self_care_guidance", "scientific_research", "peer_support_guidance"]
            ),
            "datatypes": st.lists(st.sampled_from(_CATEGORIES), min_size=1, max_size=3),
        },
        optional=_OPTIONAL_MEMBERS,
    ),
    st.builds(
        lambda members: {"type": TYPE, **members},
        st.dictionaries(_MEMBERS, _JSON | st.sampled_from([LABS_MEDS, API, "read"]), max_size=5),
    ),
)


def _parse_only_refuses(raw: Any) -> list[ReleaseDetailRequest]:
    try:
        details = parse_authorization_details(raw)
    except AuthorizationDetailsError as exc:
        refusal = exc
    else:
        assert all(isinstance(d, ReleaseDetailRequest) for d in details)
        return details
    assert refusal.error == "invalid_authorization_details"
    assert refusal.description
    assert DESCRIPTION.match(refusal.description)
    assert len(refusal.description) <= 600
    return []


@settings(max_examples=400)
@given(st.one_of(_JSON, st.lists(_JSON, max_size=12)))
def test_fuzzed_json_only_ever_raises_authorization_details_error(raw: Any) -> None:
    _parse_only_refuses(raw)
    try:
        text = json.dumps(raw)
    except ValueError:  # NaN cannot be JSON text; the parsed form was tried above
        return
    _parse_only_refuses(text)


@settings(max_examples=400)
@given(st.text(max_size=200) | st.text(alphabet='[]{}",:0123456789.eE-+ tnulrfa\\', max_size=60))
def test_fuzzed_text_only_ever_raises_authorization_details_error(raw: str) -> None:
    _parse_only_refuses(raw)


@settings(max_examples=400)
@given(
    st.lists(_NEAR_DETAIL, min_size=1, max_size=2),
    st.sampled_from([SELFCARE, RESEARCH, PEER, ""]),
)
def test_fuzzed_details_of_our_type_parse_and_resolve_or_are_refused(
    raw: list[Any], client: str
) -> None:
    details = _parse_only_refuses(raw)
    try:
        resolved = resolve_all(details, client_service=client, agreements=CATALOGUE)
    except AuthorizationDetailsError as exc:
        description = exc.description
    else:
        description = None
    if description is not None:
        assert DESCRIPTION.match(description)
        event("parsed, refused by the catalogue" if details else "refused")
        return
    event("resolved" if resolved else "refused")
    for release in resolved:
        assert release.agreement.consumer == client
        assert set(release.required) <= set(release.fields)


# Values JSON can carry that Python makes awkward: lone surrogates (from "\ud800" escapes),
# integers beyond any float or column, times at the ends of the calendar, deep nesting.
_HOSTILE = st.one_of(
    _JSON,
    st.text(st.characters(exclude_categories=()), max_size=20),
    st.sampled_from([10**400, -(10**400), 2**31, 2**63, 1e308, "\ud800", "selfcare\udc80app"]),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-23T09:00:00.123456789+23:59",
            "2026-11-23T09:00:00+24:00",
        ]
    ),
    st.integers(1, 60).map(lambda depth: json.loads("[" * depth + "]" * depth)),
)
_GRANTED_MEMBERS = st.sampled_from(
    [
        "type",
        "agreement",
        "version",
        "consumer",
        "source",
        "purpose",
        "datatypes",
        "fields",
        "actions",
        "consent_id",
        "valid_until",
        "locations",
        "extra",
    ]
)


@settings(max_examples=300)
@given(
    st.dictionaries(_GRANTED_MEMBERS, _HOSTILE | st.just(None), max_size=3),
    st.sets(_GRANTED_MEMBERS, max_size=2),
)
# Found by this test: strftime wrote year 1 as "1-01-01T00:00:00Z", which no parser reads back.
@example(change={"valid_until": "0001-01-01T00:00:00Z"}, dropped=set())
def test_mutated_granted_details_parse_or_raise_only_granted_details_error(
    change: dict[str, Any], dropped: set[str]
) -> None:
    # A token's claim with members retyped, dropped or added: read back exactly, or refused.
    claim = {k: v for k, v in {**_good_claim(), **change}.items() if k not in dropped}
    try:
        [back] = parse_granted([claim])
    except GrantedDetailsError as exc:
        refusal = exc
    else:
        assert back.to_claim() == parse_granted([back.to_claim()])[0].to_claim()
        assert back.valid_until.tzinfo is UTC
        return
    assert refusal.error == "invalid_token"
    assert DESCRIPTION.match(refusal.description)


@settings(max_examples=200)
@given(st.lists(st.dictionaries(_MEMBERS, _HOSTILE, max_size=4), min_size=1, max_size=3))
def test_hostile_values_in_requests_only_ever_raise_authorization_details_error(
    raw: list[Any],
) -> None:
    details = _parse_only_refuses([{"type": TYPE, **item} for item in raw])
    for detail in details:
        detail.model_dump_json()  # what was accepted is plain, encodable JSON
    try:
        text = json.dumps(raw)
    except ValueError:
        return
    _parse_only_refuses(text)
