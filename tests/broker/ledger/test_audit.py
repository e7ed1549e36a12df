"""Offline verification of an audit directory: what the fast path reads and what it leaves out.

The tamper tests (test_tamper.py) drive `broker audit verify` against a real broker; these check
`verify_directory` itself on directories written here: event types counted from the raw bytes,
entries that are not canonical broker JSON, and roots of a log that grew since it was trusted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.ledger import merkle
from broker.ledger.audit import AuditDirectory, verify_directory
from broker.ledger.checkpoint import Checkpoint, sign_checkpoint
from broker.ledger.events import EventType, LogRecord, encode_leaf
from broker.ledger.note import Ed25519Signer
from tests.conftest import NOW

ORIGIN = "audit.test/log/v1"
SIGNER = Ed25519Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
TYPES = [EventType.CONSENT_GIVEN, EventType.DATA_RELEASED, EventType.CONSENT_WITHDRAWN]


def _leaf(n: int) -> bytes:
    # A field value that looks like the type key, escaped as JSON escapes it.
    attributes = {"n": n, "note": '"type":"consent.revoked"', "fields": ["a.b"]}
    return encode_leaf(LogRecord(type=TYPES[n % 3], at=NOW, attributes=attributes), None)


def _directory(path: Path, leaves: list[bytes], size: int | None = None) -> AuditDirectory:
    """An audit directory holding `leaves` and a checkpoint of the first `size` of them."""
    size = len(leaves) if size is None else size
    directory = AuditDirectory(path)
    directory.start_entries(keep=False)
    directory.append_entries(enumerate(leaves))
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(leaf) for leaf in leaves[:size]])
    directory.write_checkpoint(sign_checkpoint(Checkpoint(ORIGIN, size, root), [SIGNER]))
    return directory


@pytest.mark.parametrize("check_leaves", [False, True])
def test_event_types_are_counted_the_same_from_raw_bytes_and_decoded(
    tmp_path: Path, check_leaves: bool
) -> None:
    leaves = [_leaf(n) for n in range(20)]
    report = verify_directory(
        _directory(tmp_path, leaves, size=17),
        [SIGNER.verifier()],
        origin=ORIGIN,
        check_leaves=check_leaves,
    )
    assert report.ok, report.failures
    assert report.entries == 20  # entries past the checkpoint are read, not counted
    assert dict(report.event_counts) == {
        "consent.given": 6,
        "data.released": 6,
        "consent.withdrawn": 5,
    }


def test_a_leaf_that_is_not_canonical_is_named_only_when_leaves_are_checked(
    tmp_path: Path,
) -> None:
    leaves = [_leaf(n) for n in range(5)]
    body = json.loads(leaves[3])
    # The same JSON with its keys in another order: not the canonical bytes.
    leaves[3] = json.dumps(dict(reversed(body.items())), separators=(",", ":")).encode()
    directory = _directory(tmp_path, leaves)
    fast = verify_directory(directory, [SIGNER.verifier()], origin=ORIGIN, accept=False)
    assert fast.ok, fast.failures
    checked = verify_directory(directory, [SIGNER.verifier()], origin=ORIGIN, check_leaves=True)
    assert checked.failures == ["Entry 3 is not a well-formed broker log leaf."]


@pytest.mark.parametrize("check_leaves", [False, True])
def test_a_leaf_without_a_type_is_always_named(tmp_path: Path, check_leaves: bool) -> None:
    leaves = [_leaf(n) for n in range(5)]
    leaves[2] = b"not a broker leaf at all"
    report = verify_directory(
        _directory(tmp_path, leaves), [SIGNER.verifier()], origin=ORIGIN, check_leaves=check_leaves
    )
    assert report.failures == ["Entry 2 is not a well-formed broker log leaf."]
    assert not (tmp_path / "trusted-checkpoint").exists()


@pytest.mark.parametrize("trusted_size", [1, 7, 8, 9, 64, 100])
def test_a_grown_log_is_checked_against_the_root_trusted_before(
    tmp_path: Path, trusted_size: int
) -> None:
    leaves = [_leaf(n) for n in range(100)]
    verifiers = [SIGNER.verifier()]
    assert verify_directory(_directory(tmp_path, leaves[:trusted_size]), verifiers).ok
    grown = verify_directory(_directory(tmp_path, leaves), verifiers)
    assert grown.ok, grown.failures
    assert grown.trusted_size == trusted_size

    # Now the trusted prefix is rewritten and the whole re-signed: only the prefix's root shows.
    rewritten = list(leaves)
    rewritten[trusted_size - 1] = _leaf(1000)
    (tmp_path / "verified-hashes.bin").write_bytes(b"")  # as if that memory were lost
    (tmp_path / "trusted-checkpoint").write_bytes(
        sign_checkpoint(
            Checkpoint(
                ORIGIN,
                trusted_size,
                merkle.root_from_leaf_hashes([merkle.leaf_hash(x) for x in leaves[:trusted_size]]),
            ),
            [SIGNER],
        )
    )
    report = verify_directory(_directory(tmp_path, rewritten), verifiers)
    assert report.failures == [
        f"The first {trusted_size} entries no longer hash to the checkpoint verified before: "
        "the new checkpoint is not consistent with it (history was rewritten or forked)."
    ]
