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
        data = self.verified_hashes_bytes()
        return [data[i : i + 32] for i in range(0, len(data) - len(data) % 32, 32)]

    def verified_hashes_bytes(self) -> bytes:
        """`verified_hashes` as one byte string (32 bytes each), empty if none."""
        if not self.verified_hashes_file.exists():
            return b""
        return self.verified_hashes_file.read_bytes()

    def accept(self, note: bytes, leaf_hashes: Sequence[bytes]) -> None:
        """Trust `note` and the entries it covers, for the next verification."""
        self.accept_joined(note, b"".join(leaf_hashes))

    def accept_joined(self, note: bytes, joined_leaf_hashes: bytes) -> None:
        """`accept` with the leaf hashes already joined into one byte string."""
        self.verified_hashes_file.write_bytes(joined_leaf_hashes)
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
    """Verify the copy in `directory`; on success (and with `accept`) trust it for next time.

    With `check_leaves`, also decode every leaf and fail on any that is not canonical broker
    JSON (several times slower); without it, event types are counted from the raw bytes.
    """
    report = AuditReport()
    note = directory.read_checkpoint()
    if note is None:
        report.failures.append("There is no checkpoint in the directory: fetch first.")
        return report
    checkpoint = _open(note, verifiers, origin, report, "checkpoint")
    if checkpoint is None:
        return report
    report.tree_size, report.root_hash = checkpoint.size, checkpoint.root_hash
    # Problems with the trusted checkpoint are listed last, after those of the entries.
    trust_problems = AuditReport()
    trusted = _trusted_checkpoint(directory, verifiers, origin, checkpoint, trust_problems)
    report.trusted_size = trust_problems.trusted_size

    leaf_hashes = _read_and_hash(directory, checkpoint.size, report, check_leaves)
    if leaf_hashes is None:
        report.failures.extend(trust_problems.failures)
        return report
    # One byte string serves both the comparison with the verified copy and `accept`.
    joined = b"".join(leaf_hashes)
    _compare_with_verified(directory.verified_hashes_bytes(), joined, report)
    sizes = {len(leaf_hashes)}
    if trusted is not None and trusted.size <= len(leaf_hashes):
        sizes.add(trusted.size)
    # Both roots in one pass over the leaf hashes: the trusted one is a prefix of the tree.
    heads = merkle.tree_heads(leaf_hashes, sizes)
    if heads[len(leaf_hashes)] != checkpoint.root_hash:
        report.failures.append(
            f"The {len(leaf_hashes)} entries do not hash to the checkpoint's root: entries were "
            "changed, removed, reordered or added after the checkpoint was signed."
        )
    if trusted is not None and trusted.size in heads and heads[trusted.size] != trusted.root_hash:
        report.failures.append(
            f"The first {trusted.size} entries no longer hash to the checkpoint verified before: "
            "the new checkpoint is not consistent with it (history was rewritten or forked)."
        )
    report.failures.extend(trust_problems.failures)
    if report.ok and accept:
        directory.accept_joined(note, joined)
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
    """Leaf hashes of entries 0..size-1, or None when the entries cannot be used at all.

    One pass over `entries.bin` in memory. This loop is the whole cost of verifying a large
    log, so it is written flat: no generator, no per-entry copy for hashing.
    """
    try:
        data = directory.entries_file.read_bytes()
    except OSError as exc:
        report.failures.append(f"cannot read {directory.entries_file}: {exc}")
        return None
    view = memoryview(data)
    unpack, header = _ENTRY.unpack_from, _ENTRY.size
    sha, find, rfind = hashlib.sha256, data.find, data.rfind
    leaf_hashes: list[bytes] = []
    keep = leaf_hashes.append
    # Event types by their raw bytes; without check_leaves a leaf is not decoded at all.
    types: dict[bytes, int] = {}
    count = types.get
    problems: list[str] = []
    offset, end, expected = 0, len(data), 0
    while offset < end:
        if offset + header > end:
            report.failures.append(f"{directory.entries_file} ends in the middle of an entry")
            return None
        index, length = unpack(data, offset)
        offset += header
        stop = offset + length
        if length > _MAX_LEAF or stop > end:
            report.failures.append(f"{directory.entries_file}: entry {index} is cut short")
            return None
        report.entries += 1
        if index != expected:
            if index > expected:
                missing = f"{expected}" if index == expected + 1 else f"{expected}-{index - 1}"
                problems.append(f"Entry {missing} is missing (the next one is {index}).")
            else:
                problems.append(f"Entry {index} appears again after entry {expected - 1}.")
            break
        expected += 1
        if index < size:  # later entries: the log grew after this checkpoint; not covered
            h = sha(b"\x00")
            h.update(view[offset:stop])
            keep(h.digest())
            if check_leaves:
                kind = _decoded_type(data[offset:stop])
            else:
                # In canonical JSON an unescaped `"type":"` can only be the top-level key (every
                # quote inside a string is escaped, and the only nested object is `subject`);
                # it sits near the end, so search backwards.
                at = rfind(b'"type":"', offset, stop) + 8
                close = find(b'"', at, stop) if at >= 8 else -1
                kind = data[at:close] if close >= 0 else None
            if kind is None:
                problems.append(f"Entry {index} is not a well-formed broker log leaf.")
            else:
                types[kind] = count(kind, 0) + 1
        offset = stop
    for kind, n in types.items():
        report.event_counts[kind.decode("utf-8", errors="replace")] += n
    if len(leaf_hashes) < size:
        problems.append(
            f"The checkpoint commits to {size} entries but only {len(leaf_hashes)} are present: "
            "the log was truncated or entries were deleted."
        )
    report.failures.extend(problems)
    return None if problems else leaf_hashes


