"""Signed, msgpack-serialisable messages.

Wire and signing formats match the reference exactly (its Appendix A):

* signing bytes = msgpack (bin type on) of the map ``id, sender, recipient,
  topics, payload, task_id, timestamp`` in that order, topics as their string
  form, the payload recursively key-sorted;
* ``to_bytes`` = msgpack of the eight dataclass fields in field order.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import reprlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from converge.core.topic import Topic
from converge.errors import DecodeError

if TYPE_CHECKING:
    from converge.core.identity import Identity

_ENCRYPTED_KEY = "_encrypted"
_FIELDS = ("id", "sender", "recipient", "topics", "payload", "task_id", "timestamp", "signature")


_FLAT = frozenset({str, int, float, bool, type(None), bytes})  # values _canonicalize returns as they are


def _canonicalize(value: Any) -> Any:
    """Rebuild dicts with sorted keys (recursively); tuples become lists."""
    if isinstance(value, dict):
        return {k: (v if type(v) in _FLAT else _canonicalize(v)) for k in sorted(value) for v in (value[k],)}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _FLAT else _canonicalize(v) for v in value]
    return value


def _containers(value: Any) -> Any:
    """``(container, depth)`` for every map and list in ``value``, iteratively and cycle-safe."""
    seen: set[int] = set()
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list, tuple)) and id(item) not in seen:
            seen.add(id(item))
            yield item, level
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))


def _unsortable(value: Any) -> list[Any] | None:
    """The keys of the first map in ``value`` whose keys cannot be sorted, else ``None``."""
    for item, _ in _containers(value):
        if isinstance(item, dict):
            try:
                sorted(item)
            except TypeError:
                return list(item)
    return None


def _too_deep(value: Any) -> str:
    """The message for a payload that nests too deeply (or contains itself) to be signed."""
    depth = max((level for _, level in _containers(value)), default=0)
    cycle = "" if depth > 100 else "; does it contain itself?"
    return f"payload nests too deeply to sign ({depth} levels of maps and lists{cycle})"


_tls = threading.local()


def _pack(obj: Any) -> bytes:
    """``msgpack.packb(obj, use_bin_type=True)`` with a reused per-thread packer (same bytes, less set-up)."""
    try:
        packer = _tls.packer
    except AttributeError:
        packer = _tls.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(obj)  # resets itself after a failed pack


_verify_signature: Callable[[bytes, bytes, bytes], bool] | None = None


def _verifier() -> Callable[[bytes, bytes, bytes], bool]:
    global _verify_signature
    if _verify_signature is None:
        from converge.core.identity import verify_signature  # lazy: messages alone do not load the crypto backend

        _verify_signature = verify_signature
    return _verify_signature


_UUID4_MASK = 0xFFFFFFFF_FFFF_0FFF_3FFF_FFFFFFFFFFFF
_UUID4_BITS = 0x00000000_0000_4000_8000_000000000000


def _new_id() -> str:
    """A random (version 4, RFC 4122 variant) UUID string, like ``str(uuid.uuid4())`` at half the cost."""
    h = "%032x" % (int.from_bytes(os.urandom(16), "big") & _UUID4_MASK | _UUID4_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Message:
    """A message between agents.

    The dataclass is frozen, but ``payload`` is an ordinary dict. Sign with
    :meth:`sign` (which also sets ``sender`` to the signer's fingerprint) and
    check with :meth:`verify`.
    """

    id: str = field(default_factory=_new_id)
    sender: str = ""
    recipient: str | None = None
    topics: list[Topic] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    timestamp: int = field(default_factory=_now_ms)
    signature: bytes = b""

    # -- signing ---------------------------------------------------------
    def signing_bytes(self) -> bytes:
        """The exact bytes that are signed (reference Appendix A.2).

        Raises:
            ValueError: the payload nests too deeply to be signed (msgpack and the
                recursion limit cap it at a few hundred levels), or a map in it mixes key
                types that cannot be sorted (e.g. ``str`` and ``bytes``).
            TypeError: the payload holds a value msgpack cannot serialise.
        """
        try:
            payload = _canonicalize(self.payload)
        except RecursionError:
            raise ValueError(_too_deep(self.payload)) from None
        except TypeError as exc:
            keys = _unsortable(self.payload)
            if keys is None:
                raise
            shown = ", ".join(reprlib.repr(k) for k in keys[:10]) + (", ..." if len(keys) > 10 else "")
            raise ValueError(f"payload has a map whose keys cannot be sorted for signing (mixed key types): {shown}") from None
        try:
            return _pack(
                {
                    "id": self.id,
                    "sender": self.sender,
                    "recipient": self.recipient,
                    "topics": [str(t) for t in self.topics],
                    "payload": payload,
                    "task_id": self.task_id,
                    "timestamp": self.timestamp,
                }
            )
        except ValueError as exc:
            if "recursion limit" not in str(exc):
                raise
            raise ValueError(f"{_too_deep(self.payload)} (msgpack: {exc})") from None

    def sign(self, identity: Identity) -> Message:
        """Return a signed copy whose ``sender`` is ``identity.fingerprint``.

        Unlike the reference (its quirk 1), the sender is set *before* the
        bytes are signed, so a message built with an empty or different sender
        still verifies after signing. A message whose sender already equals the
        fingerprint produces the same signature as the reference.

        Raises:
            ValueError: the identity has no private key, or the payload cannot be signed
                (too deeply nested, or a map mixing unsortable key types; see
                :meth:`signing_bytes`).
        """
        unsigned = self if self.sender == identity.fingerprint else dataclasses.replace(self, sender=identity.fingerprint)
        signature = identity.sign(unsigned.signing_bytes())
        if type(unsigned) is Message:  # all eight fields given: no default factories, no replace() overhead
            return Message(unsigned.id, unsigned.sender, unsigned.recipient, unsigned.topics, unsigned.payload,
                           unsigned.task_id, unsigned.timestamp, signature)
        return dataclasses.replace(unsigned, signature=signature)

    def verify(self, sender_public_key: bytes) -> bool:
        """True iff the signature is valid for ``sender_public_key``. Never raises."""
        if not self.signature:
            return False
        try:
            data = self.signing_bytes()
        except (TypeError, ValueError, RecursionError):
            return False
        return (_verify_signature or _verifier())(sender_public_key, self.signature, data)

    # -- serialisation ---------------------------------------------------
    def _wire_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sender": self.sender,
            "recipient": self.recipient,
            "topics": [t.to_dict() if isinstance(t, Topic) else t for t in self.topics],
            "payload": self.payload,
            "task_id": self.task_id,
            "timestamp": self.timestamp,
            "signature": self.signature or b"",
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the eight fields (topics as dicts, signature as bytes); a deep copy."""
        return dataclasses.asdict(self)

    def to_bytes(self) -> bytes:
        """msgpack (bin type on) of the eight fields in field order."""
        return _pack(self._wire_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> Message:
        """Decode :meth:`to_bytes` output.

        Raises:
            DecodeError: (a ``ValueError``) "Invalid message bytes: ..." for
                anything that is not a well-formed message.
        """
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises many types (ExtraData, StackError, ValueError, ...)
            raise DecodeError(f"Invalid message bytes: {type(exc).__name__}: {exc}") from exc
        if not isinstance(obj, dict):
            raise DecodeError(f"Invalid message bytes: expected a map, got {type(obj).__name__}")
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        """Build from a dict; unknown keys are ignored, missing ones get defaults.

        Raises:
            DecodeError: a field has the wrong type (names the field).
        """
        if not isinstance(data, dict):
            raise DecodeError(f"Invalid message: expected a dict, got {type(data).__name__}")
        fast = _from_wire_fast(data) if cls is Message else None
        if fast is not None:
            return fast
        kwargs = {k: data[k] for k in _FIELDS if k in data}
        raw_topics = kwargs.get("topics", [])
        if not isinstance(raw_topics, (list, tuple)):
            raise DecodeError(f"Invalid message: 'topics' must be a list, got {type(raw_topics).__name__}")
        topics = []
        for t in raw_topics:
            if isinstance(t, Topic):
                topics.append(t)
            elif isinstance(t, dict):
                topics.append(_topic_from_wire(t))
            else:
                raise DecodeError(f"Invalid message: each topic must be a map, got {type(t).__name__}")
        kwargs["topics"] = topics
        _check(kwargs, "id", str)
        _check(kwargs, "sender", str)
        _check(kwargs, "recipient", (str, type(None)))
        _check(kwargs, "payload", dict)
        _check(kwargs, "task_id", (str, type(None)))
        _check(kwargs, "timestamp", int)
        if "signature" in kwargs:
            sig = kwargs["signature"]
            if sig is None:
                kwargs["signature"] = b""
            elif isinstance(sig, (bytes, bytearray)):
                kwargs["signature"] = bytes(sig)
            else:
                raise DecodeError(f"Invalid message: 'signature' must be bytes, got {type(sig).__name__}")
        return cls(**kwargs)

    # -- payload encryption ---------------------------------------------
    def encrypt_payload(self, key: bytes) -> Message:
        """Copy whose payload is ``{"_encrypted": base64(AES-256-GCM(json(payload)))}``. Sign after encrypting."""
        from converge.extensions.crypto import encrypt

        blob = encrypt(json.dumps(self.payload).encode("utf-8"), key)
        return dataclasses.replace(self, payload={_ENCRYPTED_KEY: base64.b64encode(blob).decode("ascii")})

    def decrypt_payload(self, key: bytes) -> Message:
        """Inverse of :meth:`encrypt_payload`; returns ``self`` unchanged when not encrypted."""
        from converge.extensions.crypto import decrypt

        if _ENCRYPTED_KEY not in self.payload:
            return self
        try:
            blob = base64.b64decode(self.payload[_ENCRYPTED_KEY], validate=True)
        except (ValueError, TypeError) as exc:
            raise DecodeError("encrypted payload is not valid base64") from exc
        plain = decrypt(blob, key)
        try:
            payload = json.loads(plain.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DecodeError("decrypted payload is not JSON") from exc
        return dataclasses.replace(self, payload=payload)


def _from_wire_fast(data: dict[str, Any]) -> Message | None:
    """The message for a well-formed wire map with exactly-typed fields; ``None`` means "take the checked path"."""
    try:
        mid, sender, recipient, raw_topics, payload, task_id, timestamp, sig = (
            data["id"], data["sender"], data["recipient"], data["topics"], data["payload"], data["task_id"],
            data["timestamp"], data["signature"],
        )
    except KeyError:
        return None
    if not (
        type(mid) is str and type(sender) is str and (recipient is None or type(recipient) is str)
        and type(payload) is dict and (task_id is None or type(task_id) is str) and type(timestamp) is int
        and type(sig) is bytes and type(raw_topics) is list
    ):
        return None
    topics = []
    for t in raw_topics:
        if type(t) is not dict:
            return None
        topics.append(_topic_from_wire(t))
    return Message(mid, sender, recipient, topics, payload, task_id, timestamp, sig)


_TOPIC_KEYS = frozenset({"namespace", "attributes", "version"})


def _topic_from_wire(t: dict[str, Any]) -> Topic:
    ns = t.get("namespace")
    attrs = t.get("attributes", {})
    version = t.get("version", "1.0")
    if not isinstance(ns, str) or not isinstance(attrs, dict) or not isinstance(version, str):
        raise DecodeError("Invalid message: topic needs a str namespace, a map of attributes and a str version")
    extra = () if _TOPIC_KEYS.issuperset(t) else set(t) - _TOPIC_KEYS
    if extra:
        raise DecodeError(f"Invalid message: unknown topic keys {sorted(map(str, extra))}")
    return Topic(ns, attrs, version)


def _check(kwargs: dict[str, Any], name: str, types: type | tuple[type, ...]) -> None:
    if name in kwargs and (not isinstance(kwargs[name], types) or isinstance(kwargs[name], bool) and name == "timestamp"):
        raise DecodeError(f"Invalid message: field {name!r} has type {type(kwargs[name]).__name__}")


__all__ = ["Message"]
