"""Tampering with the audit log as a malicious database owner would, and who notices.

Every test is one story on a real SQLite file driven through the real `broker` command:

1. The operator runs a broker: the demo catalogue, a few consents, one of them withdrawn, and a
   signed checkpoint (11 entries).
2. An auditor fetches the log from the database and verifies it with the log's public key; the
   verified checkpoint and entries are remembered in the audit directory.
3. Someone with write access to the database (the triggers that make the log tables
   append-only are dropped first, as only a database owner could) changes the log.
4. The auditor fetches again and `broker audit verify` exits 1 and names the problem; where the
   broker itself can tell, `broker log check` (what `broker serve` runs at start) fails too.

Preparing step 1 and 2 takes a dozen broker processes, so it is done once per module and each
test works on its own copy of the broker's data directory and the auditor's directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.ledger import merkle
from broker.ledger.checkpoint import Checkpoint, sign_checkpoint
from broker.ledger.events import canonical_json, decode_leaf
from broker.ledger.note import Ed25519Signer, format_vkey, parse_vkey

BROKER = [sys.executable, "-m", "broker.cli"]
ORIGIN = "omadata.localhost/audit/v1"  # the default BROKER_LOG_ORIGIN
TIMEOUT = 120  # seconds for one broker command; generous, as test machines can be busy

# The demo catalogue publishes 4 agreements (entries 0-3); then 6 consents are given (4-9, in
# whatever order the processes win the write lock) and one is withdrawn (10).
GIVEN = [
    ("aino-virtanen", "selfcare-labs-medications"),
    ("aino-virtanen", "selfcare-immunisations"),
    ("matti-korhonen", "research-diagnoses"),
    ("matti-korhonen", "selfcare-labs-medications"),
    ("karin-lindqvist", "peer-support-plan"),
    ("sam-taylor", "selfcare-immunisations"),
]
SIZE = 11


# --- Running the broker ----------------------------------------------------------------------


def _clean_env(data_dir: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    return {**clean, "BROKER_DATA_DIR": str(data_dir)}


def _start(env: dict[str, str], args: Sequence[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BROKER, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(
    proc: subprocess.Popen[str], timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_together(
    env: dict[str, str], *commands: Sequence[str]
) -> list[subprocess.CompletedProcess[str]]:
    """Run broker commands as concurrent processes (they queue on the database's write lock)."""
    return [_finish(proc) for proc in [_start(env, args) for args in commands]]


@dataclass
class World:
    """One broker installation (data directory: database and keys) and one auditor."""

    data_dir: Path
    audit_dir: Path
    vkey: str

    @property
    def signer(self) -> str:
        """`name+keyid` of the log key, as verify reports it in `signed_by`."""
        return "+".join(self.vkey.split("+", 2)[:2])

    @property
    def env(self) -> dict[str, str]:
        return _clean_env(self.data_dir)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "broker.sqlite3"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def broker(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run one `broker` command on this installation."""
        return _finish(_start(self.env, args), timeout)

    def ok(self, *args: str) -> Any:
        """Run a command that must succeed; its JSON output."""
        result = self.broker(*args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def give_consents(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """Each person gives consent to an agreement, as concurrent operator commands."""
        results = run_together(
            self.env,
            *[["consent", "give", "--person", p, "--agreement", a] for p, a in pairs],
        )
        for result in results:
            assert result.returncode == 0, result.stderr
        return [json.loads(r.stdout) for r in results]

    # The auditor's side.

    def fetch(self, *, full: bool = False) -> dict[str, Any]:
        """`broker audit fetch` from the database into the audit directory."""
        args = ["audit", "fetch", self.db_url, str(self.audit_dir)]
        return self.ok(*args, *(["--full"] if full else []))

    def verify(self, key: str | None = None) -> tuple[int, dict[str, Any]]:
        """`broker audit verify`: exit status and the JSON report."""
        result = self.broker("audit", "verify", str(self.audit_dir), "--key", key or self.vkey)
        return result.returncode, json.loads(result.stdout)

    @property
    def trusted(self) -> bytes:
        """The checkpoint the auditor trusts since the last verification that passed."""
        return (self.audit_dir / "trusted-checkpoint").read_bytes()


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Steps 1 and 2 of the story: a broker with 11 signed entries, verified by an auditor."""
    root = tmp_path_factory.mktemp("original")
    world = World(root / "var", root / "audit", vkey="")
    assert world.broker("db", "upgrade").returncode == 0
    assert world.ok("catalogue", "load", "--demo")["created"]["agreement"] == 4
    given = world.give_consents(GIVEN)
    withdrawn = world.ok("consent", "withdraw", given[1]["id"], "--as", given[1]["person_id"])
    assert withdrawn["status"] == "withdrawn"
    assert world.ok("log", "sign") == {"signed": True, "tree_size": SIZE}
    [log_key] = [k for k in world.ok("keys", "list") if k["use"] == "log"]
    world.vkey = log_key["vkey"]

    assert world.fetch() == {"tree_size": SIZE, "fetched": SIZE, "from": 0}
    status, report = world.verify()
    assert status == 0, report
    assert report["event_counts"] == {
        "agreement.published": 4,
        "consent.given": 6,
        "consent.withdrawn": 1,
    }
    return world


@pytest.fixture
def world(original: World, tmp_path: Path) -> World:
    """This test's own copy of the broker's data directory and of the auditor's directory."""
    copy = World(tmp_path / "var", tmp_path / "audit", original.vkey)
    shutil.copytree(original.data_dir, copy.data_dir)
    shutil.copytree(original.audit_dir, copy.audit_dir)
    return copy


# --- What a database owner can do ------------------------------------------------------------


@contextmanager
def as_database_owner(world: World) -> Iterator[sqlite3.Connection]:
    """A raw connection with the append-only triggers dropped, committed at the end."""
    conn = sqlite3.connect(world.db_path)
    try:
        for table in ("log_leaf", "log_hash", "log_checkpoint"):
            for action in ("update", "delete"):
                conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
        yield conn
        conn.commit()
    finally:
        conn.close()


def leaf(conn: sqlite3.Connection, index: int) -> bytes:
    return bytes(conn.execute("SELECT leaf FROM log_leaf WHERE idx = ?", (index,)).fetchone()[0])


def backdate(data: bytes) -> bytes:
    """The leaf with its timestamp moved a year back, still canonical broker JSON."""
    body = decode_leaf(data)
    year, rest = body["at"].split("-", 1)
    body["at"] = f"{int(year) - 1}-{rest}"
    changed = canonical_json(body)
    assert changed != data
    return changed


def rebuild_tree(conn: sqlite3.Connection) -> int:
    """Recompute every stored hash and the head from the leaves as they are now; the size.

    What an attacker does after changing leaves, so that the log agrees with itself again.
    """
    tree = merkle.MemoryHashStore()
    for (data,) in conn.execute("SELECT leaf FROM log_leaf ORDER BY idx"):
        tree.append_record(merkle.leaf_hash(bytes(data)))
    hashes = tree.read_hashes(range(tree.stored_count))
    conn.execute("DELETE FROM log_hash")
    conn.executemany("INSERT INTO log_hash (id, hash) VALUES (?, ?)", enumerate(hashes))
    conn.execute("UPDATE log_head SET size = ?, root = ? WHERE id = 1", (tree.size, tree.root()))
    return tree.size


def assert_verify_fails(world: World, *expected: str, key: str | None = None) -> dict[str, Any]:
    """The auditor's verification exits 1, names each expected problem, and trusts nothing new."""
    trusted_before = world.trusted
    status, report = world.verify(key)
    assert status == 1, report
    assert report["ok"] is False
    for text in expected:
        assert any(text in failure for failure in report["failures"]), (text, report["failures"])
    assert world.trusted == trusted_before
    return report


def assert_log_check_fails(world: World, expected: str) -> None:
    """The broker's own check of its stored log (run by `broker serve` at start) fails."""
    result = world.broker("log", "check")
    assert result.returncode == 1, result.stdout
    assert expected in result.stderr


def broker_grows_and_auditor_verifies(world: World) -> dict[str, Any]:
    """Two more consents, a new checkpoint, an incremental fetch and a verification that passes."""
    world.give_consents(
        [("sam-taylor", "peer-support-plan"), ("karin-lindqvist", "research-diagnoses")]
    )
    assert world.ok("log", "sign") == {"signed": True, "tree_size": SIZE + 2}
    assert world.fetch() == {"tree_size": SIZE + 2, "fetched": 2, "from": SIZE}
    status, report = world.verify()
    assert status == 0, report
    return report


# --- The stories -----------------------------------------------------------------------------


def test_the_log_grows_and_the_auditor_verifies_only_what_is_new(world: World) -> None:
    report = broker_grows_and_auditor_verifies(world)

    assert report["ok"] is True
    assert report["tree_size"] == SIZE + 2
    assert report["consistent_with_trusted_size"] == SIZE
    assert report["signed_by"] == [world.signer]
    assert report["failures"] == []
    assert Checkpoint.parse(world.trusted.decode().split("\n\n")[0] + "\n").size == SIZE + 2
    assert (world.audit_dir / "verified-hashes.bin").stat().st_size == 32 * (SIZE + 2)
    assert world.ok("log", "check") == {"ok": True, "tree_size": SIZE + 2}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_one_changed_byte_in_one_entry_is_named_by_auditor_and_broker(world: World) -> None:
    with as_database_owner(world) as db:
        original = leaf(db, 5)
        year_digit = original.index(b'"at":"') + len(b'"at":"') + 3
        changed = bytearray(original)
        changed[year_digit] ^= 1  # 2026 becomes 2027: one byte, one bit
        db.execute("UPDATE log_leaf SET leaf = ? WHERE idx = 5", (bytes(changed),))

    assert world.fetch(full=True)["tree_size"] == SIZE
    assert_verify_fails(
        world,
        "Entries 5 differ from the copy verified before: the log's history was rewritten.",
        f"The {SIZE} entries do not hash to the checkpoint's root",
        f"The first {SIZE} entries no longer hash to the checkpoint verified before",
    )
    assert_log_check_fails(world, "stored hash at level 0, position 5 does not match the leaves")
    serve = world.broker("serve", "--port", str(_free_port()), timeout=60)
    assert serve.returncode != 0
    assert "stored hash at level 0, position 5 does not match the leaves" in serve.stderr
    assert "Application startup failed" in serve.stderr


def test_without_a_full_fetch_the_auditor_keeps_its_own_verified_copy(world: World) -> None:
    # The broker's signed root still covers the original entry, and an incremental fetch keeps
    # the copy verified before: the auditor's copy stays right, but the change is only seen by
    # fetching everything again (or by the broker's own check).
    with as_database_owner(world) as db:
        db.execute("UPDATE log_leaf SET leaf = ? WHERE idx = 5", (backdate(leaf(db, 5)),))

    assert world.fetch() == {"tree_size": SIZE, "fetched": 0, "from": SIZE}
    assert world.verify()[0] == 0
    assert world.fetch(full=True)["fetched"] == SIZE
    assert_verify_fails(world, "Entries 5 differ from the copy verified before")


@pytest.mark.parametrize("renumber", [False, True], ids=["leaving-a-gap", "renumbering-the-rest"])
def test_a_deleted_entry_is_named_by_auditor_and_broker(world: World, renumber: bool) -> None:
    with as_database_owner(world) as db:
        db.execute("DELETE FROM log_event WHERE idx = 5")
        db.execute("DELETE FROM log_leaf WHERE idx = 5")
        if renumber:  # close the gap, hoping nobody counts
            for index in range(6, SIZE):
                db.execute("UPDATE log_leaf SET idx = ? WHERE idx = ?", (index - 1, index))
                db.execute("UPDATE log_event SET idx = ? WHERE idx = ?", (index - 1, index))

    assert world.fetch(full=True)["fetched"] == SIZE - 1
    if renumber:
        # No gap any more, but one entry fewer than the checkpoint commits to.
        report = assert_verify_fails(
            world,
            f"The checkpoint commits to {SIZE} entries but only {SIZE - 1} are present: "
            "the log was truncated or entries were deleted.",
        )
        assert len(report["failures"]) == 1
        assert_log_check_fails(world, f"the head says {SIZE} entries but {SIZE - 1} are stored")
    else:
        assert_verify_fails(world, "Entry 5 is missing (the next one is 6).")
        assert_log_check_fails(world, "log entry 5 is missing")


def test_two_swapped_entries_are_named_by_auditor_and_broker(world: World) -> None:
    with as_database_owner(world) as db:
        fourth, fifth = leaf(db, 4), leaf(db, 5)
        db.execute("UPDATE log_leaf SET leaf = ? WHERE idx = 4", (fifth,))
        db.execute("UPDATE log_leaf SET leaf = ? WHERE idx = 5", (fourth,))

    world.fetch(full=True)
    report = assert_verify_fails(
        world,
        "Entries 4, 5 differ from the copy verified before: the log's history was rewritten.",
        f"The {SIZE} entries do not hash to the checkpoint's root",
    )
    # Nothing is missing or malformed: the same entries are there, in another order.
    assert report["event_counts"] == {
        "agreement.published": 4,
        "consent.given": 6,
        "consent.withdrawn": 1,
    }
    assert_log_check_fails(world, "stored hash at level 0, position 4 does not match the leaves")


def test_a_truncated_log_under_the_old_checkpoint_is_named_by_auditor_and_broker(
    world: World,
) -> None:
    # The last three entries (the withdrawal among them) are cut off; the head is moved back so
    # that the broker appends after entry 7, but the signed checkpoint of 11 is left in place.
    with as_database_owner(world) as db:
        db.execute("DELETE FROM log_event WHERE idx >= 8")
        db.execute("DELETE FROM log_leaf WHERE idx >= 8")
        assert rebuild_tree(db) == 8

    assert world.fetch(full=True) == {"tree_size": SIZE, "fetched": 8, "from": 0}
    assert_verify_fails(
        world,
        f"The checkpoint commits to {SIZE} entries but only 8 are present: "
        "the log was truncated or entries were deleted.",
    )
    assert_log_check_fails(world, f"a checkpoint of size {SIZE} is beyond the log")


def test_a_truncated_and_re_signed_log_is_a_rollback_only_the_auditor_sees(world: World) -> None:
    # A thorough attacker also deletes the checkpoint that covers the cut entries and lets the
    # broker sign the shorter log. Now the log agrees with itself, so the broker cannot tell;
    # the auditor remembers that it verified 11 entries.
    with as_database_owner(world) as db:
        db.execute("DELETE FROM log_event WHERE idx >= 8")
        db.execute("DELETE FROM log_leaf WHERE idx >= 8")
        rebuild_tree(db)
        db.execute("DELETE FROM log_checkpoint WHERE size > 8")
    assert world.ok("log", "sign") == {"signed": True, "tree_size": 8}
    assert world.ok("log", "check") == {"ok": True, "tree_size": 8}

    assert world.fetch(full=True)["tree_size"] == 8
    report = assert_verify_fails(
        world,
        f"Rollback: the log now shows 8 entries, but {SIZE} were verified before. "
        "A log never shrinks.",
    )
    assert report["signed_by"] == [world.signer]  # a genuine signature


def test_serving_an_older_checkpoint_is_a_rollback(world: World) -> None:
    broker_grows_and_auditor_verifies(world)  # the auditor now trusts 13 entries
    # The newest checkpoint is deleted, so the broker serves the one of 11 entries again: the
    # view it would give someone it wants to hide the two newest consents from.
    with as_database_owner(world) as db:
        db.execute("DELETE FROM log_checkpoint WHERE size > ?", (SIZE,))
    assert world.ok("log", "check") == {"ok": True, "tree_size": SIZE + 2}

    assert world.fetch(full=True) == {"tree_size": SIZE, "fetched": SIZE, "from": 0}
    assert_verify_fails(
        world,
        f"Rollback: the log now shows {SIZE} entries, but {SIZE + 2} were verified before. "
        "A log never shrinks.",
    )


def test_history_rewritten_and_re_signed_with_the_broker_key_is_not_consistent(
    world: World,
) -> None:
    # The attacker holds the database and the log key: entry 5 is backdated, every hash and the
    # head recomputed. The old checkpoint still disagrees, and the broker says so...
    with as_database_owner(world) as db:
        db.execute("UPDATE log_leaf SET leaf = ? WHERE idx = 5", (backdate(leaf(db, 5)),))
        rebuild_tree(db)
    assert_log_check_fails(world, f"the checkpoint of size {SIZE} disagrees with the log")
    # ... so it is deleted and the broker signs the rewritten history, which now verifies on its
    # own: right size, right root, genuine signature.
    with as_database_owner(world) as db:
        db.execute("DELETE FROM log_checkpoint")
    assert world.ok("log", "sign") == {"signed": True, "tree_size": SIZE}
    assert world.ok("log", "check") == {"ok": True, "tree_size": SIZE}

    world.fetch(full=True)
    report = assert_verify_fails(
        world,
        "Entries 5 differ from the copy verified before: the log's history was rewritten.",
        f"The first {SIZE} entries no longer hash to the checkpoint verified before: the new "
        "checkpoint is not consistent with it (history was rewritten or forked).",
    )
    assert report["signed_by"] == [world.signer]
    assert not any("checkpoint's root" in failure for failure in report["failures"])


def test_a_re_signed_rewrite_that_also_grew_is_not_consistent(world: World) -> None:
    # The same rewrite, hidden among new entries: the checkpoint is bigger than the trusted
    # one, so it is no rollback, but its first 11 entries are not the ones verified before.
    with as_database_owner(world) as db:
        db.execute("UPDATE log_leaf SET leaf = ? WHERE idx = 10", (backdate(leaf(db, 10)),))
        rebuild_tree(db)
        db.execute("DELETE FROM log_checkpoint")
    world.give_consents([("sam-taylor", "peer-support-plan")])
    assert world.ok("log", "sign") == {"signed": True, "tree_size": SIZE + 1}

    assert world.fetch(full=True)["tree_size"] == SIZE + 1
    report = assert_verify_fails(
        world,
        "Entries 10 differ from the copy verified before",
        f"The first {SIZE} entries no longer hash to the checkpoint verified before",
    )
    assert report["consistent_with_trusted_size"] == SIZE


def _other_signer() -> Ed25519Signer:
    return Ed25519Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))


