"""The `broker` command as an operator runs it: real processes, a real SQLite file, real HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.storage.migrate import head_revision

BROKER = [sys.executable, "-m", "broker.cli"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    return {**clean, "BROKER_DATA_DIR": str(tmp_path / "var")}


def broker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BROKER, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def migrated(env: dict[str, str]) -> dict[str, str]:
    result = broker(env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    return env


def test_db_upgrade_creates_the_database_under_data_dir(env: dict[str, str]) -> None:
    result = broker(env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert f"revision {head_revision()}" in result.stderr
    assert (Path(env["BROKER_DATA_DIR"]) / "broker.sqlite3").exists()


def test_the_demo_loads_once_and_a_second_load_changes_nothing(migrated: dict[str, str]) -> None:
    first = broker(migrated, "catalogue", "load", "--demo")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["created"]["agreement"] == 4
    second = broker(migrated, "catalogue", "load", "--demo")
    assert json.loads(second.stdout) == {
        "created": {},
        "updated": {},
        "unchanged": json.loads(first.stdout)["created"],
    }


def test_a_bad_catalogue_file_is_refused_and_names_each_problem(
    migrated: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "services:\n  - id: x\n    roles: [spy]\n    organisation: O\n    contact: nope\n",
        encoding="utf-8",
    )
    result = broker(migrated, "catalogue", "load", str(bad))
    assert result.returncode == 1
    assert "nothing was loaded" in result.stderr
    assert "services.0.roles.0" in result.stderr
    assert "services.0.name" in result.stderr
    listed = broker(migrated, "catalogue", "load", "--demo")
    assert json.loads(listed.stdout)["created"]["service"] == 5


def test_a_missing_file_is_a_clear_error(migrated: dict[str, str], tmp_path: Path) -> None:
    result = broker(migrated, "catalogue", "load", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot be read" in result.stderr


def test_an_operator_records_and_withdraws_a_consent(migrated: dict[str, str]) -> None:
    assert broker(migrated, "catalogue", "load", "--demo").returncode == 0
    added = broker(
        migrated,
        "person",
        "add",
        "Liisa Mäkinen",
        "--language",
        "sv",
        "--identity",
        "https://tunnistus.example.fi=demo-liisa",
    )
    assert added.returncode == 0, added.stderr
    liisa = json.loads(added.stdout)["id"]
    given = broker(
        migrated,
        "consent",
        "give",
        "--person",
        liisa,
        "--agreement",
        "selfcare-immunisations",
        "--days",
        "30",
    )
    assert given.returncode == 0, given.stderr
    consent = json.loads(given.stdout)
    assert consent["status"] == "given"
    withdrawn = broker(migrated, "consent", "withdraw", consent["id"], "--as", liisa)
    assert json.loads(withdrawn.stdout)["status"] == "withdrawn"
    again = broker(migrated, "consent", "withdraw", consent["id"], "--as", liisa)
    assert again.returncode == 1
    assert "already withdrawn" in again.stderr
    listed = json.loads(broker(migrated, "consent", "list", liisa).stdout)
    assert [e["event_type"] for e in listed[0]["history"]] == [
        "consent.given",
        "consent.withdrawn",
    ]


def test_a_guardian_gives_consent_for_a_child_from_the_cli(migrated: dict[str, str]) -> None:
    assert broker(migrated, "catalogue", "load", "--demo").returncode == 0
    given = broker(
        migrated,
        "consent",
        "give",
        "--person",
        "eelis-korhonen",
        "--agreement",
        "selfcare-immunisations",
        "--as",
        "matti-korhonen",
        "--field",
        "health.immunisations.vaccine_name",
        "--field",
        "health.immunisations.given_on",
        "--field",
        "health.immunisations.dose_number",
    )
    assert given.returncode == 0, given.stderr
    assert json.loads(given.stdout)["actor_role"] == "guardian"
    refused = broker(
        migrated,
        "consent",
        "give",
        "--person",
        "eelis-korhonen",
        "--agreement",
        "peer-support-plan",
        "--as",
        "aino-virtanen",
    )
    assert refused.returncode == 1
    assert "may not" in refused.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(migrated: dict[str, str]) -> Iterator[str]:
    assert broker(migrated, "catalogue", "load", "--demo").returncode == 0
    port = _free_port()
    proc = subprocess.Popen(
        [*BROKER, "serve", "--port", str(port)],
        env=migrated,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("broker did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_serve_answers_the_catalogue_over_real_http(served: str) -> None:
    response = httpx.get(f"{served}/v1/agreements/peer-support-plan", timeout=5)
    assert response.status_code == 200
    assert response.json()["consumer"] == "peer-support"
    missing = httpx.get(f"{served}/v1/services/ghost", timeout=5)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
