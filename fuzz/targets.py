"""Fuzz targets: every parser that takes bytes or text from outside the process.

Each :class:`FuzzTarget` has

* ``check(value)``: feeds one input to the real code and raises :class:`Finding`
  when anything other than the documented typed error comes out, when an
  invariant of the parsed result breaks, or when the call does not finish in
  time (async targets run under ``asyncio.timeout``);
* ``strategy(hostile)``: a hypothesis strategy mixing raw bytes/text with
  structure-aware inputs (valid values, then mutated). ``hostile=True`` adds
  nesting bombs deeper than the interpreter's recursion limit — the dedicated
  run (``fuzz/run.py``) uses it; the normal test suite covers those inputs with
  explicit regression tests instead;
* ``from_bytes(data)``: turns raw fuzzer bytes into an input (for atheris).

The expected error of each target is the one its API documents: ``DecodeError``
(``Message.from_bytes``), ``FrameError`` (frame reader), ``CodecError`` (store
codec), ``ConfigError`` (run and sidecar config loaders), ``WebhookSecurityError`` (webhook
check), ``ItemError`` (LLM decision parser; ``build_decisions`` never raises).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import strategies as st

from converge._config import KEYS, load_run_config
from converge.core import codec
from converge.core.decisions import Decision
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.topic import Topic
from converge.errors import CodecError, ConfigError, DecodeError, FrameError
from converge.extensions.connectors import ProviderProfile, WebhookSecurity, WebhookSecurityError, WebhookSecurityPolicy
from converge.extensions.connectors._sidecar_config import load_sidecar_config
from converge.extensions.llm._parsing import DECISION_TYPES, ItemError, build_decisions, decode_items
from converge.network.transport._framing import HEADER, decode_frame, read_frame

CHECK_TIMEOUT_SEC = 5.0
MAX_FRAME = 4096
IDENTITY = Identity.generate()


class Finding(AssertionError):
    """An input made a target misbehave (wrong error type, broken invariant or hang)."""

    def __init__(self, target: str, problem: str, value: Any, *, kind: str | None = None) -> None:
        shown = repr(value)
        if len(shown) > 400:
            shown = shown[:400] + f"... ({len(shown)} chars)"
        super().__init__(f"[{target}] {problem}; input: {shown}")
        self.target = target
        self.problem = problem
        self.kind = kind or problem
        """A short class of the problem (what a report deduplicates on)."""


def _unexpected(target: str, exc: BaseException, value: Any) -> Finding:
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return Finding(target, f"unexpected {name}: {str(exc)[:200]}", value, kind=f"unexpected {name}")


# -- shared value strategies -----------------------------------------------------
_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=40) | st.binary(max_size=40)
msgpack_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10) | st.binary(max_size=6), inner, max_size=5),
    max_leaves=30,
)


def _json_like(ints: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
        max_leaves=25,
    )


json_values = _json_like(st.integers())
wire_values = _json_like(st.integers(-(2**63), 2**64 - 1))  # what a signed message can carry


def _mutate(data: bytes, draw: Callable[[Any], Any]) -> bytes:
    """Flip, cut, duplicate or splice bytes of a valid encoding."""
    if not data:
        return draw(st.binary(max_size=16))
    op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice", "same"]))
    i = draw(st.integers(0, len(data) - 1))
    if op == "flip":
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if op == "truncate":
        return data[:i]
    if op == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
    if op == "delete":
        return data[:i] + data[i + draw(st.integers(1, 8)) :]
    if op == "splice":
        return data[:i] + draw(st.sampled_from([b"\xdd\xff\xff\xff\xff", b"\xdf\x7f\xff\xff\xff", b"\xc6\xff\xff\xff\xf0", b"\xc1", b"\xd9\xff"]))
    return data


def _kind(draw: Callable[[Any], Any], normal: list[str], hostile_kinds: list[str], hostile: bool) -> str:
    """One of ``normal``; with ``hostile``, one of ``hostile_kinds`` for about one input in ten."""
    if hostile and draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(hostile_kinds))
    return draw(st.sampled_from(normal))


def _deep_msgpack(depth: int, kind: str) -> bytes:
    opener = {"array": b"\x91", "map": b"\x81\xa1k"}[kind]
    return opener * depth + b"\xc0"


# -- 1. Message.from_bytes ----------------------------------------------------------
_FIELD_NAMES = ["id", "sender", "recipient", "topics", "payload", "task_id", "timestamp", "signature"]


@st.composite
def _valid_message(draw: Callable[[Any], Any]) -> Message:
    topics = draw(st.lists(st.builds(Topic, st.text(max_size=12), st.dictionaries(st.text(max_size=6), st.text(max_size=6) | st.integers(-(2**63), 2**63), max_size=3), st.text(max_size=4)), max_size=3))
    payload = draw(st.dictionaries(st.text(max_size=10), wire_values, max_size=6))
    msg = Message(sender=draw(st.text(max_size=20)), recipient=draw(st.none() | st.text(max_size=20)), topics=topics,
                  payload=payload, task_id=draw(st.none() | st.text(max_size=10)), timestamp=draw(st.integers(0, 2**63)))
    return msg.sign(IDENTITY) if draw(st.booleans()) else msg


@st.composite
def _message_bytes(draw: Callable[[Any], Any], hostile: bool) -> bytes:
    kind = _kind(draw, ["raw", "mutated", "fields"], ["deep"], hostile)
    if kind == "raw":
        return draw(st.binary(max_size=512))
    if kind == "mutated":
        return _mutate(draw(_valid_message()).to_bytes(), draw)
    if kind == "fields":  # a map with the right and wrong keys and types
        keys = st.sampled_from(_FIELD_NAMES) | st.text(max_size=8)
        return msgpack.packb(draw(st.dictionaries(keys, msgpack_values, max_size=10)), use_bin_type=True)
    depth = draw(st.integers(100, 200_000))
    return b"\x81\xa7payload" + _deep_msgpack(depth, draw(st.sampled_from(["array", "map"])))


def check_message(data: bytes) -> None:
    """``Message.from_bytes``: a Message or ``DecodeError``; a decoded message re-encodes and verifies safely."""
    try:
        message = Message.from_bytes(data)
    except DecodeError:
        return
    except BaseException as exc:
        raise _unexpected("message", exc, data) from exc
    try:
        wire = message.to_bytes()
        if Message.from_bytes(wire).to_bytes() != wire:
            raise Finding("message", "re-encoding a decoded message is not stable", data)
        if message.verify(IDENTITY.public_key) not in (True, False):
            raise Finding("message", "verify() returned a non-bool", data)
    except Finding:
        raise
    except BaseException as exc:
        raise _unexpected("message", exc, data) from exc


# -- 2. the TCP/WebSocket frame reader -------------------------------------------
def _frame(body: bytes, length: int | None = None) -> bytes:
    return HEADER.pack(len(body) if length is None else length) + body


@st.composite
def _frame_stream(draw: Callable[[Any], Any], hostile: bool) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["valid", "mutated", "raw", "lying_length", "huge_length", "garbage_body"]))
        if kind == "valid":
            parts.append(_frame(draw(_valid_message()).to_bytes()))
        elif kind == "mutated":
            parts.append(_mutate(_frame(draw(_valid_message()).to_bytes()), draw))
        elif kind == "raw":
            parts.append(draw(st.binary(max_size=64)))
        elif kind == "lying_length":
            body = draw(_valid_message()).to_bytes()
            parts.append(_frame(body, max(0, len(body) + draw(st.integers(-20, 20)))))
        elif kind == "huge_length":
            parts.append(struct.pack("!I", draw(st.integers(MAX_FRAME + 1, 2**32 - 1))) + draw(st.binary(max_size=32)))
        else:
            parts.append(_frame(draw(st.binary(max_size=200))))
    if _kind(draw, ["none"], ["deep"], hostile) == "deep":
        parts.append(_frame(b"\x81\xa7payload" + _deep_msgpack(draw(st.integers(100, MAX_FRAME - 20)), "array")))
    return b"".join(parts)


async def _drain_frames(data: bytes) -> list[Message]:
    reader = asyncio.StreamReader(limit=2 * MAX_FRAME)
    reader.feed_data(data)
    reader.feed_eof()
    messages: list[Message] = []
    while True:
        try:
            message = await read_frame(reader, MAX_FRAME)
        except FrameError:
            return messages
        if message is None:
            return messages
        messages.append(message)


_loop: asyncio.AbstractEventLoop | None = None


def _run(coro: Any) -> Any:
    """Run a coroutine on this module's private loop (fuzzing happens outside any running loop)."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(coro)


