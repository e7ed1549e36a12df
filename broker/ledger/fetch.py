"""Fetching a copy of the log into an audit directory, over HTTP or from the database."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx
from sqlalchemy import Engine

from broker.ledger import reader
from broker.ledger.audit import AuditDirectory
from broker.ledger.checkpoint import Checkpoint, CheckpointError
from broker.ledger.errors import LogError
from broker.storage import transaction


class FetchError(LogError):
    """The log could not be fetched: unreachable, refused, or answered nonsense."""

    code = "fetch-failed"
    title = "The log could not be fetched"


class LogSource(Protocol):
    """Where a copy of the log comes from."""

    page_size: int

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint note."""
        ...

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """Entries start <= index < end (at most `page_size`)."""
        ...


# What one answer of a broker may be at most. A checkpoint note is a few hundred bytes; a page
# of entries is about 1 KiB per entry as the broker writes them (a leaf of ~600 bytes, base64
# in JSON), so a page of 1,000 takes ~1 MiB. A broker is not trusted: one that answers without
# end must not fill the auditor's memory.
MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_PAGE_BYTES = 64 * 1024 * 1024


class HttpLogSource:
    """The broker's public log API; entries need an access token with `audit:read`."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        page_size: int = 1000,
        max_page_bytes: int = MAX_PAGE_BYTES,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=30)
        self.page_size = page_size
        self.max_page_bytes = max_page_bytes

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def _get(self, path: str, limit: int, **params: int) -> bytes:
        try:
            with self._client.stream("GET", path, params=params) as response:
                body = _read_at_most(response, limit)
                if body is None:
                    raise FetchError(f"{path} answered more than {limit:,} bytes; refused")
        except httpx.HTTPError as exc:
            raise FetchError(f"{path}: {exc.__class__.__name__}: {exc}") from None
        if response.status_code != 200:
            detail = body[:300].decode("utf-8", "replace")
            raise FetchError(f"{path} answered {response.status_code}: {detail}")
        return body

    def checkpoint(self) -> bytes:
        """GET /v1/log/checkpoint."""
        return self._get("/v1/log/checkpoint", MAX_CHECKPOINT_BYTES)

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """GET /v1/log/entries?start&end."""
        body = self._get("/v1/log/entries", self.max_page_bytes, start=start, end=end)
        return parse_entries(body, start, end)


def _read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The body (decoded), or None as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_entries(body: bytes, start: int, end: int) -> list[tuple[int, bytes]]:
    """The (index, leaf) pairs of a `/v1/log/entries` answer for start <= index < end.

    FetchError unless `body` is a JSON array of {"index": integer in the range asked for,
    "leaf": base64}; the broker that sent it is not trusted, so nothing else gets through.
    """
    try:
        items = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueError
        raise FetchError("/v1/log/entries answered something that is not JSON") from None
    if not isinstance(items, list):
        raise FetchError("/v1/log/entries answered something that is not a JSON array")
    entries: list[tuple[int, bytes]] = []
    for number, item in enumerate(items):
        where = f"/v1/log/entries answered a malformed entry (item {number})"
        if not isinstance(item, dict):
            raise FetchError(f"{where}: not an object")
        index, leaf = item.get("index"), item.get("leaf")
        # bool is an int in Python; an index outside the range asked for cannot be stored.
        if isinstance(index, bool) or not isinstance(index, int) or not start <= index < end:
            raise FetchError(f"{where}: index is not an integer from {start} to {end - 1}")
        if not isinstance(leaf, str):
            raise FetchError(f"{where}: leaf is not a base64 string")
        try:
            entries.append((index, base64.b64decode(leaf, validate=True)))
        except ValueError:  # binascii.Error, and non-ASCII text
            raise FetchError(f"{where}: leaf is not base64") from None
    return entries


class DatabaseLogSource:
    """The log read straight from the broker's database, for operators."""

    def __init__(self, engine: Engine, *, page_size: int = 10_000) -> None:
        self._engine = engine
        self.page_size = page_size

    def checkpoint(self) -> bytes:
        """The newest stored checkpoint."""
        with transaction(self._engine, readonly=True) as session:
            return reader.latest_checkpoint(session)

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """Stored leaves start <= index < end."""
        with transaction(self._engine, readonly=True) as session:
            return reader.entries(session, start, end, self.page_size)


@dataclass(frozen=True)
class FetchResult:
    """How big the fetched checkpoint says the log is, and how many entries came this time."""

    tree_size: int
    fetched: int
    first_index: int


def fetch(
    source: LogSource,
    directory: AuditDirectory,
    *,
    full: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> FetchResult:
    """Download the checkpoint and every entry it covers that the directory lacks.

    The checkpoint is stored unverified: `verify_directory` decides what to trust.
    """
    note = source.checkpoint()
    try:
        text = note.decode("utf-8").split("\n\n", 1)[0] + "\n"
        size = Checkpoint.parse(text).size
    except (UnicodeDecodeError, CheckpointError) as exc:
        raise FetchError(f"the checkpoint is malformed: {exc}") from None
    start = directory.start_entries(keep=not full)
    fetched = 0
    position = start
    while position < size:
        end = min(position + source.page_size, size)
        page = source.entries(position, end)
        if not page:
            # Nothing more to fetch: the verification reports the entries the checkpoint names
            # but the log lacks, and a checkpoint claiming 2**63 entries cannot keep us asking.
            break
        fetched += directory.append_entries(page)
        # Go on after the last entry that came back: a broker whose pages are shorter than
        # ours answers part of the range. Indexes are checked to lie in the range asked for, so
        # every page moves us on; entries missing inside it are reported by the verification.
        position = max(index for index, _ in page) + 1
        if progress is not None:
            progress(position, size)
    directory.write_checkpoint(note)
    return FetchResult(tree_size=size, fetched=fetched, first_index=start)
