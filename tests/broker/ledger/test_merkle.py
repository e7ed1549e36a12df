"""broker.ledger.merkle against RFC 9162 section 2.1 written out literally, and published vectors.

The oracle below (rfc_mth, rfc_path, rfc_proof) transcribes the RFC's recursive definitions and
shares no code with the module; every fast path is checked against it. The vectors come from
transparency-dev/merkle (testonly/constants.go, proof/verify_test.go) and from a real
Certificate Transparency log (Go's golang.org/x/mod/sumdb/tlog/testdata/argon2020).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator, Sequence
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.ledger import merkle
from broker.ledger.merkle import (
    EMPTY_ROOT,
    MemoryHashStore,
    ProofError,
    RootBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    prove_record,
    prove_tree,
    record_proof_from_reads,
    record_proof_reads,
    root_from_leaf_hashes,
    split_stored_hash_index,
    stored_hash_count,
    stored_hash_index,
    stored_hashes_for_batch,
    stored_hashes_for_record_hash,
    tree_hash,
    tree_heads,
    verify_consistency,
    verify_inclusion,
)

# ---------------------------------------------------------------------------------------------
# The oracle: RFC 9162 section 2.1, literally. D is a list of entries (not hashes).


def rfc_sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def rfc_k(n: int) -> int:
    """The largest power of two smaller than n (n > 1), found the slow, obvious way."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]), section 2.1.1."""
    n = len(d)
    if n == 0:
        return rfc_sha256(b"")
    if n == 1:
        return rfc_sha256(b"\x00" + d[0])
    k = rfc_k(n)
    return rfc_sha256(b"\x01" + rfc_mth(d[0:k]) + rfc_mth(d[k:n]))


def rfc_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]), section 2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = rfc_k(n)
    if m < k:
        return [*rfc_path(m, d[0:k]), rfc_mth(d[k:n])]
    return [*rfc_path(m - k, d[k:n]), rfc_mth(d[0:k])]


def rfc_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]), section 2.1.4.1."""
    return rfc_subproof(m, d, True)


def rfc_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b), section 2.1.4.1."""
    n = len(d)
    if m == n:
        return [] if b else [rfc_mth(d)]
    k = rfc_k(n)
    if m <= k:
        return [*rfc_subproof(m, d[0:k], b), rfc_mth(d[k:n])]
    return [*rfc_subproof(m - k, d[k:n], False), rfc_mth(d[0:k])]


def go_stored_hash_index(level: int, n: int) -> int:
    """StoredHashIndex from Go's tlog.go, loop for loop."""
    for _ in range(level):
        n = 2 * n + 1
    i = 0
    while n > 0:
        i += n
        n >>= 1
    return i + level


def go_stored_hash_count(n: int) -> int:
    """StoredHashCount from Go's tlog.go, loop for loop."""
    if n == 0:
        return 0
    num_hash = go_stored_hash_index(0, n - 1) + 1
    i = n - 1
    while i & 1:
        num_hash += 1
        i >>= 1
    return num_hash


# ---------------------------------------------------------------------------------------------
# Shared data: one log of LARGEST entries, its leaf hashes, a store and the roots of every size.

LARGEST = 4097
ENTRIES = [b"audit entry %d" % i for i in range(LARGEST)]
LEAF_HASHES = [rfc_sha256(b"\x00" + e) for e in ENTRIES]
SMALL = 64
# Every size up to 300, and 2^k - 1, 2^k, 2^k + 1 up to 2^12.
CHECKED_SIZES = sorted(
    set(range(1, 301)) | {s for k in range(1, 13) for s in ((1 << k) - 1, 1 << k, (1 << k) + 1)}
)
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


@cache
def store() -> MemoryHashStore:
    s = MemoryHashStore()
    for h in LEAF_HASHES:
        s.append_record(h)
    return s


@cache
def oracle_root(size: int) -> bytes:
    return rfc_mth(ENTRIES[:size])


def raises(verify: Callable[..., None], *args: object) -> bool:
    try:
        verify(*args)
    except ProofError:
        return True
    return False


def flipped(h: bytes, byte: int = 0, mask: int = 1) -> bytes:
    out = bytearray(h)
    out[byte] ^= mask
    return bytes(out)


