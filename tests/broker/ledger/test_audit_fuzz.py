"""What an auditor reads from a broker it does not trust, fuzzed: entry pages, inclusion proofs,
checkpoints and the audit directory built from them.

Parsing gives the exact values the broker serves (round trip) or FetchError; fetching always
ends; verifying a tampered directory gives a report (never an exception) that is ok only for
the untouched log; proving an entry fails only with the auditor's own errors. The note and
checkpoint parsers are fuzzed in test_note.py and test_checkpoint.py. No database is needed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from broker.cli import app
from broker.cli.audit import parse_inclusion_proof
from broker.ledger import merkle
from broker.ledger.audit import AuditDirectory, AuditDirectoryError, prove_entry, verify_directory
from broker.ledger.checkpoint import Checkpoint, CheckpointError, sign_checkpoint
from broker.ledger.events import EventType, LogRecord, encode_leaf
from broker.ledger.fetch import FetchError, fetch, parse_entries
from broker.ledger.note import Ed25519Signer, NoteError
from tests.conftest import NOW
from tests.hostile import any_text

ORIGIN = "fuzz.test/log/v1"
SIGNER = Ed25519Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
LEAVES = [
    encode_leaf(LogRecord(type=EventType.CONSENT_GIVEN, at=NOW, attributes={"n": n}), None)
    for n in range(5)
]
ROOT = merkle.root_from_leaf_hashes([merkle.leaf_hash(leaf) for leaf in LEAVES])
SIGNED = sign_checkpoint(Checkpoint(ORIGIN, len(LEAVES), ROOT), [SIGNER])

ANY_TEXT = any_text(12)
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**30, -(10**30), 2**64, -1, 1e308, 1.0, "1", True]),
    st.floats(allow_nan=False),
    ANY_TEXT,
    st.sampled_from(["", "====", "AA=A", "é", "YQ", "YQ==\n", "\ud800"]),
    st.integers(1, 50).map(lambda depth: json.loads("[" * depth + "]" * depth)),
)


def _served(entries: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    """Entries as the broker's /v1/log/entries serves them."""
    return [{"index": i, "leaf": base64.b64encode(leaf).decode("ascii")} for i, leaf in entries]


def _body(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


# --- entry pages and inclusion proofs ----------------------------------------------------


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=40), max_size=6), st.integers(0, 2**40))
def test_entries_round_trip(leaves: list[bytes], start: int) -> None:
    entries = [(start + n, leaf) for n, leaf in enumerate(leaves)]
    assert parse_entries(_body(_served(entries)), start, start + len(leaves)) == entries


@st.composite
def mutated_pages(draw: st.DrawFn) -> bytes:
    """A page of entries 10..13 with members retyped, dropped or added, or not a page at all."""
    items: list[Any] = _served([(10 + n, leaf) for n, leaf in enumerate(LEAVES[:3])])
    for _ in range(draw(st.integers(1, 3))):
        objects = [i for i in items if isinstance(i, dict)]
        item = draw(st.sampled_from(objects)) if objects else {}
        member = draw(st.sampled_from(["index", "leaf", "extra"]))
        operation = draw(st.sampled_from(["replace", "drop", "retype-item", "duplicate"]))
        if operation == "replace":
            item[member] = draw(HOSTILE)
        elif operation == "drop":
            item.pop(member, None)
        elif operation == "retype-item" and items:
            items[items.index(item)] = draw(HOSTILE)
        else:
            items.append(dict(item))
    root: Any = items if draw(st.integers(0, 5)) else {"entries": items}
    return _body(root)


@settings(max_examples=200)
@given(mutated_pages() | st.binary(max_size=120))
def test_a_hostile_entries_page_parses_or_raises_only_fetch_error(body: bytes) -> None:
    try:
        entries = parse_entries(body, 10, 14)
    except FetchError:
        return
    # Only what the audit directory can store: indices in the range asked for, leaf bytes.
    for index, leaf in entries:
        assert type(index) is int
        assert 10 <= index < 14
        assert isinstance(leaf, bytes)


