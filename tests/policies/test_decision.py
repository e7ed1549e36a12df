"""The release decision: properties over generated consents, and a few stories told by example.

The strategies draw from small alphabets of persons, consumers, sources, purposes, categories and
fields, and draw each consent "near" the request (each attribute equal to the request's about
four times in five), so that consents match, half-match and clash often. Instants are mostly
whole hours around one base time, so that `now` lands exactly on `valid_from` or `valid_until`
often. Consent ids are distinct within one set of consents, as stored consents' ids are.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any, Protocol, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.decision import decide
from policies.model import (
    ConsentGrant,
    ConsentStatus,
    DenyReason,
    FieldRef,
    ReleaseDecision,
    ReleaseRequest,
    effective_status,
)

# --------------------------------------------------------------------------------------------
# Vocabulary and strategies
# --------------------------------------------------------------------------------------------

T = TypeVar("T")


class Draw(Protocol):
    """`draw` inside a composite strategy, or `data.draw` inside a test."""

    def __call__(self, strategy: st.SearchStrategy[T], /) -> T: ...


PERSONS = ("anna", "ben", "child-of-anna")
CONSUMERS = ("selfcare-app", "research-register", "peer-support")
SOURCES = ("patient-record", "social-care")
PURPOSES = ("care", "research", "peer-support")
CATEGORIES = ("health.lab_results", "health.diagnoses", "social.services")
FIELDS = ("value", "date", "code", "unit")
CONSENT_IDS = tuple(f"c{n:02d}" for n in range(16))
# Sorting before CONSENT_IDS, so that a leak would also win the smallest-id tie-break.
OTHER_IDS = tuple(f"a{n:02d}" for n in range(16))

# Written out here rather than imported, so that the oracle does not share the code under test.
PERMITTING = {ConsentStatus.GIVEN, ConsentStatus.RENEWED}
NOT_PERMITTING = sorted(set(ConsentStatus) - PERMITTING)
STATUS_REASON = {
    ConsentStatus.REFUSED: DenyReason.CONSENT_REFUSED,
    ConsentStatus.WITHDRAWN: DenyReason.CONSENT_WITHDRAWN,
    ConsentStatus.REVOKED: DenyReason.CONSENT_REVOKED,
    ConsentStatus.EXPIRED: DenyReason.CONSENT_EXPIRED,
    ConsentStatus.INVALIDATED: DenyReason.CONSENT_INVALIDATED,
}

BASE = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

# The strategies are built once, here, and most draw a whole choice at once (a product of small
# alphabets is one `sampled_from`): building strategies inside every draw, or drawing many small
# parts, costs far more than the decision under test, and the file must stay quick.
CATEGORY = st.sampled_from(CATEGORIES)
CONSENT_ID = st.sampled_from(CONSENT_IDS)
CONSENT_ID_LISTS = st.lists(CONSENT_ID, unique=True, max_size=5)
OTHER_ID_LISTS = st.lists(st.sampled_from(OTHER_IDS), unique=True, max_size=3)
SUBSETS_OF_FIELDS = [
    frozenset(subset) for size in range(4) for subset in itertools.combinations(FIELDS, size)
]
# None (every granted field) half the time, else a subset of at most three fields.
REQUESTED_FIELDS = st.sampled_from([None] * len(SUBSETS_OF_FIELDS) + SUBSETS_OF_FIELDS)
# person, consumer, source, category, purpose
REQUEST_KEYS = st.sampled_from(
    list(itertools.product(PERSONS, CONSUMERS, SOURCES, CATEGORIES, PURPOSES))
)
PERMITTING_STATUS = st.sampled_from(sorted(PERMITTING))
NOT_PERMITTING_STATUS = st.sampled_from(NOT_PERMITTING)
# Every state, the permitting ones weighted up to seven draws in twelve.
STATUS = st.sampled_from([ConsentStatus.GIVEN] * 4 + [ConsentStatus.RENEWED] * 3 + NOT_PERMITTING)
# Aware UTC instants: whole hours around BASE, and a few minutes off the hour.
INSTANT = st.sampled_from(
    [BASE + h * HOUR for h in range(-4, 5)] + [BASE + m * MINUTE for m in (-61, -1, 1, 59, 121)]
)
# A consent's window: where it opens relative to the request's instant (mostly already open,
# sometimes a minute either side of an hour) and how long it lasts (one in ten inverted).
WINDOW = st.sampled_from(
    [
        (opens, length * HOUR)
        for opens in [h * HOUR for h in range(-4, 2)] + [m * MINUTE for m in (-61, -1, 1)]
        for length in (-1, 0, 1, 2, 3, 4, 6, 8, 12, 24)
    ]
)


def near_letters(alphabet: tuple[str, ...]) -> list[str | None]:
    """None (read: "the request's value") three times in four, and then every letter once."""
    return [None] * 3 * len(alphabet) + list(alphabet)


# A consent's person, consumer, source and purpose, each None (the request's) or a letter.
NEAR_KEYS = st.sampled_from(
    list(
        itertools.product(
            near_letters(PERSONS),
            near_letters(CONSUMERS),
            near_letters(SOURCES),
            near_letters(PURPOSES),
        )
    )
)
# A granted field as one draw: its category (None: the request's) and its name.
REFS = st.lists(
    st.sampled_from([(c, f) for c in near_letters(CATEGORIES) for f in FIELDS]), max_size=5
)
# The categories a consent was asked about: none, one or two (None: the request's).
ASKED = st.sampled_from(
    [()] * 8
    + [(c,) for c in near_letters(CATEGORIES)]
    + list(itertools.combinations(near_letters(CATEGORIES)[-4:], 2))
)


def near(value: str, drawn: str | None) -> str:
    return value if drawn is None else drawn


@cache
def _others(value: str, alphabet: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from([a for a in alphabet if a != value])


def other_than(draw: Draw, value: str, alphabet: tuple[str, ...]) -> str:
    return draw(_others(value, alphabet))


@st.composite
def requests(draw: st.DrawFn) -> ReleaseRequest:
    person_id, consumer, source, category, purpose = draw(REQUEST_KEYS)
    return ReleaseRequest(person_id, consumer, source, category, purpose, draw(REQUESTED_FIELDS))


def draw_grant(
    draw: Draw,
    request: ReleaseRequest,
    now: datetime,
    consent_id: str,
    status: st.SearchStrategy[ConsentStatus] = STATUS,
) -> ConsentGrant:
    """A consent record whose attributes often equal `request`'s, its window often around `now`."""
    person_id, consumer, source, purpose = draw(NEAR_KEYS)
    opens, length = draw(WINDOW)
    return ConsentGrant(
        consent_id=consent_id,
        person_id=near(request.person_id, person_id),
        consumer=near(request.consumer, consumer),
        source=near(request.source, source),
        purpose=near(request.purpose, purpose),
        fields=frozenset(FieldRef(near(request.category, c), f) for c, f in draw(REFS)),
        status=draw(status),
        valid_from=now + opens,
        valid_until=now + opens + length,
        asked_categories=frozenset(near(request.category, c) for c in draw(ASKED)),
    )


