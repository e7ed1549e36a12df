"""A small FHIR R4 server: synthetic patient records of the demo persons, behind SourceGuard.

It serves searchsets of Observation (laboratory), MedicationStatement, Condition and
Immunization by `patient`, paged with `_count` and `_offset`, and reads of Patient. A resource
carries only the elements for the fields the broker's token allows; a required element whose
fields are all withheld carries the data-absent-reason extension ("masked") instead of a value.

ALL DATA IS SYNTHETIC (patient_record.yaml beside this module): the demo catalogue's persons,
by their ids at this source.
"""

# No `from __future__ import annotations` here: the search routes are made in a loop, and FastAPI
# must see each route's own guard dependency in its evaluated annotation.

import json
from collections.abc import Callable, Collection, Mapping
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from broker.demo.sources._common import load_records
from connectors.fhir import ATC, DATA_ABSENT_REASON, FHIR_JSON, ICD10, OBSERVATION_CATEGORY
from connectors.guard import SourceGrant, SourceGuard, SourceRefused

AUDIENCE = "urn:omadata:source:patient-record"
LAB_CODES = "urn:omadata:demo:laboratoriotutkimukset"
"""A synthetic code system: the short names of Finnish laboratory tests (fP-Gluk, B-Hb, ...)."""
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
MASKED: dict[str, Any] = {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]}

Record = dict[str, Any]


def _patient(subject: str) -> dict[str, str]:
    return {"reference": f"Patient/{subject}"}


def _concept(
    allowed: Collection[str], record: Record, *, code: str, text: str, system: str
) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if code in allowed:
        concept["coding"] = [{"system": system, "code": record[code]}]
    if text in allowed:
        concept["text"] = record[text]
    return concept or MASKED


def observation(record: Record, allowed: Collection[str], subject: str) -> dict[str, Any]:
    """A laboratory Observation with only the allowed fields of a lab result."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "code": _concept(allowed, record, code="test_code", text="test_name", system=LAB_CODES),
        "subject": _patient(subject),
    }
    if "taken_at" in allowed:
        resource["effectiveDateTime"] = record["taken_at"]
    quantity: dict[str, Any] = {}
    if "value" in allowed:
        quantity["value"] = Decimal(record["value"])  # written as an exact JSON number
    if "unit" in allowed:
        quantity["unit"] = record["unit"]
    if quantity:
        resource["valueQuantity"] = quantity
    if "reference_range" in allowed:
        resource["referenceRange"] = [{"text": record["reference_range"]}]
    return resource


def medication_statement(record: Record, allowed: Collection[str], subject: str) -> dict[str, Any]:
    """A MedicationStatement with only the allowed fields of a medicine."""
    resource: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": _concept(
            allowed, record, code="atc_code", text="medication_name", system=ATC
        ),
        "subject": _patient(subject),
    }
    if "started_on" in allowed:
        resource["effectivePeriod"] = {"start": record["started_on"]}
    if "prescriber" in allowed:
        resource["informationSource"] = {"display": record["prescriber"]}
    if "dosage" in allowed:
        resource["dosage"] = [{"text": record["dosage"]}]
    return resource


def condition(record: Record, allowed: Collection[str], subject: str) -> dict[str, Any]:
    """A Condition with only the allowed fields of a diagnosis."""
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": _patient(subject),
        "code": _concept(
            allowed, record, code="icd10_code", text="diagnosis_name", system=ICD10[0]
        ),
    }
    if "status" in allowed:
        resource["clinicalStatus"] = {
            "coding": [{"system": CONDITION_CLINICAL, "code": record["status"]}]
        }
    if "diagnosed_on" in allowed:
        resource["onsetDateTime"] = record["diagnosed_on"]
    return resource


def immunization(record: Record, allowed: Collection[str], subject: str) -> dict[str, Any]:
    """An Immunization with only the allowed fields of a vaccination."""
    resource: dict[str, Any] = {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": _concept(
            allowed, record, code="vaccine_code", text="vaccine_name", system=ATC
        ),
        "patient": _patient(subject),
    }
    if "given_on" in allowed:
        resource["occurrenceDateTime"] = record["given_on"]
    else:
        # occurrence[x] is required, and the validator wants a value in it, so a withheld date
        # is the text "masked" marked with the data-absent-reason extension.
        resource["occurrenceString"] = "masked"
        resource["_occurrenceString"] = MASKED
    if "dose_number" in allowed:
        resource["protocolApplied"] = [{"doseNumberPositiveInt": record["dose_number"]}]
    return resource


Builder = Callable[[Record, Collection[str], str], dict[str, Any]]
RESOURCES: Mapping[str, tuple[str, Builder]] = {
    "health.lab_results": ("Observation", observation),
    "health.medications": ("MedicationStatement", medication_statement),
    "health.diagnoses": ("Condition", condition),
    "health.immunisations": ("Immunization", immunization),
}


def to_resource(
    category: str, record: Record, *, resource_id: str, subject: str, fields: Collection[str]
) -> dict[str, Any]:
    """The FHIR resource of one record of `category`, with only `fields` in it."""
    resource_type, build = RESOURCES[category]
    resource = build(record, fields, subject)
    resource["id"] = resource_id
    assert resource["resourceType"] == resource_type
    return resource


def dumps(value: Any) -> str:
    """JSON text with every Decimal written as the exact number it is (json writes floats)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _fhir(body: Mapping[str, Any], status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type=FHIR_JSON)


