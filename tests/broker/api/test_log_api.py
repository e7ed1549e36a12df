"""The audit log over HTTP: what a verifier with only the public key can check, and who reads."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OctKey, OKPKey
from sqlalchemy import Engine
from sqlmodel import select

from broker.api import create_app
from broker.auth.tokens import issue_access_token
from broker.consents import service as consents
from broker.ledger import merkle
from broker.ledger.checkpoint import open_checkpoint
from broker.ledger.note import parse_vkey
from broker.oauth import clients
from broker.runtime import Runtime
from broker.settings import Settings
from broker.storage import transaction
from broker.storage.tables import OAuthClient
from keys import KeyUse

ISSUER = "http://127.0.0.1:8000"


@pytest.fixture
def client(demo: Engine, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, checkpoint_interval_seconds=3600)
    with TestClient(create_app(settings, engine=demo)) as test_client:
        runtime: Runtime = test_client.app.state.runtime  # type: ignore[attr-defined]
        for person in ("aino-virtanen", "sam-taylor", "karin-lindqvist"):
            runtime.ledger.run(
                lambda s, log, p=person: consents.give_consent(
                    s,
                    log,
                    person_id=p,
                    agreement_id="selfcare-immunisations",
                    actor_id=p,
                    now=datetime.now(UTC),
                )
            )
        runtime.signer.sign_if_grown()
        yield test_client


def _runtime(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def _token(client: TestClient, scopes: list[str], **changes: object) -> str:
    """A token as the broker would issue it to a registered auditor client."""
    runtime = _runtime(client)
    with transaction(runtime.engine) as session:
        client_id = (
            session.exec(select(OAuthClient.client_id).where(OAuthClient.kind == "auditor")).first()
            or clients.register_auditor(session, name="Auditor", now=datetime.now(UTC)).client_id
        )
    args: dict[str, object] = {
        "issuer": ISSUER,
        "audience": f"{ISSUER}/v1",
        "subject": client_id,
        "client_id": client_id,
        "scopes": scopes,
        "now": datetime.now(UTC),
    }
    args.update(changes)
    return issue_access_token(runtime.keystore, **args)  # type: ignore[arg-type]


def test_the_checkpoint_verifies_with_the_published_key(client: TestClient) -> None:
    response = client.get("/v1/log/checkpoint")
    assert response.headers["content-type"].startswith("text/plain")
    verifier = parse_vkey(client.get("/v1/log/key").text.strip())
    checkpoint, _ = open_checkpoint(
        response.content, [verifier], origin="omadata.localhost/audit/v1"
    )
    assert checkpoint.size == 4 + 3  # four published agreements, three consents


def test_every_inclusion_proof_verifies_against_the_checkpoint(client: TestClient) -> None:
    verifier = parse_vkey(client.get("/v1/log/key").text.strip())
    checkpoint, _ = open_checkpoint(client.get("/v1/log/checkpoint").content, [verifier])
    entries = client.get(
        "/v1/log/entries",
        params={"start": 0, "end": checkpoint.size},
        headers={"Authorization": f"Bearer {_token(client, ['audit:read'])}"},
    ).json()
    assert [e["index"] for e in entries] == list(range(checkpoint.size))
    for entry in entries:
        proof = client.get(
            "/v1/log/proofs/inclusion",
            params={"index": entry["index"], "tree_size": checkpoint.size},
        ).json()
        merkle.verify_inclusion(
            entry["index"],
            checkpoint.size,
            merkle.leaf_hash(base64.b64decode(entry["leaf"])),
            [base64.b64decode(h) for h in proof["hashes"]],
            checkpoint.root_hash,
        )


def test_consistency_proofs_link_old_and_new_checkpoints(client: TestClient) -> None:
    verifier = parse_vkey(client.get("/v1/log/key").text.strip())
    old, _ = open_checkpoint(client.get("/v1/log/checkpoint").content, [verifier])
    runtime = _runtime(client)
    runtime.ledger.run(
        lambda s, log: consents.give_consent(
            s,
            log,
            person_id="aino-virtanen",
            agreement_id="research-diagnoses",
            actor_id="aino-virtanen",
            now=datetime.now(UTC),
        )
    )
    runtime.signer.sign_if_grown()
    new, _ = open_checkpoint(client.get("/v1/log/checkpoint").content, [verifier])
    body = client.get(
        "/v1/log/proofs/consistency", params={"first": old.size, "second": new.size}
    ).json()
    assert (body["first"], body["second"]) == (old.size, new.size)
    merkle.verify_consistency(
        old.size,
        new.size,
        old.root_hash,
        new.root_hash,
        [base64.b64decode(h) for h in body["hashes"]],
    )


def test_keys_are_listed_with_their_validity_windows(client: TestClient) -> None:
    keys = client.get("/v1/log/keys").json()
    assert len(keys) == 1
    assert keys[0]["current"] is True
    assert keys[0]["not_after"] is None
    assert keys[0]["vkey"] == client.get("/v1/log/key").text.strip()


@pytest.mark.parametrize(
    "params",
    [
        {"index": 7, "tree_size": 7},
        {"index": 0, "tree_size": 99},
        {"index": -1, "tree_size": 3},
        {"index": 0},
    ],
)
def test_impossible_inclusion_requests_are_problems(
    client: TestClient, params: dict[str, int]
) -> None:
    response = client.get("/v1/log/proofs/inclusion", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_a_consistency_proof_from_size_zero_is_refused(client: TestClient) -> None:
    response = client.get("/v1/log/proofs/consistency", params={"first": 0, "second": 3})
    assert response.status_code == 422


def test_entries_need_an_access_token(client: TestClient) -> None:
    response = client.get("/v1/log/entries", params={"start": 0, "end": 2})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"


def test_entries_need_the_audit_read_scope(client: TestClient) -> None:
    token = _token(client, ["consents:read"])
    response = client.get(
        "/v1/log/entries",
        params={"start": 0, "end": 2},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_entry_pages_are_bounded(client: TestClient) -> None:
    _runtime(client).settings.log_entries_page_size = 2
    response = client.get(
        "/v1/log/entries",
        params={"start": 1, "end": 1000},
        headers={"Authorization": f"Bearer {_token(client, ['audit:read'])}"},
    )
    assert [e["index"] for e in response.json()] == [1, 2]


def _forged_tokens(client: TestClient) -> dict[str, str]:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": ISSUER,
        "aud": f"{ISSUER}/v1",
        "sub": "a",
        "client_id": "a",
        "scope": "audit:read",
        "iat": now,
        "exp": now + 300,
        "jti": "x",
    }
    public = _runtime(client).keystore.current(KeyUse.TOKEN).public_key
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    body = base64.urlsafe_b64encode(json.dumps(claims).encode())
    stranger = OKPKey.import_key(Ed25519PrivateKey.generate())
    return {
        "wrong audience": _token(client, ["audit:read"], audience="https://elsewhere/v1"),
        "wrong issuer": _token(client, ["audit:read"], issuer="https://evil.example"),
        "expired": _token(client, ["audit:read"], now=datetime.now(UTC) - timedelta(hours=1)),
        "alg none": none_header.decode().rstrip("=") + "." + body.decode().rstrip("=") + ".",
        "HS256 keyed with the public key": jwt.encode(
            {"alg": "HS256", "typ": "at+jwt"},
            claims,
            OctKey.import_key(public),
            algorithms=["HS256"],
        ),
        "signed by another key": jwt.encode(
            {
                "alg": "Ed25519",
                "typ": "at+jwt",
                "kid": _runtime(client).keystore.current(KeyUse.TOKEN).kid,
            },
            claims,
            stranger,
            algorithms=["Ed25519"],
        ),
        "not a JWT": "hello",
    }


@pytest.mark.parametrize(
    "attack",
    [
        "wrong audience",
        "wrong issuer",
        "expired",
        "alg none",
        "HS256 keyed with the public key",
        "signed by another key",
        "not a JWT",
    ],
)
def test_forged_or_stale_tokens_are_refused(client: TestClient, attack: str) -> None:
    token = _forged_tokens(client)[attack]
    response = client.get(
        "/v1/log/entries",
        params={"start": 0, "end": 2},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_the_jwks_publishes_public_keys_only(client: TestClient) -> None:
    jwks = client.get("/.well-known/jwks.json").json()
    kids = {k["kid"] for k in jwks["keys"]}
    assert _runtime(client).keystore.current(KeyUse.TOKEN).kid in kids
    assert _runtime(client).keystore.current(KeyUse.LOG).kid not in kids
    assert all("d" not in k and k["kty"] == "OKP" for k in jwks["keys"])