def draw_consents(
    draw: Draw,
    request: ReleaseRequest,
    now: datetime,
    ids: st.SearchStrategy[list[str]] = CONSENT_ID_LISTS,
) -> list[ConsentGrant]:
    """Up to five consents near `request`, with distinct ids (as stored consents have)."""
    return [draw_grant(draw, request, now, consent_id) for consent_id in draw(ids)]


def inactivate(draw: Draw, grant: ConsentGrant, now: datetime) -> ConsentGrant:
    """`grant` made inactive at `now`, all else kept: put in a non-permitting state, or left in
    a permitting one with a window that has closed (valid_until <= now)."""
    if draw(st.booleans()):
        return replace(grant, status=draw(NOT_PERMITTING_STATUS))
    valid_until = now - draw(st.integers(0, 3)) * HOUR
    return replace(
        grant,
        status=draw(PERMITTING_STATUS),
        valid_until=valid_until,
        valid_from=valid_until - draw(st.integers(0, 6)) * HOUR,
    )


@st.composite
def any_grants(draw: st.DrawFn) -> ConsentGrant:
    return draw_grant(draw, draw(requests()), draw(INSTANT), draw(CONSENT_ID))


@dataclass(frozen=True)
class Scenario:
    request: ReleaseRequest
    consents: list[ConsentGrant]
    now: datetime


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    request, now = draw(requests()), draw(INSTANT)
    return Scenario(request, draw_consents(draw, request, now), now)


