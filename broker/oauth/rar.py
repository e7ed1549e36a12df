"""RFC 9396 Rich Authorization Requests for our one type, `omadata_release`.

A consumer asks for data with an `authorization_details` array (RFC 9396 §2) instead of scopes.
Each object of our type names one published agreement, either by id:

    {"type": "omadata_release", "agreement": "selfcare-labs-medications", "version": 2,
     "fields": ["health.lab_results.value", ...]}

or by what it wants, which must match exactly one of the client's own agreements:

    {"type": "omadata_release", "source": "patient-record", "purpose": "self_care_guidance",
     "datatypes": ["health.lab_results"]}

`version` is optional (latest). `fields` is optional (every field the agreement asks for); when
given it must include every field the agreement requires, since the person may only leave out
optional ones. The RFC 9396 §2.2 common fields `actions` (only "read") and `locations` (only
resource servers the caller names; none by default) are accepted; `identifier`, `privileges`
and anything else are refused, as is any other type (RFC 9396 §5).

The flow: `parse_authorization_details` checks the request's shape, `resolve_all` (or `resolve`
per object) finds the agreement version against the catalogue, and after the person answers,
`granted_detail` writes the enriched object (RFC 9396 §7.1) for the token response and the
access token's `authorization_details` claim (§9.1). `parse_granted` reads those back, strictly.

Everything here is a pure function of its arguments; nothing reads the database or the clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from broker.catalogue.views import AgreementView
from policies import FieldRef

TYPE = "omadata_release"
ERROR = "invalid_authorization_details"

# Bounds on what an unauthenticated redirect can make us parse and compare. Our agreements ask
# for a few dozen fields at most; the limits are generous for real requests and small for abuse.
MAX_DETAILS = 10
MAX_JSON_BYTES = 16 * 1024
MAX_STRING = 200
MAX_ITEMS = 100
MAX_VERSION = 2**31 - 1  # the width of the stored version column, and no big-int parsing games

_SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"  # = catalogue.schema.Slug
_PURPOSE = r"^[a-z][a-z0-9_]{1,62}$"  # = catalogue.schema.PurposeCode
_CATEGORY = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"  # = catalogue.schema.CategoryCode
# "<category>.<field>": a category code has at least one dot, so a reference has at least two;
# the field is what follows the last one (catalogue.schema.FieldName).
_FIELD_REF = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$"
# An absolute https URI of RFC 3986 characters. Quotes and backslashes cannot occur, so a
# location may be repeated in an error_description (RFC 6749 §5.2 character set).
_LOCATION = r"^https://[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+$"
_CONSENT_ID = r"^[A-Za-z0-9_-]{1,64}$"
# RFC 3339 date-time (§5.6), with a zone: a time without one names no instant.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
# What we repeat from a request in a description; anything else is described, not echoed.
_ECHO = re.compile(r"^[A-Za-z0-9._:/-]{1,80}$")
_MAX_DESCRIPTION = 600
_MAX_LISTED = 5


Slug = Annotated[StrictStr, StringConstraints(max_length=MAX_STRING, pattern=_SLUG)]
PurposeCode = Annotated[StrictStr, StringConstraints(max_length=MAX_STRING, pattern=_PURPOSE)]
CategoryCode = Annotated[StrictStr, StringConstraints(max_length=MAX_STRING, pattern=_CATEGORY)]
FieldRefText = Annotated[StrictStr, StringConstraints(max_length=MAX_STRING, pattern=_FIELD_REF)]
Location = Annotated[StrictStr, StringConstraints(max_length=MAX_STRING, pattern=_LOCATION)]
ConsentId = Annotated[StrictStr, StringConstraints(max_length=MAX_STRING, pattern=_CONSENT_ID)]
Version = Annotated[StrictInt, Field(ge=1, le=MAX_VERSION)]
CategoryCodes = Annotated[tuple[CategoryCode, ...], Field(min_length=1, max_length=MAX_ITEMS)]
FieldRefs = Annotated[tuple[FieldRefText, ...], Field(min_length=1, max_length=MAX_ITEMS)]
Locations = Annotated[tuple[Location, ...], Field(min_length=1, max_length=MAX_ITEMS)]
Actions = Annotated[tuple[Literal["read"], ...], Field(min_length=1, max_length=MAX_ITEMS)]


class AuthorizationDetailsError(Exception):
    """The request's `authorization_details` cannot be honoured (RFC 9396 §5).

    `error` is the OAuth error code; `description` says which object and member failed and
    why, for `error_description`. It repeats only ids and codes that passed their pattern, and
    it is cut to the RFC 6749 §5.2 character set and a bounded length, since it may travel in a
    redirect URI. Not a BrokerError: it becomes an OAuth error, not an RFC 9457 problem.
    """

    error: ClassVar[str] = ERROR

    def __init__(self, description: str) -> None:
        self.description = _printable(description)
        super().__init__(self.description)


class GrantedDetailsError(Exception):
    """An access token's `authorization_details` claim is not what `granted_detail` writes.

    Tokens are signed by us, so this means a bug or a forged token; the resource server answers
    `invalid_token` (RFC 6750 §3.1).
    """

    error: ClassVar[str] = "invalid_token"

    def __init__(self, description: str) -> None:
        self.description = _printable(description)
        super().__init__(self.description)


class ReleaseDetailRequest(BaseModel):
    """One `omadata_release` object as a client sends it; see the module docstring.

    Exactly one form: `agreement` (and optionally `version`), or all of `source`, `purpose`
    and `datatypes`. Lists hold no repeats; members are never null (leave them out instead).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["omadata_release"]
    agreement: Slug | None = None
    version: Version | None = None
    source: Slug | None = None
    purpose: PurposeCode | None = None
    datatypes: CategoryCodes | None = None
    fields: FieldRefs | None = None
    actions: Actions | None = None
    locations: Locations | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        # An explicit null would otherwise mean "absent" for some members and be an error for
        # others; one rule (leave it out) keeps every request with a single reading.
        if isinstance(data, Mapping):
            for name, value in data.items():
                if value is None and name in cls.model_fields:
                    raise ValueError(f"member {name} is null; leave it out instead")
        return data

    @model_validator(mode="after")
    def _one_form(self) -> ReleaseDetailRequest:
        described = (self.source, self.purpose, self.datatypes)
        if self.agreement is not None:
            if any(v is not None for v in described):
                raise ValueError(
                    "name either agreement (with an optional version) or source, purpose and "
                    "datatypes, not both"
                )
        elif self.version is not None:
            raise ValueError("version is given without agreement")
        elif any(v is None for v in described):
            raise ValueError("name either agreement, or all of source, purpose and datatypes")
        for name in ("datatypes", "fields", "actions", "locations"):
            values: tuple[str, ...] | None = getattr(self, name)
            if values is not None and len(set(values)) != len(values):
                raise ValueError(f"member {name} lists a value twice")
        return self


