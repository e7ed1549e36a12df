"""Loading the connectors file: the demo's, and every way a file can be wrong."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from connectors import (
    Connector,
    ConnectorConfigError,
    FhirConnector,
    RestConnector,
    load_connectors,
)

DEMO_YAML = Path(str(files("broker.demo") / "connectors.yaml"))


def test_the_demo_file_describes_both_sources() -> None:
    connectors = load_connectors(DEMO_YAML)
    fhir, social = connectors["patient-record"], connectors["social-care"]
    assert isinstance(fhir, FhirConnector)
    assert isinstance(social, RestConnector)
    assert isinstance(fhir, Connector)  # the runtime-checkable protocol
    assert fhir.base_url == "http://127.0.0.1:8001/fhir"
    assert social.base_url == "http://127.0.0.1:8002"
    assert fhir.audience == "urn:omadata:source:patient-record"
    assert social.audience == "urn:omadata:source:social-care"
    assert fhir.categories == {
        "health.lab_results", "health.medications", "health.diagnoses", "health.immunisations"
    }  # fmt: skip
    assert social.categories == {"social.client_plan", "social.service_decisions"}


def test_the_demo_sources_data_files_are_package_data() -> None:
    for name in ("patient_record.yaml", "social_care.yaml"):
        assert (files("broker.demo.sources") / name).is_file()


def test_base_urls_and_timeout_are_overridden() -> None:
    connectors = load_connectors(
        DEMO_YAML, base_urls={"social-care": "http://127.0.0.1:4321/"}, timeout=0.25
    )
    social = connectors["social-care"]
    assert isinstance(social, RestConnector)
    assert social.base_url == "http://127.0.0.1:4321"
    assert social.limits.timeout == 0.25
    fhir = connectors["patient-record"]
    assert isinstance(fhir, FhirConnector)
    assert fhir.base_url == "http://127.0.0.1:8001/fhir"
    assert fhir.page_size == 3


GOOD_SOURCE = """
sources:
  s:
    kind: rest
    base_url: http://127.0.0.1:1
    audience: urn:x
    categories:
      c: {url: "/{subject}/{category}", records: items, fields: {f: a.b}}
"""

BAD_FILES = {
    "not YAML": "sources: [",
    "no sources": "other: 1",
    "unknown kind": "sources: {s: {kind: soap, base_url: 'http://x', audience: a}}",
    "no audience": "sources: {s: {kind: fhir, base_url: 'http://x'}}",
    "not a URL": "sources: {s: {kind: fhir, base_url: 'nowhere', audience: a}}",
    "unknown key": "sources: {s: {kind: fhir, base_url: 'http://x', audience: a, colour: 1}}",
    "unknown FHIR category": (
        "sources: {s: {kind: fhir, base_url: 'http://x', audience: a, categories: [social.x]}}"
    ),
    "REST category without a url": GOOD_SOURCE.replace('url: "/{subject}/{category}", ', ""),
    "URL template with another placeholder": GOOD_SOURCE.replace("{category}", "{secret}"),
    "URL template not a path": GOOD_SOURCE.replace('"/{subject}', '"http://evil/{subject}'),
    "malformed field path": GOOD_SOURCE.replace("a.b", "a..b"),
    "malformed records path": GOOD_SOURCE.replace("items", "items[x]"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_refused_whole(tmp_path: Path, case: str) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(BAD_FILES[case], encoding="utf-8")
    with pytest.raises(ConnectorConfigError):
        load_connectors(path)


def test_a_good_file_loads_and_unknown_overrides_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(GOOD_SOURCE, encoding="utf-8")
    assert set(load_connectors(path)) == {"s"}
    with pytest.raises(ConnectorConfigError, match="unknown sources: t"):
        load_connectors(path, base_urls={"t": "http://127.0.0.1:1"})
    with pytest.raises(ConnectorConfigError, match="cannot read"):
        load_connectors(tmp_path / "absent.yaml")
