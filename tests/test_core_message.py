"""Message: the reference signing vector, exact wire bytes, tampering, decoding errors, payload encryption."""

from __future__ import annotations

import base64
import dataclasses
import json
import struct

import msgpack
import pytest
from cryptography.exceptions import InvalidTag

from converge.core.identity import Identity
from converge.core.message import _ENCRYPTED_KEY, Message
from converge.core.topic import Topic
from converge.errors import CryptoError, DecodeError
from converge.extensions.crypto import DecryptionError

SEED = bytes([0x1F]) * 32
FINGERPRINT = "1f5fe64ec2f8c901be3aad94a41d70c12d2f3a8f43755f902e665c96f41c87e3"
VECTOR_SIG = (
    "c68853863eac5d9371772d11d12d4356bb341d97934858e4667d76b3dc8f7169"
    "5c44cb20a55a757bad792d36885ee41f67391c9e733fd0d498de788126f37e08"
)


def s(text: str) -> bytes:
    """msgpack fixstr / str8, written by hand so the vectors do not depend on our encoder."""
    raw = text.encode()
    return (bytes([0xA0 | len(raw)]) if len(raw) < 32 else b"\xd9" + bytes([len(raw)])) + raw


def vector_message(payload: dict | None = None) -> Message:
    return Message(
        id="msg-fixed-001", sender=FINGERPRINT, recipient=None, topics=[],
        payload={"b": 2, "a": {"z": 1, "y": 2}} if payload is None else payload, task_id=None, timestamp=1700000000000,
    )


# -- signing ---------------------------------------------------------------


def test_reference_compatibility_vector() -> None:
    signed = vector_message().sign(Identity.from_private_key(SEED))
    assert signed.signature.hex() == VECTOR_SIG
    assert signed.sender == FINGERPRINT
    assert signed.verify(Identity.from_private_key(SEED).public_key)


def test_signing_bytes_appendix_a2() -> None:
    expected = (
        b"\x87"
        + s("id") + s("msg-fixed-001")
        + s("sender") + s(FINGERPRINT)
        + s("recipient") + b"\xc0"
        + s("topics") + b"\x90"
        + s("payload") + b"\x82" + s("a") + b"\x82" + s("y") + b"\x02" + s("z") + b"\x01" + s("b") + b"\x02"
        + s("task_id") + b"\xc0"
        + s("timestamp") + b"\xcf" + struct.pack(">Q", 1700000000000)
    )
    assert vector_message().signing_bytes() == expected


def test_payload_key_order_and_tuples_do_not_change_the_signature() -> None:
    ident = Identity.from_private_key(SEED)
    reordered = vector_message({"a": {"y": 2, "z": 1}, "b": 2}).sign(ident)
    assert reordered.signature.hex() == VECTOR_SIG
    a = vector_message({"k": (1, {"q": 1, "p": 2})}).sign(ident)
    b = vector_message({"k": [1, {"p": 2, "q": 1}]}).sign(ident)
    assert a.signature == b.signature


def test_sign_sets_the_sender_before_signing() -> None:
    ident = Identity.generate()
    signed = Message(payload={"x": 1}).sign(ident)  # empty sender: the reference produced an unverifiable message
    assert signed.sender == ident.fingerprint and signed.verify(ident.public_key)


def test_sign_needs_a_private_key() -> None:
    pub = Identity.generate().public()
    with pytest.raises(ValueError, match="private key"):
        Message().sign(pub)


@pytest.mark.parametrize(
    "change",
    [
        {"payload": {"b": 3, "a": {"z": 1, "y": 2}}},
        {"topics": [Topic("t")]},
        {"sender": "someone-else"},
        {"recipient": "bob"},
        {"id": "msg-fixed-002"},
        {"task_id": "t1"},
        {"timestamp": 1700000000001},
    ],
    ids=lambda c: next(iter(c)),
)
def test_any_tampering_fails_verification(change: dict) -> None:
    ident = Identity.from_private_key(SEED)
    signed = vector_message().sign(ident)
    assert not dataclasses.replace(signed, **change).verify(ident.public_key)


