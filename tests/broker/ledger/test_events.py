"""Leaves are canonical JSON without personal data; the person's tag finds their entries."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from broker.consents import service as consents
from broker.errors import InvalidInput
from broker.ledger import store
from broker.ledger.events import (
    EventType,
    LogRecord,
    canonical_json,
    decode_leaf,
    encode_leaf,
    leaf_is_about,
    person_tag,
)
from broker.ledger.sequencer import unit_of_work
from broker.storage import transaction
from tests.conftest import NOW

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), _text, st.lists(_text, max_size=4)
)


@settings(max_examples=300)
@given(
    attributes=st.dictionaries(
        st.from_regex(r"[a-z_]{1,12}", fullmatch=True), _values, max_size=8
    ).filter(lambda d: not {"v", "type", "at", "subject"} & set(d)),
    nonce=st.binary(min_size=16, max_size=16),
)
def test_leaves_round_trip_and_are_canonical(attributes: dict[str, object], nonce: bytes) -> None:
    record = LogRecord(type=EventType.DATA_RELEASED, at=NOW, attributes=attributes)  # type: ignore[arg-type]
    leaf = encode_leaf(record, (nonce, person_tag(b"k" * 32, nonce)))
    decoded = decode_leaf(leaf)
    assert canonical_json(decoded) == leaf
    assert decoded["type"] == "data.released"
    for key, value in attributes.items():
        assert decoded[key] == value
    assert leaf_is_about(decoded, b"k" * 32)
    assert not leaf_is_about(decoded, b"x" * 32)


def test_a_re_serialised_leaf_is_not_accepted_as_the_leaf() -> None:
    leaf = encode_leaf(LogRecord(type=EventType.KEY_ROTATED, at=NOW, attributes={"a": 1}), None)
    pretty = json.dumps(json.loads(leaf), indent=1).encode()
    with pytest.raises(ValueError, match="canonical"):
        decode_leaf(pretty)


@pytest.mark.parametrize("attributes", [{"type": "forged"}, {"subject": "x"}, {"ratio": 0.5}])
def test_records_refuse_reserved_names_and_floats(attributes: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        LogRecord(type=EventType.DATA_RELEASED, at=NOW, attributes=attributes)  # type: ignore[arg-type]


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(InvalidInput):
        LogRecord(type=EventType.DATA_RELEASED, at=datetime(2026, 1, 1), attributes={})


def test_leaves_hold_no_personal_data_but_the_person_can_find_theirs(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        mine = consents.give_consent(
            session,
            log,
            person_id="aino-virtanen",
            agreement_id="selfcare-immunisations",
            actor_id="aino-virtanen",
            now=NOW,
        )
        consents.give_consent(
            session,
            log,
            person_id="eelis-korhonen",
            agreement_id="selfcare-immunisations",
            actor_id="matti-korhonen",
            now=NOW,
        )
    with transaction(demo, readonly=True) as session:
        leaves = [leaf for _, leaf in store.iter_leaves(session)]
        secret = store.find_secret(session, "aino-virtanen")
    assert secret is not None
    for leaf in leaves:
        text = leaf.decode()
        for personal in ("aino", "Aino", "Virtanen", "eelis", "matti", "Korhonen", "demo-"):
            assert personal not in text
    about_aino = [decode_leaf(leaf) for leaf in leaves if leaf_is_about(decode_leaf(leaf), secret)]
    assert [entry["consent"] for entry in about_aino] == [mine.id]
    assert about_aino[0]["actor_role"] == "self"


def test_each_entry_has_a_fresh_nonce_so_tags_do_not_link_entries(demo: Engine) -> None:
    with unit_of_work(demo) as (session, log):
        given = consents.give_consent(
            session,
            log,
            person_id="aino-virtanen",
            agreement_id="selfcare-immunisations",
            actor_id="aino-virtanen",
            now=NOW,
        )
        consents.withdraw_consent(
            session, log, consent_id=given.id, actor_id="aino-virtanen", now=datetime.now(UTC)
        )
    with transaction(demo, readonly=True) as session:
        subjects = [
            decode_leaf(leaf)["subject"]
            for _, leaf in store.iter_leaves(session)
            if "subject" in decode_leaf(leaf)
        ]
    assert len(subjects) == 2
    assert subjects[0]["nonce"] != subjects[1]["nonce"]
    assert subjects[0]["tag"] != subjects[1]["tag"]