SOON = st.sampled_from([MINUTE, HOUR, 8 * HOUR])


@st.composite
def permitting_scenarios(draw: st.DrawFn) -> Scenario:
    """A scenario with one consent slipped in that permits, among others that compete with it."""
    scenario = draw(scenarios())
    request, now = scenario.request, scenario.now
    if request.fields is not None and not request.fields:
        request = replace(request, fields=None)  # asking for nothing can never be permitted
    free = sorted(set(CONSENT_IDS) - {g.consent_id for g in scenario.consents})
    grant = draw_grant(draw, request, now, draw(st.sampled_from(free)), PERMITTING_STATUS)
    wanted = FIELDS if request.fields is None else sorted(request.fields)
    permit = replace(
        grant,
        person_id=request.person_id,
        consumer=request.consumer,
        source=request.source,
        purpose=request.purpose,
        fields=grant.fields | {FieldRef(request.category, draw(st.sampled_from(wanted)))},
        valid_from=now - draw(SOON),
        valid_until=now + draw(SOON),
    )
    at = draw(st.integers(0, len(scenario.consents)))
    return Scenario(request, [*scenario.consents[:at], permit, *scenario.consents[at:]], now)


# Scenarios as drawn (about one in three permits), and as many again with a permit slipped in.
SCENARIOS = scenarios() | permitting_scenarios()


@st.composite
def alone(
    draw: st.DrawFn, status: st.SearchStrategy[ConsentStatus] = STATUS
) -> tuple[ConsentGrant, ReleaseRequest]:
    """One consent and a request it fully matches: same person, parties, purpose, a category.

    The consent's window is drawn around some instant; the test draws its own `now`."""
    grant = draw_grant(draw, draw(requests()), draw(INSTANT), draw(CONSENT_ID), status)
    if not grant.categories():  # a consent answering for nothing matches no request at all
        grant = replace(grant, asked_categories=frozenset({draw(CATEGORY)}))
    request = ReleaseRequest(
        person_id=grant.person_id,
        consumer=grant.consumer,
        source=grant.source,
        category=draw(st.sampled_from(sorted(grant.categories()))),
        purpose=grant.purpose,
        fields=draw(REQUESTED_FIELDS),
    )
    return grant, request


# --------------------------------------------------------------------------------------------
# The oracle: brute force, written from the documented rule only
# --------------------------------------------------------------------------------------------


def oracle_released(request: ReleaseRequest, grant: ConsentGrant, now: datetime) -> frozenset[str]:
    """The requested fields `grant` alone would release at `now`; empty when it releases none."""
    if (
        grant.person_id != request.person_id
        or grant.consumer != request.consumer
        or grant.source != request.source
        or grant.purpose != request.purpose
        or grant.status not in PERMITTING
        or not grant.valid_from <= now < grant.valid_until
    ):
        return frozenset()
    granted = {ref.field for ref in grant.fields if ref.category == request.category}
    wanted = granted if request.fields is None else granted & request.fields
    return frozenset(wanted)


def oracle_decision(
    request: ReleaseRequest, consents: list[ConsentGrant], now: datetime
) -> ReleaseDecision | None:
    """The permit the rule prescribes (most fields, then smallest id), or None if it denies."""
    candidates = [(g, oracle_released(request, g, now)) for g in consents]
    candidates = [(g, fields) for g, fields in candidates if fields]
    if not candidates:
        return None
    best, fields = min(candidates, key=lambda c: (-len(c[1]), c[0].consent_id))
    return ReleaseDecision(True, DenyReason.PERMITTED, best.consent_id, fields)