@settings(max_examples=100)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=8))
def test_inclusion_proofs_round_trip(hashes: list[bytes]) -> None:
    served = {"hashes": [base64.b64encode(h).decode("ascii") for h in hashes]}
    assert parse_inclusion_proof(_body(served)) == hashes


@settings(max_examples=150)
@given(
    st.binary(max_size=80)
    | st.dictionaries(
        st.sampled_from(["hashes", "x"]), HOSTILE | st.lists(HOSTILE, max_size=3)
    ).map(_body)
    | HOSTILE.map(lambda value: _body({"hashes": [value]}))
)
def test_a_hostile_inclusion_proof_parses_or_raises_only_fetch_error(body: bytes) -> None:
    try:
        hashes = parse_inclusion_proof(body)
    except FetchError:
        return
    assert all(isinstance(h, bytes) for h in hashes)


# --- fetching from a hostile log ------------------------------------------------------------


class HostileLog:
    """A LogSource that serves a checkpoint and pages chosen by the test."""

    page_size = 2

    def __init__(self, checkpoint: bytes, pages: list[list[tuple[int, bytes]]]) -> None:
        self._checkpoint = checkpoint
        self._pages = pages
        self.asked = 0

    def checkpoint(self) -> bytes:
        return self._checkpoint

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        self.asked += 1
        assert self.asked <= 10, "fetch keeps asking a log that has nothing more"
        # Each page is parsed as the HTTP source parses it, so it is stored only if valid.
        page = self._pages[self.asked - 1] if self.asked <= len(self._pages) else []
        return parse_entries(_body(_served(page)), start, end)


CHECKPOINTS = st.one_of(
    st.just(SIGNED),
    st.binary(max_size=120),
    st.sampled_from([2**63 - 1, 0, 3, 10**6]).map(
        lambda size: sign_checkpoint(Checkpoint(ORIGIN, size, ROOT), [SIGNER])
    ),
    st.integers(0, len(SIGNED) - 1).map(lambda cut: SIGNED[:cut]),
)
PAGES = st.lists(
    st.lists(
        st.tuples(st.integers(0, 8), st.sampled_from([*LEAVES, b"", b"[" * 3000, b"\xff"])),
        max_size=3,
    ),
    max_size=4,
)


@settings(max_examples=60)
@given(CHECKPOINTS, PAGES)
def test_fetching_from_a_hostile_log_ends_and_verifying_it_never_raises(
    tmp_path_factory: pytest.TempPathFactory, note: bytes, pages: list[list[tuple[int, bytes]]]
) -> None:
    directory = AuditDirectory(tmp_path_factory.mktemp("audit"))
    try:
        fetch(HostileLog(note, pages), directory, full=True)
    except FetchError:
        return
    for check_leaves in (False, True):
        report = verify_directory(
            directory, [SIGNER.verifier()], origin=ORIGIN, check_leaves=check_leaves, accept=False
        )
        if report.ok:  # only the real log, whole and in order, verifies
            assert (report.tree_size, report.root_hash) == (len(LEAVES), ROOT)
            stored = _stored(directory)
            assert stored is not None
            assert stored[: len(LEAVES)] == list(enumerate(LEAVES))


class ShortPages:
    """The real log, served by a broker whose pages are shorter than the auditor's."""

    page_size = 1000

    def checkpoint(self) -> bytes:
        return SIGNED

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        served = list(enumerate(LEAVES))[start : min(end, start + 3)]
        return parse_entries(_body(_served(served)), start, end)


def test_a_broker_with_shorter_pages_is_fetched_whole(tmp_path: Path) -> None:
    directory = AuditDirectory(tmp_path / "audit")
    assert fetch(ShortPages(), directory, full=True).fetched == len(LEAVES)
    report = verify_directory(
        directory, [SIGNER.verifier()], origin=ORIGIN, check_leaves=True, accept=False
    )
    assert report.ok, report


# --- a tampered audit directory -------------------------------------------------------------


def _stored(directory: AuditDirectory) -> list[tuple[int, bytes]] | None:
    try:
        return list(directory.iter_entries())
    except AuditDirectoryError:
        return None