def test_verification_failures_never_raise() -> None:
    ident = Identity.generate()
    signed = Message(payload={"x": 1}).sign(ident)
    signed.payload["x"] = 2  # the payload dict is mutable; mutation breaks the signature
    assert not signed.verify(ident.public_key)
    ok = Message(payload={"x": 1}).sign(ident)
    assert not dataclasses.replace(ok, signature=b"").verify(ident.public_key)
    assert not dataclasses.replace(ok, signature=b"\x00" * 64).verify(ident.public_key)
    assert not dataclasses.replace(ok, signature=b"short").verify(ident.public_key)
    assert not ok.verify(b"\x01" * 5)
    assert not ok.verify(Identity.generate().public_key)
    assert not dataclasses.replace(ok, payload={"x": object()}).verify(ident.public_key)


# -- wire format -----------------------------------------------------------


def test_wire_body_appendix_a1() -> None:
    msg = Message(id="m1", sender="a", topics=[Topic("transport.tcp", {"host": "127.0.0.1", "port": 9000})],
                  payload={"x": 1}, timestamp=1)
    expected = (
        b"\x88"
        + s("id") + s("m1")
        + s("sender") + s("a")
        + s("recipient") + b"\xc0"
        + s("topics") + b"\x91\x83"
        + s("namespace") + s("transport.tcp")
        + s("attributes") + b"\x82" + s("host") + s("127.0.0.1") + s("port") + b"\xcd\x23\x28"
        + s("version") + s("1.0")
        + s("payload") + b"\x81" + s("x") + b"\x01"
        + s("task_id") + b"\xc0"
        + s("timestamp") + b"\x01"
        + s("signature") + b"\xc4\x00"
    )
    assert msg.to_bytes() == expected
    back = Message.from_bytes(expected)
    assert back == msg and back.topics[0].attributes["port"] == 9000


def test_round_trip_keeps_the_signature_valid() -> None:
    ident = Identity.generate()
    msg = Message(recipient="r", topics=[Topic("a", {"k": "v"}, "2.0")], payload={"n": [1, {"b": 2}]}, task_id="t")
    signed = msg.sign(ident)
    back = Message.from_bytes(signed.to_bytes())
    assert back == signed and back.verify(ident.public_key)


def test_to_dict_is_a_plain_copy() -> None:
    msg = Message(id="m", topics=[Topic("t")], payload={"a": {"b": 1}}, signature=b"sig")
    d = msg.to_dict()
    assert d["topics"] == [{"namespace": "t", "attributes": {}, "version": "1.0"}] and d["signature"] == b"sig"
    d["payload"]["a"]["b"] = 2
    assert msg.payload == {"a": {"b": 1}}
    assert Message.from_dict(d).payload == {"a": {"b": 2}}


def test_from_dict_defaults_and_ignores_unknown_keys() -> None:
    msg = Message.from_dict({"sender": "s", "extra": 1})
    assert msg.sender == "s" and msg.recipient is None and msg.id and msg.timestamp > 0 and msg.signature == b""


