"""Signed notes: Go's sumdb/note test vectors, key rotation, strict parsing, fuzzing."""

from __future__ import annotations

import base64
import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.ledger.note import (
    MAX_SIGNATURES,
    Ed25519Signer,
    InvalidSignatureError,
    MalformedNoteError,
    Note,
    NoteError,
    Signature,
    UnverifiedNoteError,
    Verifier,
    check_key_name,
    ed25519_key_id,
    format_vkey,
    open_note,
    parse_vkey,
    sign_note,
)

# From golang.org/x/mod/sumdb/note (note.go, note_test.go).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdng"
    "otpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWL"
    "ox33WWd1RvMc+QQ=\n"
)
PETER_MSG = (TEXT + "\n" + PETER_SIG).encode()

# From c2sp.org/signed-note: its text contains a blank line; no public key is published.
QUASIMODO_MSG = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed \u00e8 subito sera.\n"
    "\n"
    "\u2014 quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrM"
    "ouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
).encode()

LOG = "broker.example/audit/v1"


def _sig_b64(line: str) -> str:
    return line.rstrip("\n").rsplit(" ", 1)[1]


def _peter_signer() -> Ed25519Signer:
    # Go's skey is PRIVATE+KEY+<name>+<id>+base64(0x01 || 32-byte seed).
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    return Ed25519Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def _signer(seed: int, name: str = LOG) -> Ed25519Signer:
    return Ed25519Signer(name, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


PETER = parse_vkey(PETER_VKEY)
ENOCH = parse_vkey(ENOCH_VKEY)
PETER_SIGNATURE = Signature("PeterNeumann", 0xC74F20A3, base64.b64decode(_sig_b64(PETER_SIG))[4:])
ENOCH_SIGNATURE = Signature("EnochRoot", 0xAF0CFE78, base64.b64decode(_sig_b64(ENOCH_SIG))[4:])


# --- Go test vectors -----------------------------------------------------------------------


def test_go_vkey_parses_with_its_key_id() -> None:
    assert PETER.name == "PeterNeumann"
    assert PETER.key_id == 0xC74F20A3
    assert ed25519_key_id("PeterNeumann", PETER.public_key) == 0xC74F20A3
    assert format_vkey("PeterNeumann", PETER.public_key) == PETER_VKEY
    assert PETER.vkey == PETER_VKEY
    assert ENOCH.key_id == 0xAF0CFE78


def test_go_skey_derives_the_go_vkey() -> None:
    signer = _peter_signer()
    assert signer.key_id == 0xC74F20A3
    assert signer.verifier() == PETER
    assert "PRIVATE" not in repr(signer)
    assert repr(signer) == f"Ed25519Signer({PETER_VKEY!r})"


def test_go_signed_note_verifies() -> None:
    note = open_note(PETER_MSG, [PETER])
    assert note == Note(text=TEXT, verified=[PETER_SIGNATURE], unverified=[])


def test_signing_reproduces_go_output_byte_for_byte() -> None:
    # Ed25519 is deterministic, so the same seed and text give Go's exact signature.
    assert sign_note(TEXT, [_peter_signer()]) == PETER_MSG


def test_go_doubly_signed_note_with_plus_in_signature_base64() -> None:
    msg = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    assert "+" in _sig_b64(ENOCH_SIG)
    both = open_note(msg, [PETER, ENOCH])
    assert both.verified == [PETER_SIGNATURE, ENOCH_SIGNATURE]
    assert both.unverified == []
    assert open_note(msg, [ENOCH]).verified == [ENOCH_SIGNATURE]


def test_tampered_text_fails() -> None:
    tampered = PETER_MSG.replace(b"your problem is", b"your problem was")
    with pytest.raises(InvalidSignatureError, match=r"PeterNeumann\+c74f20a3") as info:
        open_note(tampered, [PETER])
    assert (info.value.name, info.value.key_id) == ("PeterNeumann", 0xC74F20A3)


def test_tampered_signature_bytes_fail() -> None:
    # Go's case: four base64 characters spliced into the signature.
    raw = PETER_MSG
    cut = len((TEXT + "\n").encode()) + 60
    with pytest.raises(InvalidSignatureError):
        open_note(raw[:cut] + b"ABCD" + raw[cut:], [PETER])


def test_unknown_key_is_ignored_when_a_known_one_is_valid() -> None:
    msg = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    note = open_note(msg, [PETER])
    assert note.verified == [PETER_SIGNATURE]
    assert note.unverified == [ENOCH_SIGNATURE]


def test_only_unknown_keys_is_unverified() -> None:
    msg = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    with pytest.raises(UnverifiedNoteError, match="no signature by a known key") as info:
        open_note(msg, [])
    assert info.value.note.text == TEXT
    assert info.value.note.verified == []
    assert info.value.note.unverified == [PETER_SIGNATURE, ENOCH_SIGNATURE]
    with pytest.raises(UnverifiedNoteError):
        open_note(PETER_MSG, [ENOCH])


def test_same_name_or_same_id_but_not_both_is_an_unknown_key() -> None:
    other_id = _sig_b64(PETER_SIG)
    raw = base64.b64decode(other_id)
    wrong_id = base64.b64encode(b"\x00\x00\x00\x01" + raw[4:]).decode()
    msg = (
        TEXT + "\n" + PETER_SIG + f"\u2014 PeterNeumann {wrong_id}\n" + f"\u2014 Peter {other_id}\n"
    ).encode()
    note = open_note(msg, [PETER])
    assert note.verified == [PETER_SIGNATURE]
    assert [(s.name, s.key_id) for s in note.unverified] == [
        ("PeterNeumann", 1),
        ("Peter", 0xC74F20A3),
    ]


def test_duplicate_signatures_are_collapsed_but_all_checked() -> None:
    enoch_abcd = ENOCH_SIG[:58] + "ABCD" + ENOCH_SIG[58:]
    msg = (TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd).encode()
    note = open_note(msg, [PETER])
    assert note.verified == [PETER_SIGNATURE]
    assert note.unverified[0] == ENOCH_SIGNATURE
    assert len(note.unverified) == 2
    # A second, different signature by a known key is verified too, not skipped as in Go.
    bad = (TEXT + "\n" + PETER_SIG + ENOCH_SIG + enoch_abcd).encode()
    with pytest.raises(InvalidSignatureError, match="EnochRoot"):
        open_note(bad, [PETER, ENOCH])


def test_go_vkey_manglings_are_all_rejected() -> None:
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(NoteError):
                    parse_vkey(PETER_VKEY[i:j])
    for i, char in enumerate(PETER_VKEY):
        with pytest.raises(NoteError):
            parse_vkey(PETER_VKEY[:i] + chr(ord(char) + 1) + PETER_VKEY[i + 1 :])


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        # Go's wrong-length vector: its "EY==" has non-zero padding bits, caught first here.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "not canonical",
        ),
        ("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==", "33 bytes"),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "type 0x65"),
        (
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "hashes to c74f20a3",
        ),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hexadecimal"),
        ("PeterNeumann+c74f20a3", "<name>"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "space"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "empty"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TX", "hashes to"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T=", "canonical"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n", "canonical"),
        ("PeterNeumann+c74f20a3+", "empty"),
    ],
)
def test_bad_vkeys_say_what_is_wrong(vkey: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        parse_vkey(vkey)


def test_vkey_accepts_upper_case_id_like_go() -> None:
    assert parse_vkey(PETER_VKEY.replace("c74f20a3", "C74F20A3")) == PETER


# --- Our own keys: round trips and rotation --------------------------------------------------


def test_vkey_round_trip_with_plus_in_the_base64() -> None:
    signer = _signer(8)  # this seed's public key happens to encode with a '+'
    vkey = signer.verifier().vkey
    assert "+" in vkey.split("+", 2)[2]
    assert vkey.count("+") > 2
    parsed = parse_vkey(vkey)
    assert parsed == signer.verifier()
    assert (parsed.name, parsed.key_id, parsed.public_key) == (
        LOG,
        signer.key_id,
        signer.public_key,
    )


@given(st.integers(0, 255), st.sampled_from([LOG, "a", "\u00e9t\u00e9/\u2014/log", "x/y/z"]))
@settings(max_examples=50)
def test_vkey_round_trip_property(seed: int, name: str) -> None:
    verifier = _signer(seed, name).verifier()
    assert parse_vkey(format_vkey(name, verifier.public_key)) == verifier


def test_key_rotation_overlap_both_readers_accept() -> None:
    old, new = _signer(1), _signer(2)
    assert old.name == new.name
    assert old.key_id != new.key_id
    text = f"{LOG}\n5\n{base64.b64encode(bytes(32)).decode()}\n"
    msg = sign_note(text, [old, new])

    old_reader = open_note(msg, [old.verifier()])
    assert [s.key_id for s in old_reader.verified] == [old.key_id]
    assert [s.key_id for s in old_reader.unverified] == [new.key_id]

    new_reader = open_note(msg, [new.verifier()])
    assert [s.key_id for s in new_reader.verified] == [new.key_id]
    assert [s.key_id for s in new_reader.unverified] == [old.key_id]

    both = open_note(msg, [old.verifier(), new.verifier()])
    assert [s.key_id for s in both.verified] == [old.key_id, new.key_id]

    # After the overlap only the new key signs; a reader still on the old key must notice.
    with pytest.raises(UnverifiedNoteError):
        open_note(sign_note(text, [new]), [old.verifier()])


def test_sixteen_signatures_are_accepted() -> None:
    signers = [_signer(i, f"witness{i}.example") for i in range(16)]
    note = open_note(sign_note(TEXT, signers), [s.verifier() for s in signers])
    assert len(note.verified) == 16


def test_text_with_blank_lines_round_trips() -> None:
    text = "first\n\nthird\n\n"
    signer = _signer(3)
    assert open_note(sign_note(text, [signer]), [signer.verifier()]).text == text


def test_spec_example_with_blank_line_in_text() -> None:
    with pytest.raises(UnverifiedNoteError) as info:
        open_note(QUASIMODO_MSG, [PETER])
    note = info.value.note
    assert note.text == (
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\n"
        "ed \u00e8 subito sera.\n"
    )
    assert [(s.name, s.key_id, len(s.signature)) for s in note.unverified] == [
        ("quasimodo.example/salvatore", 0x367BA04B, 64)
    ]


def test_duplicate_verifiers_for_one_key_are_fine_but_conflicting_ones_are_not() -> None:
    assert open_note(PETER_MSG, [PETER, parse_vkey(PETER_VKEY)]).verified == [PETER_SIGNATURE]

    class Impostor(Verifier):
        @property
        def key_id(self) -> int:
            return 0xC74F20A3

    impostor = Impostor("PeterNeumann", ENOCH.public_key)
    with pytest.raises(NoteError, match="two different verifier keys"):
        open_note(PETER_MSG, [PETER, impostor])


# --- Signing rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("abc", "newline"),
        ("line\r\n", "U\\+000D"),
        ("tab\there\n", "U\\+0009"),
        ("nul\x00\n", "U\\+0000"),
        ("bad \ud800\n", "surrogate"),
    ],
)
def test_sign_rejects_text_that_is_not_note_text(text: str, message: str) -> None:
    with pytest.raises(MalformedNoteError, match=message):
        sign_note(text, [_signer(1)])


