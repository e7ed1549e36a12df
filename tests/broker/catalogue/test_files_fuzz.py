"""Hostile catalogue files: parsing gives a valid CatalogueFile or CatalogueInvalid, nothing else.

Inputs are arbitrary text and bytes, the demo catalogue with one part dropped, retyped,
oversized or nested deeply, and YAML's own traps (alias bombs, deep nesting, tags, repeated
keys). What parses must dump and parse back to the same catalogue. No database is needed.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from broker.catalogue.files import MAX_BYTES, demo_catalogue_path, parse_catalogue, read_catalogue
from broker.catalogue.schema import CatalogueFile
from broker.errors import CatalogueInvalid
from tests.hostile import any_text, mutate

DEMO: dict[str, Any] = yaml.safe_load(demo_catalogue_path().read_text(encoding="utf-8"))

ANY_TEXT = any_text(30)
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**30, -(10**30), 2**31, 2**31 - 1, 2**63, 0, -1, 1e308, 1.5]),
    ANY_TEXT,
    st.sampled_from(
        [
            "",
            " ",
            "x" * 2001,
            "a" * 64,
            "Ä-ö",
            "\u202eevil",
            "\ufeffbom",
            "e\u0301",
            "2026-02-30",
            "https://",
            "javascript:alert(1)",
            "fi",
        ]
    ),
    st.integers(1, 50).map(lambda depth: json.loads("[" * depth + "]" * depth)),
    # Built afresh each time: a later mutation may change what an earlier one put in.
    st.builds(lambda: {"fi": "a", "sv": "b", "en": "c"}),
    st.lists(st.builds(lambda: {"fi": "a"}), max_size=3),
)


def _parsed_or_refused(text: str, name: str) -> CatalogueFile | None:
    try:
        parsed = parse_catalogue(text, name=name)
    except CatalogueInvalid as exc:
        refusal = exc
    else:
        assert isinstance(parsed, CatalogueFile)
        return parsed
    assert refusal.detail
    assert all(isinstance(p, str) for p in refusal.problems)
    return None


def _round_trips(parsed: CatalogueFile) -> None:
    # A catalogue written back out (as an operator would export it) reads back the same.
    plain = parsed.model_dump(mode="json")
    assert parse_catalogue(json.dumps(plain), name="back.json") == parsed
    assert parse_catalogue(yaml.safe_dump(plain, allow_unicode=True), name="back.yaml") == parsed


@st.composite
def mutated_demo(draw: st.DrawFn) -> dict[str, Any]:
    """The demo catalogue with one to three parts dropped, replaced, repeated or buried."""
    doc: dict[str, Any] = json.loads(json.dumps(DEMO, default=str))
    return mutate(draw, doc, HOSTILE)  # type: ignore[no-any-return]


def test_the_demo_catalogue_round_trips() -> None:
    _round_trips(read_catalogue(demo_catalogue_path()))


# The pure-Python YAML parser takes ~50 ms for the demo file, hence the few examples.
@settings(max_examples=50)
@given(mutated_demo(), st.sampled_from(["json", "yaml"]))
def test_a_mutated_catalogue_parses_or_is_refused(doc: dict[str, Any], form: str) -> None:
    if form == "json":
        text = json.dumps(doc, ensure_ascii=False)
    else:
        text = yaml.safe_dump(doc, allow_unicode=True)
    parsed = _parsed_or_refused(text, f"mutated.{form}")
    event("parsed" if parsed else "refused")
    if parsed is not None:
        _round_trips(parsed)


@settings(max_examples=100)
@given(
    st.text(ANY_TEXT.map(lambda text: text[:1]).filter(bool), max_size=200)
    | st.text(alphabet="{}[]:,-&*!|>'\"#%@ \n\tabc019.", max_size=80),
    st.sampled_from(["c.yaml", "c.json"]),
)
def test_arbitrary_text_parses_or_is_refused(text: str, name: str) -> None:
    _parsed_or_refused(text, name)


@settings(max_examples=40)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_on_disk_are_read_or_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_bytes(raw)
    with contextlib.suppress(CatalogueInvalid):  # refused, as bytes that are not a catalogue
        read_catalogue(path)


def _alias_bomb(levels: int, width: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + f"\nservices: *a{levels - 1}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(_alias_bomb(9, 10), "aliases", id="billion-laughs"),
        pytest.param("a: &x [1]\nb: *x\n", "aliases", id="one-alias"),
        pytest.param("a: &x [*x]\n", "aliases", id="recursive-alias"),
        pytest.param("[" * 1_500 + "]" * 1_500, "nested too deeply", id="deep-flow"),
        pytest.param("- " * 1_500 + "x\n", "nested too deeply", id="deep-block"),
        pytest.param("services: " + "9" * 5_000, "4300 digits", id="huge-integer"),
        pytest.param(
            "persons: [{id: ab, birth_date: 2026-02-30}]", "day is out of range", id="date"
        ),
        pytest.param("services: []\nservices: []\n", "appears twice", id="repeated-key"),
        pytest.param("a: !!python/object/apply:os.system [true]", "constructor", id="python-tag"),
        pytest.param("a: !!binary '%%%'", "", id="bad-binary"),
        pytest.param("- 1\n- 2\n", "must hold a mapping", id="list-root"),
        pytest.param("just text", "must hold a mapping", id="scalar-root"),
        pytest.param("", "must hold a mapping", id="empty"),
        pytest.param("a: 1\n---\nb: 2\n", "", id="two-documents"),
        pytest.param("x" * (MAX_BYTES + 1), "longer than", id="too-long"),
    ],
)
def test_yaml_traps_are_refused(text: str, expected: str) -> None:
    with pytest.raises(CatalogueInvalid) as caught:
        parse_catalogue(text, name="trap.yaml")
    assert expected in caught.value.detail + " ".join(caught.value.problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("[" * 100_000 + "]" * 100_000, "nested too deeply", id="deep"),
        pytest.param('{"services": [], "services": []}', "appears twice", id="repeated-key"),
        pytest.param('{"services": ' + "9" * 5_000 + "}", "4300 digits", id="huge-integer"),
        pytest.param('{"services": NaN}', "", id="nan"),
        pytest.param('"\\ud800"', "must hold a mapping", id="lone-surrogate"),
    ],
)
def test_json_traps_are_refused(text: str, expected: str) -> None:
    with pytest.raises(CatalogueInvalid) as caught:
        parse_catalogue(text, name="trap.json")
    assert expected in caught.value.detail + " ".join(caught.value.problems)


def test_a_version_wider_than_the_stored_column_is_refused() -> None:
    doc = json.loads(json.dumps(DEMO, default=str))
    doc["agreements"][0]["version"] = 2**31
    with pytest.raises(CatalogueInvalid) as caught:
        parse_catalogue(json.dumps(doc), name="wide.json")
    assert any("agreements.0.version" in p for p in caught.value.problems)
