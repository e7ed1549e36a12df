"""Turning a Starlette request into the request objects Authlib's server reads."""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, JsonPayload, JsonRequest
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request

MAX_JSON = 64 * 1024
MAX_FIELDS = 1000  # as Starlette's form parser
_URLENCODED = "application/x-www-form-urlencoded"


class _Payload(BasicOAuth2Payload):  # type: ignore[misc]
    def __init__(self, data: dict[str, str], datalist: dict[str, list[str]]) -> None:
        super().__init__(data)
        self._datalist = defaultdict(list, datalist)


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """An OAuth request whose parameters were read from the query string and the form body."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self._args = dict(query)
        self._form = dict(form)
        datalist: dict[str, list[str]] = defaultdict(list)
        for key, value in (*query, *form):
            datalist[key].append(value)
        self.payload = _Payload({**self._args, **self._form}, datalist)
        self.dpop: Any = None

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Json(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


class BodyJsonRequest(JsonRequest):  # type: ignore[misc]
    """A JSON request (dynamic client registration)."""

    def __init__(self, method: str, uri: str, headers: Headers, data: dict[str, Any]) -> None:
        super().__init__(method, uri, headers)
        self.payload = _Json(data)


def public_uri(request: Request, base_url: str) -> str:
    """The request's URI as clients address it: the broker's public base URL, not Host."""
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{base_url}{request.url.path}{query}"


async def read_form_request(request: Request, base_url: str) -> FormRequest:
    """Read query and (for POST) form parameters without blocking a worker thread."""
    form: list[tuple[str, str]] = []
    if request.method == "POST":
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == _URLENCODED:
            # What every OAuth client sends (RFC 6749 §3.2). Parsed as Starlette's form parser
            # does (Latin-1 bytes, then percent-decoding as UTF-8), at a fraction of its cost.
            form = _urlencoded(await request.body())
        else:
            parsed = await request.form()
            form = [(k, v) for k, v in parsed.multi_items() if isinstance(v, str)]
    return FormRequest(
        request.method,
        public_uri(request, base_url),
        request.headers,
        list(request.query_params.multi_items()),
        form,
    )


def _urlencoded(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        # Starlette's answer to a form with too many fields.
        raise HTTPException(
            400, f"Too many fields. Maximum number of fields is {MAX_FIELDS}."
        ) from None


async def read_json_request(request: Request, base_url: str) -> BodyJsonRequest:
    """Read a JSON object body; an empty or non-object body becomes {} (Authlib then refuses)."""
    import json

    raw = await request.body()
    data: Any = {}
    if raw and len(raw) <= MAX_JSON:
        try:
            data = json.loads(raw)
        except ValueError:
            data = {}
    return BodyJsonRequest(
        request.method,
        public_uri(request, base_url),
        request.headers,
        data if isinstance(data, dict) else {},
    )