def _good_directory(path: Path) -> AuditDirectory:
    directory = AuditDirectory(path)
    directory.start_entries(keep=False)
    directory.append_entries(enumerate(LEAVES))
    directory.write_checkpoint(SIGNED)
    return directory


FILES = ["entries.bin", "checkpoint", "trusted-checkpoint", "verified-hashes.bin"]


@st.composite
def tampering(draw: st.DrawFn) -> tuple[str, str, int, bytes]:
    """Which file, how (flip, cut, insert, replace), where, and what bytes."""
    return (
        draw(st.sampled_from(FILES)),
        draw(st.sampled_from(["flip", "cut", "insert", "replace"])),
        draw(st.integers(min_value=0)),
        draw(st.binary(min_size=1, max_size=12)),
    )


def _tamper(path: Path, how: str, where: int, data: bytes) -> None:
    original = path.read_bytes() if path.exists() else b""
    at = where % (len(original) + 1)
    if how == "flip" and original:
        at %= len(original)
        changed = original[:at] + bytes([original[at] ^ (data[0] or 1)]) + original[at + 1 :]
    elif how == "cut":
        changed = original[:at]
    elif how == "insert":
        changed = original[:at] + data + original[at:]
    else:
        changed = data
    path.write_bytes(changed)


@settings(max_examples=120)
@given(st.lists(tampering(), min_size=1, max_size=2), st.booleans())
def test_a_tampered_directory_gives_a_report_that_is_ok_only_when_untouched(
    tmp_path_factory: pytest.TempPathFactory,
    changes: list[tuple[str, str, int, bytes]],
    check_leaves: bool,
) -> None:
    directory = _good_directory(tmp_path_factory.mktemp("audit"))
    verify_directory(directory, [SIGNER.verifier()], origin=ORIGIN)  # trusted from now on
    for name, how, where, data in changes:
        _tamper(directory.path / name, how, where, data)
    report = verify_directory(
        directory, [SIGNER.verifier()], origin=ORIGIN, check_leaves=check_leaves
    )
    if report.ok:  # only the real log, whole and in order, verifies
        assert (report.tree_size, report.root_hash) == (len(LEAVES), ROOT)
        stored = _stored(directory)
        assert stored is not None
        assert stored[: len(LEAVES)] == list(enumerate(LEAVES))
    try:
        _, leaf, proof = prove_entry(directory, 2, [SIGNER.verifier()], origin=ORIGIN)
    except (AuditDirectoryError, NoteError, CheckpointError, merkle.ProofError):
        return
    assert leaf == LEAVES[2]
    merkle.verify_inclusion(2, len(LEAVES), merkle.leaf_hash(leaf), proof, ROOT)


def test_a_leaf_nested_thousands_deep_is_named_not_a_crash(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    directory = AuditDirectory(tmp_path)
    directory.start_entries(keep=False)
    directory.append_entries([(0, deep)])
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(deep)])
    directory.write_checkpoint(sign_checkpoint(Checkpoint(ORIGIN, 1, root), [SIGNER]))
    report = verify_directory(directory, [SIGNER.verifier()], origin=ORIGIN, check_leaves=True)
    assert report.failures == ["Entry 0 is not a well-formed broker log leaf."]


def test_proving_with_a_checkpoint_of_another_origin_is_an_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    _good_directory(tmp_path)
    result = CliRunner().invoke(
        app,
        ["audit", "prove", "2", "--dir", str(tmp_path), "--key", SIGNER.verifier().vkey,
         "--origin", "another.log/v1"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, CheckpointError)


def test_proving_with_entries_out_of_order_is_refused(tmp_path: Path) -> None:
    directory = _good_directory(tmp_path)
    directory.start_entries(keep=False)
    directory.append_entries((i, LEAVES[i]) for i in (0, 2, 1, 3, 4))
    with pytest.raises(AuditDirectoryError, match="out of order"):
        prove_entry(directory, 2, [SIGNER.verifier()], origin=ORIGIN)
