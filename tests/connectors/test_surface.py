"""The package's public surface is what its __all__ says, and nothing in it needs the broker."""

from __future__ import annotations

import subprocess
import sys

import connectors


def test_the_public_surface_is_pinned() -> None:
    assert sorted(connectors.__all__) == [
        "Connector", "ConnectorConfigError", "ConnectorError", "FetchRequest", "FhirConnector",
        "Limits", "Record", "RestCategory", "RestConnector", "SourceGrant", "SourceGuard",
        "SourcePayloadInvalid", "SourceRefused", "SourceTimeout", "SourceUnavailable",
        "UnsupportedCategory", "load_connectors",
    ]  # fmt: skip
    assert all(hasattr(connectors, name) for name in connectors.__all__)


def test_a_source_can_use_the_guard_without_the_broker() -> None:
    code = "import sys, connectors.guard; print(any(m.startswith('broker') for m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_a_fetch_request_keeps_its_subject_and_token_out_of_logs() -> None:
    request = connectors.FetchRequest("potilas-1001", "health.lab_results", ("value",), "tok")
    assert "potilas-1001" not in repr(request)
    assert "tok" not in repr(request)
