"""Verifying a copy of the log offline, with nothing but the log's public key.

An audit directory holds:

- `checkpoint`: the signed checkpoint as fetched (C2SP signed note);
- `entries.bin`: the entries as fetched, each `uint64 index || uint32 length || leaf bytes`
  (big-endian), in the order received;
- after a verification that passed, `trusted-checkpoint` (that checkpoint) and
  `verified-hashes.bin` (the 32-byte leaf hash of every entry it covered).

`verify_directory` recomputes every leaf hash and the root, checks the checkpoint's signature,
and checks the new checkpoint against the trusted one: never smaller (a rollback), and the first
entries must hash to the trusted root (no rewritten history). Every failure is reported with
what it means; nothing is trusted until all checks pass.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from broker.ledger import merkle
from broker.ledger.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from broker.ledger.events import decode_leaf
from broker.ledger.note import NoteError, Verifier

_ENTRY = struct.Struct(">QI")
_MAX_LEAF = 1 << 20
_SHOWN = 10


class AuditDirectoryError(ValueError):
    """The audit directory is missing a file or a file is unreadable."""


@dataclass
class AuditDirectory:
    """The files of one auditor's copy of the log."""

    path: Path

    @property
    def checkpoint_file(self) -> Path:
        return self.path / "checkpoint"

    @property
    def entries_file(self) -> Path:
        return self.path / "entries.bin"

    @property
    def trusted_file(self) -> Path:
        return self.path / "trusted-checkpoint"

    @property
    def verified_hashes_file(self) -> Path:
        return self.path / "verified-hashes.bin"

    def write_checkpoint(self, note: bytes) -> None:
        """Store a freshly fetched checkpoint."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint_file.write_bytes(note)

    def start_entries(self, *, keep: bool) -> int:
        """Prepare to append entries; returns the next index to fetch (0 unless `keep`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not keep or not self.entries_file.exists():
            self.entries_file.write_bytes(b"")
            return 0
        last = -1
        for index, _ in self.iter_entries():
            last = index
        return last + 1

    def append_entries(self, entries: Iterable[tuple[int, bytes]]) -> int:
        """Append entries as fetched; returns how many."""
        count = 0
        with self.entries_file.open("ab") as out:
            for index, leaf in entries:
                out.write(_ENTRY.pack(index, len(leaf)))
                out.write(leaf)
                count += 1
        return count

    def iter_entries(self) -> Iterator[tuple[int, bytes]]:
        """Every stored (index, leaf), in file order."""
        try:
            data = self.entries_file.read_bytes()
        except OSError as exc:
            raise AuditDirectoryError(f"cannot read {self.entries_file}: {exc}") from None
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            if offset + _ENTRY.size > len(view):
                raise AuditDirectoryError(f"{self.entries_file} ends in the middle of an entry")
            index, length = _ENTRY.unpack_from(view, offset)
            offset += _ENTRY.size
            if length > _MAX_LEAF or offset + length > len(view):
                raise AuditDirectoryError(f"{self.entries_file}: entry {index} is cut short")
            yield index, bytes(view[offset : offset + length])
            offset += length

    def read_checkpoint(self, name: str = "checkpoint") -> bytes | None:
        """The stored checkpoint note (`checkpoint` or `trusted-checkpoint`), None if absent."""
        path = self.path / name
        return path.read_bytes() if path.exists() else None

    def verified_hashes(self) -> list[bytes]:
        """The leaf hashes covered by the last verification that passed."""
        if not self.verified_hashes_file.exists():
            return []
        data = self.verified_hashes_file.read_bytes()
        return [data[i : i + 32] for i in range(0, len(data) - len(data) % 32, 32)]

    def accept(self, note: bytes, leaf_hashes: Sequence[bytes]) -> None:
        """Trust `note` and the entries it covers, for the next verification."""
        self.verified_hashes_file.write_bytes(b"".join(leaf_hashes))
        self.trusted_file.write_bytes(note)


@dataclass
class AuditReport:
    """What a verification found. `ok` only when there is no failure at all."""

    tree_size: int = 0
    root_hash: bytes = b""
    entries: int = 0
    signed_by: list[str] = field(default_factory=list)
    event_counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    trusted_size: int | None = None

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.failures


def verify_directory(
    directory: AuditDirectory,
    verifiers: Sequence[Verifier],
    *,
    origin: str | None = None,
    check_leaves: bool = False,
    accept: bool = True,
) -> AuditReport:
    """Verify the copy in `directory`; on success (and with `accept`) trust it for next time."""
    report = AuditReport()
    note = directory.read_checkpoint()
    if note is None:
        report.failures.append("There is no checkpoint in the directory: fetch first.")
        return report
    checkpoint = _open(note, verifiers, origin, report, "checkpoint")
    if checkpoint is None:
        return report
    report.tree_size, report.root_hash = checkpoint.size, checkpoint.root_hash

    leaf_hashes = _read_and_hash(directory, checkpoint.size, report, check_leaves)
    if leaf_hashes is None:
        return report
    _compare_with_verified(directory.verified_hashes(), leaf_hashes, report)
    root = merkle.root_from_leaf_hashes(leaf_hashes) if leaf_hashes else merkle.EMPTY_ROOT
    if root != checkpoint.root_hash:
        report.failures.append(
            f"The {len(leaf_hashes)} entries do not hash to the checkpoint's root: entries were "
            "changed, removed, reordered or added after the checkpoint was signed."
        )
    _compare_with_trusted(directory, verifiers, origin, checkpoint, leaf_hashes, report)
    if report.ok and accept:
        directory.accept(note, leaf_hashes)
    return report


def _open(
    note: bytes, verifiers: Sequence[Verifier], origin: str | None, report: AuditReport, what: str
) -> Checkpoint | None:
    try:
        checkpoint, opened = open_checkpoint(note, verifiers, origin=origin)
    except (NoteError, CheckpointError) as exc:
        report.failures.append(f"The {what} is not signed by the given key, or is malformed: {exc}")
        return None
    report.signed_by = sorted({f"{s.name}+{s.key_id:08x}" for s in opened.verified})
    return checkpoint


def _read_and_hash(
    directory: AuditDirectory, size: int, report: AuditReport, check_leaves: bool
) -> list[bytes] | None:
    """Leaf hashes of entries 0..size-1, or None when the entries cannot be used at all."""
    leaf_hashes: list[bytes] = []
    expected = 0
    problems: list[str] = []
    try:
        for index, leaf in directory.iter_entries():
            report.entries += 1
            if index != expected:
                if index > expected:
                    missing = f"{expected}" if index == expected + 1 else f"{expected}-{index - 1}"
                    problems.append(f"Entry {missing} is missing (the next one is {index}).")
                else:
                    problems.append(f"Entry {index} appears again after entry {expected - 1}.")
                break
            expected += 1
            if index >= size:
                continue  # the log grew after this checkpoint; those entries are not covered
            leaf_hashes.append(hashlib.sha256(b"\x00" + leaf).digest())
            if check_leaves or len(report.event_counts) < 64:
                try:
                    report.event_counts[str(decode_leaf(leaf)["type"])] += 1
                except ValueError:
                    problems.append(f"Entry {index} is not a well-formed broker log leaf.")
    except AuditDirectoryError as exc:
        report.failures.append(str(exc))
        return None
    if len(leaf_hashes) < size:
        problems.append(
            f"The checkpoint commits to {size} entries but only {len(leaf_hashes)} are present: "
            "the log was truncated or entries were deleted."
        )
    report.failures.extend(problems)
    return None if problems else leaf_hashes


def _compare_with_verified(
    verified: list[bytes], leaf_hashes: list[bytes], report: AuditReport
) -> None:
    changed = [i for i, (a, b) in enumerate(zip(verified, leaf_hashes, strict=False)) if a != b]
    if changed:
        shown = ", ".join(str(i) for i in changed[:_SHOWN])
        more = f" and {len(changed) - _SHOWN} more" if len(changed) > _SHOWN else ""
        report.failures.append(
            f"Entries {shown}{more} differ from the copy verified before: "
            "the log's history was rewritten."
        )


def _compare_with_trusted(
    directory: AuditDirectory,
    verifiers: Sequence[Verifier],
    origin: str | None,
    checkpoint: Checkpoint,
    leaf_hashes: list[bytes],
    report: AuditReport,
) -> None:
    note = directory.read_checkpoint("trusted-checkpoint")
    if note is None:
        return
    trusted = _open(note, verifiers, origin, AuditReport(), "trusted checkpoint")
    if trusted is None:
        report.failures.append("The checkpoint trusted before no longer verifies with this key.")
        return
    report.trusted_size = trusted.size
    if checkpoint.size < trusted.size:
        report.failures.append(
            f"Rollback: the log now shows {checkpoint.size} entries, but {trusted.size} were "
            "verified before. A log never shrinks."
        )
        return
    prefix = leaf_hashes[: trusted.size]
    old_root = merkle.root_from_leaf_hashes(prefix) if prefix else merkle.EMPTY_ROOT
    if len(prefix) == trusted.size and old_root != trusted.root_hash:
        report.failures.append(
            f"The first {trusted.size} entries no longer hash to the checkpoint verified before: "
            "the new checkpoint is not consistent with it (history was rewritten or forked)."
        )


def prove_entry(
    directory: AuditDirectory, index: int, verifiers: Sequence[Verifier], *, origin: str | None
) -> tuple[Checkpoint, bytes, list[bytes]]:
    """The checkpoint, leaf and inclusion proof of entry `index`, computed and checked locally."""
    note = directory.read_checkpoint()
    if note is None:
        raise AuditDirectoryError("There is no checkpoint in the directory: fetch first.")
    checkpoint, _ = open_checkpoint(note, verifiers, origin=origin)
    if not 0 <= index < checkpoint.size:
        raise AuditDirectoryError(f"Entry {index} is not in the checkpoint's {checkpoint.size}.")
    hashes: list[bytes] = []
    leaf = b""
    for i, data in directory.iter_entries():
        if i >= checkpoint.size:
            break
        if i == index:
            leaf = data
        hashes.append(merkle.leaf_hash(data))
    if len(hashes) != checkpoint.size:
        raise AuditDirectoryError("The entries do not cover the checkpoint: verify first.")
    proof = merkle.inclusion_proof(index, hashes)
    merkle.verify_inclusion(index, checkpoint.size, hashes[index], proof, checkpoint.root_hash)
    return checkpoint, leaf, proof