def corrupted(proof: list[bytes], extra: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """Every single-step corruption of a proof: flipped bits, dropped, added, swapped hashes."""
    for i, h in enumerate(proof):
        for byte, mask in ((0, 0x01), (31, 0x80)):
            yield f"bit flip in hash {i}", [*proof[:i], flipped(h, byte, mask), *proof[i + 1 :]]
        yield f"hash {i} dropped", proof[:i] + proof[i + 1 :]
        yield f"hash {i} truncated", [*proof[:i], h[:-1], *proof[i + 1 :]]
        if i + 1 < len(proof) and proof[i] != proof[i + 1]:
            swapped = [*proof[:i], proof[i + 1], proof[i], *proof[i + 2 :]]
            yield f"hashes {i}, {i + 1} swapped", swapped
    for i in range(len(proof) + 1):
        yield f"hash added at {i}", [*proof[:i], extra, *proof[i:]]
    if proof:
        yield "first hash repeated", [proof[0], *proof]


# ---------------------------------------------------------------------------------------------
# Hashing and published vectors

# transparency-dev/merkle testonly/constants.go: leaves, and the root of every size 0..8.
CT_LEAVES = [
    bytes.fromhex(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    bytes.fromhex(x)
    for x in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# proof/verify_test.go, with its 1-based leaf numbers made 0-based indexes.
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_hashes_are_rfc_9162s() -> None:
    assert EMPTY_ROOT == rfc_sha256(b"") == CT_ROOTS[0]
    assert leaf_hash(b"") == rfc_sha256(b"\x00") == CT_ROOTS[1]
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == rfc_sha256(b"\x01" + a + b)
    assert node_hash(leaf_hash(CT_LEAVES[0]), leaf_hash(CT_LEAVES[1])) == CT_ROOTS[2]


def test_published_roots_from_every_implementation_of_the_root() -> None:
    hashes = [leaf_hash(x) for x in CT_LEAVES]
    builder = RootBuilder()
    s = MemoryHashStore()
    for size, want in enumerate(CT_ROOTS):
        assert root_from_leaf_hashes(hashes[:size]) == want, size
        assert builder.root() == want, size
        assert tree_hash(size, s) == want, size
        assert rfc_mth(CT_LEAVES[:size]) == want, size
        if size < len(hashes):
            builder.append(hashes[size])
            s.append_record(hashes[size])
    assert CT_ROOTS[8].hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@pytest.mark.parametrize(("index", "size", "want"), CT_INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, want: list[str]) -> None:
    hashes = [leaf_hash(x) for x in CT_LEAVES[:size]]
    s = MemoryHashStore()
    s.append_records(hashes)
    proof = [bytes.fromhex(x) for x in want]
    assert inclusion_proof(index, hashes) == proof
    assert prove_record(size, index, s) == proof
    verify_inclusion(index, size, hashes[index], proof, CT_ROOTS[size])


@pytest.mark.parametrize(("first", "second", "want"), CT_CONSISTENCY)
def test_published_consistency_proofs(first: int, second: int, want: list[str]) -> None:
    hashes = [leaf_hash(x) for x in CT_LEAVES[:second]]
    s = MemoryHashStore()
    s.append_records(hashes)
    proof = [bytes.fromhex(x) for x in want]
    assert consistency_proof(first, hashes) == proof
    assert prove_tree(second, first, s) == proof
    verify_consistency(first, second, CT_ROOTS[first], CT_ROOTS[second], proof)


# Google's Argon 2020 CT log, as captured in Go's sumdb/tlog/testdata/argon2020: the tree head,
# entry 10000 (leaf_input), its audit path, and the consistency proof from size 3654490.
ARGON_SIZE = 961984013
ARGON_ROOT = "dwlueapdd7LaOEnX2W2Wp9v2XE+KzejHRQGHwEx0oaM="
ARGON_OLD_SIZE = 3654490
ARGON_OLD_ROOT = "AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ="
ARGON_LEAF = (
    "AAAAAAFelPhqUwAAAAViMIIFXjCCBEagAwIBAgIRAOodHzZdqWIFzYyl/SovhCMwDQYJKoZIhvcNAQELBQAwgZAxCz"
    "AJBgNVBAYTAkdCMRswGQYDVQQIExJHcmVhdGVyIE1hbmNoZXN0ZXIxEDAOBgNVBAcTB1NhbGZvcmQxGjAYBgNVBAoT"
    "EUNPTU9ETyBDQSBMaW1pdGVkMTYwNAYDVQQDEy1DT01PRE8gUlNBIERvbWFpbiBWYWxpZGF0aW9uIFNlY3VyZSBTZX"
    "J2ZXIgQ0EwHhcNMTcwMjE1MDAwMDAwWhcNMjAwNDE2MjM1OTU5WjBfMSEwHwYDVQQLExhEb21haW4gQ29udHJvbCBW"
    "YWxpZGF0ZWQxHTAbBgNVBAsTFFBvc2l0aXZlU1NMIFdpbGRjYXJkMRswGQYDVQQDDBIqLmxhbmRsb3Jkcy5jb20uYX"
    "UwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQCtPBKKHj4zdrGlCjgTHzb5gx9JCs97DwvBz60f14gDufF2"
    "haWbOxyJ0a3opAMsZnOr8HkARVCwxdqG/PTfACcb0QM7FOlzvxGqxataTYiChwvkkif8F9GlJw69HuHgzhusPf1Ytf"
    "k3ps1PRC14MkyrS4kwPrk/Le4XdkqRpRw62wG4V6IkbzsNMEOl1H8EgUbfyapdOcVxHjIzvBVy56fBRKG05Fr5wNq3"
    "Acak5kYZdNsLhhmlrqAfAjiombW3hb3V5blJdRC0BDdYHv2+zKey6LqJ1FDoXo6IzbzPpC+aifZy47YX+/N1U64Qn5"
    "xlDg7mOP8JXfkNJHbU1TJZHif5AgMBAAGjggHhMIIB3TAfBgNVHSMEGDAWgBSQr2o6lFoL2JDqElZz30O0Oija5zAd"
    "BgNVHQ4EFgQUNQSLjkoz01I+iuuoC5lgEp0anhcwDgYDVR0PAQH/BAQDAgWgMAwGA1UdEwEB/wQCMAAwHQYDVR0lBB"
    "YwFAYIKwYBBQUHAwEGCCsGAQUFBwMCME8GA1UdIARIMEYwOgYLKwYBBAGyMQECAgcwKzApBggrBgEFBQcCARYdaHR0"
    "cHM6Ly9zZWN1cmUuY29tb2RvLmNvbS9DUFMwCAYGZ4EMAQIBMFQGA1UdHwRNMEswSaBHoEWGQ2h0dHA6Ly9jcmwuY2"
    "9tb2RvY2EuY29tL0NPTU9ET1JTQURvbWFpblZhbGlkYXRpb25TZWN1cmVTZXJ2ZXJDQS5jcmwwgYUGCCsGAQUFBwEB"
    "BHkwdzBPBggrBgEFBQcwAoZDaHR0cDovL2NydC5jb21vZG9jYS5jb20vQ09NT0RPUlNBRG9tYWluVmFsaWRhdGlvbl"
    "NlY3VyZVNlcnZlckNBLmNydDAkBggrBgEFBQcwAYYYaHR0cDovL29jc3AuY29tb2RvY2EuY29tMC8GA1UdEQQoMCaC"
    "EioubGFuZGxvcmRzLmNvbS5hdYIQbGFuZGxvcmRzLmNvbS5hdTANBgkqhkiG9w0BAQsFAAOCAQEACyHqxUzrexToY7"
    "tOv4+kyGPP2D27P1tQpyzeAl1bPObiMhNK2b9vvBLDWAaqm8c0YL1h+DBdLoWzf3xFsIkTCVCjWJTNSNlcYtgRk6or"
    "1s7jWsfXzWqsnPjPPmTIOCw7EfH7Yme3oxPs3UUsmShAgPwNohAtL9GqlqMiKM6v1WU3NHt01jEoNP23LRa6KeNK6A"
    "H6WHJykzL223IlhgXjHTeuQj6lR+TNrQXJuhwTXYe+20rrpPQxc1Pn7AqnvfWgmicRQ7gdIcr4V6+ecTvLfNOaJ0ZY"
    "e5G5giuAAdTm7F57pk04f4gyZNYKrj88mvbkoriN8b6jcWExtrYO6bm2TwAA"
)
# The two proofs share their last eight hashes: the right edge of the tree of 961984013.
ARGON_SHARED_TAIL = [
    "GXIElfmnRuWfbA4z7ubV/UwlpSRUbUeec7oL5HDDnh0=",
    "pR0SH/NYP6s9+8azWwaeUXA4Ze/3WCIgMfh5YW6wvcE=",
    "f3GuAKYVrF8RBg3s15jvA/YvV9oAliWtzP/imwPhQVA=",
    "WHn8zDxlVgkV+lSlmzaOdfSBrTHoRr5nT3d76q0KKWE=",
    "f2uV2ZxVgULzLPKuZcowRY3ZY7fRlX59iDBjV1R8kNQ=",
    "NzQVjJsvQwbi7WStMr9oFkh9VbHfK7LB6o7WwAqwNTs=",
    "C0LttBeYHZHgL+032JIcJC3CTBIyza/hsbmJUgJfmDI=",
    "nixU5CWTFVDlF4BGdcU6kA7WSYurEpe9jRWc+F/7sOc=",
]
ARGON_AUDIT_PATH = [
    "T46AmJsuOM/gFiGlUp+IJJebp+1Z5qratFNW7U0JyOQ=",
    "9Jj1Feodn42uRYEfffkV4HF/EIPFQ5Zo9IwkxbQ2uhk=",
    "D53/1oCNebF4J59HHgioovKZxrmrKcVuCVhy3Izg8Ck=",
    "wSFDgGSrsXRPA+1c8WHoAFCsWeUv8NDyP/Q/SgsyVyY=",
    "516/RcwsgdwdzHn18v1dJHqBkgFUbNhmCIWOGjsMJaE=",
    "naTFY2ajLFgrgs5XUl+zJYZnnlJksLGsA1VYwpLfqbY=",
    "mKBRJo6qao+0Kdh/rhGkZUbHUAxMhrtrclrTpIbNjIg=",
    "Co4ueOFE7lpifLio94irxxsv1wFMMaK3tPu2ZQkHlro=",
    "yRgy800K6JMYCC05sWfqF2kvCg2riT/pVM+nEa6V5+0=",
    "n2O38XJZC8/Wpbwi9HhgVizlUyeUHVZvYyQB1607MRc=",
    "go3tAjuNfNSCj87y2Rg1xOroDknGN1eaf3cgvzObf7Q=",
    "8D0Mj3/J7ySSnFb0afIHYXv6rlOhECnsebY6XKi1IR8=",
    "6rcez46ZU8M5vPiWVMAUfJfAOV0pPP/mch/lYzZhj/M=",
    "2rtIeXrPvSdUyHc5maIgSAVB2BzaKaupWxSAiVayDE4=",
    "nniW/IMFQPN5xw8UsHFn7CRStYbm1gLu7NNa6kkRqJQ=",
    "mRPPi7sQS22MduIEyvcNzCNFqIt6kLwYPkNKrVtIcu8=",
    "JvTivzESNS9wHI8aph5a7uieVmtS/p9PciMZ5D6GyOo=",
    "UTyQd+Ym0wY4zG+qK806bBORwi1CSVvFQ/KknnqoZj8=",
    "hXODrqN+ff+U6zPqRQ+ZQKs6im1fPcxIerDSfNwflhE=",
    "II6GE+WY/DrpZzfHztLwkR46o37zVkNLCyPYlf68zA0=",
    "d609kWWcNBllbA8Jb/ad4XAVVGnScLRmtP8FYyr+Dck=",
    "rikBsP0G0gioXRpBFED2CzQdSLrGPvRd0bEcbEZw1rI=",
    *ARGON_SHARED_TAIL,
]
ARGON_CONSISTENCY = [
    "80Sfbj6UQEdVSZCSIgh9NMPj3vCBzcc1A48B2crJSWg=",
    "FZcrgAHUk6nNPviJZq8kEK6jCG1d18pJOFE45ZDc1TQ=",
    "Q67reWXmPBo1UfmwBap4Xi9PMPfFdUSSw3WGlRZdG7k=",
    "eJ7CyhR4PxzBxDIsWgrVYW1eFUb9ndgf46tFmiqVrxA=",
    "QrDwp062Grm5WY8KdrhFsBuuNjGzRox2Jb8PmVL5OYw=",
    "XM4YMjMEdLH/XJam/ZWyaP14k3cmsOtnPsOWQ54lW1s=",
    "SGiBh+jOTGccXU48ZzgQ88lRcBmtB4wz4oSDndv2QTg=",
    "WAS6txqNLYKGL1GdBdpqmV42TTfn6cJsuDsqLXuTCNI=",
    "QFmRS0rirUA7ZN3lxFjDncV+E1OCrn3NUB4RCp+5fzc=",
    "Hdbp7It2XBNZmNDBpCN/KPd7vfVqxgzwOosqVIaEA9E=",
    "mxvHL0ZiblBdD7j7pIa1jlfB0gSqfJ6oX0UGo7L0VsU=",
    "q5hjyvoW6TL/PThgcitpDcSTrnKX2p1+aqscqH2euRA=",
    "jTOWDqt3IHj2NVFeezyBz2ofpru+ztEywqKUAfFclKI=",
    "GIRn0w3HqJdvU9j1WVD//eR6lk2AaTVjyzjsJNP8U88=",
    "x52GJvxG81fnQBrgOTbll1A5tz95/LXK0Ag1NhB0r1I=",
    "6/0OqrcTgc3o5dD5PymmoC96lB9yLPFuTHVvLy8fSGk=",
    "Gf+iKLfcXO5l4JEFmsZvSdG5q1uEeWPfYLrds6pmjz0=",
    "DGuaco+McyM3AfRSF6qX7RwSetwe2ieYJmxw5e9rVx0=",
    "2tQJ9V32hnYp+fdpP6TcjmgJmLeNVOMKM0Ml1kk4cNU=",
    "3PapK+IkyJr8I9yAErAmzuZezzLMzsg+PfeRCgNW8NQ=",
    "s6xiYeejb+wtqHA+URJZ2I/SCPyIW8coP6aB00FJbMY=",
    "z9lSpmdTcr5M5ZzKlc4EPh3SrSypKFdk6JUF/UccaZU=",
    *ARGON_SHARED_TAIL,
]


def test_a_real_certificate_transparency_log_verifies() -> None:
    root = base64.b64decode(ARGON_ROOT)
    entry = leaf_hash(base64.b64decode(ARGON_LEAF))
    audit_path = [base64.b64decode(h) for h in ARGON_AUDIT_PATH]
    verify_inclusion(10000, ARGON_SIZE, entry, audit_path, root)
    old_root = base64.b64decode(ARGON_OLD_ROOT)
    consistency = [base64.b64decode(h) for h in ARGON_CONSISTENCY]
    verify_consistency(ARGON_OLD_SIZE, ARGON_SIZE, old_root, root, consistency)

    with pytest.raises(ProofError, match="leads to root"):
        verify_inclusion(10001, ARGON_SIZE, entry, audit_path, root)
    with pytest.raises(ProofError, match="leads to second root"):
        verify_consistency(
            ARGON_OLD_SIZE, ARGON_SIZE, old_root, root, [*consistency[:-1], flipped(root)]
        )


# ---------------------------------------------------------------------------------------------
# Roots: every size 1..300 and around every power of two up to 2^12


def test_roots_agree_with_the_rfc_at_every_checked_size() -> None:
    builder = RootBuilder()
    s = store()
    checked = set(CHECKED_SIZES)
    for size in range(LARGEST + 1):
        if size in checked:
            want = oracle_root(size)
            assert root_from_leaf_hashes(LEAF_HASHES[:size]) == want, size
            assert builder.root() == want, size
            assert builder.size == size
            assert tree_hash(size, s) == want, size
        if size < LARGEST:
            builder.append(LEAF_HASHES[size])
    assert s.root() == oracle_root(LARGEST)
    assert root_from_leaf_hashes([]) == EMPTY_ROOT == RootBuilder().root()
    assert tree_hash(0, s) == EMPTY_ROOT


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=40), max_size=80))
def test_roots_of_arbitrary_entries(entries: list[bytes]) -> None:
    hashes = [leaf_hash(e) for e in entries]
    s = MemoryHashStore()
    s.append_records(hashes)
    builder = RootBuilder()
    builder.extend(hashes)
    want = rfc_mth(entries)
    assert root_from_leaf_hashes(hashes) == builder.root() == s.root() == want


