"""Page texts in Finnish, Swedish and English from gettext catalogues (Babel reads the .po
files directly, so there is no compile step to forget)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LANGUAGES = ("fi", "sv", "en")
DEFAULT = "fi"
_LOCALE_DIR = Path(__file__).parent / "locale"


@cache
def _catalogue(language: str) -> dict[str, str]:
    path = _LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


def pick_language(*candidates: str | None) -> str:
    """The first supported language among the candidates (e.g. a choice, then Accept-Language)."""
    for candidate in candidates:
        for part in (candidate or "").replace(" ", "").split(","):
            code = part.split(";")[0].split("-")[0].lower()
            if code in LANGUAGES:
                return code
    return DEFAULT


def translator(language: str) -> Callable[[str], str]:
    """gettext for one language: the message in it, or the English source if untranslated."""
    table = _catalogue(language if language in LANGUAGES else DEFAULT)

    def gettext(message: str) -> str:
        return table.get(message, message)

    return gettext
