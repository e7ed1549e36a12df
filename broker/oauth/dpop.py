"""RFC 9449 DPoP: proof JWTs that show the client holds the key its tokens are bound to.

A client signs a short-lived proof (`typ` dpop+jwt) over the HTTP method and URI of each request
with a key whose public half travels in the proof's `jwk` header. The token endpoint binds the
tokens it issues to that key (`cnf.jkt`, the RFC 7638 thumbprint); a resource then accepts a
bound token only with a fresh proof from the same key.

Only ES256 and Ed25519 proofs are accepted; "EdDSA" is the RFC 8037 name of the same Ed25519
signature and is accepted as an alias (clients predate RFC 9864). `none`, HMAC and every other
algorithm are refused before any signature check, and the key comes only from the proof's own
`jwk` header, never from a URL or a key id.

Everything here is a pure function of its arguments except the replay cache, so the caller owns
the clock (`now`) and the store of used `jti` values.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey
from joserfc.jws import JWSRegistry

ALGORITHMS: tuple[str, ...] = ("ES256", "Ed25519", "EdDSA")
PROOF_TYPE = "dpop+jwt"

# A proof carries one small public key and a handful of claims (about 500 characters with a
# P-256 key); the cap bounds the work an unauthenticated caller can make us do before any
# signature check.
MAX_PROOF_LENGTH = 4096
MAX_JTI_LENGTH = 256  # also the width of the stored jti (oauth_seen_jti.jti)
# Clients stamp `iat` from their own clocks; a proof from slightly ahead is accepted, but not
# one that could be kept and used later (RFC 9449 §11.1).
FUTURE_SKEW = timedelta(seconds=5)

ErrorCode = Literal["invalid_dpop_proof", "use_dpop_nonce", "invalid_token"]

# Per algorithm: the key type and curve the `jwk` must have, and joserfc's verifier. "EdDSA" is
# verified by joserfc's Ed25519 algorithm: the signature is byte-for-byte the same, and asking
# joserfc for its deprecated "EdDSA" entry raises a SecurityWarning on every call.
_KEY_PARAMS: dict[str, tuple[str, str]] = {
    "ES256": ("EC", "P-256"),
    "Ed25519": ("OKP", "Ed25519"),
    "EdDSA": ("OKP", "Ed25519"),
}
_VERIFIER_NAME = {"ES256": "ES256", "Ed25519": "Ed25519", "EdDSA": "Ed25519"}
# Public key members and their exact decoded length in bytes (RFC 7518 §6.2.1, RFC 8037 §2).
# Exact lengths make every key have one encoding, so one key has one thumbprint.
_COORDINATES: dict[str, dict[str, int]] = {"EC": {"x": 32, "y": 32}, "OKP": {"x": 32}}
# Members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_THUMBPRINT_MEMBERS: dict[str, tuple[str, ...]] = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
}
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class DPoPError(Exception):
    """A DPoP proof, or the binding between a proof and a token, is not acceptable.

    `error` is the OAuth error code: `invalid_dpop_proof` for a bad proof (token endpoint: 400
    with that code; resource: 401 with `WWW-Authenticate: DPoP error="invalid_dpop_proof"`),
    `use_dpop_nonce` when the server's nonce is missing or stale (same statuses, plus a fresh
    `DPoP-Nonce` header), and `invalid_token` when a valid proof does not fit the access token
    (RFC 9449 §7.1). `description` says which check failed, for the `error_description`; it
    never repeats values taken from the proof.

    Not a BrokerError: these become RFC 6749 / RFC 6750 OAuth errors, not RFC 9457 problems.
    """

    def __init__(self, description: str, *, error: ErrorCode = "invalid_dpop_proof") -> None:
        super().__init__(description)
        self.error: ErrorCode = error
        self.description = description


@dataclass(frozen=True)
class DPoPProof:
    """A verified proof: its key's thumbprint and the claims it was checked against.

    `htu` is the claim as signed (it matched the request URI after normalisation); `iat` is
    timezone-aware UTC.
    """

    jkt: str
    jti: str
    htm: str
    htu: str
    iat: datetime


class ReplayCache(Protocol):
    """Remembers the proof ids used with each key for as long as the proof could be accepted."""

    def seen(self, jkt: str, jti: str, expires_at: datetime) -> bool:
        """True if (jkt, jti) was recorded and has not expired; otherwise record it until
        `expires_at` (timezone-aware) and return False. Must be atomic: of two concurrent
        calls with the same pair, exactly one returns False."""
        ...


class MemoryReplayCache:
    """A ReplayCache for one process: thread-safe, bounded, dropping expired entries as it goes.

    Entries live until their `expires_at` by `clock` (inclusive), which should be the clock
    the proofs' `now` comes from. Keys are free to make, so anyone can fill the cache with
    valid proofs; when it is full, the entry closest to expiry is dropped rather than new
    proofs refused, so a flood costs replay protection for the oldest proofs (counted in
    `displaced`) instead of making every client fail. Size `max_entries` above the proofs
    expected within one `max_age`. Several processes need a shared store instead.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], datetime] | None = None
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._expires: dict[tuple[str, str], datetime] = {}
        # Exactly one heap entry per key in _expires: keys are only added when absent.
        self._heap: list[tuple[datetime, str, str]] = []
        self.displaced = 0

    def seen(self, jkt: str, jti: str, expires_at: datetime) -> bool:
        """See ReplayCache.seen."""
        now = self._clock()
        with self._lock:
            while self._heap and self._heap[0][0] < now:
                self._drop_soonest()
            key = (jkt, jti)
            if key in self._expires:
                return True
            if len(self._expires) >= self._max_entries:
                self._drop_soonest()
                self.displaced += 1
            self._expires[key] = expires_at
            heapq.heappush(self._heap, (expires_at, jkt, jti))
            return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._expires)

    def _drop_soonest(self) -> None:
        _, jkt, jti = heapq.heappop(self._heap)
        del self._expires[(jkt, jti)]


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public key, base64url without padding.

    Only the required members of the key type count (EC: crv, kty, x, y; OKP: crv, kty, x;
    RSA: e, kty, n), so `kid`, `alg`, `use` and the like do not change it. ValueError for
    another key type or a missing or non-string required member.
    """
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise ValueError("A JWK thumbprint needs an EC, OKP or RSA key.")
    values = {name: jwk.get(name) for name in members}
    if not all(isinstance(value, str) for value in values.values()):
        raise ValueError(f"A {kty} key needs string members {', '.join(members)}.")
    canonical = json.dumps(values, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def access_token_hash(access_token: str) -> str:
    """The `ath` claim for an access token: base64url(SHA-256(ASCII token)) (RFC 9449 §4.2).

    UnicodeEncodeError (a ValueError) if the token is not ASCII, which no token68 value is.
    """
    return _b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def verify_dpop_proof(
    proof: str,
    *,
    method: str,
    uri: str,
    now: datetime,
    access_token: str | None = None,
    replay: ReplayCache,
    max_age: timedelta = timedelta(seconds=60),
    nonce: str | None = None,
) -> DPoPProof:
    """Check one DPoP header value against the request it came with (RFC 9449 §4.3).

    `proof` is the DPoP header field value; a value holding more than one proof (several
    header fields joined with commas, or whitespace-separated) is refused. `method` and `uri`
    are the request's HTTP method and full target URI as the server received it; query and
    fragment are ignored on both sides, and scheme and host case and default ports do not
    matter. `now` must be timezone-aware. Pass `access_token` at protected resources: the
    proof must then carry its hash in `ath`. Pass `nonce` when the server requires one: a
    proof without it, or with another, fails with error `use_dpop_nonce`.

    The proof must be no older than `max_age` and no more than FUTURE_SKEW ahead of `now`.
    Only a proof that passes every other check is recorded in `replay`, keyed by its key's
    thumbprint and `jti`, so bad proofs cannot use up ids; a recorded pair is refused.

    Returns the verified proof; DPoPError for anything else, whatever `proof` contains.
    ValueError if `uri` is not an absolute http(s) URI or `now` is naive: those are the
    caller's mistakes, not the client's.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    expected_uri = _normalise_uri(uri)
    if expected_uri is None:
        raise ValueError(f"Not an absolute http(s) URI: {uri!r}")
    header, payload, signing_input, signature = _split(proof)
    alg = _check_header(header)
    jwk = header["jwk"]
    _check_signature(alg, jwk, signing_input, signature)
    jkt = jwk_thumbprint(jwk)

    jti, htm, htu = (_string_claim(payload, name) for name in ("jti", "htm", "htu"))
    if not jti:
        raise DPoPError("The DPoP proof's jti claim is empty.")
    if len(jti) > MAX_JTI_LENGTH:
        raise DPoPError(f"The DPoP proof's jti claim is longer than {MAX_JTI_LENGTH} characters.")
    if htm != method:
        raise DPoPError(f"The DPoP proof is for another HTTP method (htm must be {method}).")
    if _normalise_uri(htu) != expected_uri:
        raise DPoPError(f"The DPoP proof is for another URI (htu must be {expected_uri}).")

    issued = _check_iat(payload.get("iat"), now=now, max_age=max_age)
    if access_token is not None:
        _check_ath(payload.get("ath"), access_token)
    if nonce is not None:
        given = payload.get("nonce")
        if given is None:
            raise DPoPError(
                "This server requires a nonce in the DPoP proof.", error="use_dpop_nonce"
            )
        if not isinstance(given, str) or not _same(given, nonce):
            raise DPoPError(
                "The DPoP proof's nonce is not the one this server issued; use the new one.",
                error="use_dpop_nonce",
            )
    if replay.seen(jkt, jti, issued + max_age):
        raise DPoPError("This DPoP proof was already used (its jti was seen before).")
    return DPoPProof(jkt=jkt, jti=jti, htm=htm, htu=htu, iat=issued)


