"""Plain-language texts for the person's pages, built from the catalogue in the page's language.

Everything here is pure formatting: catalogue views and consent records in, strings out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from sqlmodel import Session

from broker.catalogue import service as catalogue
from broker.catalogue.views import AgreementView, CategoryView, PurposeView, ServiceView
from policies import ActorRole, ConsentStatus, DenyReason

# Times are shown as people in Finland read them, whatever the server's zone.
ZONE = ZoneInfo("Europe/Helsinki")
_BABEL_LOCALE = {"fi": "fi", "sv": "sv_FI", "en": "en_GB"}

Gettext = Callable[[str], str]


# N_ is gettext's conventional name for "translate later", which Babel's extractor knows.
def N_(message: str) -> str:
    """Mark a text for translation where it is defined; it is translated where it is shown."""
    return message


@dataclass(frozen=True)
class Catalogue:
    """The catalogue's services, purposes, categories and agreements, by id, read once."""

    services: dict[str, ServiceView]
    purposes: dict[str, PurposeView]
    categories: dict[str, CategoryView]
    agreements: dict[tuple[str, int], AgreementView]

    @classmethod
    def load(cls, session: Session) -> Catalogue:
        """Read the whole catalogue (a few dozen rows)."""
        return cls(
            services={s.id: s for s in catalogue.list_services(session)},
            purposes={p.code: p for p in catalogue.list_purposes(session)},
            categories={c.code: c for c in catalogue.list_categories(session)},
            agreements={(a.id, a.version): a for a in catalogue.list_agreements(session)},
        )

    def service_name(self, service_id: str | None, language: str) -> str:
        """A service's name, or its id if the catalogue no longer has it."""
        found = self.services.get(service_id or "")
        return found.name.in_language(language) if found else (service_id or "")

    def purpose_name(self, code: str | None, language: str) -> str:
        """A purpose's name, or its code."""
        found = self.purposes.get(code or "")
        return found.name.in_language(language) if found else (code or "")

    def category_name(self, code: str | None, language: str) -> str:
        """A data category's name, or its code."""
        found = self.categories.get(code or "")
        return found.name.in_language(language) if found else (code or "")

    def field_text(self, category: str, field: str, language: str) -> str:
        """What a field holds, in words; its name if the catalogue does not describe it."""
        found = self.categories.get(category)
        if found is not None:
            for spec in found.fields:
                if spec.name == field:
                    return spec.description.in_language(language)
        return field


def lower_first(text: str) -> str:
    """`Lab results` -> `lab results`, for a common noun inside a sentence."""
    return text[:1].lower() + text[1:] if text else text


def join_words(items: Sequence[str], _: Gettext) -> str:
    """`a`, `a and b`, `a, b and c` in the page's language."""
    if len(items) <= 1:
        return "".join(items)
    last = _("and")
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def local_date(at: datetime | date, language: str) -> str:
    """A date as people write it in `language`, e.g. 23. marraskuuta 2026."""
    day = at.astimezone(ZONE).date() if isinstance(at, datetime) else at
    return format_date(day, format="long", locale=_BABEL_LOCALE.get(language, "fi"))


def local_time(at: datetime, language: str, _: Gettext) -> str:
    """A date and time in Finnish time, e.g. 23. marraskuuta 2026 klo 11.05."""
    clock = format_time(at.astimezone(ZONE), format="short", locale=_BABEL_LOCALE.get(language))
    return _("%(date)s at %(time)s") % {"date": local_date(at, language), "time": clock}


# Status label and symbol; the symbol repeats the word, so nothing relies on colour.
_STATUS = {
    ConsentStatus.GIVEN: (N_("In force"), "✓", "active"),
    ConsentStatus.RENEWED: (N_("In force"), "✓", "active"),
    ConsentStatus.REFUSED: (N_("Refused"), "✗", "ended"),
    ConsentStatus.WITHDRAWN: (N_("Withdrawn"), "✗", "ended"),
    ConsentStatus.REVOKED: (N_("Ended by the service"), "✗", "ended"),
    ConsentStatus.EXPIRED: (N_("Expired"), "✗", "ended"),
    ConsentStatus.INVALIDATED: (N_("No longer valid"), "✗", "ended"),
}


def status_label(status: ConsentStatus, _: Gettext) -> tuple[str, str, str]:
    """(label, symbol, css class) of a consent status."""
    label, symbol, css = _STATUS[status]
    return _(label), symbol, css


_EVENTS = {
    "consent.given": N_("Consent given"),
    "consent.refused": N_("Refused"),
    "consent.withdrawn": N_("Consent withdrawn"),
    "consent.revoked": N_("Ended by the service"),
    "consent.expired": N_("Expired"),
}


def event_label(event_type: str, _: Gettext) -> str:
    """What a history event was, in words."""
    return _(_EVENTS.get(event_type, event_type))


def actor_text(
    actor_id: str | None, role: ActorRole, viewer_id: str, names: dict[str, str], _: Gettext
) -> str:
    """Who did it: `you`, `Matti Korhonen, guardian`, `the service provider`."""
    if actor_id is None or role in {ActorRole.OPERATOR, ActorRole.SYSTEM}:
        return "OmaData" if role is ActorRole.SYSTEM else _("the service provider")
    if actor_id == viewer_id:
        return _("you")
    name = names.get(actor_id, actor_id)
    if role is ActorRole.GUARDIAN:
        return _("%(name)s, guardian") % {"name": name}
    if role is ActorRole.DELEGATE:
        return _("%(name)s, with a mandate") % {"name": name}
    return name


_DENIALS = {
    DenyReason.NO_CONSENT: N_("There was no consent for this."),
    DenyReason.NO_FIELDS_GRANTED: N_("The consent does not cover these details."),
    DenyReason.CONSENT_NOT_YET_VALID: N_("The consent was not in force yet."),
    DenyReason.CONSENT_EXPIRED: N_("The consent had expired."),
    DenyReason.CONSENT_WITHDRAWN: N_("The consent had been withdrawn."),
    DenyReason.CONSENT_REVOKED: N_("The consent had been ended."),
    DenyReason.CONSENT_REFUSED: N_("The answer had been no."),
    DenyReason.CONSENT_INVALIDATED: N_("The consent was no longer valid."),
    DenyReason.PURPOSE_MISMATCH: N_("The consent is for another purpose."),
}


def denial_reason(reason: str | None, _: Gettext) -> str:
    """Why a release was refused, in words."""
    try:
        known = DenyReason(reason or "")
    except ValueError:
        return _(N_("No consent allowed it."))
    return _(_DENIALS.get(known, N_("No consent allowed it.")))


def unique(items: Iterable[str]) -> list[str]:
    """The items in first-seen order, each once."""
    return list(dict.fromkeys(items))