def test_verifying_with_another_key_fails(world: World) -> None:
    # Same log name, another key: e.g. a key taken from somewhere other than the broker.
    wrong = format_vkey(ORIGIN, _other_signer().public_key)
    assert parse_vkey(wrong).key_id != parse_vkey(world.vkey).key_id

    report = assert_verify_fails(
        world,
        "The checkpoint is not signed by the given key, or is malformed: note has no signature "
        "by a known key",
        key=wrong,
    )
    assert report["failures"] == [report["failures"][0]]  # nothing else is looked at


def test_a_checkpoint_signed_by_an_attacker_without_the_key_fails(world: World) -> None:
    # Without the broker's key, a rewrite can only be signed with a key of one's own.
    with as_database_owner(world) as db:
        db.execute("UPDATE log_leaf SET leaf = ? WHERE idx = 5", (backdate(leaf(db, 5)),))
        size = rebuild_tree(db)
        root = bytes(db.execute("SELECT root FROM log_head").fetchone()[0])
        note = sign_checkpoint(Checkpoint(ORIGIN, size, root), [_other_signer()])
        db.execute("DELETE FROM log_checkpoint")
        db.execute(
            "INSERT INTO log_checkpoint (size, root, note, signed_at) "
            "VALUES (?, ?, ?, '2026-11-23 09:00:00.000000')",
            (size, root, note),
        )

    world.fetch(full=True)
    assert_verify_fails(
        world, "The checkpoint is not signed by the given key, or is malformed: note has no"
    )
    assert_log_check_fails(world, f"the checkpoint of size {SIZE} does not verify")


def test_a_checkpoint_edited_after_signing_fails(world: World) -> None:
    # The signature is kept, the size in the text is changed to hide the last entry.
    with as_database_owner(world) as db:
        note = bytes(db.execute("SELECT note FROM log_checkpoint").fetchone()[0])
        edited = note.replace(f"\n{SIZE}\n".encode(), f"\n{SIZE - 1}\n".encode(), 1)
        assert edited != note
        db.execute("UPDATE log_checkpoint SET note = ?", (edited,))

    assert world.fetch(full=True)["tree_size"] == SIZE - 1
    assert_verify_fails(
        world,
        "The checkpoint is not signed by the given key, or is malformed: invalid signature for "
        "known key",
    )
    assert_log_check_fails(world, f"the checkpoint of size {SIZE} does not verify")