def related(request: ReleaseRequest, grant: ConsentGrant) -> bool:
    """Same person, consumer and source, and the consent answers for the category."""
    return (
        grant.person_id == request.person_id
        and grant.consumer == request.consumer
        and grant.source == request.source
        and request.category in grant.categories()
    )


def matching(request: ReleaseRequest, grant: ConsentGrant) -> bool:
    """Related, and for the same purpose: whether it permits depends only on state and time."""
    return related(request, grant) and grant.purpose == request.purpose


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(alone(status=NOT_PERMITTING_STATUS), INSTANT)
def test_a_consent_in_a_non_permitting_state_never_permits_and_says_why(
    case: tuple[ConsentGrant, ReleaseRequest], now: datetime
) -> None:
    grant, request = case
    decision = decide(request, [grant], now)
    assert decision == ReleaseDecision.deny(STATUS_REASON[grant.status], grant.consent_id)


@settings(max_examples=300, deadline=None)
@given(st.data(), SCENARIOS)
def test_a_set_whose_only_matching_consents_are_inactive_never_permits(
    data: st.DataObject, scenario: Scenario
) -> None:
    request, now = scenario.request, scenario.now
    consents = [
        inactivate(data.draw, g, now) if matching(request, g) else g for g in scenario.consents
    ]
    decision = decide(request, consents, now)
    assert not decision.permitted
    assert decision.reason is not DenyReason.PERMITTED
    assert decision.fields == frozenset()


@settings(max_examples=300, deadline=None)
@given(alone(status=PERMITTING_STATUS), INSTANT, st.integers(0, 5))
def test_an_active_consent_past_its_window_is_expired_at_request_time(
    case: tuple[ConsentGrant, ReleaseRequest], now: datetime, hours_late: int
) -> None:
    grant, request = case
    grant = replace(grant, valid_until=now - hours_late * HOUR)
    assert effective_status(grant, now) is ConsentStatus.EXPIRED
    assert decide(request, [grant], now) == ReleaseDecision.deny(
        DenyReason.CONSENT_EXPIRED, grant.consent_id
    )


@settings(max_examples=300, deadline=None)
@given(alone(), INSTANT, st.data())
def test_a_consent_of_another_person_is_no_consent_at_all(
    case: tuple[ConsentGrant, ReleaseRequest], now: datetime, data: st.DataObject
) -> None:
    grant, request = case
    request = replace(request, person_id=other_than(data.draw, grant.person_id, PERSONS))
    assert decide(request, [grant], now) == ReleaseDecision.deny(DenyReason.NO_CONSENT)


@settings(max_examples=300, deadline=None)
@given(SCENARIOS, st.data())
def test_consents_of_other_persons_change_nothing(scenario: Scenario, data: st.DataObject) -> None:
    request, now = scenario.request, scenario.now
    others = [
        replace(g, person_id=other_than(data.draw, request.person_id, PERSONS))
        for g in draw_consents(data.draw, request, now, OTHER_ID_LISTS)
    ]
    mixed = data.draw(st.permutations(scenario.consents + others))
    assert decide(request, mixed, now) == decide(request, scenario.consents, now)


@settings(max_examples=300, deadline=None)
@given(permitting_scenarios())
def test_a_permit_releases_only_requested_fields_the_named_consent_grants(
    scenario: Scenario,
) -> None:
    request, now = scenario.request, scenario.now
    decision = decide(request, scenario.consents, now)
    assert decision.permitted
    by_id = {g.consent_id: g for g in scenario.consents}
    assert decision.consent_id in by_id
    chosen = by_id[decision.consent_id]
    granted = {ref.field for ref in chosen.fields if ref.category == request.category}
    assert decision.fields
    assert decision.fields <= granted
    if request.fields is not None:
        assert decision.fields <= request.fields
    assert chosen.person_id == request.person_id
    assert chosen.consumer == request.consumer
    assert chosen.source == request.source
    assert chosen.purpose == request.purpose
    assert request.category in chosen.categories()
    assert effective_status(chosen, now) in PERMITTING
    assert chosen.valid_from <= now < chosen.valid_until