def _outcome(status: int, code: str, text: str) -> Response:
    issue = {"severity": "error", "code": code, "diagnostics": text}
    return _fhir({"resourceType": "OperationOutcome", "issue": [issue]}, status)


def _patient_id(reference: str) -> str:
    """`potilas-1001` from "potilas-1001", "Patient/potilas-1001" or an absolute reference."""
    return reference.rsplit("/", 1)[-1] if "Patient/" in reference else reference


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    return max(low, min(high, int(text))) if text.isdigit() else None


def create_app(
    issuer: str,
    audience: str,
    jwks_url: str,
    *,
    records: Mapping[str, Mapping[str, list[Record]]] | None = None,
    page_size: int = 10,
) -> FastAPI:
    """The FHIR patient-record source, admitting only the broker's tokens for `audience`.

    `records` replaces the synthetic data file (subject -> category -> records)."""
    if records is None:
        records = load_records("patient_record.yaml")
    # The FHIR routes name neither the category nor the subject as such: each search route
    # requires its own category, and the `patient` parameter is checked below.
    guard = SourceGuard(
        issuer=issuer,
        audience=audience,
        jwks_url=jwks_url,
        category_param=None,
        subject_param=None,
    )
    app = FastAPI(title="Demo patient record (FHIR R4)", docs_url=None, redoc_url=None)
    guard.install(app)

    @app.get("/fhir/metadata")
    def metadata() -> Response:
        resources = [
            {"type": resource_type, "interaction": [{"code": "search-type"}],
             "searchParam": [{"name": "patient", "type": "reference"}]}
            for resource_type, _ in RESOURCES.values()
        ]  # fmt: skip
        return _fhir(
            {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "date": "2026-11-01",
                "kind": "instance",
                "fhirVersion": "4.0.1",
                "format": ["json"],
                "rest": [{"mode": "server", "resource": resources}],
            }
        )

    @app.get("/fhir/Patient/{patient_id}")
    def read_patient(patient_id: str, grant: Annotated[SourceGrant, Depends(guard)]) -> Response:
        if patient_id != grant.subject:
            raise SourceRefused(403, "wrong-subject", "The token is for another subject.")
        if patient_id not in records:
            return _outcome(404, "not-found", "No such patient.")
        return _fhir({"resourceType": "Patient", "id": patient_id, "active": True})

    def search_route(category: str, resource_type: str) -> None:
        requirement = guard.require(category)

        @app.get(f"/fhir/{resource_type}", name=f"search-{resource_type}")
        def search(
            request: Request, grant: Annotated[SourceGrant, Depends(requirement)]
        ) -> Response:
            reference = request.query_params.get("patient")
            if reference is None:
                return _outcome(400, "required", "The search needs a patient parameter.")
            subject = _patient_id(reference)
            if subject != grant.subject:
                raise SourceRefused(403, "wrong-subject", "The token is for another subject.")
            count = _int_param(request, "_count", page_size, 1, 100)
            offset = _int_param(request, "_offset", 0, 0, 1_000_000)
            if count is None or offset is None:
                return _outcome(400, "value", "_count and _offset must be whole numbers.")
            matches = list(records.get(subject, {}).get(category, []))
            wanted = request.query_params.get("category")
            if resource_type == "Observation" and wanted and wanted.split("|")[-1] != "laboratory":
                matches = []  # only laboratory observations are kept here
            base = str(request.base_url).rstrip("/") + "/fhir"
            entries = [
                {
                    "fullUrl": f"{base}/{resource_type}/{subject}-{index}",
                    "resource": to_resource(
                        category,
                        record,
                        resource_id=f"{subject}-{index}",
                        subject=subject,
                        fields=grant.fields,
                    ),
                    "search": {"mode": "match"},
                }
                for index, record in enumerate(matches[offset : offset + count], start=offset)
            ]
            links = [{"relation": "self", "url": str(request.url)}]
            if offset + count < len(matches):
                following = request.url.include_query_params(_offset=offset + count)
                links.append({"relation": "next", "url": str(following)})
            return _fhir(
                {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "total": len(matches),
                    "link": links,
                    "entry": entries,
                }
            )

    for category, (resource_type, _) in RESOURCES.items():
        search_route(category, resource_type)
    return app


if __name__ == "__main__":
    from broker.demo.sources._common import main

    main(create_app, audience=AUDIENCE, port=8001)