def test_sign_needs_valid_distinct_signers() -> None:
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note(TEXT, [])
    with pytest.raises(NoteError, match="listed twice"):
        sign_note(TEXT, [_signer(1), _signer(1)])
    with pytest.raises(NoteError, match="more than the 100"):
        sign_note(TEXT, [_signer(1)] * (MAX_SIGNATURES + 1))

    class Renamed:
        name = "bad name"
        key_id = 1

        def sign(self, msg: bytes) -> bytes:
            return b"x"

    with pytest.raises(NoteError, match="space"):
        sign_note(TEXT, [Renamed()])

    class Mute:
        name = "mute"
        key_id = 1

        def sign(self, msg: bytes) -> bytes:
            return b""

    with pytest.raises(NoteError, match="empty signature"):
        sign_note(TEXT, [Mute()])

    class Huge:
        name = "huge"
        key_id = 1 << 32

        def sign(self, msg: bytes) -> bytes:
            return b"x"

    with pytest.raises(NoteError, match="32-bit"):
        sign_note(TEXT, [Huge()])


@pytest.mark.parametrize(
    "name", ["", "a+b", "a b", "a\u00a0b", "a\u2003b", "a\u3000b", "a\nb", "a\x01b"]
)
def test_key_name_rules(name: str) -> None:
    with pytest.raises(NoteError):
        check_key_name(name)
    with pytest.raises(NoteError):
        Verifier(name, PETER.public_key)
    with pytest.raises(NoteError):
        Ed25519Signer(name, Ed25519PrivateKey.generate())