@settings(max_examples=300, deadline=None)
@given(alone(), INSTANT, st.data())
def test_a_consent_for_another_purpose_denies_with_purpose_mismatch(
    case: tuple[ConsentGrant, ReleaseRequest], now: datetime, data: st.DataObject
) -> None:
    grant, request = case
    request = replace(request, purpose=other_than(data.draw, grant.purpose, PURPOSES))
    assert decide(request, [grant], now) == ReleaseDecision.deny(
        DenyReason.PURPOSE_MISMATCH, grant.consent_id
    )


PARTIES = st.sampled_from([("consumer", CONSUMERS), ("source", SOURCES)])
PARTIES_AND_PURPOSE = st.sampled_from(
    [("purpose", PURPOSES), ("consumer", CONSUMERS), ("source", SOURCES)]
)


@settings(max_examples=300, deadline=None)
@given(alone(), INSTANT, PARTIES, st.data())
def test_a_consent_for_another_consumer_or_source_is_no_consent_at_all(
    case: tuple[ConsentGrant, ReleaseRequest],
    now: datetime,
    party: tuple[str, tuple[str, ...]],
    data: st.DataObject,
) -> None:
    grant, request = case
    attribute, alphabet = party
    other = other_than(data.draw, getattr(grant, attribute), alphabet)
    changes: dict[str, Any] = {attribute: other}
    request = replace(request, **changes)
    assert decide(request, [grant], now) == ReleaseDecision.deny(DenyReason.NO_CONSENT)


def _with(grant: ConsentGrant, attribute: str, value: str) -> ConsentGrant:
    changes: dict[str, Any] = {attribute: value}
    return replace(grant, **changes)


@settings(max_examples=300, deadline=None)
@given(SCENARIOS, PARTIES_AND_PURPOSE, st.data())
def test_no_consent_naming_the_requested_purpose_consumer_or_source_means_deny(
    scenario: Scenario, mismatch: tuple[str, tuple[str, ...]], data: st.DataObject
) -> None:
    request, now = scenario.request, scenario.now
    attribute, alphabet = mismatch
    wanted = getattr(request, attribute)
    consents = [
        _with(g, attribute, other_than(data.draw, wanted, alphabet))
        if getattr(g, attribute) == wanted
        else g
        for g in scenario.consents
    ]
    decision = decide(request, consents, now)
    assert not decision.permitted
    assert decision.fields == frozenset()
    if attribute != "purpose":  # nothing is even related: no consumer or source answers
        assert decision.reason is DenyReason.NO_CONSENT


@settings(max_examples=300, deadline=None)
@given(SCENARIOS, st.data())
def test_the_order_of_consents_does_not_matter(scenario: Scenario, data: st.DataObject) -> None:
    request, now = scenario.request, scenario.now
    expected = decide(request, scenario.consents, now)
    shuffled = data.draw(st.permutations(scenario.consents))
    assert decide(request, shuffled, now) == expected
    assert decide(request, reversed(scenario.consents), now) == expected
    assert decide(request, iter(shuffled), now) == expected  # a one-shot iterable is enough


@settings(max_examples=300, deadline=None)
@given(requests(), INSTANT)
def test_no_consents_means_deny_with_no_consent(request: ReleaseRequest, now: datetime) -> None:
    assert decide(request, [], now) == ReleaseDecision(
        permitted=False, reason=DenyReason.NO_CONSENT, consent_id=None, fields=frozenset()
    )


@settings(max_examples=300, deadline=None)
@given(SCENARIOS)
def test_a_denial_releases_nothing_and_a_permit_releases_something(scenario: Scenario) -> None:
    decision = decide(scenario.request, scenario.consents, scenario.now)
    if decision.permitted:
        assert decision.reason is DenyReason.PERMITTED
        assert decision.fields
        assert decision.consent_id is not None
    else:
        assert decision.reason is not DenyReason.PERMITTED
        assert decision.fields == frozenset()
        assert (decision.consent_id is None) == (decision.reason is DenyReason.NO_CONSENT)