def check_frames(data: bytes) -> None:
    """The stream reader yields Messages until a clean end or one ``FrameError``; one-buffer decoding likewise."""

    async def bounded() -> list[Message]:
        async with asyncio.timeout(CHECK_TIMEOUT_SEC):
            return await _drain_frames(data)

    try:
        messages = _run(bounded())
    except TimeoutError as exc:
        raise Finding("frames", f"read_frame did not finish within {CHECK_TIMEOUT_SEC}s", data) from exc
    except BaseException as exc:
        raise _unexpected("frames", exc, data) from exc
    if not all(isinstance(m, Message) for m in messages):
        raise Finding("frames", "read_frame returned a non-Message", data)
    try:
        decode_frame(data, MAX_FRAME)
    except FrameError:
        pass
    except BaseException as exc:
        raise _unexpected("frames", exc, data) from exc


# -- 3. the store codec --------------------------------------------------------------
_codec_values = st.recursive(
    _scalars | st.sampled_from([Topic("t", {"a": 1})]),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.frozensets(st.integers(-(2**63), 2**63) | st.text(max_size=5), max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_TYPE_NAMES = ["converge.Task", "converge.TaskState", "converge.Pool", "converge.Topic", "converge.Message",
               "converge.AgentDescriptor", "converge.TrustModel", "converge.NegotiationSession", "os.system", "builtins.eval"]


def _ext_strategy() -> st.SearchStrategy[Any]:
    state = st.dictionaries(st.text(max_size=12) | st.sampled_from(["id", "state", "__class__", "__dict__", "priority"]), msgpack_values, max_size=5)
    record = st.tuples(st.sampled_from(_TYPE_NAMES) | st.text(max_size=12), state | msgpack_values).map(list)
    return st.recursive(
        msgpack_values,
        lambda inner: st.builds(lambda code, v: msgpack.ExtType(code, msgpack.packb(v, use_bin_type=True)),
                                st.integers(0, 8), inner | record),
        max_leaves=6,
    )


@st.composite
def _codec_bytes(draw: Callable[[Any], Any], hostile: bool) -> bytes:
    kind = _kind(draw, ["raw", "headered", "mutated", "ext"], ["deep"], hostile)
    header = codec.MAGIC + bytes([codec.VERSION])
    if kind == "raw":
        return draw(st.binary(max_size=256))
    if kind == "headered":
        return header + draw(st.binary(max_size=256))
    if kind == "mutated":
        return _mutate(codec.encode(draw(_codec_values)), draw)
    if kind == "ext":
        return header + msgpack.packb(draw(_ext_strategy()), use_bin_type=True)
    depth = draw(st.integers(33, 5000))
    inner = msgpack.packb(None)
    for _ in range(depth):
        inner = msgpack.packb(msgpack.ExtType(2, inner))
    return header + inner


def check_codec(data: bytes) -> None:
    """``codec.decode``: a value or ``CodecError``."""
    try:
        codec.decode(data, key="fuzz")
    except CodecError:
        return
    except BaseException as exc:
        raise _unexpected("codec", exc, data) from exc


# -- 4. the CLI config loader ------------------------------------------------------
_config_dir: Path | None = None


def _config_path(suffix: str) -> Path:
    global _config_dir
    if _config_dir is None:
        _config_dir = Path(tempfile.mkdtemp(prefix="converge-fuzz-config-"))
    return _config_dir / f"config{suffix}"


_config_values = st.integers(-70000, 70000) | st.text(max_size=20) | st.booleans() | st.floats() | st.none() \
    | st.lists(st.integers() | st.text(max_size=5), max_size=3) | st.sampled_from(["tcp", "local", "websocket", "sqlite", "redis", " 8080 ", "+1", "0"])


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '""'


@st.composite
def _config_input(draw: Callable[[Any], Any], hostile: bool) -> tuple[str, str, dict[str, str]]:
    suffix = draw(st.sampled_from([".toml", ".yaml", ".yml", ".json", ""]))
    data = draw(st.dictionaries(st.sampled_from(list(KEYS)) | st.text(max_size=8), _config_values, max_size=6))
    kind = _kind(draw, ["raw", "structured", "mutated"], ["yaml_bomb", "yaml_deep", "toml_deep"], hostile)
    if kind == "raw":
        text = draw(st.text(max_size=300))
    elif kind == "yaml_bomb":
        levels = draw(st.integers(2, 5))  # 9 levels would need gigabytes: the growth shows at 4-5
        lines = [f"{draw(st.sampled_from(list(KEYS)))}:", '  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for i in range(1, levels):
            lines.append(f"  - &b{i} [" + ",".join([f"*{'a' if i == 1 else f'b{i - 1}'}"] * 9) + "]")
        text, suffix = "\n".join(lines) + "\n", ".yaml"
    elif kind == "yaml_deep":
        depth = draw(st.integers(500, 5_000))  # the recursion limit is ~1000: deeper only costs time
        text, suffix = "agents: " + "[" * depth + "]" * depth + "\n", ".yaml"
    elif kind == "toml_deep":
        depth = draw(st.integers(500, 5_000))
        text, suffix = "agents = " + "[" * depth + "]" * depth + "\n", ".toml"
    else:
        if suffix == ".toml":
            text = "\n".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in data.items())
        else:
            text = "\n".join(f"{json.dumps(str(k))}: {json.dumps(v, default=str)}" for k, v in data.items())
        if kind == "mutated" and text:
            text = _mutate(text.encode(), draw).decode("utf-8", "replace")
    env = draw(st.dictionaries(st.sampled_from([f"CONVERGE_{k.upper()}" for k in KEYS]), st.text(max_size=12), max_size=3))
    return suffix, text, env


def check_config(value: tuple[str, str, dict[str, str]]) -> None:
    """``load_run_config``: a RunConfig or ``ConfigError`` (whose message stays short)."""
    suffix, text, env = value
    path = _config_path(suffix)
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_run_config(str(path), environ=env)
    except ConfigError as exc:
        if len(str(exc)) > 4096:
            raise Finding("config", f"ConfigError message of {len(str(exc))} chars (unbounded repr of the value)", value,
                          kind="ConfigError message grows with the input (unbounded repr)") from exc
        return
    except BaseException as exc:
        raise _unexpected("config", exc, value) from exc
    if not (1 <= config.agents <= 1024 and 0 <= config.port <= 65535):
        raise Finding("config", f"out-of-range config accepted: {config}", value)


# -- 4b. the webhook sidecar's config loader ------------------------------------------
SIDECAR_SECRET = "sidecar-secret-fuzz-0123456789"
_SIDECAR_KEYS = ["bind", "port", "connector_id", "store_backend", "store_path", "outbound_token_ref"]


def _toml_table(name: str, table: dict[str, Any], *, array: bool = False) -> str:
    header = f"[[{name}]]" if array else f"[{name}]"
    return header + "\n" + "".join(f"{json.dumps(str(k))} = {_toml_value(v)}\n" for k, v in table.items())


@st.composite
def _sidecar_input(draw: Callable[[Any], Any], hostile: bool) -> tuple[str, str]:
    suffix = draw(st.sampled_from([".toml", ".json"]))
    kind = _kind(draw, ["raw", "structured", "mutated"], ["deep"], hostile)
    if kind == "raw":
        return suffix, draw(st.text(max_size=300))
    if kind == "deep":
        depth = draw(st.integers(500, 50_000))
        return suffix, ("port = " if suffix == ".toml" else '{"port": ') + "[" * depth + "]" * depth + ("" if suffix == ".toml" else "}")
    top = draw(st.dictionaries(st.sampled_from(_SIDECAR_KEYS) | st.text(max_size=6), _config_values, max_size=4))
    secrets = draw(st.dictionaries(st.sampled_from(["acme", "tok", "x"]), st.sampled_from([SIDECAR_SECRET, "env:UNSET_FUZZ", "", "env:"]) | st.integers(), max_size=3))
    providers = draw(st.lists(st.dictionaries(st.sampled_from(["name", "secret_ref", "canonicalization", "emit_as", "signature_algorithm", "bogus"]),
                                               st.sampled_from(["acme", "tok", "raw_body", "json_sorted", "task", "sha256", "md5"]) | _config_values, max_size=4), max_size=2))
    security = draw(st.dictionaries(st.sampled_from(["timestamp_skew_limit_sec", "max_payload_bytes", "require_mtls", "ip_allowlist", "bogus"]), _config_values, max_size=3))
    retry = draw(st.dictionaries(st.sampled_from(["max_attempts", "base_delay_sec", "jitter_ratio", "bogus"]), _config_values, max_size=2))
    if suffix == ".json":
        text = json.dumps({**top, "secrets": secrets, "providers": providers, "security": security, "retry": retry}, default=str)
    else:
        text = "".join(f"{json.dumps(str(k))} = {_toml_value(v)}\n" for k, v in top.items())
        text += _toml_table("secrets", secrets) + "".join(_toml_table("providers", p, array=True) for p in providers)
        text += _toml_table("security", security) + _toml_table("retry", retry)
    if kind == "mutated" and text:
        text = _mutate(text.encode(), draw).decode("utf-8", "replace")
    return suffix, text


def check_sidecar(value: tuple[str, str]) -> None:
    """``load_sidecar_config``: a SidecarConfig or a short ``ConfigError`` that never shows a secret value."""
    suffix, text = value
    path = _config_path(suffix)
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_sidecar_config(path, environ={})
    except ConfigError as exc:
        if SIDECAR_SECRET in str(exc):
            raise Finding("sidecar", "a secret value appears in the ConfigError", value, kind="secret in ConfigError") from exc
        return
    except BaseException as exc:
        raise _unexpected("sidecar", exc, value) from exc


# -- 5. the webhook security check ---------------------------------------------------
WEBHOOK_SECRET = "whsec-fuzz-0123456789"
WEBHOOK_NOW = 1_700_000_000.0


def _security(canonicalization: str) -> WebhookSecurity:
    profile = ProviderProfile(name="acme", secret_ref="acme", canonicalization=canonicalization, required_payload_fields=())
    policy = WebhookSecurityPolicy(max_payload_bytes=4096)
    return WebhookSecurity(policy, {"acme": profile}, {"acme": WEBHOOK_SECRET}, clock=lambda: WEBHOOK_NOW)


_SECURITY = {c: _security(c) for c in ("raw_body", "json_sorted")}


@st.composite
def _webhook_request(draw: Callable[[Any], Any], hostile: bool) -> dict[str, Any]:
    canonicalization = draw(st.sampled_from(["raw_body", "json_sorted"]))
    kind = _kind(draw, ["raw", "json", "json_text"], ["deep_json", "any_event_id"], hostile)
    if kind == "raw":
        body = draw(st.binary(max_size=300))
    elif kind == "json":
        payload = draw(st.dictionaries(st.sampled_from(["event_id", "subject", "source"]) | st.text(max_size=8), json_values, max_size=5))
        body = json.dumps(payload).encode()
    elif kind == "json_text":
        body = draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    elif kind == "deep_json":
        depth = draw(st.integers(100, 4000))
        body = b'{"event_id": "e", "a": ' + b"[" * depth + b"]" * depth + b"}"
    else:  # any code point, lone surrogates included (JSON escapes them)
        body = json.dumps({"event_id": draw(st.lists(st.sampled_from(["\ud800", "\udfff", "\x00", "/", ":", "a"]) | st.characters(), min_size=1, max_size=20).map("".join))}).encode()
    if canonicalization == "json_sorted":
        try:
            signed = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
        except (ValueError, RecursionError):
            signed = body
    else:
        signed = body
    good_sig = hmac.new(WEBHOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    valid_envelope = draw(st.booleans())  # half the requests pass every header check and reach the body checks
    headers: dict[str, str] = {}
    if valid_envelope:
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]))
        headers["X-Webhook-Signature"] = draw(st.sampled_from([good_sig, "sha256=" + good_sig, good_sig.upper()]))
        headers["X-Webhook-Timestamp"] = draw(st.sampled_from([str(WEBHOOK_NOW), str(WEBHOOK_NOW - 10), str(int(WEBHOOK_NOW))]))
    else:
        if draw(st.integers(0, 5)):
            headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain", "application/jsonx"]) | st.text(max_size=20))
        sig = draw(st.sampled_from(["good", "random", "missing"]))
        if sig != "missing":
            headers["X-Webhook-Signature"] = good_sig if sig == "good" else draw(st.text(max_size=70))
        headers["X-Webhook-Timestamp"] = draw(st.sampled_from([str(WEBHOOK_NOW), "nan", "inf", "-1", "1e999", ""]) | st.text(max_size=12))
        headers.update(draw(st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=3)))
    return {
        "canonicalization": canonicalization,
        "provider": "acme" if valid_envelope else draw(st.sampled_from(["acme", "other", ""]) | st.text(max_size=8)),
        "method": "POST" if valid_envelope else draw(st.sampled_from(["POST", "post", "GET", "PUT"]) | st.text(max_size=6)),
        "headers": headers,
        "raw_body": body,
        "remote_addr": draw(st.none() | st.sampled_from(["127.0.0.1", "::1", "not-an-ip"]) | st.text(max_size=15)),
    }