@dataclass(frozen=True)
class ResolvedRelease:
    """A request resolved against the catalogue: which agreement version, which fields.

    `fields` are the requested "<category>.<field>" references, in the agreement's order (all it
    asks for when the request named none). `required` are all of the agreement's required
    fields; they are always among `fields`. The person may grant `required` plus any of
    `optional`; nothing else. `locations` are the request's, already checked.
    """

    agreement: AgreementView
    fields: tuple[str, ...]
    required: tuple[str, ...]
    locations: tuple[str, ...] = ()

    @property
    def optional(self) -> tuple[str, ...]:
        """The requested fields the person may leave out."""
        required = set(self.required)
        return tuple(f for f in self.fields if f not in required)


def _granted_datatypes(fields: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f.rsplit(".", 1)[0] for f in fields))


class GrantedRelease(BaseModel):
    """One enriched `omadata_release` object of a token (RFC 9396 §7.1, §9.1).

    `fields` are exactly the granted fields; `datatypes` are their categories, in the same
    order; `actions` is always ["read"]; `valid_until` is the consent's end (UTC, to the
    second, never later than the consent's own).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["omadata_release"]
    agreement: Slug
    version: Version
    consumer: Slug
    source: Slug
    purpose: PurposeCode
    datatypes: CategoryCodes
    fields: FieldRefs
    actions: tuple[Literal["read"]]
    consent_id: ConsentId
    valid_until: datetime
    locations: Locations | None = None

    @field_validator("valid_until", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> datetime:
        # Only the string form a token carries; pydantic alone would also take numbers and
        # zoneless times, which name no instant.
        if not isinstance(value, str) or not _RFC3339.match(value):
            raise ValueError("valid_until is not an RFC 3339 date-time with a time zone")
        try:
            return datetime.fromisoformat(value).astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00, before the first UTC instant
            raise ValueError("valid_until is outside the years 1 to 9999 in UTC") from None

    @model_validator(mode="after")
    def _consistent(self) -> GrantedRelease:
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("fields lists a field twice")
        if self.datatypes != _granted_datatypes(self.fields):
            raise ValueError("datatypes are not the categories of the granted fields")
        return self

    @property
    def field_refs(self) -> frozenset[FieldRef]:
        """The granted fields as the release decision names them."""
        return frozenset(FieldRef(*f.rsplit(".", 1)) for f in self.fields)

    def to_claim(self) -> dict[str, Any]:
        """The JSON object for the token response and the access token claim."""
        claim: dict[str, Any] = {
            "type": self.type,
            "agreement": self.agreement,
            "version": self.version,
            "consumer": self.consumer,
            "source": self.source,
            "purpose": self.purpose,
            "datatypes": list(self.datatypes),
            "fields": list(self.fields),
            "actions": list(self.actions),
            "consent_id": self.consent_id,
            "valid_until": _rfc3339(self.valid_until),
        }
        if self.locations is not None:
            claim["locations"] = list(self.locations)
        return claim


# --- parsing the request ---------------------------------------------------------------------


def parse_authorization_details(raw: str | list[Any] | None) -> list[ReleaseDetailRequest]:
    """The request's `authorization_details` (a JSON text, or JSON already parsed) as our type.

    Absent or empty means none (an empty list; the caller decides if details are required).
    Raises AuthorizationDetailsError for anything else that is not 1 to 10 valid, distinct
    `omadata_release` objects in at most 16 KiB of JSON.
    """
    # RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, list):
        if len(raw) > MAX_DETAILS:
            raise _too_many(len(raw))
        # Already-parsed JSON goes through the same text path, so both inputs meet one size
        # limit and one set of rules (no NaN, no non-string keys) with no second code path.
        try:
            text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            raise AuthorizationDetailsError("authorization_details is not JSON.") from None
    else:
        raise AuthorizationDetailsError("authorization_details must be a JSON array of objects.")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_JSON_BYTES:
        raise AuthorizationDetailsError(
            f"authorization_details is longer than {MAX_JSON_BYTES} bytes."
        )
    items = _loads(text)
    if not isinstance(items, list):
        raise AuthorizationDetailsError("authorization_details must be a JSON array of objects.")
    if len(items) > MAX_DETAILS:
        raise _too_many(len(items))
    details = [_detail(i, item) for i, item in enumerate(items)]
    _refuse_repeats(details)
    return details


def _loads(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # JSONDecodeError, and int digits over the limit
        raise AuthorizationDetailsError("authorization_details is not valid JSON.") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one member would let two readers see two different requests.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_many(count: int) -> AuthorizationDetailsError:
    return AuthorizationDetailsError(
        f"authorization_details has {count} objects; at most {MAX_DETAILS} are accepted."
    )


def _detail(index: int, item: Any) -> ReleaseDetailRequest:
    where = f"authorization_details[{index}]"
    if not isinstance(item, dict):
        raise AuthorizationDetailsError(f"{where} is not a JSON object.")
    if "type" not in item:
        raise AuthorizationDetailsError(f"{where} has no type.")
    kind = item["type"]
    if not isinstance(kind, str):
        raise AuthorizationDetailsError(f"{where}.type is not a string.")
    if kind != TYPE:
        raise AuthorizationDetailsError(
            f"{where} has type {_echo(kind)}, which this server does not support; "
            f"the supported type is {TYPE}."
        )
    try:
        return ReleaseDetailRequest.model_validate(item)
    except ValidationError as exc:
        raise AuthorizationDetailsError(_explain(where, exc)) from None


def _refuse_repeats(details: Sequence[ReleaseDetailRequest]) -> None:
    # One consent answers one agreement, and a second answer replaces the first, so naming an
    # agreement twice could only confuse; identical objects are refused for the same reason.
    seen: dict[ReleaseDetailRequest | str, int] = {}
    for i, detail in enumerate(details):
        keys: list[ReleaseDetailRequest | str] = [detail]
        if detail.agreement is not None:
            keys.append(detail.agreement)
        for key in keys:
            if key in seen:
                what = "repeats" if key is detail else f"names agreement {key} as does"
                raise AuthorizationDetailsError(
                    f"authorization_details[{i}] {what} authorization_details[{seen[key]}]; "
                    "ask for each agreement once."
                )
            seen[key] = i


_PATTERN_NAMES = {
    "agreement": "an agreement id (lower-case letters, digits and hyphens)",
    "source": "a service id (lower-case letters, digits and hyphens)",
    "purpose": "a purpose code (lower-case letters, digits and underscores)",
    "datatypes": "a data category code such as health.lab_results",
    "fields": "a field reference such as health.lab_results.value",
    "locations": "an https URI",
    "consent_id": "a consent id",
}


def _explain(where: str, exc: ValidationError) -> str:
    # The first problem is enough to fix the request; pydantic's own wording is not used since
    # it may quote the value or the pattern (quotes and backslashes are not allowed there).
    error = exc.errors(include_url=False, include_input=False)[0]
    loc = [p for p in error["loc"] if p not in _UNION_TAGS]
    return f"{_path(where, loc)} {_reason(error, loc)}."


# Union members and constrained types add these to an error's location; they name no member.
_UNION_TAGS = frozenset({"tuple[...]", "function-after[_rfc3339(), datetime]"})


def _path(where: str, loc: Sequence[int | str]) -> str:
    path = where
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _ECHO.match(part) and part.isidentifier():
            path += f".{part}"
        else:
            path += ".(a member)"
    return path


def _reason(error: ErrorDetails, loc: Sequence[int | str]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    member = next((p for p in loc if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        return f"is not a member of the {TYPE} type"
    if kind == "missing":
        return "is missing"
    if kind == "value_error":
        return f"is not valid: {ctx.get('error', 'the object does not fit the type')}"
    if kind == "string_pattern_mismatch":
        return f"is not {_PATTERN_NAMES.get(str(member), 'in the expected form')}"
    if kind == "string_too_long":
        return f"is longer than {ctx.get('max_length', MAX_STRING)} characters"
    if kind == "string_too_short":
        return "is empty"
    if kind == "too_long":
        return f"has more than {ctx.get('max_length', MAX_ITEMS)} items"
    if kind == "too_short":
        return "is empty; leave the member out instead"
    if kind in {"greater_than_equal", "less_than_equal"}:
        return f"is not between 1 and {MAX_VERSION}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', 'one of the allowed values')}"
    if kind.endswith("_type"):
        expected = {
            "string_type": "a string",
            "int_type": "an integer",
            "tuple_type": "an array",
            "list_type": "an array",
            "model_type": "an object",
            "dict_type": "an object",
        }.get(kind, "of another JSON type")
        return f"must be {expected}"
    return "is not valid"


def _echo(value: str) -> str:
    return value if _ECHO.match(value) else "(not shown)"


def _printable(text: str) -> str:
    # RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E.
    cleaned = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)
    if len(cleaned) > _MAX_DESCRIPTION:
        cleaned = cleaned[: _MAX_DESCRIPTION - 3] + "..."
    return cleaned


def _listed(values: Sequence[str]) -> str:
    shown = ", ".join(values[:_MAX_LISTED])
    more = len(values) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


# --- resolving against the catalogue ---------------------------------------------------------


def resolve(
    detail: ReleaseDetailRequest,
    *,
    client_service: str,
    agreements: Sequence[AgreementView],
    resource_servers: Collection[str] = (),
) -> ResolvedRelease:
    """The agreement version and fields one request object asks for, for `client_service`.

    `agreements` are published versions (any order). Raises AuthorizationDetailsError when none
    or several fit, when it is another consumer's, or when the fields do not fit it.
    """
    unknown = [loc for loc in detail.locations or () if loc not in resource_servers]
    if unknown:
        # We serve the data ourselves; a location we do not know would be a promise we cannot
        # keep, so it is refused rather than ignored.
        raise AuthorizationDetailsError(
            f"locations names {_listed(unknown)}, which is not a resource server of this broker."
        )
    agreement = (
        _by_id(detail.agreement, detail.version, client_service, agreements)
        if detail.agreement is not None
        else _by_description(detail, client_service, agreements)
    )
    offered = [f"{i.category}.{name}" for i in agreement.items for name in i.required + i.optional]
    required = tuple(f"{i.category}.{name}" for i in agreement.items for name in i.required)
    label = f"Agreement {agreement.id} version {agreement.version}"
    if detail.fields is None:
        fields = tuple(offered)
    else:
        asked, known = set(detail.fields), set(offered)
        not_offered = [f for f in detail.fields if f not in known]
        if not_offered:
            raise AuthorizationDetailsError(f"{label} does not ask for {_listed(not_offered)}.")
        left_out = [f for f in required if f not in asked]
        if left_out:
            raise AuthorizationDetailsError(
                f"{label} requires {_listed(left_out)}; fields must include every required field."
            )
        fields = tuple(f for f in offered if f in asked)
    return ResolvedRelease(
        agreement=agreement,
        fields=fields,
        required=required,
        locations=tuple(detail.locations or ()),
    )


def resolve_all(
    details: Sequence[ReleaseDetailRequest],
    *,
    client_service: str,
    agreements: Sequence[AgreementView],
    resource_servers: Collection[str] = (),
) -> list[ResolvedRelease]:
    """`resolve` for each object, refusing two that come to the same agreement.

    Descriptions are prefixed with the object's index, as the client sent it.
    """
    resolved: list[ResolvedRelease] = []
    first: dict[str, int] = {}
    for i, detail in enumerate(details):
        try:
            release = resolve(
                detail,
                client_service=client_service,
                agreements=agreements,
                resource_servers=resource_servers,
            )
        except AuthorizationDetailsError as exc:
            raise AuthorizationDetailsError(
                f"authorization_details[{i}]: {exc.description}"
            ) from None
        agreement_id = release.agreement.id
        if agreement_id in first:
            raise AuthorizationDetailsError(
                f"authorization_details[{i}] and authorization_details[{first[agreement_id]}] "
                f"both come to agreement {agreement_id}; ask for each agreement once."
            )
        first[agreement_id] = i
        resolved.append(release)
    return resolved


def _by_id(
    agreement_id: str,
    version: int | None,
    client_service: str,
    agreements: Sequence[AgreementView],
) -> AgreementView:
    versions = [a for a in agreements if a.id == agreement_id]
    if not versions:
        raise AuthorizationDetailsError(f"There is no published agreement {agreement_id}.")
    latest = max(versions, key=lambda a: a.version)
    if version is None:
        chosen = latest
    else:
        exact = [a for a in versions if a.version == version]
        if not exact:
            raise AuthorizationDetailsError(
                f"Agreement {agreement_id} has no version {version}; "
                f"the latest is {latest.version}."
            )
        chosen = exact[0]
    if chosen.consumer != client_service:
        # A client asks only for what its own service asks for: otherwise the person would be
        # shown another organisation's request and the data would go to this client.
        raise AuthorizationDetailsError(
            f"Agreement {agreement_id} is another consumer's; a client may ask only for the "
            "agreements of its own service."
        )
    return chosen


def _by_description(
    detail: ReleaseDetailRequest, client_service: str, agreements: Sequence[AgreementView]
) -> AgreementView:
    wanted = set(detail.datatypes or ())
    matches = [
        a
        for a in agreements
        if a.consumer == client_service
        and a.source == detail.source
        and a.purpose == detail.purpose
        and wanted <= {item.category for item in a.items}
    ]
    ids = sorted({a.id for a in matches})
    asked = f"{detail.source} for {detail.purpose} with {_listed(sorted(wanted))}"
    if not ids:
        raise AuthorizationDetailsError(f"No agreement of this client asks {asked}.")
    if len(ids) > 1:
        raise AuthorizationDetailsError(
            f"{len(ids)} agreements ask {asked} ({_listed(ids)}); name one with agreement."
        )
    # Versions of one agreement that all match: the newest is the one in force.
    return max(matches, key=lambda a: a.version)


# --- the granted details ---------------------------------------------------------------------


def granted_detail(
    resolved: ResolvedRelease,
    *,
    consent_id: str,
    granted_fields: Sequence[str],
    valid_until: datetime,
) -> dict[str, Any]:
    """The enriched object for the token response and access token (RFC 9396 §7.1, §9.1).

    `granted_fields` are the consent's: all of `resolved.required`, the rest from its optional
    fields. ValueError if they are not, or if `valid_until` has no time zone (a bug, not a
    client error).
    """
    granted = set(granted_fields)
    if len(granted) != len(granted_fields):
        raise ValueError("granted_fields lists a field twice")
    beyond = granted - set(resolved.fields)
    if beyond:
        raise ValueError(f"granted fields were not requested: {sorted(beyond)}")
    missing = set(resolved.required) - granted
    if missing:
        raise ValueError(f"required fields are not granted: {sorted(missing)}")
    if valid_until.tzinfo is None or valid_until.utcoffset() is None:
        raise ValueError("valid_until has no time zone")
    agreement = resolved.agreement
    fields = [f for f in resolved.fields if f in granted]  # the agreement's order, always
    claim: dict[str, Any] = {
        "type": TYPE,
        "agreement": agreement.id,
        "version": agreement.version,
        "consumer": agreement.consumer,
        "source": agreement.source,
        "purpose": agreement.purpose,
        "datatypes": list(_granted_datatypes(fields)),
        "fields": fields,
        "actions": ["read"],
        "consent_id": consent_id,
        "valid_until": _rfc3339(valid_until),
    }
    if resolved.locations:
        claim["locations"] = list(resolved.locations)
    try:
        # What we write is checked by the reader's own rules, so every token parses back.
        return GrantedRelease.model_validate(claim).to_claim()
    except ValidationError as exc:
        raise ValueError(_explain("granted detail", exc)) from None


def parse_granted(claim: Any) -> list[GrantedRelease]:
    """The `authorization_details` claim of one of our access tokens, read back.

    None (no claim) is no details. Raises GrantedDetailsError unless it is a list of at most
    10 objects exactly as `granted_detail` writes them.
    """
    if claim is None:
        return []
    if not isinstance(claim, list):
        raise GrantedDetailsError("authorization_details is not an array.")
    if len(claim) > MAX_DETAILS:
        raise GrantedDetailsError(f"authorization_details has more than {MAX_DETAILS} objects.")
    granted: list[GrantedRelease] = []
    for i, item in enumerate(claim):
        where = f"authorization_details[{i}]"
        if not isinstance(item, dict) or item.get("type") != TYPE:
            raise GrantedDetailsError(f"{where} is not an {TYPE} object.")
        try:
            granted.append(GrantedRelease.model_validate(item))
        except ValidationError as exc:
            raise GrantedDetailsError(_explain(where, exc)) from None
    return granted


def _rfc3339(moment: datetime) -> str:
    # Truncated to the second: a token may say a consent ends slightly early, never late.
    # Not strftime: its %Y drops the leading zeros of a year before 1000 on glibc ("1-01-01").
    return moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