def test_defaults() -> None:
    a, b = Message(), Message()
    assert a.id != b.id and a.sender == "" and a.topics == [] and a.payload == {} and a.signature == b""
    assert isinstance(a.timestamp, int) and a.timestamp > 1_600_000_000_000


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x93\x01\x02\x03",
        msgpack.packb("just a string"),
        msgpack.packb({"id": 5}),
        msgpack.packb({"sender": None}),
        msgpack.packb({"topics": "t"}),
        msgpack.packb({"topics": [1]}),
        msgpack.packb({"topics": [{"namespace": 1}]}),
        msgpack.packb({"topics": [{"namespace": "n", "bogus": 1}]}),
        msgpack.packb({"payload": [1]}),
        msgpack.packb({"timestamp": "now"}),
        msgpack.packb({"timestamp": True}),
        msgpack.packb({"signature": "not bytes"}),
        msgpack.packb({1: 2}),
        msgpack.packb({"id": "x"}) + b"\x00",
    ],
)
def test_from_bytes_rejects_bad_input(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        Message.from_bytes(data)
    assert isinstance(info.value, ValueError) and str(info.value).startswith("Invalid")


# -- payload encryption ----------------------------------------------------


def test_encrypt_and_decrypt_payload() -> None:
    key = bytes(range(32))
    msg = Message(payload={"secret": "value", "n": [1, 2]})
    enc = msg.encrypt_payload(key)
    assert list(enc.payload) == [_ENCRYPTED_KEY] == ["_encrypted"]
    blob = base64.b64decode(enc.payload["_encrypted"], validate=True)
    assert len(blob) == 12 + len(json.dumps(msg.payload).encode()) + 16
    assert enc.id == msg.id and enc.timestamp == msg.timestamp
    assert enc.decrypt_payload(key).payload == msg.payload


def test_sign_after_encrypting() -> None:
    ident, key = Identity.generate(), b"k" * 32
    signed = Message(payload={"a": 1}).encrypt_payload(key).sign(ident)
    assert signed.verify(ident.public_key)
    assert Message.from_bytes(signed.to_bytes()).decrypt_payload(key).payload == {"a": 1}


def test_decrypt_of_a_plain_payload_returns_the_same_object() -> None:
    msg = Message(payload={"a": 1})
    assert msg.decrypt_payload(b"k" * 32) is msg


def test_wrong_key_and_tampering() -> None:
    enc = Message(payload={"a": 1}).encrypt_payload(b"k" * 32)
    with pytest.raises(DecryptionError) as info:
        enc.decrypt_payload(b"x" * 32)
    assert isinstance(info.value, InvalidTag) and isinstance(info.value, CryptoError)
    blob = bytearray(base64.b64decode(enc.payload["_encrypted"]))
    blob[20] ^= 1
    tampered = dataclasses.replace(enc, payload={"_encrypted": base64.b64encode(bytes(blob)).decode()})
    with pytest.raises(InvalidTag):
        tampered.decrypt_payload(b"k" * 32)
    with pytest.raises(DecodeError, match="base64"):
        dataclasses.replace(enc, payload={"_encrypted": "%%%"}).decrypt_payload(b"k" * 32)


@pytest.mark.parametrize("key", [b"", b"short", b"k" * 31, b"k" * 33])
def test_short_keys(key: bytes) -> None:
    with pytest.raises(CryptoError, match="Key must be 32 bytes"):
        Message(payload={"a": 1}).encrypt_payload(key)
    enc = Message(payload={"a": 1}).encrypt_payload(b"k" * 32)
    with pytest.raises(ValueError, match="Key must be 32 bytes"):
        enc.decrypt_payload(key)


def _nested(levels: int) -> dict:
    deep: dict = {"leaf": 1}
    for _ in range(levels):
        deep = {"d": deep}
    return deep


@pytest.mark.parametrize("levels", [600, 5_000])
def test_too_deep_payload_cannot_be_signed_and_never_verifies(levels: int) -> None:
    alice = Identity.generate()
    msg = Message(payload=_nested(levels))
    with pytest.raises(ValueError, match="nests too deeply to sign") as info:
        msg.sign(alice)
    assert str(levels + 1) in str(info.value)  # names the depth
    assert dataclasses.replace(msg, signature=b"x" * 64).verify(alice.public_key) is False


def test_self_containing_payload_cannot_be_signed_and_never_verifies() -> None:
    alice = Identity.generate()
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="contain itself"):
        Message(payload=loop).sign(alice)
    assert Message(payload=loop, signature=b"x" * 64).verify(alice.public_key) is False


def test_payload_mixing_str_and_bytes_keys_is_a_value_error_naming_the_keys() -> None:
    alice = Identity.generate()
    payload = {"outer": [{"name": 1, b"raw": 2}]}
    with pytest.raises(ValueError, match="cannot be sorted") as info:
        Message(payload=payload).sign(alice)
    assert "'name'" in str(info.value) and "b'raw'" in str(info.value)
    assert Message(payload=payload, signature=b"x" * 64).verify(alice.public_key) is False


def test_unserialisable_payload_value_is_still_a_type_error() -> None:
    with pytest.raises(TypeError):
        Message(payload={"a": object()}).signing_bytes()
