"""RFC 9449 DPoP proofs: the RFC's own examples, proofs signed here, and every way to be wrong.

Proofs are built and signed in this file with `cryptography` directly, not with joserfc, so the
verifier is checked against an independent signer (and so malformed proofs can be made at all).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from broker.oauth.dpop import (
    ALGORITHMS,
    DPoPError,
    DPoPProof,
    MemoryReplayCache,
    access_token_hash,
    check_binding,
    jwk_thumbprint,
    verify_dpop_proof,
    www_authenticate,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TOKEN_URI = "https://broker.example/oauth/token"
ACCESS_TOKEN = "eyJhbGciOiJFZDI1NTE5In0.e30.c2ln"
FUZZ = settings(max_examples=300)

# --- RFC 9449 examples (line breaks of the RFC removed) ------------------------------------

RFC_JWK = {
    "kty": "EC",
    "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
    "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
    "crv": "P-256",
}
RFC_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"  # §6.1 cnf.jkt of the examples' key
RFC_HEADER = (
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0"
    "VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10"
    "NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19"
)
# §4.1 (and the token request of §5): POST https://server.example.com/token, iat 1562262616.
RFC_TOKEN_PROOF = (
    RFC_HEADER
    + ".eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1w"
    "bGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ"
    ".2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg"
)
# §5, the refresh token request: the same claims but iat 1562265296.
RFC_REFRESH_PROOF = (
    RFC_HEADER
    + ".eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1w"
    "bGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjY1Mjk2fQ"
    ".pAqut2IRDm_De6PR93SYmGBPXpwrAk90e8cP2hjiaG5QsGSuKDYW7_X620BxqhvYC8ynrrvZLTk41mSRroapUA"
)
# §7.1: GET https://resource.example.org/protectedresource with the §5 access token, iat
# 1562262618, ath of that token.
RFC_ACCESS_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
RFC_ATH = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
RFC_RESOURCE_PROOF = (
    RFC_HEADER
    + ".eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFt"
    "cGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNF"
    "c05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9"
    ".2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA"
)
# RFC 7638 §3.1: the RSA key of RFC 7517 Appendix A.1 (with its optional members).
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2"
    "QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6W"
    "eZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- proofs made here ----------------------------------------------------------------------

DROP = object()  # a header or claim override that removes the member


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


@dataclass(frozen=True)
class Signer:
    alg: str
    jwk: dict[str, str]
    sign: Callable[[bytes], bytes]


def es256_signer() -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }

    def sign(message: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return Signer("ES256", jwk, sign)


def ed25519_signer(alg: str = "Ed25519") -> Signer:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Signer(alg, {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}, key.sign)


ES256 = es256_signer()
ED25519 = ed25519_signer()
SIGNERS = {"ES256": ES256, "Ed25519": ED25519, "EdDSA": ed25519_signer("EdDSA")}


def make_proof(
    signer: Signer = ES256,
    *,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    sign: Callable[[bytes], bytes] | None = None,
) -> str:
    """A proof for POST TOKEN_URI at NOW, with members overridden (or dropped by DROP)."""
    head: dict[str, Any] = {"typ": "dpop+jwt", "alg": signer.alg, "jwk": signer.jwk}
    body: dict[str, Any] = {
        "jti": uuid.uuid4().hex,
        "htm": "POST",
        "htu": TOKEN_URI,
        "iat": int(NOW.timestamp()),
    }
    for target, overrides in ((head, header), (body, claims)):
        for name, value in (overrides or {}).items():
            if value is DROP:
                target.pop(name, None)
            else:
                target[name] = value
    signing_input = f"{b64json(head)}.{b64json(body)}"
    return f"{signing_input}.{b64((sign or signer.sign)(signing_input.encode()))}"


def verify(proof: str, **overrides: Any) -> DPoPProof:
    args: dict[str, Any] = {
        "method": "POST",
        "uri": TOKEN_URI,
        "now": NOW,
        "replay": MemoryReplayCache(clock=lambda: NOW),
    }
    args.update(overrides)
    return verify_dpop_proof(proof, **args)


def refused(proof: str, **overrides: Any) -> DPoPError:
    with pytest.raises(DPoPError) as caught:
        verify(proof, **overrides)
    return caught.value


# --- the RFC's examples --------------------------------------------------------------------


def test_rfc9449_example_key_has_the_rfc_thumbprint() -> None:
    assert jwk_thumbprint(RFC_JWK) == RFC_JKT


def test_rfc7638_example_thumbprint_ignores_optional_members() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rfc9449_ath_example() -> None:
    assert access_token_hash(RFC_ACCESS_TOKEN) == RFC_ATH


def test_rfc9449_token_request_proof_verifies_at_its_iat() -> None:
    proof = verify(
        RFC_TOKEN_PROOF,
        uri="https://server.example.com/token",
        now=_at(1562262616),
        replay=MemoryReplayCache(clock=lambda: _at(1562262616)),
    )
    assert proof == DPoPProof(
        jkt=RFC_JKT,
        jti="-BwC3ESc6acc2lTc",
        htm="POST",
        htu="https://server.example.com/token",
        iat=_at(1562262616),
    )


def test_rfc9449_refresh_request_proof_verifies_at_its_iat() -> None:
    proof = verify(
        RFC_REFRESH_PROOF,
        uri="https://server.example.com/token",
        now=_at(1562265296),
        replay=MemoryReplayCache(clock=lambda: _at(1562265296)),
    )
    assert (proof.jkt, proof.iat) == (RFC_JKT, _at(1562265296))


def test_rfc9449_resource_proof_verifies_with_its_access_token_and_binding() -> None:
    proof = verify(
        RFC_RESOURCE_PROOF,
        method="GET",
        uri="https://resource.example.org/protectedresource",
        now=_at(1562262618),
        access_token=RFC_ACCESS_TOKEN,
        replay=MemoryReplayCache(clock=lambda: _at(1562262618)),
    )
    assert (proof.jti, proof.htm, proof.jkt) == ("e1j3V_bKic8-LAEB", "GET", RFC_JKT)
    check_binding({"jkt": RFC_JKT}, proof)


def test_rfc9449_resource_proof_refused_with_another_access_token() -> None:
    error = refused(
        RFC_RESOURCE_PROOF,
        method="GET",
        uri="https://resource.example.org/protectedresource",
        now=_at(1562262618),
        access_token=ACCESS_TOKEN,
    )
    assert error.description == "The DPoP proof's ath is not the hash of this access token."


def test_rfc9449_token_proof_refused_when_replayed() -> None:
    replay = MemoryReplayCache(clock=lambda: _at(1562262616))
    kwargs: dict[str, Any] = {
        "uri": "https://server.example.com/token",
        "now": _at(1562262616),
        "replay": replay,
    }
    verify(RFC_TOKEN_PROOF, **kwargs)
    assert "already used" in refused(RFC_TOKEN_PROOF, **kwargs).description


def test_rfc9449_token_proof_is_stale_a_minute_later() -> None:
    error = refused(
        RFC_TOKEN_PROOF, uri="https://server.example.com/token", now=_at(1562262616 + 61)
    )
    assert "too old" in error.description


# --- proofs that are accepted --------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_fresh_proof_is_accepted(alg: str) -> None:
    signer = SIGNERS[alg]
    proof = verify(make_proof(signer, claims={"jti": "one"}))
    assert proof == DPoPProof(
        jkt=jwk_thumbprint(signer.jwk), jti="one", htm="POST", htu=TOKEN_URI, iat=NOW
    )


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_resource_proof_with_ath_and_nonce_is_accepted(alg: str) -> None:
    signer = SIGNERS[alg]
    proof = make_proof(
        signer,
        claims={"htm": "GET", "ath": access_token_hash(ACCESS_TOKEN), "nonce": "n-1"},
    )
    verified = verify(proof, method="GET", access_token=ACCESS_TOKEN, nonce="n-1")
    check_binding({"jkt": jwk_thumbprint(signer.jwk)}, verified)


@pytest.mark.parametrize(
    ("header", "claims"),
    [
        pytest.param({"typ": "application/dpop+jwt"}, {}, id="typ-with-application-prefix"),
        pytest.param({"typ": "DPoP+JWT"}, {}, id="typ-in-upper-case"),
        pytest.param({"kid": "k1", "x-extension": True}, {}, id="extra-header-parameters"),
        pytest.param(
            {"jwk": {**ES256.jwk, "kid": "k1", "use": "sig", "alg": "ES256"}},
            {},
            id="jwk-with-optional-members",
        ),
        pytest.param({}, {"iat": int(NOW.timestamp()) - 60}, id="iat-exactly-max-age-ago"),
        pytest.param({}, {"iat": int(NOW.timestamp()) + 5}, id="iat-within-future-skew"),
        pytest.param({}, {"iat": NOW.timestamp() - 0.5}, id="iat-with-fraction"),
        pytest.param({}, {"jti": "j" * 256}, id="jti-of-256-characters"),
        pytest.param({}, {"ath": "ignored without an access token"}, id="ath-at-token-endpoint"),
        pytest.param({}, {"nonce": "unasked"}, id="nonce-not-required"),
        pytest.param({}, {"htu": TOKEN_URI + "?x=1#frag"}, id="query-and-fragment-in-htu"),
        pytest.param({}, {"htu": "HTTPS://Broker.Example:443/oauth/token"}, id="case-and-port"),
        pytest.param({}, {"htu": "https://broker.example/oauth/./x/../token"}, id="dot-segments"),
        pytest.param({}, {"htu": "https://broker.example/%6fauth/token"}, id="percent-unreserved"),
    ],
)
def test_equivalent_forms_are_accepted(header: dict[str, Any], claims: dict[str, Any]) -> None:
    verify(make_proof(header=header, claims=claims))


def test_query_of_the_request_is_ignored() -> None:
    verify(make_proof(), uri=TOKEN_URI + "?grant_type=x#y")


def test_whitespace_around_the_header_value_is_ignored() -> None:
    verify(f" \t{make_proof()} ")


def _random_case(text: str) -> st.SearchStrategy[str]:
    flips = st.lists(st.booleans(), min_size=len(text), max_size=len(text))
    return flips.map(lambda f: "".join(c.upper() if u else c for c, u in zip(text, f, strict=True)))


def _variant() -> st.SearchStrategy[str]:
    """TOKEN_URI written another way that means the same target."""
    return st.builds(
        lambda scheme, host, port, query, fragment: (
            f"{scheme}://{host}{port}/oauth/token{query}{fragment}"
        ),
        _random_case("https"),
        _random_case("broker.example"),
        st.sampled_from(["", ":443", ":"]),
        st.one_of(st.just(""), st.text("abc=&%20/?", max_size=12).map(lambda q: "?" + q)),
        st.one_of(st.just(""), st.text("abc/?#", max_size=8).map(lambda f: "#" + f)),
    )


@FUZZ
@given(htu=_variant(), request_uri=_variant())
def test_htu_matches_after_normalisation(htu: str, request_uri: str) -> None:
    verify(make_proof(claims={"htu": htu}), uri=request_uri)


@FUZZ
@given(
    path=st.lists(st.text("abcoOtTkKeEn_~-", max_size=6), max_size=4)
    .map("/".join)
    .filter(lambda path: path != "oauth/token")
)
def test_htu_for_another_path_is_refused(path: str) -> None:
    error = refused(make_proof(claims={"htu": f"https://broker.example/{path}"}))
    assert error.description == (
        "The DPoP proof is for another URI (htu must be https://broker.example/oauth/token)."
    )


@FUZZ
@given(
    host=st.from_regex(r"[a-zA-Z0-9-]{1,12}(\.[a-zA-Z]{2,8})?", fullmatch=True).filter(
        lambda host: host.lower() != "broker.example"
    )
)
def test_htu_for_another_host_is_refused(host: str) -> None:
    error = refused(make_proof(claims={"htu": f"https://{host}/oauth/token"}))
    assert error.description.startswith("The DPoP proof is for another URI")


# --- proofs that are refused ---------------------------------------------------------------

OTHER = es256_signer()  # a second client
IAT = int(NOW.timestamp())


def _refusals(signer: Signer) -> list[tuple[str, dict[str, Any], str]]:
    """(id, make_proof arguments, expected description) of proofs that must fail."""
    if signer.jwk["kty"] == "EC":
        mismatch, needs = "Ed25519", "a OKP Ed25519 key"
        other = es256_signer()
        key_specific = [
            (
                "jwk-point-off-curve",
                {"header": {"jwk": {**signer.jwk, "y": b64(b"\x01" * 32)}}},
                "The DPoP proof's jwk is not a valid public key.",
            ),
        ]
    else:
        mismatch, needs = "ES256", "a EC P-256 key"
        other = ed25519_signer()
        key_specific = [
            (
                "jwk-with-another-curve",
                {"header": {"jwk": {**signer.jwk, "crv": "P-256"}}},
                "The DPoP proof's jwk does not fit alg Ed25519 (needs a OKP Ed25519 key).",
            ),
        ]
    mismatch_description = f"The DPoP proof's jwk does not fit alg {mismatch} (needs {needs})."
    return [
        (
            "wrong-typ",
            {"header": {"typ": "JWT"}},
            "The JWT is not a DPoP proof (typ must be dpop+jwt).",
        ),
        (
            "no-typ",
            {"header": {"typ": DROP}},
            "The JWT is not a DPoP proof (typ must be dpop+jwt).",
        ),
        ("at+jwt-typ", {"header": {"typ": "at+jwt"}}, "The JWT is not a DPoP proof"),
        (
            "alg-none",
            {"header": {"alg": "none"}, "sign": lambda m: b""},
            "The DPoP proof is not signed (alg none is never accepted).",
        ),
        (
            "hs256-with-public-key-as-secret",
            {
                "header": {"alg": "HS256"},
                "sign": lambda m: hmac.new(
                    json.dumps(signer.jwk).encode(), m, hashlib.sha256
                ).digest(),
            },
            "The DPoP proof uses a MAC (HMAC algorithms are never accepted).",
        ),
        (
            "rs256",
            {"header": {"alg": "RS256"}},
            "The DPoP proof's alg is not one of ES256, Ed25519",
        ),
        ("es384", {"header": {"alg": "ES384"}}, "The DPoP proof's alg is not one of"),
        ("no-alg", {"header": {"alg": DROP}}, "The DPoP proof's alg is not one of"),
        ("alg-as-list", {"header": {"alg": ["ES256"]}}, "The DPoP proof's alg is not one of"),
        ("alg-for-another-key-type", {"header": {"alg": mismatch}}, mismatch_description),
        (
            "private-key-in-jwk",
            {"header": {"jwk": {**signer.jwk, "d": b64(b"\x01" * 32)}}},
            "The DPoP proof's jwk contains private key material; send the public key.",
        ),
        (
            "symmetric-key-in-jwk",
            {"header": {"jwk": {"kty": "oct", "k": "c2VjcmV0"}}},
            "The DPoP proof's jwk contains private key material",
        ),
        (
            "no-jwk",
            {"header": {"jwk": DROP}},
            "The DPoP proof has no jwk header with the public key.",
        ),
        ("jwk-as-string", {"header": {"jwk": "key"}}, "The DPoP proof's jwk header is not a JSON"),
        (
            "jwk-kid-only",
            {"header": {"jwk": DROP, "kid": "k1"}},
            "The DPoP proof has no jwk header with the public key.",
        ),
        (
            "jwk-short-coordinate",
            {"header": {"jwk": {**signer.jwk, "x": b64(b"\x01" * 31)}}},
            "The DPoP proof's jwk x is not 32 bytes of base64url.",
        ),
        (
            "jwk-for-encryption",
            {"header": {"jwk": {**signer.jwk, "use": "enc"}}},
            "The DPoP proof's jwk is not a signing key (use must be sig).",
        ),
        (
            "jwk-for-another-alg",
            {"header": {"jwk": {**signer.jwk, "alg": "ES384"}}},
            "The DPoP proof's jwk is meant for another algorithm.",
        ),
        (
            "critical-header",
            {"header": {"crit": ["exp"], "exp": 1}},
            "The DPoP proof has critical header parameters; none are supported.",
        ),
        (
            "signed-by-another-key",
            {"sign": other.sign},
            "The DPoP proof's signature does not verify with its jwk.",
        ),
        ("wrong-htm", {"claims": {"htm": "GET"}}, "The DPoP proof is for another HTTP method"),
        ("lower-case-htm", {"claims": {"htm": "post"}}, "(htm must be POST)."),
        ("no-htm", {"claims": {"htm": DROP}}, "The DPoP proof has no htm claim."),
        (
            "other-path",
            {"claims": {"htu": "https://broker.example/oauth/authorize"}},
            "The DPoP proof is for another URI (htu must be https://broker.example/oauth/token).",
        ),
        ("other-host", {"claims": {"htu": "https://evil.example/oauth/token"}}, "another URI"),
        ("other-scheme", {"claims": {"htu": "http://broker.example/oauth/token"}}, "another URI"),
        (
            "other-port",
            {"claims": {"htu": "https://broker.example:8443/oauth/token"}},
            "another URI",
        ),
        ("trailing-slash", {"claims": {"htu": TOKEN_URI + "/"}}, "another URI"),
        ("path-case", {"claims": {"htu": "https://broker.example/OAuth/token"}}, "another URI"),
        ("userinfo", {"claims": {"htu": "https://u@broker.example/oauth/token"}}, "another URI"),
        ("relative-htu", {"claims": {"htu": "/oauth/token"}}, "another URI"),
        (
            "htu-with-newline",
            {"claims": {"htu": "https://broker.example/oauth/tok\nen"}},
            "another",
        ),
        ("no-htu", {"claims": {"htu": DROP}}, "The DPoP proof has no htu claim."),
        (
            "htu-as-list",
            {"claims": {"htu": [TOKEN_URI]}},
            "The DPoP proof's htu claim is not a string.",
        ),
        (
            "stale-iat",
            {"claims": {"iat": IAT - 61}},
            "The DPoP proof is too old (iat more than 60 s",
        ),
        ("future-iat", {"claims": {"iat": IAT + 6}}, "The DPoP proof is issued in the future"),
        ("far-future-iat", {"claims": {"iat": 10**30}}, "The DPoP proof is issued in the future"),
        ("no-iat", {"claims": {"iat": DROP}}, "The DPoP proof has no iat claim."),
        ("iat-as-string", {"claims": {"iat": str(IAT)}}, "iat claim is not a number of seconds."),
        ("iat-as-bool", {"claims": {"iat": True}}, "iat claim is not a number of seconds."),
        ("no-jti", {"claims": {"jti": DROP}}, "The DPoP proof has no jti claim."),
        ("empty-jti", {"claims": {"jti": ""}}, "The DPoP proof's jti claim is empty."),
        ("jti-as-number", {"claims": {"jti": 7}}, "The DPoP proof's jti claim is not a string."),
        (
            "jti-too-long",
            {"claims": {"jti": "j" * 257}},
            "The DPoP proof's jti claim is longer than 256 characters.",
        ),
        *key_specific,
    ]


@pytest.mark.parametrize(
    ("alg", "build", "description"),
    [
        pytest.param(alg, build, description, id=f"{alg}-{name}")
        for alg in ("ES256", "Ed25519")
        for name, build, description in _refusals(SIGNERS[alg])
    ],
)
def test_a_bad_proof_is_refused_with_a_precise_description(
    alg: str, build: dict[str, Any], description: str
) -> None:
    error = refused(make_proof(SIGNERS[alg], **build))
    assert error.error == "invalid_dpop_proof"
    assert description in error.description


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_tampered_signature_is_refused(alg: str) -> None:
    proof = make_proof(SIGNERS[alg])
    middle = len(proof) - 20  # inside the signature, away from its last character
    forged = proof[:middle] + ("A" if proof[middle] != "A" else "B") + proof[middle + 1 :]
    error = refused(forged)
    assert error.description == "The DPoP proof's signature does not verify with its jwk."


def test_claims_moved_under_another_signature_are_refused() -> None:
    header, _, signature = make_proof().split(".")
    _, payload, _ = make_proof(claims={"htm": "GET"}).split(".")
    error = refused(f"{header}.{payload}.{signature}", method="GET")
    assert error.description == "The DPoP proof's signature does not verify with its jwk."


def test_ath_is_required_with_an_access_token() -> None:
    error = refused(make_proof(), access_token=ACCESS_TOKEN)
    assert error.description == "The DPoP proof has no ath claim for the access token."


@pytest.mark.parametrize(
    "ath",
    [access_token_hash("another token"), access_token_hash(ACCESS_TOKEN) + "=", 42, ""],
)
def test_ath_of_another_token_is_refused(ath: Any) -> None:
    error = refused(make_proof(claims={"ath": ath}), access_token=ACCESS_TOKEN)
    assert error.description == "The DPoP proof's ath is not the hash of this access token."


def test_a_non_ascii_access_token_matches_no_ath() -> None:
    proof = make_proof(claims={"ath": access_token_hash(ACCESS_TOKEN)})
    error = refused(proof, access_token="tökén")
    assert error.description == "The access token is not ASCII, so no ath can match it."


def test_a_missing_nonce_asks_for_one() -> None:
    error = refused(make_proof(), nonce="server-nonce")
    assert (error.error, error.description) == (
        "use_dpop_nonce",
        "This server requires a nonce in the DPoP proof.",
    )


@pytest.mark.parametrize("given_nonce", ["old-nonce", "", 12, ["server-nonce"]])
def test_a_wrong_nonce_asks_for_the_new_one(given_nonce: Any) -> None:
    error = refused(make_proof(claims={"nonce": given_nonce}), nonce="server-nonce")
    assert error.error == "use_dpop_nonce"
    assert error.description.startswith("The DPoP proof's nonce is not the one this server issued")


def test_a_replayed_proof_is_refused() -> None:
    replay = MemoryReplayCache(clock=lambda: NOW)
    proof = make_proof()
    verify(proof, replay=replay)
    error = refused(proof, replay=replay)
    assert error.description == "This DPoP proof was already used (its jti was seen before)."


def test_a_reused_jti_is_refused_even_in_a_new_proof() -> None:
    replay = MemoryReplayCache(clock=lambda: NOW)
    verify(make_proof(claims={"jti": "same"}), replay=replay)
    error = refused(make_proof(claims={"jti": "same", "iat": IAT - 1}), replay=replay)
    assert "already used" in error.description


def test_replay_ids_are_per_key() -> None:
    replay = MemoryReplayCache(clock=lambda: NOW)
    verify(make_proof(ES256, claims={"jti": "same"}), replay=replay)
    verify(make_proof(OTHER, claims={"jti": "same"}), replay=replay)


def test_a_refused_proof_does_not_use_up_its_jti() -> None:
    replay = MemoryReplayCache(clock=lambda: NOW)
    refused(make_proof(claims={"jti": "j1", "htm": "GET"}), replay=replay)
    refused(make_proof(claims={"jti": "j1"}), replay=replay, nonce="n")
    verify(make_proof(claims={"jti": "j1"}), replay=replay)


@pytest.mark.parametrize("separator", [", ", ",", " ", "\t", "\n"])
def test_two_proofs_in_one_header_are_refused(separator: str) -> None:
    error = refused(f"{make_proof()}{separator}{make_proof()}")
    assert error.description == "The request carries more than one DPoP proof; send exactly one."


@pytest.mark.parametrize(
    ("value", "description"),
    [
        ("", "The DPoP header is empty."),
        ("   ", "The DPoP header is empty."),
        ("a.b", "The DPoP proof is not a signed JWT (header.payload.signature)."),
        ("a.b.c.d.e", "The DPoP proof is not a signed JWT (header.payload.signature)."),
        (".e30.", "The DPoP proof's header is empty."),
        ("e30=.e30.", "The DPoP proof's header is not base64url without padding."),
        ("e30+.e30.", "The DPoP proof's header is not base64url without padding."),
        ("e31.e30.", "The DPoP proof's header is not canonical base64url."),
        (f"{b64(b'[1]')}.e30.", "The DPoP proof's header is not a JSON object."),
        (f"{b64(b'{')}.e30.", "The DPoP proof's header is not valid JSON."),
        (b64(b"\xff") + ".e30.", "The DPoP proof's header is not valid JSON."),
        (b64(b'{"a":NaN}') + ".e30.", "The DPoP proof's header is not valid JSON."),
        (f"{b64(b'[' * 5000)}.e30.", "The DPoP proof is longer than 4096 characters."),
        (f"{b64(b'[' * 3000)}.e30.", "The DPoP proof's header is not valid JSON."),
    ],
)
def test_garbage_is_refused_with_a_description(value: str, description: str) -> None:
    assert refused(value).description == description


def test_duplicate_header_members_are_refused() -> None:
    # Two typ values: one parser might read dpop+jwt, another JWT.
    header = b64(
        b'{"typ":"JWT","alg":"ES256","typ":"dpop+jwt","jwk":'
        + json.dumps(ES256.jwk).encode()
        + b"}"
    )
    payload = b64json({"jti": "x", "htm": "POST", "htu": TOKEN_URI, "iat": IAT})
    proof = f"{header}.{payload}.{b64(ES256.sign(f'{header}.{payload}'.encode()))}"
    assert refused(proof).description == "The DPoP proof's header is not valid JSON."


def test_a_proof_that_is_not_text_is_refused() -> None:
    assert refused(make_proof().encode()).description == "The DPoP header is not text."  # type: ignore[arg-type]


def test_a_request_uri_that_is_not_absolute_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="Not an absolute http"):
        verify(make_proof(), uri="/oauth/token")


def test_a_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(make_proof(), now=NOW.replace(tzinfo=None))


# --- fuzzing: nothing but DPoPError, whatever arrives --------------------------------------

B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(st.text())
def test_arbitrary_text_raises_only_dpop_error(value: str) -> None:
    refused(value)


@FUZZ
@given(st.lists(st.text(B64_ALPHABET, max_size=80), min_size=1, max_size=5).map(".".join))
def test_arbitrary_base64url_segments_raise_only_dpop_error(value: str) -> None:
    refused(value)


@FUZZ
@given(
    header=st.dictionaries(
        st.sampled_from(["typ", "alg", "jwk", "crit", "kid", "b64"]),
        st.one_of(
            JSON,
            st.sampled_from(["dpop+jwt", *ALGORITHMS, "none", "HS256"]),
            st.fixed_dictionaries(
                {
                    "kty": st.sampled_from(["EC", "OKP", "RSA", "oct"]) | JSON,
                    "crv": st.sampled_from(["P-256", "Ed25519", "X25519"]) | JSON,
                    "x": st.binary(min_size=30, max_size=33).map(b64) | JSON,
                    "y": st.binary(min_size=30, max_size=33).map(b64) | JSON,
                },
                optional={"d": JSON, "alg": JSON, "use": JSON},
            ),
        ),
    ),
    claims=st.dictionaries(st.sampled_from(["jti", "htm", "htu", "iat", "ath", "nonce"]), JSON),
    signature=st.binary(max_size=70),
)
def test_arbitrary_json_raises_only_dpop_error(
    header: dict[str, Any], claims: dict[str, Any], signature: bytes
) -> None:
    proof = f"{b64json(header)}.{b64json(claims)}.{b64(signature)}"
    refused(proof, access_token=ACCESS_TOKEN, nonce="n")


@FUZZ
@given(
    header=st.dictionaries(st.sampled_from(["typ", "alg", "jwk", "kid"]), JSON | st.just(DROP)),
    claims=st.dictionaries(
        st.sampled_from(["jti", "htm", "htu", "iat", "ath", "nonce"]),
        JSON | st.just(DROP) | st.integers(IAT - 120, IAT + 120),
    ),
    alg=st.sampled_from(["ES256", "Ed25519"]),
)
def test_validly_signed_nonsense_raises_only_dpop_error(
    header: dict[str, Any], claims: dict[str, Any], alg: str
) -> None:
    # Signed with the key in the jwk, so the checks after the signature are fuzzed as well.
    proof = make_proof(SIGNERS[alg], header=header, claims=claims)
    try:
        verify(proof)
    except DPoPError:
        return
    # Accepted: then every check must in fact have held.
    assert not header or all(name == "kid" for name in header)
    assert claims.get("htm", "POST") == "POST"


# Values a JSON text can carry that Python's own types make awkward: lone surrogates (from
# "\\ud800" escapes), integers beyond any float, deep nesting.
HOSTILE = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.sampled_from(
        ["\ud800", "a\udfff", "\U0001f600", "\x00", "POST\ud800", TOKEN_URI + "\udc80"]
    ),
    st.sampled_from([10**400, -(10**400), 2**64, 1e308, -1e308, IAT + 0.5]),
    st.integers(1, 40).map(lambda depth: json.loads("[" * depth + "]" * depth)),
)


@FUZZ
@given(
    claims=st.dictionaries(
        st.sampled_from(["jti", "htm", "htu", "iat", "ath", "nonce"]), HOSTILE, min_size=1
    ),
    header=st.dictionaries(st.sampled_from(["kid", "typ", "x"]), HOSTILE, max_size=1),
    alg=st.sampled_from(["ES256", "Ed25519"]),
    with_token=st.booleans(),
)
def test_validly_signed_hostile_values_raise_only_dpop_error(
    claims: dict[str, Any], header: dict[str, Any], alg: str, with_token: bool
) -> None:
    proof = make_proof(SIGNERS[alg], header=header, claims=claims)
    try:
        verified = verify(proof, access_token=ACCESS_TOKEN if with_token else None, nonce="n")
    except DPoPError:
        return
    # Accepted: every value that reaches the replay store and the caller is plain text.
    for value in (verified.jti, verified.htm, verified.htu):
        value.encode("utf-8")


@FUZZ
@given(
    alg=st.sampled_from(ALGORITHMS),
    index=st.integers(min_value=0),
    replacement=st.sampled_from([*B64_ALPHABET, ".", "=", " ", "%", "é"]),
)
def test_a_changed_character_is_refused(alg: str, index: int, replacement: str) -> None:
    proof = make_proof(SIGNERS[alg])
    index %= len(proof)
    mutated = proof[:index] + replacement + proof[index + 1 :]
    assume(mutated != proof)
    refused(mutated)


@FUZZ
@given(cut=st.integers(min_value=1, max_value=300))
def test_a_truncated_proof_is_refused(cut: int) -> None:
    proof = make_proof()
    assume(cut < len(proof))
    refused(proof[:-cut])


# --- binding an access token to the proof key ----------------------------------------------


def _proof_by(signer: Signer) -> DPoPProof:
    return verify(make_proof(signer))


def test_a_bound_token_with_a_proof_from_its_key_passes() -> None:
    check_binding({"jkt": jwk_thumbprint(ES256.jwk)}, _proof_by(ES256))


def test_an_unbound_token_without_a_proof_passes() -> None:
    check_binding(None, None)
    check_binding({"x5t#S256": "certificate-bound"}, None)


@pytest.mark.parametrize(
    ("cnf", "signer", "description"),
    [
        pytest.param(
            {"jkt": jwk_thumbprint(ES256.jwk)},
            None,
            "The access token is DPoP-bound; send it with the DPoP scheme and a DPoP proof.",
            id="bound-token-as-bearer",
        ),
        pytest.param(
            {"jkt": jwk_thumbprint(ES256.jwk)},
            OTHER,
            "The DPoP proof is signed with another key than the one the token is bound to.",
            id="proof-from-another-key",
        ),
        pytest.param(
            None,
            ES256,
            "The access token is not DPoP-bound; send it with the Bearer scheme.",
            id="unbound-token-under-dpop",
        ),
        pytest.param(
            {"jkt": 42}, ES256, "The access token's cnf.jkt is not a string.", id="malformed-cnf"
        ),
    ],
)
def test_a_binding_mismatch_is_an_invalid_token(
    cnf: dict[str, Any] | None, signer: Signer | None, description: str
) -> None:
    proof = _proof_by(signer) if signer is not None else None
    with pytest.raises(DPoPError) as caught:
        check_binding(cnf, proof)
    assert (caught.value.error, caught.value.description) == ("invalid_token", description)


# --- the challenge -------------------------------------------------------------------------


def test_the_challenge_without_an_error_lists_the_algorithms() -> None:
    assert www_authenticate(None) == 'DPoP algs="ES256 Ed25519 EdDSA"'


def test_the_challenge_names_the_error() -> None:
    error = refused(make_proof(claims={"htm": "GET"}))
    assert www_authenticate(error, realm="omadata") == (
        'DPoP realm="omadata", error="invalid_dpop_proof", error_description="The DPoP proof is'
        ' for another HTTP method (htm must be POST).", algs="ES256 Ed25519 EdDSA"'
    )


def test_the_challenge_keeps_to_the_error_description_charset() -> None:
    header = www_authenticate(DPoPError('say "hi" \\ \n naïvely', error="use_dpop_nonce"))
    assert header == (
        'DPoP error="use_dpop_nonce", error_description="say hi   navely", '
        'algs="ES256 Ed25519 EdDSA"'
    )


# --- the replay cache ----------------------------------------------------------------------


def test_the_cache_forgets_expired_ids() -> None:
    clock = [NOW]
    cache = MemoryReplayCache(clock=lambda: clock[0])
    assert cache.seen("k", "a", NOW + timedelta(seconds=10)) is False
    assert cache.seen("k", "b", NOW + timedelta(seconds=20)) is False
    assert cache.seen("k", "a", NOW + timedelta(seconds=10)) is True
    clock[0] = NOW + timedelta(seconds=10)  # expiry is inclusive
    assert cache.seen("k", "a", NOW + timedelta(seconds=10)) is True
    clock[0] = NOW + timedelta(seconds=11)
    assert cache.seen("k", "c", NOW + timedelta(seconds=30)) is False
    assert len(cache) == 2  # a dropped; b and c kept
    assert cache.seen("k", "a", NOW + timedelta(seconds=40)) is False


def test_the_cache_is_bounded_and_drops_the_soonest_expiry_first() -> None:
    cache = MemoryReplayCache(max_entries=3, clock=lambda: NOW)
    for jti, seconds in (("a", 30), ("b", 10), ("c", 20), ("d", 40)):
        assert cache.seen("k", jti, NOW + timedelta(seconds=seconds)) is False
    assert (len(cache), cache.displaced) == (3, 1)
    assert cache.seen("k", "a", NOW) is True
    assert cache.seen("k", "b", NOW + timedelta(seconds=10)) is False  # b was displaced


def test_the_cache_lets_exactly_one_of_concurrent_uses_through() -> None:
    cache = MemoryReplayCache(clock=lambda: NOW)
    barrier = threading.Barrier(16)
    results: list[bool] = []
    lock = threading.Lock()

    def use() -> None:
        barrier.wait()
        seen = cache.seen("k", "same", NOW + timedelta(seconds=60))
        with lock:
            results.append(seen)

    threads = [threading.Thread(target=use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] + [True] * 15


def test_the_cache_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MemoryReplayCache(max_entries=0)


# --- thumbprints ---------------------------------------------------------------------------


def test_an_okp_thumbprint_uses_crv_kty_x() -> None:
    jwk = {**ED25519.jwk, "kid": "ignored", "alg": "Ed25519"}
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": ED25519.jwk["x"]}, separators=(",", ":")
    )
    assert jwk_thumbprint(jwk) == b64(hashlib.sha256(canonical.encode()).digest())


@pytest.mark.parametrize(
    "jwk",
    [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-256", "x": "x"}, {}, {"kty": ["EC"]}],
)
def test_a_thumbprint_needs_a_complete_public_key(jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"JWK thumbprint needs|needs string members"):
        jwk_thumbprint(jwk)