def _decoded_type(leaf: bytes) -> bytes | None:
    """The event type of a leaf that is canonical broker JSON; None for any other bytes."""
    try:
        return str(decode_leaf(leaf)["type"]).encode("utf-8")
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return None


def _compare_with_verified(verified: bytes, joined: bytes, report: AuditReport) -> None:
    common = min(len(verified), len(joined)) // 32 * 32
    if verified[:common] == joined[:common]:
        return
    changed = [i for i in range(0, common, 32) if verified[i : i + 32] != joined[i : i + 32]]
    shown = ", ".join(str(i // 32) for i in changed[:_SHOWN])
    more = f" and {len(changed) - _SHOWN} more" if len(changed) > _SHOWN else ""
    report.failures.append(
        f"Entries {shown}{more} differ from the copy verified before: "
        "the log's history was rewritten."
    )


def _trusted_checkpoint(
    directory: AuditDirectory,
    verifiers: Sequence[Verifier],
    origin: str | None,
    checkpoint: Checkpoint,
    report: AuditReport,
) -> Checkpoint | None:
    """The checkpoint verified before, if any and if the new one may extend it."""
    note = directory.read_checkpoint("trusted-checkpoint")
    if note is None:
        return None
    trusted = _open(note, verifiers, origin, AuditReport(), "trusted checkpoint")
    if trusted is None:
        report.failures.append("The checkpoint trusted before no longer verifies with this key.")
        return None
    report.trusted_size = trusted.size
    if checkpoint.size < trusted.size:
        report.failures.append(
            f"Rollback: the log now shows {checkpoint.size} entries, but {trusted.size} were "
            "verified before. A log never shrinks."
        )
        return None
    return trusted


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
        if i != len(hashes):
            # Otherwise the proof would be of whatever entry sits at that position.
            raise AuditDirectoryError(f"Entry {i} is out of order in the entries: verify first.")
        if i == index:
            leaf = data
        hashes.append(merkle.leaf_hash(data))
    if len(hashes) != checkpoint.size:
        raise AuditDirectoryError("The entries do not cover the checkpoint: verify first.")
    proof = merkle.inclusion_proof(index, hashes)
    merkle.verify_inclusion(index, checkpoint.size, hashes[index], proof, checkpoint.root_hash)
    return checkpoint, leaf, proof