def check_webhook(request: dict[str, Any]) -> None:
    """``validate_and_extract``: ``(profile, payload, event_id, ts)`` or ``WebhookSecurityError``."""
    request = dict(request)
    security = _SECURITY[request.pop("canonicalization")]
    try:
        profile, payload, event_id, ts = security.validate_and_extract(request.pop("provider"), **request)
    except WebhookSecurityError as exc:
        if WEBHOOK_SECRET in str(exc):
            raise Finding("webhook", "the secret appears in the error message", request) from exc
        return
    except BaseException as exc:
        raise _unexpected("webhook", exc, request) from exc
    if not (isinstance(payload, dict) and isinstance(event_id, str) and event_id and profile.name == "acme"):
        raise Finding("webhook", "accepted request with an invalid payload/event id", request)


# -- 6. the LLM decision parser --------------------------------------------------------
@st.composite
def _decision_item(draw: Callable[[Any], Any]) -> dict[str, Any]:
    item = draw(st.dictionaries(st.sampled_from(["message", "task", "task_id", "pool_id", "spec", "amount", "auction_id",
                                                  "vote_id", "option", "tool_name", "params", "delegatee_id", "scope",
                                                  "session_id", "delegation_id", "result", "recipient", "topics"]),
                                json_values, max_size=5))
    item["type"] = draw(st.sampled_from(DECISION_TYPES) | st.text(max_size=10))
    if draw(st.booleans()):
        item["message"] = draw(st.dictionaries(st.sampled_from(["payload", "recipient", "topics", "task_id", "id", "timestamp"]), json_values, max_size=4))
    return item


