"""Checkpoints: strict parsing, the C2SP example, signing and opening, fuzzing."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.ledger.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    sign_checkpoint,
)
from broker.ledger.note import (
    Ed25519Signer,
    InvalidSignatureError,
    MalformedNoteError,
    NoteError,
    UnverifiedNoteError,
    sign_note,
)

LOG = "broker.example/audit/v1"
EMPTY_ROOT = hashlib.sha256(b"").digest()
ROOT = hashlib.sha256(b"root").digest()
ROOT_B64 = base64.b64encode(ROOT).decode()

# From c2sp.org/tlog-checkpoint. Its public key is not published, so it cannot be verified.
SPEC_EXAMPLE = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/"
    "Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
).encode()


def _signer(seed: int, name: str = LOG) -> Ed25519Signer:
    return Ed25519Signer(name, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


SIGNER = _signer(1)
VERIFIER = SIGNER.verifier()


def test_format() -> None:
    cp = Checkpoint(LOG, 0, EMPTY_ROOT)
    assert cp.to_text() == f"{LOG}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    assert Checkpoint.parse(cp.to_text()) == cp
    assert cp.extensions == ()


def test_spec_example_parses_and_its_unknown_signature_is_kept() -> None:
    with pytest.raises(UnverifiedNoteError) as info:
        open_checkpoint(SPEC_EXAMPLE, [VERIFIER])
    note = info.value.note
    assert [(s.name, s.key_id, len(s.signature)) for s in note.unverified] == [
        ("example.com/behind-the-sofa", 0x033DE0AE, 64)
    ]
    cp = Checkpoint.parse(note.text)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash.hex() == "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
    assert cp.to_text() == note.text


def test_sign_and_open() -> None:
    cp = Checkpoint(LOG, 42, ROOT)
    msg = sign_checkpoint(cp, [SIGNER])
    assert msg.startswith(f"{LOG}\n42\n{ROOT_B64}\n\n\u2014 {LOG} ".encode())
    opened, note = open_checkpoint(msg, [VERIFIER], origin=LOG)
    assert opened == cp
    assert [s.key_id for s in note.verified] == [SIGNER.key_id]
    assert open_checkpoint(msg, [VERIFIER])[0] == cp


def test_rotation_overlap() -> None:
    old, new = SIGNER, _signer(2)
    msg = sign_checkpoint(Checkpoint(LOG, 7, ROOT), [old, new])
    assert open_checkpoint(msg, [old.verifier()], origin=LOG)[0].size == 7
    assert open_checkpoint(msg, [new.verifier()], origin=LOG)[0].size == 7


def test_origin_mismatch() -> None:
    msg = sign_checkpoint(Checkpoint(LOG, 1, ROOT), [SIGNER])
    with pytest.raises(CheckpointError, match=r"expected 'other\.example/log'"):
        open_checkpoint(msg, [VERIFIER], origin="other.example/log")


def test_signature_errors_come_from_the_note_layer() -> None:
    msg = sign_checkpoint(Checkpoint(LOG, 1, ROOT), [SIGNER])
    with pytest.raises(InvalidSignatureError):
        open_checkpoint(msg.replace(b"\n1\n", b"\n2\n"), [VERIFIER])
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(msg, [_signer(3).verifier()])
    with pytest.raises(MalformedNoteError):
        open_checkpoint(msg.replace(b"\n\n", b"\n"), [VERIFIER])


def test_signed_note_that_is_not_a_checkpoint() -> None:
    msg = sign_note("hello\n", [SIGNER])
    with pytest.raises(CheckpointError, match="1 line"):
        open_checkpoint(msg, [VERIFIER])


def test_extension_lines_are_parsed_and_kept_but_never_signed() -> None:
    text = f"{LOG}\n3\n{ROOT_B64}\nextension one\n\u2014 two\n"
    cp = Checkpoint.parse(text)
    assert cp.extensions == ("extension one", "\u2014 two")
    assert cp.to_text() == text
    # Another log may sign extensions; we open them, keep them, and do not write them.
    opened, _ = open_checkpoint(sign_note(text, [SIGNER]), [VERIFIER], origin=LOG)
    assert opened == cp
    with pytest.raises(CheckpointError, match="extension lines"):
        sign_checkpoint(cp, [SIGNER])


@pytest.mark.parametrize("origin", ["log with spaces", "a+b", "log\u00a0x"])
def test_origins_that_are_not_key_names_parse_but_are_not_signed(origin: str) -> None:
    # The spec only recommends the key-name form and tells clients not to assume it.
    cp = Checkpoint.parse(f"{origin}\n1\n{ROOT_B64}\n")
    assert cp.origin == origin
    with pytest.raises(CheckpointError, match="origin"):
        sign_checkpoint(cp, [SIGNER])


def test_largest_size() -> None:
    text = f"{LOG}\n{MAX_TREE_SIZE}\n{ROOT_B64}\n"
    assert Checkpoint.parse(text).size == MAX_TREE_SIZE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "newline"),
        (f"{LOG}\n1\n{ROOT_B64}", "newline"),
        (f"{LOG}\n1\n", "2 line"),
        (f"{LOG}\n", "1 line"),
        (f"\n1\n{ROOT_B64}\n", "origin is empty"),
        (f"{LOG}\n\n{ROOT_B64}\n", "tree size is empty"),
        (f"{LOG}\n1\n\n", "root hash is empty"),
        (f"{LOG}\n1\n{ROOT_B64}\n\n", "extension line 1 is empty"),
        (f"{LOG}\n1\n{ROOT_B64}\next\n\n", "extension line 2 is empty"),
        (f"{LOG}\n01\n{ROOT_B64}\n", "leading zeros"),
        (f"{LOG}\n00\n{ROOT_B64}\n", "leading zeros"),
        (f"{LOG}\n-1\n{ROOT_B64}\n", "decimal"),
        (f"{LOG}\n+1\n{ROOT_B64}\n", "decimal"),
        (f"{LOG}\n 1\n{ROOT_B64}\n", "decimal"),
        (f"{LOG}\n1_000\n{ROOT_B64}\n", "decimal"),
        (f"{LOG}\n0x10\n{ROOT_B64}\n", "decimal"),
        (f"{LOG}\n\u0661\n{ROOT_B64}\n", "ASCII decimal"),  # Arabic-Indic one: int() takes it
        (f"{LOG}\n{MAX_TREE_SIZE + 1}\n{ROOT_B64}\n", "exceeds"),
        (f"{LOG}\n{'9' * 5000}\n{ROOT_B64}\n", "exceeds"),
        (f"{LOG}\n1\n{ROOT_B64[:-1]}\n", "not standard base64"),
        (f"{LOG}\n1\n{ROOT_B64.replace('=', '')}\n", "not standard base64"),
        (f"{LOG}\n1\n{ROOT_B64[:-2]}9=\n", "canonical"),  # ROOT_B64 ends in "8="
        (f"{LOG}\n1\n{base64.b64encode(bytes(31)).decode()}\n", "31 bytes"),
        (f"{LOG}\n1\n{base64.b64encode(bytes(48)).decode()}\n", "48 bytes"),
        (f"{LOG}\n1\n{ROOT_B64} \n", "base64"),
        (f"{LOG}\r\n1\n{ROOT_B64}\n", "origin contains control character U\\+000D"),
        (f"{LOG}\n1\r\n{ROOT_B64}\n", "U\\+000D"),
        (f"{LOG}\n1\n{ROOT_B64}\r\n", "U\\+000D"),
        (f"{LOG}\t\n1\n{ROOT_B64}\n", "U\\+0009"),
        (f"{LOG}\ud800\n1\n{ROOT_B64}\n", "surrogate"),
    ],
)
def test_malformed_checkpoint_text(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 0, ROOT), "origin is empty"),
        (("a\nb", 0, ROOT), "U\\+000A"),
        ((LOG, -1, ROOT), "outside"),
        ((LOG, MAX_TREE_SIZE + 1, ROOT), "outside"),
        ((LOG, True, ROOT), "not an integer"),
        ((LOG, 0, ROOT[:31]), "32 bytes"),
        ((LOG, 0, bytearray(ROOT)), "32 bytes"),
        ((LOG, 0, ROOT, ("",)), "extension line 1 is empty"),
        ((LOG, 0, ROOT, ("a\nb",)), "extension line 1"),
    ],
)
def test_checkpoint_fields_are_validated(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        Checkpoint(*args)  # type: ignore[arg-type]


def test_error_type() -> None:
    assert issubclass(CheckpointError, ValueError)
    assert not issubclass(CheckpointError, NoteError)


# --- Properties and fuzzing ----------------------------------------------------------------

LINE = st.text(
    st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1, max_size=40
)
CHECKPOINTS = st.builds(
    Checkpoint,
    origin=LINE,
    size=st.integers(0, MAX_TREE_SIZE),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(LINE, max_size=3).map(tuple),
)


@given(CHECKPOINTS)
@settings(max_examples=300)
def test_parse_format_round_trip_property(cp: Checkpoint) -> None:
    assert Checkpoint.parse(cp.to_text()) == cp


@given(
    st.builds(
        Checkpoint,
        origin=st.sampled_from([LOG, "example.com/log42", "\u00e9t\u00e9.example/\u2014"]),
        size=st.integers(0, MAX_TREE_SIZE),
        root_hash=st.binary(min_size=32, max_size=32),
    )
)
@settings(max_examples=200)
def test_sign_open_round_trip_property(cp: Checkpoint) -> None:
    opened, _ = open_checkpoint(sign_checkpoint(cp, [SIGNER]), [VERIFIER], origin=cp.origin)
    assert opened == cp


FRAGMENTS = st.sampled_from(
    [LOG, "0", "1", "01", "18446744073709551616", ROOT_B64, ROOT_B64[:-1], "=", "+", " ", "\r", ""]
)


@given(
    st.text(max_size=200)
    | st.lists(FRAGMENTS | st.text(max_size=8), max_size=6).map(lambda xs: "\n".join(xs) + "\n")
)
@settings(max_examples=400)
def test_parse_arbitrary_text_raises_only_checkpoint_errors(text: str) -> None:
    try:
        cp = Checkpoint.parse(text)
    except CheckpointError:
        return
    assert cp.to_text() == text


SIGNED = sign_checkpoint(Checkpoint(LOG, 123456, ROOT), [SIGNER])


@given(st.binary(max_size=300) | st.binary(max_size=40).map(lambda b: SIGNED[:60] + b))
@settings(max_examples=300)
def test_open_arbitrary_bytes_raises_only_our_errors(msg: bytes) -> None:
    with contextlib.suppress(NoteError, CheckpointError):
        open_checkpoint(msg, [VERIFIER], origin=LOG)