def check_binding(token_cnf: Mapping[str, Any] | None, proof: DPoPProof | None) -> None:
    """Check that an access token and the request's DPoP proof belong together (RFC 9449 §7).

    `token_cnf` is the token's `cnf` claim (or introspection member), None if it has none.
    `proof` is the verified proof of a request that used the DPoP authorization scheme, and
    None for the Bearer scheme; a request under the DPoP scheme without a DPoP header must be
    refused by the caller before this. A token bound by `cnf.jkt` needs a proof from that
    key, so a bound token sent as a Bearer token is refused (§7.2); an unbound token under the
    DPoP scheme is refused too. DPoPError with error `invalid_token` otherwise.
    """
    bound = token_cnf.get("jkt") if token_cnf is not None else None
    if bound is None:
        if proof is not None:
            raise DPoPError(
                "The access token is not DPoP-bound; send it with the Bearer scheme.",
                error="invalid_token",
            )
        return
    if not isinstance(bound, str):
        raise DPoPError("The access token's cnf.jkt is not a string.", error="invalid_token")
    if proof is None:
        raise DPoPError(
            "The access token is DPoP-bound; send it with the DPoP scheme and a DPoP proof.",
            error="invalid_token",
        )
    if not _same(bound, proof.jkt):
        raise DPoPError(
            "The DPoP proof is signed with another key than the one the token is bound to.",
            error="invalid_token",
        )