@st.composite
def _llm_text(draw: Callable[[Any], Any], hostile: bool) -> str:
    kind = _kind(draw, ["raw", "json", "fenced", "prose", "wrapped"], ["deep"], hostile)
    if kind == "raw":
        return draw(st.text(max_size=300))
    if kind == "deep":
        depth = draw(st.integers(500, 100_000))
        return draw(st.sampled_from(["[", "{\"a\":"])) * depth
    items = json.dumps(draw(st.lists(_decision_item() | json_values, max_size=4)))
    if kind == "json":
        return items
    if kind == "fenced":
        return f"Here you go:\n```json\n{items}\n```\nthanks"
    if kind == "wrapped":
        return json.dumps({"decisions": json.loads(items)})
    return f"{draw(st.text(max_size=40))} {items} {draw(st.text(max_size=40))}"


def check_llm(text: str) -> None:
    """``decode_items``: a list or ``ItemError``; ``build_decisions`` never raises and yields Decisions."""
    try:
        items = decode_items(text)
    except ItemError:
        return
    except BaseException as exc:
        raise _unexpected("llm", exc, text) from exc
    if not isinstance(items, list):
        raise Finding("llm", "decode_items returned a non-list", text)
    try:
        decisions, problems = build_decisions(items, IDENTITY.fingerprint)
    except BaseException as exc:
        raise _unexpected("llm", exc, text) from exc
    if len(decisions) + len(problems) != len(items) or not all(isinstance(d, Decision) for d in decisions):
        raise Finding("llm", "build_decisions lost or invented items", text)