@settings(max_examples=300, deadline=None)
@given(SCENARIOS, st.data())
def test_adding_an_inactive_consent_never_permits_and_never_changes_a_permit(
    scenario: Scenario, data: st.DataObject
) -> None:
    request, now = scenario.request, scenario.now
    taken = {g.consent_id for g in scenario.consents}
    fresh_id = data.draw(st.sampled_from(sorted(set(CONSENT_IDS) - taken)))
    extra = inactivate(data.draw, draw_grant(data.draw, request, now, fresh_id), now)
    at = data.draw(st.integers(0, len(scenario.consents)))
    before = decide(request, scenario.consents, now)
    after = decide(request, [*scenario.consents[:at], extra, *scenario.consents[at:]], now)
    if before.permitted:
        assert after == before
    else:
        assert not after.permitted
        assert after.fields == frozenset()


@settings(max_examples=300, deadline=None)
@given(SCENARIOS)
def test_permitted_exactly_when_a_brute_force_oracle_finds_a_permitting_consent(
    scenario: Scenario,
) -> None:
    request, consents, now = scenario.request, scenario.consents, scenario.now
    decision = decide(request, consents, now)
    assert decision.permitted == any(oracle_released(request, g, now) for g in consents)
    expected = oracle_decision(request, consents, now)
    if expected is not None:
        assert decision == expected


@settings(max_examples=300, deadline=None)
@given(SCENARIOS)
def test_a_decision_names_a_consent_that_alone_gives_the_same_decision(scenario: Scenario) -> None:
    request, consents, now = scenario.request, scenario.consents, scenario.now
    decision = decide(request, consents, now)
    if decision.reason is DenyReason.NO_CONSENT:
        assert not any(related(request, g) for g in consents)
        return
    named = [g for g in consents if g.consent_id == decision.consent_id]
    assert len(named) == 1
    assert related(request, named[0])
    assert decide(request, named, now) == decision


@settings(max_examples=300, deadline=None)
@given(SCENARIOS)
def test_the_reported_reason_is_the_most_specific_of_the_consents_taken_one_by_one(
    scenario: Scenario,
) -> None:
    request, consents, now = scenario.request, scenario.consents, scenario.now
    singles = [decide(request, [g], now) for g in consents]
    order = list(DenyReason)
    expected = min((d.reason for d in singles), key=order.index, default=DenyReason.NO_CONSENT)
    assert decide(request, consents, now).reason is expected


@settings(max_examples=300, deadline=None)
@given(any_grants(), INSTANT)
def test_effective_status_is_expired_exactly_for_an_active_consent_past_its_window(
    grant: ConsentGrant, now: datetime
) -> None:
    status = effective_status(grant, now)
    if grant.status in PERMITTING and now >= grant.valid_until:
        assert status is ConsentStatus.EXPIRED
    else:
        assert status is grant.status


# --------------------------------------------------------------------------------------------
# Stories
# --------------------------------------------------------------------------------------------

LAB = "health.lab_results"
DIAGNOSES = "health.diagnoses"


def consent(
    consent_id: str = "c-1",
    *,
    person_id: str = "anna",
    consumer: str = "selfcare-app",
    source: str = "patient-record",
    purpose: str = "care",
    fields: dict[str, set[str]] | None = None,
    status: ConsentStatus = ConsentStatus.GIVEN,
    valid_from: datetime = BASE - 24 * HOUR,
    valid_until: datetime = BASE + 365 * 24 * HOUR,
    asked: frozenset[str] = frozenset(),
) -> ConsentGrant:
    chosen = {LAB: {"value", "date"}} if fields is None else fields
    refs = {FieldRef(category, name) for category, names in chosen.items() for name in names}
    return ConsentGrant(
        consent_id=consent_id,
        person_id=person_id,
        consumer=consumer,
        source=source,
        purpose=purpose,
        fields=frozenset(refs),
        status=status,
        valid_from=valid_from,
        valid_until=valid_until,
        asked_categories=asked,
    )


