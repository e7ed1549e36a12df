"""Every text of the person's pages is in Finnish, Swedish and English, with the same
placeholders, so no page falls back to English or breaks a sentence's slots."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from broker.web.i18n import LANGUAGES

ROOT = Path(__file__).resolve().parents[3] / "broker" / "web"
_PLACEHOLDER = re.compile(r"%\([a-z_]+\)s|\{[a-z_]+\}")


def _messages() -> dict[str, str]:
    found: dict[str, str] = {}
    sources = [(p, "jinja2") for p in sorted((ROOT / "templates").glob("my_*.html"))]
    sources += [(p, "python") for p in sorted((ROOT / "my").glob("*.py"))]
    for path, method in sources:
        for _line, message, _comments, _context in extract_from_file(method, str(path)):
            if isinstance(message, str):
                found.setdefault(message, path.name)
    return found


MESSAGES = _messages()


def test_the_pages_have_texts_to_translate() -> None:
    assert len(MESSAGES) > 150
    assert "Withdraw consent" in MESSAGES  # a title, marked with N_ in Python
    assert "Verified: this entry is in the public log exactly as shown." in MESSAGES


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_is_translated_with_the_same_placeholders(language: str) -> None:
    path = ROOT / "locale" / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalogue = {m.id: m.string for m in read_po(handle, locale=language) if m.id}
    missing = sorted(m for m in MESSAGES if not catalogue.get(m))
    assert not missing, f"untranslated in {language}: {missing}"
    broken = sorted(
        m
        for m in MESSAGES
        if sorted(_PLACEHOLDER.findall(m)) != sorted(_PLACEHOLDER.findall(str(catalogue[m])))
    )
    assert not broken, f"placeholders differ in {language}: {broken}"