# -- the registry --------------------------------------------------------------------
@dataclass(frozen=True)
class FuzzTarget:
    name: str
    check: Callable[[Any], None]
    strategy: Callable[[bool], st.SearchStrategy[Any]]
    from_bytes: Callable[[bytes], Any]
    seeds: Callable[[], list[bytes]]
    """Valid raw inputs (for ``from_bytes``) a coverage-guided fuzzer starts from."""


def _sample_messages() -> list[Message]:
    plain = Message(sender="a", recipient="b", topics=[Topic("orders", {"desk": "x", "n": 1})], payload={"k": [1, 2.5, None, True, "s", b"b"]}, task_id="t1")
    return [plain, plain.sign(IDENTITY), Message(), Message(payload={"nested": {"a": {"b": [{"c": 1}]}}}).sign(IDENTITY)]


def _message_seeds() -> list[bytes]:
    return [m.to_bytes() for m in _sample_messages()]


def _frame_seeds() -> list[bytes]:
    frames = [_frame(m.to_bytes()) for m in _sample_messages()]
    return [*frames, b"".join(frames), frames[0][:7], struct.pack("!I", MAX_FRAME + 1)]


def _codec_seeds() -> list[bytes]:
    values = [{"a": (1, 2), "s": {1, 2}, "f": frozenset({"x"})}, _sample_messages()[1], Topic("t", {"a": 1}), [None, 1.5, b"x"]]
    return [codec.encode(v)[4:] for v in values]


