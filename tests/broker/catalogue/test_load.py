"""Loading catalogue files: all or nothing, idempotent, and published agreements never change."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func
from sqlmodel import SQLModel, select

from broker.catalogue.files import demo_catalogue_path, parse_catalogue
from broker.catalogue.schema import CatalogueFile
from broker.catalogue.service import get_agreement, load_catalogue
from broker.errors import CatalogueInvalid
from broker.ledger.sequencer import unit_of_work
from broker.storage import transaction
from tests.conftest import NOW


def _demo_data() -> dict[str, Any]:
    data = yaml.safe_load(demo_catalogue_path().read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _row_counts(engine: Engine) -> dict[str, int]:
    with transaction(engine, readonly=True) as session:
        return {
            t.name: session.exec(select(func.count()).select_from(t)).one()
            for t in SQLModel.metadata.sorted_tables
        }


def _load(engine: Engine, data: dict[str, Any]) -> None:
    with unit_of_work(engine) as (session, log):
        load_catalogue(session, log, CatalogueFile.model_validate(data), NOW)


def test_the_demo_catalogue_loads_every_kind_of_entity(engine: Engine) -> None:
    _load(engine, _demo_data())
    counts = _row_counts(engine)
    assert counts["service"] == 5
    assert counts["data_category"] == 6
    assert counts["purpose"] == 3
    assert counts["data_agreement"] == 4
    assert counts["person"] == 5
    assert counts["delegation"] == 2


def test_loading_the_same_file_twice_changes_nothing(engine: Engine) -> None:
    _load(engine, _demo_data())
    before = _row_counts(engine)
    with unit_of_work(engine) as (session, log):
        report = load_catalogue(session, log, CatalogueFile.model_validate(_demo_data()), NOW)
    assert not report.changed_anything
    assert report.unchanged["agreement"] == 4
    assert _row_counts(engine) == before


def test_every_text_is_given_in_finnish_swedish_and_english() -> None:
    with pytest.raises(CatalogueInvalid) as caught:
        data = _demo_data()
        del data["services"][0]["name"]["sv"]
        parse_catalogue(yaml.safe_dump(data))
    assert any("services.0.name.sv" in p for p in caught.value.problems)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services: [", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("services:\n  - id: Bad Id\n", "services.0.id"),
        ("unknown_section: []\n", "unknown_section"),
    ],
)
def test_malformed_files_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(CatalogueInvalid) as caught:
        parse_catalogue(text)
    assert message in caught.value.detail + " ".join(caught.value.problems)


def _broken(kind: str) -> dict[str, Any]:
    data = _demo_data()
    if kind == "agreement names an unknown field":
        data["agreements"][0]["items"][0]["required"].append("no_such_field")
    elif kind == "agreement names a purpose that does not exist":
        data["agreements"][-1]["purpose"] = "marketing"
    elif kind == "category of an unknown source":
        data["categories"][-1]["source"] = "nobody"
    elif kind == "consumer used as a source":
        data["agreements"][0]["source"] = data["agreements"][0]["consumer"]
    elif kind == "delegation for an unknown person":
        data["delegations"][0]["principal"] = "nobody"
    else:
        raise AssertionError(kind)
    return data


@pytest.mark.parametrize(
    "kind",
    [
        "agreement names an unknown field",
        "agreement names a purpose that does not exist",
        "category of an unknown source",
        "consumer used as a source",
        "delegation for an unknown person",
    ],
)
def test_an_inconsistent_file_loads_nothing_at_all(engine: Engine, kind: str) -> None:
    before = _row_counts(engine)
    with pytest.raises(CatalogueInvalid) as caught:
        _load(engine, _broken(kind))
    assert caught.value.problems, "the error must say what is wrong"
    assert _row_counts(engine) == before


def test_a_published_agreement_version_never_changes(engine: Engine) -> None:
    _load(engine, _demo_data())
    before = _row_counts(engine)
    changed = _demo_data()
    changed["agreements"][0]["items"][0]["optional"].append("test_code")
    changed["agreements"][0]["items"][0]["optional"] = sorted(
        set(changed["agreements"][0]["items"][0]["optional"])
    )
    changed["agreements"][0]["max_consent_days"] += 1
    with pytest.raises(CatalogueInvalid) as caught:
        _load(engine, changed)
    assert any("never change" in p for p in caught.value.problems)
    assert _row_counts(engine) == before


def test_a_new_version_is_published_beside_the_old(engine: Engine) -> None:
    data = _demo_data()
    _load(engine, data)
    v2 = copy.deepcopy(data["agreements"][0])
    v2["version"] = 2
    v2["max_consent_days"] = 30
    data["agreements"].append(v2)
    _load(engine, data)
    with transaction(engine, readonly=True) as session:
        assert get_agreement(session, v2["id"], None).version == 2
        assert get_agreement(session, v2["id"], 1).max_consent_days != 30


def test_versions_cannot_skip(engine: Engine) -> None:
    data = _demo_data()
    _load(engine, data)
    v3 = copy.deepcopy(data["agreements"][0])
    v3["version"] = 3
    data["agreements"].append(v3)
    with pytest.raises(CatalogueInvalid) as caught:
        _load(engine, data)
    assert any("next version is 2" in p for p in caught.value.problems)


def test_fields_cannot_be_removed_from_a_category(engine: Engine) -> None:
    data = _demo_data()
    _load(engine, data)
    before = _row_counts(engine)
    data["categories"][0]["fields"].pop()
    with pytest.raises(CatalogueInvalid):
        _load(engine, data)
    assert _row_counts(engine) == before


def test_texts_may_be_corrected_and_the_load_says_so(engine: Engine) -> None:
    data = _demo_data()
    _load(engine, data)
    data["services"][0]["name"]["en"] = "A better name"
    with unit_of_work(engine) as (session, log):
        report = load_catalogue(session, log, CatalogueFile.model_validate(data), NOW)
    assert report.updated == {"service": 1}