def www_authenticate(
    error: DPoPError | None = None, algs: Sequence[str] = ALGORITHMS, *, realm: str | None = None
) -> str:
    """The `WWW-Authenticate` value of a DPoP challenge (RFC 9449 §7.1).

    Without an error it only invites DPoP, as for a request with no credentials. The
    description is cut to the characters RFC 6750 §3 allows in `error_description`.
    """
    params = []
    if realm is not None:
        params.append(f'realm="{_quotable(realm)}"')
    if error is not None:
        params.append(f'error="{error.error}"')
        params.append(f'error_description="{_quotable(error.description)}"')
    params.append(f'algs="{" ".join(algs)}"')
    return "DPoP " + ", ".join(params)


# --- parsing -----------------------------------------------------------------------------


def _split(proof: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, payload, signing input and signature of a single compact JWS."""
    if not isinstance(proof, str):
        raise DPoPError("The DPoP header is not text.")
    # HTTP allows optional whitespace around a field value; inside, whitespace or a comma
    # means several proofs (repeated header fields are joined with ", ").
    value = proof.strip(" \t")
    if not value:
        raise DPoPError("The DPoP header is empty.")
    if "," in value or any(c.isspace() for c in value):
        raise DPoPError("The request carries more than one DPoP proof; send exactly one.")
    if len(value) > MAX_PROOF_LENGTH:
        raise DPoPError(f"The DPoP proof is longer than {MAX_PROOF_LENGTH} characters.")
    segments = value.split(".")
    if len(segments) != 3:
        raise DPoPError("The DPoP proof is not a signed JWT (header.payload.signature).")
    encoded_header, encoded_payload, encoded_signature = segments
    header = _json_object(_b64decode(encoded_header, "header"), "header")
    payload = _json_object(_b64decode(encoded_payload, "payload"), "payload")
    signature = _b64decode(encoded_signature, "signature")
    return header, payload, f"{encoded_header}.{encoded_payload}".encode("ascii"), signature


def _b64decode(segment: str, part: str) -> bytes:
    # Strict: the base64url alphabet only, no padding, and the one canonical encoding of the
    # bytes (Python's decoder would otherwise skip stray characters and ignore spare bits).
    if not segment and part != "signature":
        raise DPoPError(f"The DPoP proof's {part} is empty.")
    if len(segment) % 4 == 1 or not _B64URL.fullmatch(segment):
        raise DPoPError(f"The DPoP proof's {part} is not base64url without padding.")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if _b64url(raw) != segment:
        raise DPoPError(f"The DPoP proof's {part} is not canonical base64url.")
    return raw


def _json_object(raw: bytes, part: str) -> dict[str, Any]:
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueError
        raise DPoPError(f"The DPoP proof's {part} is not valid JSON.") from None
    if not isinstance(value, dict):
        raise DPoPError(f"The DPoP proof's {part} is not a JSON object.")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one name would let two parsers read two different proofs (RFC 7515 §5.2).
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# --- header, key and signature -----------------------------------------------------------


def _check_header(header: dict[str, Any]) -> str:
    """The accepted `alg`; DPoPError unless typ, alg and jwk are what a DPoP proof needs."""
    typ = header.get("typ")
    # Media types are case-insensitive and "application/" may be left out (RFC 7515 §4.1.9).
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") != PROOF_TYPE:
        raise DPoPError(f"The JWT is not a DPoP proof (typ must be {PROOF_TYPE}).")
    alg = header.get("alg")
    if alg == "none":
        raise DPoPError("The DPoP proof is not signed (alg none is never accepted).")
    if isinstance(alg, str) and alg.startswith("HS"):
        raise DPoPError("The DPoP proof uses a MAC (HMAC algorithms are never accepted).")
    if not isinstance(alg, str) or alg not in _KEY_PARAMS:
        raise DPoPError(f"The DPoP proof's alg is not one of {', '.join(ALGORITHMS)}.")
    if "crit" in header:
        # No extension is understood here, so any critical one must fail (RFC 7515 §4.1.11).
        raise DPoPError("The DPoP proof has critical header parameters; none are supported.")
    jwk = header.get("jwk")
    if jwk is None:
        raise DPoPError("The DPoP proof has no jwk header with the public key.")
    if not isinstance(jwk, dict):
        raise DPoPError("The DPoP proof's jwk header is not a JSON object.")
    if jwk.keys() & _PRIVATE_MEMBERS:
        raise DPoPError("The DPoP proof's jwk contains private key material; send the public key.")
    kty, crv = _KEY_PARAMS[alg]
    if jwk.get("kty") != kty or jwk.get("crv") != crv:
        raise DPoPError(f"The DPoP proof's jwk does not fit alg {alg} (needs a {kty} {crv} key).")
    for member, length in _COORDINATES[kty].items():
        value = jwk.get(member)
        if not isinstance(value, str) or not _B64URL.fullmatch(value) or len(value) % 4 == 1:
            raise DPoPError(f"The DPoP proof's jwk has no valid {member}.")
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        if len(raw) != length or _b64url(raw) != value:
            raise DPoPError(f"The DPoP proof's jwk {member} is not {length} bytes of base64url.")
    if "use" in jwk and jwk["use"] != "sig":
        raise DPoPError("The DPoP proof's jwk is not a signing key (use must be sig).")
    key_alg = jwk.get("alg")
    if key_alg is not None and (
        not isinstance(key_alg, str) or _VERIFIER_NAME.get(key_alg) != _VERIFIER_NAME[alg]
    ):
        raise DPoPError("The DPoP proof's jwk is meant for another algorithm.")
    return alg


def _check_signature(alg: str, jwk: dict[str, Any], signing_input: bytes, signature: bytes) -> None:
    # Only the members that define the key reach joserfc; the others were checked above.
    public = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    verifier = JWSRegistry.algorithms[_VERIFIER_NAME[alg]]
    try:
        key = ECKey.import_key(public) if public["kty"] == "EC" else OKPKey.import_key(public)
        verifier.check_key(key)
        valid = verifier.verify(signing_input, signature, key)
    except (JoseError, ValueError, TypeError):  # a point off the curve, a malformed key
        raise DPoPError("The DPoP proof's jwk is not a valid public key.") from None
    if not valid:
        raise DPoPError("The DPoP proof's signature does not verify with its jwk.")


# --- claims ------------------------------------------------------------------------------


def _string_claim(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None:
        raise DPoPError(f"The DPoP proof has no {name} claim.")
    if not isinstance(value, str):
        raise DPoPError(f"The DPoP proof's {name} claim is not a string.")
    # JSON's "\ud800" escapes give lone surrogates, which no database or encoder will take.
    if not _is_unicode(value):
        raise DPoPError(f"The DPoP proof's {name} claim is not valid Unicode text.")
    return value


def _check_iat(iat: Any, *, now: datetime, max_age: timedelta) -> datetime:
    if iat is None:
        raise DPoPError("The DPoP proof has no iat claim.")
    # bool is an int in Python but not a NumericDate. isfinite only for floats: it converts an
    # int to float first, which overflows for one with more than 308 digits.
    if (
        isinstance(iat, bool)
        or not isinstance(iat, int | float)
        or (isinstance(iat, float) and not math.isfinite(iat))
    ):
        raise DPoPError("The DPoP proof's iat claim is not a number of seconds.")
    # Compared as numbers first: an absurd iat must not reach datetime arithmetic.
    current = now.timestamp()
    if iat < current - max_age.total_seconds():
        raise DPoPError(
            f"The DPoP proof is too old (iat more than {int(max_age.total_seconds())} s ago)."
        )
    if iat > current + FUTURE_SKEW.total_seconds():
        raise DPoPError("The DPoP proof is issued in the future (iat is ahead of the server).")
    return datetime.fromtimestamp(iat, UTC)


def _check_ath(ath: Any, access_token: str) -> None:
    if ath is None:
        raise DPoPError("The DPoP proof has no ath claim for the access token.")
    try:
        expected = access_token_hash(access_token)
    except UnicodeEncodeError:
        raise DPoPError("The access token is not ASCII, so no ath can match it.") from None
    if not isinstance(ath, str) or not _same(ath, expected):
        raise DPoPError("The DPoP proof's ath is not the hash of this access token.")


def _normalise_uri(uri: str) -> str | None:
    """scheme://host[:port]/path after RFC 3986 §6.2.2 and §6.2.3 normalisation, without
    query and fragment; None if `uri` is not an absolute http(s) URI."""
    # urlsplit silently drops tabs and newlines, and a URI has no spaces or controls at all.
    if any(c <= " " or c == "\x7f" for c in uri):
        return None
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:  # a bad port or IPv6 literal
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname  # lowercased, brackets stripped
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None  # userinfo is not part of an http(s) target URI (RFC 9110 §4.2.4)
    if ":" in host:
        host = f"[{host}]"
    authority = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _normalise_percent(parts.path)
    if path is None:
        return None
    return f"{scheme}://{authority}{_remove_dot_segments(path) or '/'}"


def _normalise_percent(path: str) -> str | None:
    """Upper-case hex in every %XX, and unreserved characters decoded (RFC 3986 §6.2.2.1-2)."""
    out: list[str] = []
    i = 0
    while i < len(path):
        if path[i] != "%":
            out.append(path[i])
            i += 1
            continue
        digits = path[i + 1 : i + 3]
        if len(digits) != 2 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            return None
        char = chr(int(digits, 16))
        out.append(char if char in _UNRESERVED else f"%{digits.upper()}")
        i += 3
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, step for step."""
    rest = path
    out: list[str] = []
    while rest:
        if rest.startswith("../"):
            rest = rest[3:]
        elif rest.startswith(("./", "/./")):
            rest = rest[2:]
        elif rest == "/.":
            rest = "/"
        elif rest.startswith("/../") or rest == "/..":
            rest = "/" + rest[4:]
            if out:
                out.pop()
        elif rest in {".", ".."}:
            rest = ""
        else:
            end = rest.find("/", 1)
            end = len(rest) if end == -1 else end
            out.append(rest[:end])
            rest = rest[end:]
    return "".join(out)


# --- small helpers -----------------------------------------------------------------------


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _same(given: str, expected: str) -> bool:
    # None of these values is secret; a constant-time comparison just costs nothing.
    # surrogatepass: a lone surrogate from a JSON escape is then just a value that differs.
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _quotable(text: str) -> str:
    # error_description allows %x20-21 / %x23-5B / %x5D-7E: printable ASCII but " and \.
    return "".join(c for c in text if " " <= c <= "~" and c not in '"\\')