def _config_seeds() -> list[bytes]:
    toml = b'transport = "tcp"\nport = 9000\nagents = 3\nstore_backend = "sqlite"\nstore_path = "x.db"\n'
    yaml = b"transport: websocket\nhost: 0.0.0.0\nport: 8080\npool_id: p\n"
    return [b"\x00" + toml, b"\x01" + yaml, b"\x01agents: [1, 2]\n"]


def _sidecar_seeds() -> list[bytes]:
    toml = (b'port = 0\nbind = "127.0.0.1"\n[secrets]\nacme = "s3cret"\n[[providers]]\nname = "acme"\nsecret_ref = "acme"\n'
            b'[security]\nmax_payload_bytes = 1000\n[retry]\nmax_attempts = 2\n')
    return [b"\x00" + toml, b'\x01{"port": 1, "secrets": {"a": "b"}, "providers": [{"name": "a", "secret_ref": "a"}]}']


def _sidecar_from_bytes(data: bytes) -> tuple[str, str]:
    suffix = [".toml", ".json"][data[0] % 2] if data else ".toml"
    return suffix, data[1:].decode("utf-8", "replace")


def _webhook_seeds() -> list[bytes]:
    return [b'{"event_id": "e1", "subject": "s", "source": "x"}', b'{"event_id": "", "a": [1, {"b": null}]}']


