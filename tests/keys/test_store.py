"""The key store on real files with real crypto: creation, modes, encryption, rotation, JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

import keys._store
from keys import KeyStore, KeyStoreError, KeyUse, SigningKey
from keys._files import write_atomic

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PASSPHRASE = "correct horse battery staple"


def open_store(directory: Path, passphrase: str | None = PASSPHRASE) -> KeyStore:
    return KeyStore.open(directory, passphrase, production=passphrase is not None)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rfc7638_thumbprint(x: str) -> str:
    """Written out by hand from RFC 7638 §3 so that it does not share code with the store."""
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"' + x + '"}'
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "var" / "keys"


def test_first_start_creates_a_key_and_the_next_start_loads_it(directory: Path) -> None:
    first = open_store(directory)
    assert first.public_keys() == []
    created = first.ensure(KeyUse.LOG, NOW)

    again = open_store(directory)
    loaded = again.ensure(KeyUse.LOG, NOW + timedelta(days=1))

    assert loaded.kid == created.kid
    assert again.current(KeyUse.LOG).kid == created.kid
    assert [info.kid for info in again.public_keys()] == [created.kid]
    info = again.public_keys()[0]
    assert (info.created_at, info.not_before, info.not_after) == (NOW, NOW, None)
    assert Ed25519PublicKey.from_public_bytes(loaded.public_key) is not None
    assert len(created.sign(b"checkpoint")) == 64


def test_directory_and_every_file_are_owner_only_whatever_the_umask(directory: Path) -> None:
    previous = os.umask(0)
    try:
        store = open_store(directory)
        store.ensure(KeyUse.TOKEN, NOW)
        store.rotate(KeyUse.TOKEN, timedelta(hours=1), NOW + timedelta(days=1))
    finally:
        os.umask(previous)

    assert mode(directory) == 0o700
    files = list(directory.iterdir())
    assert {p.name for p in files} >= {"manifest.json", ".lock"}
    assert len([p for p in files if p.suffix == ".pem"]) == 2
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_private_keys_are_encrypted_at_rest(directory: Path) -> None:
    key = open_store(directory).ensure(KeyUse.RECEIPT, NOW)

    content = (directory / f"{key.kid}.pem").read_bytes()
    raw = key.private_key().private_bytes_raw()
    assert content.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert b"bcrypt" in base64.b64decode(b"".join(content.splitlines()[1:-1]))
    assert raw not in content
    assert raw not in base64.b64decode(b"".join(content.splitlines()[1:-1]))
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"=")):
        assert encoded not in content
    assert raw not in (directory / "manifest.json").read_bytes()


def test_development_without_passphrase_stores_plain_keys(directory: Path) -> None:
    key = KeyStore.open(directory, None, production=False).ensure(KeyUse.LOG, NOW)

    content = (directory / f"{key.kid}.pem").read_bytes()
    assert content.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert KeyStore.open(directory, None, production=False).current(KeyUse.LOG).kid == key.kid


def test_production_without_passphrase_refuses_to_start(directory: Path) -> None:
    with pytest.raises(KeyStoreError, match="production mode without a key passphrase"):
        KeyStore.open(directory, None, production=True)
    with pytest.raises(KeyStoreError, match="empty"):
        KeyStore.open(directory, "", production=True)


def test_wrong_passphrase_is_a_clear_error(directory: Path) -> None:
    open_store(directory).ensure(KeyUse.LOG, NOW)

    with pytest.raises(KeyStoreError, match="wrong key passphrase") as caught:
        open_store(directory, "not the passphrase")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_encrypted_keys_without_passphrase_are_a_clear_error(directory: Path) -> None:
    open_store(directory).ensure(KeyUse.LOG, NOW)

    with pytest.raises(KeyStoreError, match="encrypted; a key passphrase is needed"):
        KeyStore.open(directory, None, production=False)


@pytest.mark.parametrize("unsafe", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_others_can_read_is_refused(directory: Path, unsafe: int) -> None:
    key = open_store(directory).ensure(KeyUse.NOTIFY, NOW)
    path = directory / f"{key.kid}.pem"
    path.chmod(unsafe)

    with pytest.raises(KeyStoreError, match=r"refusing to use .*chmod 600"):
        open_store(directory)


def test_a_directory_others_can_enter_is_refused(directory: Path) -> None:
    open_store(directory).ensure(KeyUse.LOG, NOW)
    directory.chmod(0o755)

    with pytest.raises(KeyStoreError, match="chmod 700"):
        open_store(directory)


def test_rotation_overlap_both_keys_sign_then_only_the_new_one(directory: Path) -> None:
    store = open_store(directory)
    old = store.ensure(KeyUse.LOG, NOW)
    rotated_at = NOW + timedelta(days=30)
    overlap = timedelta(hours=1)

    new = store.rotate(KeyUse.LOG, overlap, rotated_at)

    assert new.kid != old.kid
    assert store.current(KeyUse.LOG).kid == new.kid
    assert [k.kid for k in store.signing_keys(KeyUse.LOG, rotated_at - timedelta(seconds=1))] == [
        old.kid
    ]
    for during in (rotated_at, rotated_at + overlap / 2, rotated_at + overlap - timedelta(0, 1)):
        signers = store.signing_keys(KeyUse.LOG, during)
        assert [k.kid for k in signers] == [new.kid, old.kid]
        signatures = [(k.info, k.sign(b"checkpoint 42")) for k in signers]
        assert all(info.verify(b"checkpoint 42", sig) for info, sig in signatures)
    for after in (rotated_at + overlap, rotated_at + timedelta(days=365)):
        assert [k.kid for k in store.signing_keys(KeyUse.LOG, after)] == [new.kid]


def test_old_public_keys_stay_published_with_their_windows(directory: Path) -> None:
    store = open_store(directory)
    first = store.ensure(KeyUse.TOKEN, NOW)
    second = store.rotate(KeyUse.TOKEN, timedelta(hours=2), NOW + timedelta(days=10))
    third = store.rotate(KeyUse.TOKEN, timedelta(hours=3), NOW + timedelta(days=20))

    published = open_store(directory).public_keys(KeyUse.TOKEN)

    assert [p.kid for p in published] == [third.kid, second.kid, first.kid]
    windows = [(p.not_before, p.not_after, p.retired_at) for p in published]
    assert windows == [
        (NOW + timedelta(days=20), None, None),
        (
            NOW + timedelta(days=10),
            NOW + timedelta(days=20, hours=3),
            NOW + timedelta(days=20),
        ),
        (NOW, NOW + timedelta(days=10, hours=2), NOW + timedelta(days=10)),
    ]
    jwks = store.jwks([KeyUse.TOKEN])["keys"]
    assert [(k["kid"], k["nbf"], k.get("exp")) for k in jwks] == [
        (third.kid, int((NOW + timedelta(days=20)).timestamp()), None),
        (
            second.kid,
            int((NOW + timedelta(days=10)).timestamp()),
            int((NOW + timedelta(days=20, hours=3)).timestamp()),
        ),
        (first.kid, int(NOW.timestamp()), int((NOW + timedelta(days=10, hours=2)).timestamp())),
    ]


def test_hand_written_thumbprint_matches_rfc_8037_appendix_a3() -> None:
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert rfc7638_thumbprint(x) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_a_signature_verifies_with_nothing_but_the_jwks_entry(directory: Path) -> None:
    store = open_store(directory)
    key = store.ensure(KeyUse.TOKEN, NOW)
    signature = key.sign(b"header.payload")

    document = json.loads(json.dumps(store.jwks(KeyUse.TOKEN)))

    (entry,) = document["keys"]
    assert entry == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": entry["x"],
        "kid": key.kid,
        "use": "sig",
        "alg": "Ed25519",
        "nbf": int(NOW.timestamp()),
    }
    assert entry["kid"] == rfc7638_thumbprint(entry["x"])
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(entry["x"]))
    public.verify(signature, b"header.payload")  # raises InvalidSignature if wrong


def test_each_use_has_its_own_keys(directory: Path) -> None:
    store = open_store(directory)
    created = {use: store.ensure(use, NOW) for use in KeyUse}

    assert len({key.kid for key in created.values()}) == len(KeyUse)
    assert len({key.public_key for key in created.values()}) == len(KeyUse)
    assert {info.use for info in store.public_keys()} == set(KeyUse)
    assert [k["kid"] for k in store.jwks([KeyUse.TOKEN])["keys"]] == [created[KeyUse.TOKEN].kid]

    store.rotate(KeyUse.TOKEN, timedelta(hours=1), NOW + timedelta(days=1))

    for use in (KeyUse.LOG, KeyUse.RECEIPT, KeyUse.NOTIFY):
        assert store.current(use).kid == created[use].kid
        assert [info.kid for info in store.public_keys(use)] == [created[use].kid]
    both = store.jwks([KeyUse.LOG, KeyUse.NOTIFY])["keys"]
    assert [k["kid"] for k in both] == [created[KeyUse.LOG].kid, created[KeyUse.NOTIFY].kid]


def test_refresh_sees_a_rotation_by_another_instance(directory: Path) -> None:
    here = open_store(directory)
    old = here.ensure(KeyUse.RECEIPT, NOW)
    assert here.refresh() is False

    there = open_store(directory)
    new = there.rotate(KeyUse.RECEIPT, timedelta(minutes=5), NOW + timedelta(days=1))

    assert here.current(KeyUse.RECEIPT).kid == old.kid  # not seen until refreshed
    assert here.refresh() is True
    assert here.current(KeyUse.RECEIPT).kid == new.kid
    assert here.refresh() is False


def test_a_failed_manifest_write_leaves_the_previous_state(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(directory)
    old = store.ensure(KeyUse.LOG, NOW)
    manifest_before = (directory / "manifest.json").read_bytes()

    def crash_on_manifest(path: Path, data: bytes) -> None:
        if path.name == "manifest.json":
            raise OSError("disk full")
        write_atomic(path, data)

    monkeypatch.setattr(keys._store, "write_atomic", crash_on_manifest)
    with pytest.raises(OSError, match="disk full"):
        store.rotate(KeyUse.LOG, timedelta(hours=1), NOW + timedelta(days=1))
    monkeypatch.undo()

    assert (directory / "manifest.json").read_bytes() == manifest_before
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    reopened = open_store(directory)
    assert reopened.current(KeyUse.LOG).kid == old.kid
    assert [info.kid for info in reopened.public_keys()] == [old.kid]


def test_misuse_is_refused(directory: Path) -> None:
    store = open_store(directory)
    with pytest.raises(KeyStoreError, match="no log key yet"):
        store.current(KeyUse.LOG)
    with pytest.raises(ValueError, match="aware"):
        store.ensure(KeyUse.LOG, datetime(2026, 11, 23, 9, 0))
    store.ensure(KeyUse.LOG, NOW)
    with pytest.raises(ValueError, match="negative"):
        store.rotate(KeyUse.LOG, timedelta(seconds=-1), NOW)
    with pytest.raises(KeyStoreError, match="valid only from"):
        store.rotate(KeyUse.LOG, timedelta(hours=1), NOW - timedelta(days=1))


def test_a_damaged_manifest_is_a_clear_error(directory: Path) -> None:
    open_store(directory).ensure(KeyUse.LOG, NOW)
    (directory / "manifest.json").write_text('{"format": 1, "keys": [{"kid": "../x"}]}')

    with pytest.raises(KeyStoreError, match="damaged"):
        open_store(directory)


def test_repr_shows_no_key_material(directory: Path) -> None:
    store = open_store(directory)
    key = store.ensure(KeyUse.LOG, NOW)
    raw = key.private_key().private_bytes_raw()

    text = repr(key) + str(key) + repr(store)
    assert key.kid in text
    assert PASSPHRASE not in text
    for encoded in (raw.hex(), base64.b64encode(raw).decode(), repr(raw)):
        assert encoded not in text


def _ensure_in_child(directory: str, barrier: Any, results: Any) -> None:
    store = KeyStore.open(directory, PASSPHRASE, production=True)
    barrier.wait(timeout=60)
    results.put(store.ensure(KeyUse.LOG, NOW).kid)


def test_processes_starting_together_create_exactly_one_key(directory: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = 4
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(target=_ensure_in_child, args=(str(directory), barrier, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    kids = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)

    assert [process.exitcode for process in processes] == [0] * workers
    assert len(set(kids)) == 1
    assert [info.kid for info in open_store(directory).public_keys()] == kids[:1]
    assert [p.name for p in directory.glob("*.pem")] == [f"{kids[0]}.pem"]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    directory = tmp_path_factory.mktemp("signer") / "keys"
    return open_store(directory).ensure(KeyUse.RECEIPT, NOW)


@given(data=st.binary(max_size=4096), other=st.binary(max_size=64))
def test_sign_then_verify_round_trips_for_any_bytes(
    signer: SigningKey, data: bytes, other: bytes
) -> None:
    signature = signer.sign(data)
    public = Ed25519PublicKey.from_public_bytes(signer.public_key)

    public.verify(signature, data)
    assert signer.info.verify(data, signature)
    if other != data:
        assert not signer.info.verify(other, signature)