def ask(
    category: str = LAB,
    fields: set[str] | None = None,
    *,
    person_id: str = "anna",
    consumer: str = "selfcare-app",
    source: str = "patient-record",
    purpose: str = "care",
) -> ReleaseRequest:
    return ReleaseRequest(
        person_id=person_id,
        consumer=consumer,
        source=source,
        category=category,
        purpose=purpose,
        fields=None if fields is None else frozenset(fields),
    )


def test_a_guardians_consent_for_the_child_releases_only_the_chosen_lab_fields() -> None:
    # The guardian chose "value" and "date" of the child's lab results, not "code" or "unit".
    grant = consent("c-child", person_id="child-of-anna")
    request = ask(fields={"value", "code", "unit"}, person_id="child-of-anna")
    assert decide(request, [grant], BASE) == ReleaseDecision(
        True, DenyReason.PERMITTED, "c-child", frozenset({"value"})
    )
    # The guardian's own record is not the child's: the same request for "anna" finds nothing.
    assert decide(replace(request, person_id="anna"), [grant], BASE) == ReleaseDecision.deny(
        DenyReason.NO_CONSENT
    )


def test_withdrawn_consent_stops_the_next_release() -> None:
    grant = consent()
    assert decide(ask(), [grant], BASE).permitted
    withdrawn = replace(grant, status=ConsentStatus.WITHDRAWN)
    assert decide(ask(), [withdrawn], BASE + HOUR) == ReleaseDecision.deny(
        DenyReason.CONSENT_WITHDRAWN, "c-1"
    )


def test_fields_none_releases_every_granted_field_of_that_category_and_no_other() -> None:
    grant = consent(fields={LAB: {"value", "date", "unit"}, DIAGNOSES: {"code"}})
    decision = decide(ask(LAB), [grant], BASE)
    assert decision.permitted
    assert decision.fields == {"value", "date", "unit"}
    assert decide(ask(DIAGNOSES), [grant], BASE).fields == {"code"}


def test_a_consent_stops_counting_the_instant_its_window_closes() -> None:
    grant = consent(valid_until=BASE)
    assert decide(ask(), [grant], BASE - timedelta(microseconds=1)).permitted
    assert decide(ask(), [grant], BASE) == ReleaseDecision.deny(DenyReason.CONSENT_EXPIRED, "c-1")


def test_a_consent_starts_counting_the_instant_its_window_opens() -> None:
    grant = consent(valid_from=BASE)
    assert decide(ask(), [grant], BASE - timedelta(microseconds=1)) == ReleaseDecision.deny(
        DenyReason.CONSENT_NOT_YET_VALID, "c-1"
    )
    assert decide(ask(), [grant], BASE).permitted


def test_validity_compares_instants_not_wall_clocks() -> None:
    helsinki_winter = timezone(timedelta(hours=2))
    # 11:00 in Helsinki is 09:00 UTC, which is BASE.
    grant = consent(valid_until=datetime(2026, 11, 23, 11, 0, tzinfo=helsinki_winter))
    assert decide(ask(), [grant], BASE - HOUR).permitted
    assert not decide(ask(), [grant], BASE).permitted


def test_a_refusal_is_reported_as_refused_not_as_missing_consent() -> None:
    refusal = consent(status=ConsentStatus.REFUSED, fields={}, asked=frozenset({LAB}))
    assert decide(ask(), [refusal], BASE) == ReleaseDecision.deny(DenyReason.CONSENT_REFUSED, "c-1")
    # Only because the refusal answers for the category it was asked about: it grants nothing.
    unasked = replace(refusal, asked_categories=frozenset())
    assert decide(ask(), [unasked], BASE) == ReleaseDecision.deny(DenyReason.NO_CONSENT)


