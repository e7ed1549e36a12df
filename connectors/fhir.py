"""FHIR R4 connector: a patient's resources by search, validated, mapped to a category's fields.

Each category is one search (`Observation?patient=...&category=laboratory` for lab results)
whose searchset pages are followed up to `Limits.max_pages`. Every page is validated with
`fhir.resources` (its R4B models, which read R4 JSON for these resources unchanged); every
resource must be of the searched type and name the requested patient, or the whole fetch fails.
Values are read from the validated JSON as sent (dates as text, decimals as exact text).

An element the source withheld carries the data-absent-reason extension instead of a value and
maps to None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from connectors._http import JsonSource, Limits
from connectors._values import plain
from connectors.base import FetchRequest, Record, SourcePayloadInvalid, UnsupportedCategory
from connectors.jsonpath import MISSING, PathTypeError, Step, resolve

FHIR_JSON = "application/fhir+json"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
ATC = "http://www.whocc.no/atc"
ICD10 = ("http://hl7.org/fhir/sid/icd-10", "urn:oid:1.2.246.537.6.1")  # WHO, and THL's Finnish
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

Resource = Mapping[str, Any]
Extract = Callable[[Resource], Any]


def _at(resource: Any, *steps: Step) -> Any:
    try:
        value = resolve(resource, steps)
    except PathTypeError:
        raise SourcePayloadInvalid("a FHIR resource has an element of the wrong shape") from None
    return None if value is MISSING else value


def _codings(concept: Any) -> list[Any]:
    codings = _at(concept, "coding")
    return [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []


def _code(concept: Any, systems: Sequence[str] = ()) -> Any:
    """The code of the first coding in one of `systems` (any system when none are named)."""
    for coding in _codings(concept):
        if not systems or coding.get("system") in systems:
            return coding.get("code")
    return None


def _name(concept: Any) -> Any:
    """A CodeableConcept's text, else its first coding's display."""
    text = _at(concept, "text")
    if text is not None:
        return text
    return next((c["display"] for c in _codings(concept) if "display" in c), None)


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _lab_value(obs: Resource) -> Any:
    number = _at(obs, "valueQuantity", "value")
    if number is not None:
        return str(number)  # Decimal or int: kept as its exact text, never a float
    return _first(
        _at(obs, "valueString"),
        None if _at(obs, "valueInteger") is None else str(_at(obs, "valueInteger")),
        _name(_at(obs, "valueCodeableConcept")),
    )


def _reference_range(obs: Resource) -> Any:
    text = _at(obs, "referenceRange", 0, "text")
    if text is not None:
        return text
    low = _at(obs, "referenceRange", 0, "low", "value")
    high = _at(obs, "referenceRange", 0, "high", "value")
    if low is None and high is None:
        return None
    return f"{'' if low is None else low}\N{EN DASH}{'' if high is None else high}"


def _is_laboratory(obs: Resource) -> bool:
    categories = _at(obs, "category")
    return isinstance(categories, list) and any(
        coding.get("code") == "laboratory"
        and coding.get("system", OBSERVATION_CATEGORY) == OBSERVATION_CATEGORY
        for concept in categories
        for coding in _codings(concept)
    )


def _dose_number(imm: Resource) -> Any:
    return _first(
        _at(imm, "protocolApplied", 0, "doseNumberPositiveInt"),
        _at(imm, "protocolApplied", 0, "doseNumberString"),
    )


@dataclass(frozen=True)
class FhirCategory:
    """How one data category is searched for and read from FHIR resources."""

    resource_type: str
    patient_element: str
    """The element that references the patient ("subject" or "patient")."""
    fields: Mapping[str, Extract]
    search: Mapping[str, str] = field(default_factory=dict)
    """Search parameters beyond `patient` and `_count`."""
    keep: Callable[[Resource], bool] = lambda _: True
    """The search's own criteria, checked again here: a server may ignore a parameter."""


CATEGORIES: Mapping[str, FhirCategory] = {
    "health.lab_results": FhirCategory(
        resource_type="Observation",
        patient_element="subject",
        search={"category": "laboratory"},
        keep=_is_laboratory,
        fields={
            "test_code": lambda r: _code(_at(r, "code")),
            "test_name": lambda r: _name(_at(r, "code")),
            "value": _lab_value,
            "unit": lambda r: _first(
                _at(r, "valueQuantity", "unit"), _at(r, "valueQuantity", "code")
            ),
            "reference_range": _reference_range,
            "taken_at": lambda r: _first(
                _at(r, "effectiveDateTime"),
                _at(r, "effectivePeriod", "start"),
                _at(r, "effectiveInstant"),
            ),
        },
    ),
    "health.medications": FhirCategory(
        resource_type="MedicationStatement",
        patient_element="subject",
        fields={
            "medication_name": lambda r: _first(
                _name(_at(r, "medicationCodeableConcept")),
                _at(r, "medicationReference", "display"),
            ),
            "atc_code": lambda r: _code(_at(r, "medicationCodeableConcept"), (ATC,)),
            "dosage": lambda r: _at(r, "dosage", 0, "text"),
            "started_on": lambda r: _first(
                _at(r, "effectivePeriod", "start"), _at(r, "effectiveDateTime")
            ),
            "prescriber": lambda r: _at(r, "informationSource", "display"),
        },
    ),
    "health.diagnoses": FhirCategory(
        resource_type="Condition",
        patient_element="subject",
        fields={
            "icd10_code": lambda r: _code(_at(r, "code"), ICD10),
            "diagnosis_name": lambda r: _name(_at(r, "code")),
            "diagnosed_on": lambda r: _first(_at(r, "onsetDateTime"), _at(r, "recordedDate")),
            "status": lambda r: _code(_at(r, "clinicalStatus")),
        },
    ),
    "health.immunisations": FhirCategory(
        resource_type="Immunization",
        patient_element="patient",
        fields={
            "vaccine_name": lambda r: _name(_at(r, "vaccineCode")),
            "vaccine_code": lambda r: _first(
                _code(_at(r, "vaccineCode"), (ATC,)), _code(_at(r, "vaccineCode"))
            ),
            # Only a date is a date: occurrenceString is free text (or a masked placeholder).
            "given_on": lambda r: _at(r, "occurrenceDateTime"),
            "dose_number": _dose_number,
        },
    ),
}