def test_verifier_needs_a_32_byte_key() -> None:
    with pytest.raises(NoteError, match="31 bytes"):
        Verifier("k", bytes(31))
    with pytest.raises(NoteError, match="33 bytes"):
        ed25519_key_id("k", bytes(33))


def test_verifier_rejects_wrong_length_signatures() -> None:
    signer = _signer(4)
    sig = signer.sign(b"m")
    verifier = signer.verifier()
    assert verifier.verify(b"m", sig)
    assert not verifier.verify(b"m", sig[:-1])
    assert not verifier.verify(b"m", sig + b"\x00")
    assert not verifier.verify(b"n", sig)


# --- Malformed notes -----------------------------------------------------------------------


def _sig_line_with(payload: bytes) -> str:
    return f"\u2014 PeterNeumann {base64.b64encode(payload).decode()}\n"


NON_CANONICAL = PETER_SIG.replace("nAM=", "nAN=")  # same bytes, non-zero padding bits


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (TEXT.encode(), "no blank line"),
        ((TEXT + PETER_SIG).encode(), "no blank line"),
        ((TEXT + "\n").encode(), "no signature lines"),
        ((TEXT + "\n" + PETER_SIG[:-1]).encode(), "does not end in a newline"),
        (b"\x01" + PETER_MSG, "U\\+0001"),
        (b"\xff" + PETER_MSG, "not valid UTF-8"),
        (PETER_MSG.replace(b"problem,\n", b"problem,\r\n"), "U\\+000D"),
        (PETER_MSG.replace(b"\n", b"\r\n"), "U\\+000D"),
        (PETER_MSG[:-1] + b"\r\n", "U\\+000D"),
        (b"\xed\xa0\x80\n\n" + PETER_SIG.encode(), "not valid UTF-8"),  # encoded surrogate
        (b"\xc0\x8a\n\n" + PETER_SIG.encode(), "not valid UTF-8"),  # overlong newline
        (
            (TEXT + "\n\u2014 Bad Name " + _sig_b64(PETER_SIG) + "\n").encode(),
            "signature line 1: signature is not canonical",
        ),
        ((TEXT + "\n" + PETER_SIG + "Unexpected line.\n").encode(), "line 2 does not start"),
        ((TEXT + "\n" + PETER_SIG.replace("\u2014", "-")).encode(), "em dash"),
        ((TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014")).encode(), "em dash"),
        ((TEXT + "\n\u2014 PeterNeumann\n").encode(), "no space"),
        ((TEXT + "\n\u2014  " + _sig_b64(PETER_SIG) + "\n").encode(), "key name is empty"),
        ((TEXT + "\n\u2014 Peter+Neumann " + _sig_b64(PETER_SIG) + "\n").encode(), "'\\+'"),
        ((TEXT + "\n" + PETER_SIG.replace("x08go", "x08g!")).encode(), "base64"),
        ((TEXT + "\n" + PETER_SIG.replace("nAM=", "nAM")).encode(), "base64"),
        ((TEXT + "\n" + PETER_SIG.replace("AM=\n", "AM= \n")).encode(), "base64"),
        ((TEXT + "\n" + NON_CANONICAL).encode(), "canonical"),
        ((TEXT + "\n" + _sig_line_with(b"\xc7\x4f\x20")).encode(), "3 bytes"),
        ((TEXT + "\n" + _sig_line_with(b"\xc7\x4f\x20\xa3")).encode(), "4 bytes"),
        ((TEXT + "\n\u2014 PeterNeumann \n").encode(), "0 bytes"),
        ((TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1)).encode(), "101 signatures"),
        (b"x" * (1 << 20) + b"\n\n" + PETER_SIG.encode(), "over the 1048576"),
    ],
)
def test_malformed_notes_raise_malformed(msg: bytes, message: str) -> None:
    with pytest.raises(MalformedNoteError, match=message):
        open_note(msg, [PETER])