def test_a_renewed_consent_permits_like_a_given_one() -> None:
    grant = consent(status=ConsentStatus.RENEWED)
    assert decide(ask(fields={"date"}), [grant], BASE).fields == {"date"}


def test_a_research_register_cannot_use_a_consent_given_for_care() -> None:
    grant = consent(consumer="research-register", purpose="care")
    request = ask(consumer="research-register", purpose="research")
    assert decide(request, [grant], BASE) == ReleaseDecision.deny(
        DenyReason.PURPOSE_MISMATCH, "c-1"
    )


def test_another_consumer_gets_nothing_from_someone_elses_consent() -> None:
    grant = consent(consumer="selfcare-app")
    assert decide(ask(consumer="peer-support"), [grant], BASE) == ReleaseDecision.deny(
        DenyReason.NO_CONSENT
    )


def test_asking_only_for_fields_not_granted_releases_nothing() -> None:
    assert decide(ask(fields={"code"}), [consent()], BASE) == ReleaseDecision.deny(
        DenyReason.NO_FIELDS_GRANTED, "c-1"
    )


def test_the_consent_releasing_most_fields_wins_and_ties_go_to_the_smallest_id() -> None:
    narrow = consent("c-a", fields={LAB: {"value"}})
    wide = consent("c-z", fields={LAB: {"value", "date"}})
    also_wide = consent("c-m", fields={LAB: {"unit", "date"}})
    assert decide(ask(), [narrow, wide], BASE).consent_id == "c-z"
    decision = decide(ask(), [wide, narrow, also_wide], BASE)
    assert (decision.consent_id, decision.fields) == ("c-m", frozenset({"unit", "date"}))


def test_the_withdrawal_is_reported_rather_than_another_purposes_consent() -> None:
    withdrawn = consent("c-z", status=ConsentStatus.WITHDRAWN)
    for_research = consent("c-a", purpose="research")
    assert decide(ask(), [for_research, withdrawn], BASE) == ReleaseDecision.deny(
        DenyReason.CONSENT_WITHDRAWN, "c-z"
    )


# --------------------------------------------------------------------------------------------
# The DPV vocabulary
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "iri"),
    [
        (ConsentStatus.GIVEN, "https://w3id.org/dpv#ConsentGiven"),
        (ConsentStatus.RENEWED, "https://w3id.org/dpv#RenewedConsentGiven"),
        (ConsentStatus.REFUSED, "https://w3id.org/dpv#ConsentRefused"),
        (ConsentStatus.WITHDRAWN, "https://w3id.org/dpv#ConsentWithdrawn"),
        (ConsentStatus.REVOKED, "https://w3id.org/dpv#ConsentRevoked"),
        (ConsentStatus.EXPIRED, "https://w3id.org/dpv#ConsentExpired"),
        (ConsentStatus.INVALIDATED, "https://w3id.org/dpv#ConsentInvalidated"),
    ],
)
def test_each_state_names_its_dpv_concept(status: ConsentStatus, iri: str) -> None:
    assert status.dpv_iri == iri


def test_every_state_has_a_distinct_dpv_concept() -> None:
    iris = [status.dpv_iri for status in ConsentStatus]
    assert len(set(iris)) == len(iris) == 7


@pytest.mark.parametrize("status", list(ConsentStatus))
def test_only_given_and_renewed_are_not_final(status: ConsentStatus) -> None:
    assert status.is_final == (status not in PERMITTING)


def test_effective_status_keeps_an_active_consent_inside_its_window() -> None:
    grant = consent(valid_until=BASE + HOUR)
    assert effective_status(grant, BASE) is ConsentStatus.GIVEN
    assert effective_status(grant, BASE + HOUR) is ConsentStatus.EXPIRED


def test_effective_status_leaves_a_withdrawn_consent_withdrawn_after_its_window() -> None:
    grant = consent(status=ConsentStatus.WITHDRAWN, valid_until=BASE)
    assert effective_status(grant, BASE + 24 * HOUR) is ConsentStatus.WITHDRAWN