def category_spec(category: str) -> FhirCategory:
    """The FHIR reading of `category`; UnsupportedCategory if there is none."""
    try:
        return CATEGORIES[category]
    except KeyError:
        raise UnsupportedCategory("the FHIR connector has no mapping for this category") from None


def map_resource(category: str, resource: Resource, fields: Iterable[str]) -> Record:
    """The requested fields of `category` that the mapping knows, read from one resource."""
    extract = category_spec(category).fields
    return {name: plain(extract[name](resource)) for name in fields if name in extract}


def _names_patient(reference: Any, subject: str) -> bool:
    # A relative reference, or an absolute one on the source's own server.
    return isinstance(reference, str) and (
        reference == f"Patient/{subject}" or reference.endswith(f"/Patient/{subject}")
    )


def read_searchset(category: str, document: Any, subject: str) -> tuple[list[Resource], str | None]:
    """The matching resources of one searchset page and its `next` link.

    SourcePayloadInvalid unless the page is a valid FHIR searchset whose matches are all of the
    category's resource type and reference `subject`.
    """
    spec = category_spec(category)
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        raise SourcePayloadInvalid("the source's answer is not a FHIR Bundle")
    try:
        Bundle.model_validate(document)
    # pydantic's ValidationError is a ValueError; fhir.resources' own validators also fail with
    # KeyError (e.g. on an unknown or empty resourceType inside an entry) and TypeError.
    except (ValueError, TypeError, LookupError, AttributeError, RecursionError):
        raise SourcePayloadInvalid("the source's answer is not valid FHIR") from None
    if document.get("type") != "searchset":
        raise SourcePayloadInvalid("the source's answer is not a FHIR searchset")
    resources: list[Resource] = []
    for entry in document.get("entry") or []:
        # Included resources and OperationOutcome warnings are not matches.
        if _at(entry, "search", "mode") not in {None, "match"}:
            continue
        resource = _at(entry, "resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != spec.resource_type:
            raise SourcePayloadInvalid("the searchset holds a resource of another type")
        if not _names_patient(_at(resource, spec.patient_element, "reference"), subject):
            raise SourcePayloadInvalid("the searchset holds a resource of another patient")
        if spec.keep(resource):
            resources.append(resource)
    next_url = next(
        (link.get("url") for link in document.get("link") or [] if link.get("relation") == "next"),
        None,
    )
    return resources, next_url


class FhirConnector:
    """Fetches a category's records from a FHIR R4 server's search API."""

    def __init__(
        self,
        source_id: str,
        *,
        base_url: str,
        audience: str,
        categories: Iterable[str] | None = None,
        page_size: int = 50,
        limits: Limits | None = None,
    ) -> None:
        self.source_id = source_id
        self.audience = audience
        self.base_url = base_url.rstrip("/")
        self.categories = frozenset(CATEGORIES if categories is None else categories)
        for category in self.categories:
            category_spec(category)
        self.page_size = page_size
        self.limits = limits or Limits()
        self._http = JsonSource(self.limits, accept=FHIR_JSON)

    def fetch(self, request: FetchRequest) -> list[Record]:
        """Every page of the search, mapped to the requested fields; all or a ConnectorError."""
        if request.category not in self.categories:
            raise UnsupportedCategory("this source does not serve the category")
        spec = category_spec(request.category)
        deadline = self._http.deadline()
        url = f"{self.base_url}/{spec.resource_type}"
        params: dict[str, str] | None = {
            "patient": request.subject,
            **spec.search,
            "_count": str(self.page_size),
        }
        records: list[Record] = []
        for _ in range(self.limits.max_pages):
            document = self._http.get_json(
                url, token=request.token, deadline=deadline, params=params
            )
            resources, next_url = read_searchset(request.category, document, request.subject)
            records.extend(map_resource(request.category, r, request.fields) for r in resources)
            if next_url is None:
                return records
            # The token goes only to this source: a next link elsewhere is not followed.
            if not (isinstance(next_url, str) and next_url.startswith(self.base_url + "/")):
                raise SourcePayloadInvalid("the searchset's next link leaves the source")
            url, params = next_url, None
        raise SourcePayloadInvalid(f"the search has more than {self.limits.max_pages} pages")

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()
