"""converge.extensions.crypto: AES-256-GCM layout, associated data, tampering, bad keys, PBKDF2 vectors."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from converge.errors import CryptoError
from converge.extensions.crypto import DecryptionError, decrypt, derive_key, encrypt, secure_random_bytes

KEY = bytes(range(32))


def test_round_trip_and_layout() -> None:
    ct = encrypt(b"attack at dawn", KEY)
    assert len(ct) == 12 + len(b"attack at dawn") + 16
    assert decrypt(ct, KEY) == b"attack at dawn"
    # nonce || ciphertext || tag is exactly what plain AESGCM produces and reads
    assert AESGCM(KEY).decrypt(ct[:12], ct[12:], b"") == b"attack at dawn"
    assert decrypt(ct[:12] + AESGCM(KEY).encrypt(ct[:12], b"x", None), KEY) == b"x"


def test_fresh_nonce_each_time() -> None:
    a, b = encrypt(b"same", KEY), encrypt(b"same", KEY)
    assert a != b and a[:12] != b[:12]


def test_empty_plaintext_is_the_shortest_valid_input() -> None:
    ct = encrypt(b"", KEY)
    assert len(ct) == 28 and decrypt(ct, KEY) == b""


def test_associated_data() -> None:
    ct = encrypt(b"m", KEY, b"header")
    assert decrypt(ct, KEY, b"header") == b"m"
    with pytest.raises(DecryptionError):
        decrypt(ct, KEY, b"other")
    with pytest.raises(DecryptionError):
        decrypt(ct, KEY)
    assert decrypt(encrypt(b"m", KEY, None), KEY, b"") == b"m"  # None means b""


@pytest.mark.parametrize("index", [0, 11, 12, 20, -1])
def test_any_flipped_bit_is_detected(index: int) -> None:
    ct = bytearray(encrypt(b"some plaintext here", KEY))
    ct[index] ^= 0x01
    with pytest.raises(DecryptionError) as info:
        decrypt(bytes(ct), KEY)
    err = info.value
    assert isinstance(err, InvalidTag) and isinstance(err, CryptoError) and isinstance(err, ValueError)
    assert "did not authenticate" in str(err)


def test_wrong_key() -> None:
    with pytest.raises(InvalidTag):
        decrypt(encrypt(b"m", KEY), bytes(32))


@pytest.mark.parametrize("key", [b"", b"k" * 16, b"k" * 31, b"k" * 33, "k" * 32, None])
def test_bad_keys(key: object) -> None:
    with pytest.raises(CryptoError, match="Key must be 32 bytes for AES-256"):
        encrypt(b"m", key)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Key must be 32 bytes for AES-256"):
        decrypt(b"\x00" * 40, key)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 27])
def test_short_ciphertext(size: int) -> None:
    with pytest.raises(CryptoError, match="Ciphertext too short"):
        decrypt(b"\x00" * size, KEY)


def test_derive_key_known_answer() -> None:
    # RFC 7914 section 11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1, dkLen=64.
    expected = bytes.fromhex(
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
    )
    assert derive_key("passwd", b"salt", length=64, iterations=1) == expected


def test_derive_key_defaults_match_pbkdf2_hmac_sha256() -> None:
    key = derive_key("correct horse", b"pepper")
    assert len(key) == 32
    assert key == hashlib.pbkdf2_hmac("sha256", "correct horse".encode(), b"pepper", 100_000, 32)
    assert derive_key("correct horse", b"pepper") == key
    assert derive_key("correct horse", b"salt2") != key
    assert derive_key("pässwörd", b"s", iterations=2) == hashlib.pbkdf2_hmac("sha256", "pässwörd".encode(), b"s", 2, 32)


@pytest.mark.parametrize("kwargs", [{"length": 0}, {"iterations": 0}, {"iterations": -1}])
def test_derive_key_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(CryptoError, match="must be positive"):
        derive_key("p", b"s", **kwargs)


def test_secure_random_bytes() -> None:
    a, b = secure_random_bytes(32), secure_random_bytes(32)
    assert len(a) == 32 and a != b and secure_random_bytes(0) == b""