def test_tree_heads_gives_the_root_of_every_prefix_asked_for_in_one_pass() -> None:
    for size in (0, 1, 2, 3, 7, 8, 9, 300, 1023, 1024, 1025):
        prefixes = [m for m in CHECKED_SIZES if m <= size] + [0, size]
        heads = tree_heads(LEAF_HASHES[:size], prefixes)
        assert set(heads) == set(prefixes)
        for m in prefixes:
            assert heads[m] == (oracle_root(m) if m else EMPTY_ROOT), (size, m)


@settings(max_examples=200)
@given(st.data())
def test_tree_heads_of_random_prefixes(data: st.DataObject) -> None:
    size = data.draw(st.integers(0, LARGEST))
    prefixes = data.draw(st.lists(st.integers(0, size), max_size=4))
    heads = tree_heads(LEAF_HASHES[:size], [*prefixes, size])
    assert heads[size] == oracle_root(size)
    for m in prefixes:
        assert heads[m] == oracle_root(m)


def test_tree_heads_refuses_sizes_it_cannot_answer_and_leaves_instead_of_hashes() -> None:
    with pytest.raises(ValueError, match="between 0 and 3"):
        tree_heads(LEAF_HASHES[:3], [4])
    with pytest.raises(ValueError, match="between 0 and 3"):
        tree_heads(LEAF_HASHES[:3], [-1])
    with pytest.raises(ValueError, match="leaf hash 1 is 5 bytes"):
        tree_heads([LEAF_HASHES[0], b"leaf!"], [2])


