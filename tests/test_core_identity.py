"""Identity: Ed25519 key pairs, fingerprints, signing, verify-only identities, repr hygiene."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from converge.core.identity import Identity
from converge.errors import SignatureError

SEED = bytes([0x1F]) * 32
SEED_FINGERPRINT = "1f5fe64ec2f8c901be3aad94a41d70c12d2f3a8f43755f902e665c96f41c87e3"


def test_generate_gives_raw_keys_and_a_sha256_fingerprint() -> None:
    ident = Identity.generate()
    assert len(ident.public_key) == 32 and len(ident.private_key) == 32
    assert ident.fingerprint == hashlib.sha256(ident.public_key).hexdigest()
    assert len(ident.fingerprint) == 64 and ident.fingerprint == ident.fingerprint.lower()
    assert Identity.generate().fingerprint != ident.fingerprint


def test_from_private_key_reproduces_the_reference_fingerprint() -> None:
    ident = Identity.from_private_key(SEED)
    assert ident.fingerprint == SEED_FINGERPRINT
    assert ident.private_key == SEED
    assert Identity.from_private_key(SEED) == ident


def test_keys_interoperate_with_plain_cryptography() -> None:
    ident = Identity.generate()
    sig = ident.sign(b"data")
    Ed25519PublicKey.from_public_bytes(ident.public_key).verify(sig, b"data")  # raises if wrong
    other = Ed25519PrivateKey.from_private_bytes(ident.private_key)
    assert ident.verify(b"data", other.sign(b"data"))


def test_sign_and_verify() -> None:
    ident = Identity.generate()
    sig = ident.sign(b"hello")
    assert len(sig) == 64
    assert ident.verify(b"hello", sig)
    assert not ident.verify(b"hellO", sig)
    assert not ident.verify(b"hello", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not ident.verify(b"hello", b"")
    assert not Identity.generate().verify(b"hello", sig)


def test_signing_many_times_gives_valid_deterministic_signatures() -> None:
    ident = Identity.from_private_key(SEED)
    sigs = {ident.sign(b"m") for _ in range(5)}
    assert len(sigs) == 1 and ident.verify(b"m", sigs.pop())  # Ed25519 is deterministic


def test_verify_only_identity() -> None:
    full = Identity.generate()
    pub = Identity.from_public_key(full.public_key)
    assert pub.private_key is None and pub.fingerprint == full.fingerprint and not pub.can_sign
    assert pub.verify(b"x", full.sign(b"x"))
    assert full.public() == pub
    with pytest.raises(ValueError, match="private key"):
        pub.sign(b"x")


@pytest.mark.parametrize("bad", [b"", b"\x01" * 31, b"\x01" * 33])
def test_bad_key_material(bad: bytes) -> None:
    with pytest.raises(SignatureError, match="32 raw Ed25519 bytes"):
        Identity.from_private_key(bad)
    with pytest.raises(SignatureError, match="32 raw Ed25519 bytes"):
        Identity.from_public_key(bad)


def test_repr_and_str_never_show_the_private_key() -> None:
    ident = Identity.from_private_key(SEED)
    for text in (repr(ident), str(ident), f"{ident}", repr([ident])):
        assert text.startswith("[Identity") or text.startswith("Identity")
        assert SEED.hex() not in text and repr(SEED) not in text and "1f1f1f" not in text
        assert ident.fingerprint in text
    assert "public" in repr(ident.public()) and "keypair" in repr(ident)


def test_identity_is_frozen() -> None:
    ident = Identity.generate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ident.fingerprint = "x"  # type: ignore[misc]