def test_malformed_beats_unverified() -> None:
    # Structure is checked before signatures, so no verifier set changes the verdict.
    with pytest.raises(MalformedNoteError):
        open_note((TEXT + "\n" + PETER_SIG * 101).encode(), [])


def test_exactly_max_signatures_is_fine() -> None:
    note = open_note((TEXT + "\n" + PETER_SIG * MAX_SIGNATURES).encode(), [PETER])
    assert note.verified == [PETER_SIGNATURE]


def test_error_tree() -> None:
    for error in (MalformedNoteError, UnverifiedNoteError, InvalidSignatureError):
        assert issubclass(error, NoteError)
    assert issubclass(NoteError, ValueError)


# --- Properties and fuzzing ----------------------------------------------------------------

NOTE_CHARS = st.characters(min_codepoint=0x20, exclude_categories=["Cs"]) | st.just("\n")
FUZZ_SIGNER = _signer(7, "fuzz.example/log")
FUZZ_VERIFIER = FUZZ_SIGNER.verifier()


@given(st.text(NOTE_CHARS, max_size=200).map(lambda s: s + "\n"))
@settings(max_examples=200)
def test_sign_open_round_trip_property(text: str) -> None:
    note = open_note(sign_note(text, [FUZZ_SIGNER]), [FUZZ_VERIFIER, PETER])
    assert note.text == text
    assert [(s.name, s.key_id) for s in note.verified] == [("fuzz.example/log", FUZZ_SIGNER.key_id)]


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_open_arbitrary_bytes_raises_only_note_errors(msg: bytes) -> None:
    with contextlib.suppress(NoteError):
        open_note(msg, [PETER, FUZZ_VERIFIER])


@st.composite
def _mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["set", "insert", "delete"]))
        piece = draw(st.sampled_from([b"\n", b"\r", b" ", b"+", b"=", b"\xe2\x80\x94", b"\xff"]))
        chunk = draw(st.binary(min_size=1, max_size=3) | st.just(piece))
        if action == "set" and pos < len(data):
            data[pos : pos + len(chunk)] = chunk
        elif action == "insert":
            data[pos:pos] = chunk
        elif pos < len(data):
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


DOUBLE_MSG = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()


@given(_mutated(DOUBLE_MSG))
@settings(max_examples=300)
def test_open_mutated_notes_raises_only_note_errors(msg: bytes) -> None:
    try:
        note = open_note(msg, [PETER, ENOCH])
    except NoteError:
        return
    # Whatever survives mutation must still carry a valid signature over its own text.
    assert note.verified
    assert note.text == TEXT


@given(st.text(max_size=120) | _mutated(PETER_VKEY.encode()).map(lambda b: b.decode("latin-1")))
@settings(max_examples=300)
def test_parse_vkey_arbitrary_text_raises_only_note_errors(text: str) -> None:
    try:
        verifier = parse_vkey(text)
    except NoteError:
        return
    assert verifier.vkey.lower() == text.lower()