def test_leaves_passed_instead_of_leaf_hashes_are_refused() -> None:
    with pytest.raises(ValueError, match="leaf hash 1 is 5 bytes"):
        root_from_leaf_hashes([LEAF_HASHES[0], b"leaf!"])
    with pytest.raises(ValueError, match="leaf hash is 32 bytes, got 5"):
        RootBuilder().append(b"leaf!")
    builder = RootBuilder()
    with pytest.raises(ValueError, match="leaf hash is 32 bytes, got 5"):
        builder.extend([LEAF_HASHES[0], b"leaf!", LEAF_HASHES[2]])
    assert (builder.size, builder.root()) == (1, LEAF_HASHES[0])
    with pytest.raises(ValueError, match="leaf hash is 32 bytes, got 5"):
        MemoryHashStore().append_record(b"leaf!")


# ---------------------------------------------------------------------------------------------
# Inclusion proofs


def check_inclusion(index: int, size: int) -> None:
    """All three generators agree with PATH, the proof verifies, and no corruption of it does."""
    proof = rfc_path(index, ENTRIES[:size])
    assert inclusion_proof(index, LEAF_HASHES[:size]) == proof
    assert prove_record(size, index, store()) == proof
    assert len(proof) == merkle.inclusion_proof_size(index, size)
    root, leaf = oracle_root(size), LEAF_HASHES[index]
    verify_inclusion(index, size, leaf, proof, root)

    for what, bad in corrupted(proof, SOME_HASH):
        assert raises(verify_inclusion, index, size, leaf, bad, root), what
    for wrong_root in (flipped(root), flipped(root, 31, 0x80), EMPTY_ROOT, oracle_root(size - 1)):
        assert raises(verify_inclusion, index, size, leaf, proof, wrong_root)
    for wrong_leaf in (flipped(leaf), LEAF_HASHES[(index + 1) % LARGEST], ENTRIES[index]):
        assert raises(verify_inclusion, index, size, wrong_leaf, proof, root)
    for wrong_index in {index - 1, index + 1, index ^ 2, size} - {index}:
        assert raises(verify_inclusion, wrong_index, size, leaf, proof, root)
    # Only sizes whose path has another shape: see the test on sizes and checkpoints below.
    for wrong_size in {size * 2, size // 2, 0} - {size}:
        assert raises(verify_inclusion, index, wrong_size, leaf, proof, root)


def check_proof_reads(index: int, size: int) -> None:
    """The proof assembled from `record_proof_reads` is PATH, read from the stored hashes."""
    reads = record_proof_reads(size, index)
    assert len(reads.indexes) == len(reads.levels) == sum(reads.parts)
    assert reads.levels == [split_stored_hash_index(i)[0] for i in reads.indexes]
    hashes = store().read_hashes(reads.indexes)
    assert record_proof_from_reads(reads, hashes) == rfc_path(index, ENTRIES[:size])


def test_inclusion_proofs_for_every_leaf_of_every_small_tree() -> None:
    for size in range(1, SMALL + 1):
        for index in range(size):
            check_inclusion(index, size)
            check_proof_reads(index, size)


@settings(max_examples=200)
@given(st.data())
def test_inclusion_proofs_in_larger_trees(data: st.DataObject) -> None:
    size = data.draw(
        st.sampled_from([s for s in CHECKED_SIZES if s > SMALL]) | st.integers(SMALL + 1, LARGEST)
    )
    index = data.draw(st.integers(0, size - 1) | st.sampled_from([0, size // 2, size - 1]))
    check_inclusion(index, size)
    check_proof_reads(index, size)


def test_proof_reads_refuse_what_is_not_a_proof() -> None:
    with pytest.raises(ValueError, match="record 5 is not in a tree of size 5"):
        record_proof_reads(5, 5)
    reads = record_proof_reads(5, 0)
    with pytest.raises(ValueError, match="need 3 hashes, got 2"):
        record_proof_from_reads(reads, [SOME_HASH, SOME_HASH])


def test_inclusion_failures_say_what_failed() -> None:
    proof = inclusion_proof(3, LEAF_HASHES[:7])
    root, leaf = oracle_root(7), LEAF_HASHES[3]
    with pytest.raises(ProofError, match="leaf index 7 is not less than tree size 7"):
        verify_inclusion(7, 7, leaf, proof, root)
    with pytest.raises(ProofError, match="must not be negative"):
        verify_inclusion(-1, 7, leaf, proof, root)
    with pytest.raises(ProofError, match="in a tree of size 7 has 3 hashes, got 2"):
        verify_inclusion(3, 7, leaf, proof[:2], root)
    with pytest.raises(ProofError, match=f"leads to root [0-9a-f]{{64}}, not {EMPTY_ROOT.hex()}"):
        verify_inclusion(3, 7, leaf, proof, EMPTY_ROOT)
    with pytest.raises(ProofError, match="proof hash 1 is 31 bytes, want 32"):
        verify_inclusion(3, 7, leaf, [proof[0], proof[1][:31], proof[2]], root)
    with pytest.raises(ProofError, match="the leaf hash is 13 bytes, want 32"):
        verify_inclusion(3, 7, ENTRIES[3], proof, root)
    with pytest.raises(ValueError, match="leaf index 7 is not in a tree of size 7"):
        inclusion_proof(7, LEAF_HASHES[:7])
    with pytest.raises(ValueError, match="record 7 is not in a tree of size 7"):
        prove_record(7, 7, store())


def test_tree_size_is_bound_by_the_signed_checkpoint_not_by_the_proof() -> None:
    # RFC 9162's verifier accepts a proof for a size whose path has the same shape: leaf 0's
    # path in the tree of 3, [h1, h2], also "proves" leaf 0 in a tree of 4 with the same root.
    # So a root is only meaningful together with the size its checkpoint signs.
    proof = inclusion_proof(0, LEAF_HASHES[:3])
    verify_inclusion(0, 3, LEAF_HASHES[0], proof, oracle_root(3))
    verify_inclusion(0, 4, LEAF_HASHES[0], proof, oracle_root(3))
    # The same holds for consistency: this proof from 1 to 3 is also one "from 1 to 4".
    proof = consistency_proof(1, LEAF_HASHES[:3])
    verify_consistency(1, 3, oracle_root(1), oracle_root(3), proof)
    verify_consistency(1, 4, oracle_root(1), oracle_root(3), proof)


# ---------------------------------------------------------------------------------------------
# Consistency proofs


def check_consistency(first: int, second: int) -> None:
    """All three generators agree with PROOF, the proof verifies, and no corruption of it does."""
    proof = rfc_proof(first, ENTRIES[:second])
    assert consistency_proof(first, LEAF_HASHES[:second]) == proof
    assert prove_tree(second, first, store()) == proof
    assert len(proof) == merkle.consistency_proof_size(first, second)
    old, new = oracle_root(first), oracle_root(second)
    verify_consistency(first, second, old, new, proof)

    for what, bad in corrupted(proof, SOME_HASH):
        assert raises(verify_consistency, first, second, old, new, bad), what
    for wrong_old in (flipped(old), flipped(old, 31, 0x80), EMPTY_ROOT, SOME_HASH):
        assert raises(verify_consistency, first, second, wrong_old, new, proof)
    for wrong_new in (flipped(new), flipped(new, 31, 0x80), EMPTY_ROOT, SOME_HASH):
        assert raises(verify_consistency, first, second, old, wrong_new, proof)
    if first != second:
        assert raises(verify_consistency, first, second, new, old, proof)
    for wrong_first in {first - 1, first + 1, first ^ 2, 0} - {first}:
        assert raises(verify_consistency, wrong_first, second, old, new, proof)
    for wrong_second in {second * 2, second // 2, 0} - {second}:
        assert raises(verify_consistency, first, wrong_second, old, new, proof)


def test_consistency_proofs_between_every_pair_of_small_trees() -> None:
    for second in range(1, SMALL + 1):
        for first in range(1, second + 1):
            check_consistency(first, second)


@settings(max_examples=200)
@given(st.data())
def test_consistency_proofs_between_larger_trees(data: st.DataObject) -> None:
    second = data.draw(
        st.sampled_from([s for s in CHECKED_SIZES if s > SMALL]) | st.integers(SMALL + 1, LARGEST)
    )
    first = data.draw(
        st.integers(1, second) | st.sampled_from([1, second // 2, second - 1, second])
    )
    check_consistency(first, second)


def test_consistency_failures_say_what_failed() -> None:
    old, new = oracle_root(5), oracle_root(9)
    proof = consistency_proof(5, LEAF_HASHES[:9])
    with pytest.raises(ProofError, match="a consistency proof from size 0 is not defined"):
        verify_consistency(0, 9, EMPTY_ROOT, new, [])
    with pytest.raises(ProofError, match="first tree size 9 is larger than second tree size 5"):
        verify_consistency(9, 5, new, old, proof)
    with pytest.raises(ProofError, match="between equal sizes is empty, got 1 hashes"):
        verify_consistency(5, 5, old, old, [old])
    with pytest.raises(ProofError, match="two different roots for tree size 5"):
        verify_consistency(5, 5, old, new, [])
    with pytest.raises(ProofError, match=f"from size 5 to 9 has {len(proof)} hashes, got 0"):
        verify_consistency(5, 9, old, new, [])
    with pytest.raises(ProofError, match="leads to first root"):
        verify_consistency(5, 9, flipped(old), new, proof)
    with pytest.raises(ProofError, match="leads to second root"):
        verify_consistency(5, 9, old, flipped(new), proof)
    with pytest.raises(ProofError, match="the second root is 0 bytes"):
        verify_consistency(5, 9, old, b"", proof)
    verify_consistency(5, 5, old, old, [])
    with pytest.raises(ValueError, match="0 < m <= n, got m=0, n=9"):
        consistency_proof(0, LEAF_HASHES[:9])
    with pytest.raises(ValueError, match="0 < old size <= tree size, got 10, 9"):
        prove_tree(9, 10, store())


# ---------------------------------------------------------------------------------------------
# Stored hashes


def test_stored_hash_index_is_gos() -> None:
    for level in range(24):
        for n in range(300):
            index = stored_hash_index(level, n)
            assert index == go_stored_hash_index(level, n), (level, n)
            assert split_stored_hash_index(index) == (level, n)


@settings(max_examples=200)
@given(st.integers(0, 40), st.integers(0, 2**40))
def test_split_stored_hash_index_inverts_it(level: int, n: int) -> None:
    index = stored_hash_index(level, n)
    assert index == go_stored_hash_index(level, n)
    assert split_stored_hash_index(index) == (level, n)


def test_stored_hash_layout_is_dense_and_each_hash_is_its_subtrees_root() -> None:
    s = store()
    for size in range(LARGEST + 1):
        assert stored_hash_count(size) == go_stored_hash_count(size), size
    assert s.stored_count == stored_hash_count(LARGEST)
    # Every position is used, by exactly one (level, n), holding MTH of that subtree's leaves.
    stored = s.read_hashes(range(stored_hash_count(1024)))
    for index, h in enumerate(stored):
        level, n = split_stored_hash_index(index)
        assert stored_hash_index(level, n) == index
        assert h == rfc_mth(ENTRIES[n << level : (n + 1) << level]), (index, level, n)


def test_each_append_stores_what_stored_hash_count_says() -> None:
    s = MemoryHashStore()
    for n, h in enumerate(LEAF_HASHES[:1100]):
        before = s.stored_count
        assert before == stored_hash_count(n)
        new = stored_hashes_for_record_hash(n, h, s)
        assert len(new) == stored_hash_count(n + 1) - before
        s.append_record(h)
        assert s.read_hashes(range(before, s.stored_count)) == new


@settings(max_examples=200)
@given(st.lists(st.integers(0, 40), max_size=30), st.integers(0, 300))
def test_a_batch_stores_the_same_as_single_appends(batches: list[int], start: int) -> None:
    single = MemoryHashStore()
    for h in LEAF_HASHES[:start]:
        single.append_record(h)
    batched = MemoryHashStore()
    batched.append_records(LEAF_HASHES[:start])
    assert everything(batched) == everything(single)
    n = start
    for count in batches:
        leaves = LEAF_HASHES[n : n + count]
        reader = CountingReader(batched)
        hashes = stored_hashes_for_batch(n, leaves, reader)
        # It reads exactly the hashes from before the batch that single appends would read.
        base = stored_hash_count(n)
        wanted = {
            index
            for k in range(n, n + count)
            for level in range(trailing_ones(k))
            if (index := go_stored_hash_index(level, (k >> level) - 1)) < base
        }
        assert reader.seen == sorted(wanted)
        assert reader.calls == (1 if wanted else 0)
        assert len(wanted) <= n.bit_count()
        assert len(hashes) == stored_hash_count(n + count) - base

        batched.append_records(leaves)
        for h in leaves:
            single.append_record(h)
        n += count
        assert batched.size == single.size == n
        assert everything(batched) == everything(single)
    assert batched.root() == oracle_root(n)


def everything(s: MemoryHashStore) -> Sequence[bytes]:
    return s.read_hashes(range(s.stored_count))


def trailing_ones(k: int) -> int:
    ones = 0
    while k >> ones & 1:
        ones += 1
    return ones


def test_hash_readers_that_lie_are_caught() -> None:
    class Short:
        def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
            return []

    class Truncated:
        def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
            return [b"\x00" * 31 for _ in indexes]

    with pytest.raises(RuntimeError, match="returned 0 hashes for 3 indexes"):
        tree_hash(7, Short())
    with pytest.raises(RuntimeError, match="is 31 bytes, want 32"):
        prove_record(7, 1, Truncated())
    with pytest.raises(IndexError, match="stored hash -1 does not exist"):
        store().read_hashes([-1])


# ---------------------------------------------------------------------------------------------
# Reads: one call of O(log n) hashes, never a hash stored after the tree in question


class CountingReader:
    """Counts reads, insists on increasing indexes, as Go's tests do."""

    def __init__(self, inner: merkle.HashReader) -> None:
        self.inner = inner
        self.calls = 0
        self.reads = 0
        self.seen: list[int] = []

    def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
        assert list(indexes) == sorted(set(indexes)), "indexes must be increasing"
        self.calls += 1
        self.reads += len(indexes)
        self.seen.extend(indexes)
        return self.inner.read_hashes(indexes)


class VirtualReader:
    """Any tree size, no storage: arbitrary hashes, for counting reads in huge trees."""

    def __init__(self, size: int) -> None:
        self.limit = stored_hash_count(size)

    def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
        assert all(0 <= i < self.limit for i in indexes), "read beyond the tree"
        return [i.to_bytes(32, "big") for i in indexes]


def record_bound(size: int) -> int:
    """The most hashes prove_record reads: 2 floor(log2 size), reached at size 2^k - 1."""
    return 2 * (size.bit_length() - 1)


def tree_bound(size: int) -> int:
    """The most hashes prove_tree reads: 2 ceil(log2 size) - 1, reached at 2^k - 1 from k = 3."""
    return max(0, 2 * (size - 1).bit_length() - 1)


def test_read_bounds_are_tight_in_every_small_tree() -> None:
    s = store()
    for size in range(1, 129):
        worst_record = worst_tree = 0
        for index in range(size):
            reader = CountingReader(VirtualReader(size))
            prove_record(size, index, reader)
            assert reader.calls <= 1
            worst_record = max(worst_record, reader.reads)
        for old in range(1, size + 1):
            reader = CountingReader(VirtualReader(size))
            prove_tree(size, old, reader)
            assert reader.calls <= 1
            worst_tree = max(worst_tree, reader.reads)
        assert worst_record <= record_bound(size)
        assert worst_tree <= tree_bound(size)
        if size >= 7 and size == (1 << size.bit_length()) - 1:
            assert (worst_record, worst_tree) == (record_bound(size), tree_bound(size))
        reader = CountingReader(s)
        tree_hash(size, reader)
        assert (reader.calls, reader.reads) == (1, size.bit_count())
        reader = CountingReader(s)
        stored_hashes_for_record_hash(size, LEAF_HASHES[0], reader)
        # One read per subtree the record completes: the trailing 1 bits of its index.
        assert reader.reads == (size ^ (size + 1)).bit_length() - 1


@settings(max_examples=200)
@given(st.data())
def test_reads_stay_logarithmic_in_huge_trees(data: st.DataObject) -> None:
    k = data.draw(st.integers(1, 48))
    size = data.draw(st.sampled_from([(1 << k) - 1, 1 << k, (1 << k) + 1]) | st.integers(1, 1 << k))
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))

    reader = CountingReader(VirtualReader(size))
    proof = prove_record(size, index, reader)
    assert len(proof) == merkle.inclusion_proof_size(index, size) <= reader.reads
    assert reader.calls <= 1
    assert reader.reads <= record_bound(size)

    reader = CountingReader(VirtualReader(size))
    proof = prove_tree(size, old, reader)
    assert len(proof) == merkle.consistency_proof_size(old, size) <= reader.reads
    assert reader.calls <= 1
    assert reader.reads <= tree_bound(size)

    reader = CountingReader(VirtualReader(size))
    tree_hash(size, reader)
    assert reader.reads == size.bit_count()
    reader = CountingReader(VirtualReader(size))
    stored_hashes_for_batch(size, LEAF_HASHES[:50], reader)
    assert reader.calls <= 1
    assert reader.reads <= size.bit_count()
