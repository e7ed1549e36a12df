"""`broker audit`: fetch a copy of the log, verify it offline, prove one entry.

Needs only the package and the log's public key (`GET /v1/log/key`).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from broker.cli._common import err, print_json, run
from broker.ledger import merkle
from broker.ledger.audit import (
    AuditDirectory,
    AuditDirectoryError,
    prove_entry,
    verify_directory,
)
from broker.ledger.checkpoint import CheckpointError
from broker.ledger.fetch import DatabaseLogSource, FetchError, HttpLogSource, LogSource, fetch
from broker.ledger.note import NoteError, Verifier, parse_vkey
from broker.storage import create_db_engine

app = typer.Typer(help="Audit the log: fetch, verify, prove.", no_args_is_help=True)

_KEY_HELP = "Verifier key <name>+<id>+<key> (may repeat, e.g. old and new after rotation)."


def _verifiers(keys: list[str]) -> list[Verifier]:
    verifiers = []
    for text in keys:
        candidate = Path(text)
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8").strip()
        try:
            verifiers.append(parse_vkey(text.strip()))
        except NoteError as exc:
            err.print(f"[bold red]Error:[/] not a verifier key: {exc}")
            raise typer.Exit(2) from None
    return verifiers


@app.command("fetch")
def fetch_command(
    source: Annotated[str, typer.Argument(help="Broker base URL (http/https) or database URL.")],
    directory: Annotated[Path, typer.Argument(help="Audit directory to fill.")],
    token: Annotated[
        str | None,
        typer.Option(envvar="BROKER_AUDIT_TOKEN", help="Access token with audit:read (HTTP)."),
    ] = None,
    full: Annotated[bool, typer.Option(help="Fetch every entry again, not only new ones.")] = False,
) -> None:
    """Download the checkpoint and the entries into DIR (unverified: run verify next)."""

    def action() -> None:
        log_source: LogSource
        http: HttpLogSource | None = None
        if source.startswith(("http://", "https://")):
            log_source = http = HttpLogSource(source, token)
        else:
            log_source = DatabaseLogSource(create_db_engine(source))
        try:
            with Progress(
                TextColumn("Fetching entries"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=not err.is_terminal,
            ) as bar:
                task = bar.add_task("entries", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                result = fetch(log_source, AuditDirectory(directory), full=full, progress=progress)
        finally:
            if http is not None:
                http.close()
        print_json(
            {"tree_size": result.tree_size, "fetched": result.fetched, "from": result.first_index}
        )

    run(action)


@app.command("verify")
def verify_command(
    directory: Annotated[Path, typer.Argument(help="Audit directory filled by fetch.")],
    key: Annotated[list[str], typer.Option("--key", help=_KEY_HELP)],
    origin: Annotated[str | None, typer.Option(help="Expected log origin line.")] = None,
    check_leaves: Annotated[
        bool, typer.Option(help="Also check every leaf is canonical broker JSON (slower).")
    ] = False,
) -> None:
    """Recompute every hash and the root, check the signature and consistency; exit 1 on failure."""
    report = verify_directory(
        AuditDirectory(directory), _verifiers(key), origin=origin, check_leaves=check_leaves
    )
    summary = {
        "ok": report.ok,
        "tree_size": report.tree_size,
        "root_hash": base64.b64encode(report.root_hash).decode("ascii"),
        "entries_read": report.entries,
        "signed_by": report.signed_by,
        "consistent_with_trusted_size": report.trusted_size,
        "event_counts": dict(sorted(report.event_counts.items())),
        "failures": report.failures,
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    if report.ok:
        err.print(f"[bold green]Verified[/]: {report.tree_size} entries, signature and root good.")
        return
    err.print(f"[bold red]Verification FAILED[/] ({len(report.failures)} problem(s)):")
    for failure in report.failures:
        err.print(f"  - {failure}", markup=False, highlight=False)
    raise typer.Exit(1)


@app.command("prove")
def prove_command(
    index: Annotated[int, typer.Argument(help="The entry to prove.")],
    directory: Annotated[Path, typer.Option("--dir", help="Audit directory filled by fetch.")],
    key: Annotated[list[str], typer.Option("--key", help=_KEY_HELP)],
    url: Annotated[
        str | None, typer.Option(help="Also check the broker's own proof for this entry.")
    ] = None,
    origin: Annotated[str | None, typer.Option(help="Expected log origin line.")] = None,
) -> None:
    """Print and check the inclusion proof of entry INDEX in the fetched checkpoint."""

    def action() -> None:
        try:
            checkpoint, leaf, proof = prove_entry(
                AuditDirectory(directory), index, _verifiers(key), origin=origin
            )
        # CheckpointError: a checkpoint signed by the key but of another origin, or malformed.
        except (AuditDirectoryError, NoteError, CheckpointError, merkle.ProofError) as exc:
            err.print(f"[bold red]Error:[/] {exc}", markup=False)
            raise typer.Exit(1) from None
        result = {
            "index": index,
            "tree_size": checkpoint.size,
            "root_hash": base64.b64encode(checkpoint.root_hash).decode("ascii"),
            "leaf": leaf.decode("utf-8", errors="replace"),
            "leaf_hash": base64.b64encode(merkle.leaf_hash(leaf)).decode("ascii"),
            "hashes": [base64.b64encode(h).decode("ascii") for h in proof],
        }
        if url is not None:
            result["broker_proof_matches"] = _broker_proof_matches(
                url, index, checkpoint.size, proof
            )
            if not result["broker_proof_matches"]:
                print_json(result)
                err.print("[bold red]The broker's proof differs from the one computed here.[/]")
                raise typer.Exit(1)
        print_json(result)

    run(action)


def _broker_proof_matches(url: str, index: int, size: int, proof: list[bytes]) -> bool:
    response = httpx.get(
        f"{url.rstrip('/')}/v1/log/proofs/inclusion",
        params={"index": index, "tree_size": size},
        timeout=30,
    )
    if response.status_code != 200:
        raise FetchError(f"the broker answered {response.status_code}: {response.text[:200]}")
    return parse_inclusion_proof(response.content) == proof


def parse_inclusion_proof(body: bytes) -> list[bytes]:
    """The hashes of a `/v1/log/proofs/inclusion` answer; FetchError if it is not one."""
    try:
        hashes = json.loads(body)["hashes"]
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise TypeError("hashes is not a list of strings")
        return [base64.b64decode(h, validate=True) for h in hashes]
    # ValueError: not JSON, not UTF-8 or not base64; the others: not an object with hashes.
    except (ValueError, TypeError, KeyError, RecursionError):
        raise FetchError("the broker's inclusion proof is malformed") from None