def _llm_seeds() -> list[bytes]:
    items = [{"type": "SendMessage", "message": {"recipient": "b", "payload": {"x": 1}, "topics": ["t", {"namespace": "n", "attributes": {}}]}},
             {"type": "SubmitTask", "task": {"objective": {"a": 1}, "priority": 2}}, {"type": "Vote", "vote_id": "v", "option": 1},
             {"type": "InvokeTool", "tool_name": "calc", "params": {"x": 1}}, {"type": "SubmitBid", "auction_id": "a", "amount": 1.5}]
    text = json.dumps(items)
    return [text.encode(), f"```json\n{text}\n```".encode(), json.dumps({"decisions": items}).encode(), b"[]"]


def _config_from_bytes(data: bytes) -> tuple[str, str, dict[str, str]]:
    suffix = [".toml", ".yaml"][data[0] % 2] if data else ".toml"
    return suffix, data[1:].decode("utf-8", "replace"), {}


def _webhook_from_bytes(data: bytes) -> dict[str, Any]:
    sig = hmac.new(WEBHOOK_SECRET.encode(), data, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": sig, "X-Webhook-Timestamp": str(WEBHOOK_NOW)}
    return {"canonicalization": "raw_body", "provider": "acme", "method": "POST", "headers": headers, "raw_body": data,
            "remote_addr": "127.0.0.1"}


TARGETS: dict[str, FuzzTarget] = {
    t.name: t
    for t in (
        FuzzTarget("message", check_message, lambda hostile: _message_bytes(hostile), bytes, _message_seeds),
        FuzzTarget("frames", check_frames, lambda hostile: _frame_stream(hostile), bytes, _frame_seeds),
        FuzzTarget("codec", check_codec, lambda hostile: _codec_bytes(hostile), lambda d: codec.MAGIC + bytes([codec.VERSION]) + d,
                   _codec_seeds),
        FuzzTarget("config", check_config, lambda hostile: _config_input(hostile), _config_from_bytes, _config_seeds),
        FuzzTarget("sidecar", check_sidecar, lambda hostile: _sidecar_input(hostile), _sidecar_from_bytes, _sidecar_seeds),
        FuzzTarget("webhook", check_webhook, lambda hostile: _webhook_request(hostile), _webhook_from_bytes, _webhook_seeds),
        FuzzTarget("llm", check_llm, lambda hostile: _llm_text(hostile), lambda d: d.decode("utf-8", "replace"), _llm_seeds),
    )
}


def reset_loop() -> None:
    """Forget the private loop (after an alarm interrupted it); the next async check makes a new one."""
    global _loop
    if _loop is not None and not _loop.is_closed() and not _loop.is_running():
        _loop.close()
    _loop = None


def cleanup() -> None:
    """Close the private loop and remove the temporary config directory."""
    global _loop, _config_dir
    if _loop is not None and not _loop.is_closed():
        _loop.close()
    _loop = None
    if _config_dir is not None:
        for child in _config_dir.iterdir():
            child.unlink()
        os.rmdir(_config_dir)
        _config_dir = None


__all__ = ["TARGETS", "Finding", "FuzzTarget", "cleanup", "reset_loop"]
