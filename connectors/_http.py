"""One bounded GET of a JSON body from a source, with every failure mapped to a ConnectorError.

The boundary where httpx's errors become ours: a timeout anywhere is `SourceTimeout`; a failure
before the response arrives, or any non-2xx status, is `SourceUnavailable`; a body that is cut
short, larger than the cap, or not JSON is `SourcePayloadInvalid`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from connectors.base import SourcePayloadInvalid, SourceTimeout, SourceUnavailable

DEFAULT_MAX_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How long and how much a connector takes from a source in one fetch."""

    timeout: float = 5.0
    """Seconds for the whole fetch (every page); also the cap of each connect and read."""
    max_bytes: int = DEFAULT_MAX_BYTES
    """Largest body accepted, per response, counted after content decoding."""
    max_pages: int = 20
    """Most pages followed in one fetch; a longer result is refused, never cut."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """JSON with numbers kept exact (Decimal, never float); SourcePayloadInvalid otherwise."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SourcePayloadInvalid("the source's answer is not valid JSON") from None


class JsonSource:
    """An HTTP client for one source: GETs JSON with a bearer token, within `Limits`."""

    def __init__(self, limits: Limits, *, accept: str = "application/json") -> None:
        self.limits = limits
        self._accept = accept
        # No redirects: a token sent to the source must never follow a Location elsewhere.
        self._client = httpx.Client(follow_redirects=False, trust_env=False)

    def deadline(self) -> float:
        """The monotonic time by which a fetch started now must be done."""
        return time.monotonic() + self.limits.timeout

    def get_json(
        self, url: str, *, token: str, deadline: float, params: Mapping[str, str] | None = None
    ) -> Any:
        """GET `url` and parse its JSON body; one of the three ConnectorErrors on any failure."""
        return parse_json(self._get(url, token=token, deadline=deadline, params=params))

    def _get(
        self, url: str, *, token: str, deadline: float, params: Mapping[str, str] | None
    ) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SourceTimeout("the source did not answer in time")
        timeout = httpx.Timeout(min(remaining, self.limits.timeout))
        headers = {"Authorization": f"Bearer {token}", "Accept": self._accept}
        in_body = False
        try:
            with self._client.stream(
                "GET", url, params=params, headers=headers, timeout=timeout
            ) as response:
                if not 200 <= response.status_code < 300:
                    raise SourceUnavailable(f"the source answered HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.limits.max_bytes:
                    raise SourcePayloadInvalid(self._too_large())
                in_body = True
                return self._read(response, deadline)
        except httpx.TimeoutException:
            raise SourceTimeout("the source did not answer in time") from None
        except httpx.DecodingError:
            raise SourcePayloadInvalid("the source's answer could not be decoded") from None
        except httpx.TransportError as exc:
            if in_body:
                raise SourcePayloadInvalid("the source's answer was cut short") from None
            raise SourceUnavailable(f"the source could not be reached ({_kind(exc)})") from None

    def _read(self, response: httpx.Response, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.limits.max_bytes:
                raise SourcePayloadInvalid(self._too_large())
            # The read timeout bounds each read; this bounds a source that drips slowly.
            if time.monotonic() > deadline:
                raise SourceTimeout("the source did not answer in time")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> str:
        return f"the source's answer is larger than {self.limits.max_bytes} bytes"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _kind(exc: httpx.TransportError) -> str:
    # The class name says what happened (ConnectError, ReadError, ...) without any content.
    return type(exc).__name__
