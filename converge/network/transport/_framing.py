"""The wire frame shared by the TCP and WebSocket transports (reference Appendix A.1).

A frame is a 4-byte unsigned big-endian length followed by that many bytes of
msgpack (bin type on) of the message's eight fields in field order — exactly
:meth:`Message.to_bytes`. Problems are reported as :class:`FrameProblem`
carrying the drop reason, so callers can count them.
"""

from __future__ import annotations

import asyncio
import struct

from converge.core.message import Message
from converge.errors import DecodeError, FrameError
from converge.network.transport.base import DropReason

HEADER = struct.Struct("!I")
HEADER_SIZE = HEADER.size
DEFAULT_MAX_FRAME_SIZE = 10 * 1024 * 1024
"""The reference's cap on a frame body: 10 MiB."""


class FrameProblem(FrameError):
    """A bad frame; ``reason`` is the :class:`DropReason` to count it under."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def check_max_frame_size(value: int) -> int:
    """Validate a ``max_frame_size`` argument."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 0xFFFFFFFF:
        raise ValueError(f"max_frame_size must be an int between 1 and {0xFFFFFFFF}, got {value!r}")
    return value


def encode_frame(message: Message, max_frame_size: int) -> bytes:
    """The frame for ``message``.

    Raises:
        FrameProblem: the payload cannot be packed (``encode_failed``) or the body
            is larger than ``max_frame_size`` (``oversized_frame``).
    """
    try:
        body = message.to_bytes()
    except (TypeError, ValueError, OverflowError) as exc:
        raise FrameProblem(
            DropReason.ENCODE_FAILED, f"message {message.id} cannot be encoded for the wire: {exc}"
        ) from exc
    if len(body) > max_frame_size:
        raise FrameProblem(
            DropReason.OVERSIZED_FRAME,
            f"message {message.id} encodes to {len(body)} bytes, above max_frame_size={max_frame_size}",
        )
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> Message:
    """The message in a frame body.

    Raises:
        FrameProblem: ``malformed_frame`` — not msgpack, not a map, or wrong field types.
    """
    try:
        return Message.from_bytes(body)
    except DecodeError as exc:
        raise FrameProblem(DropReason.MALFORMED_FRAME, str(exc)) from exc


def decode_frame(data: bytes, max_frame_size: int) -> Message:
    """Decode one complete frame held in a single buffer (one WebSocket message).

    Raises:
        FrameProblem: shorter than its header or its announced length
            (``truncated_frame``), announcing more than ``max_frame_size``
            (``oversized_frame``), trailing bytes or a bad body (``malformed_frame``).
    """
    if len(data) < HEADER_SIZE:
        raise FrameProblem(DropReason.TRUNCATED_FRAME, f"frame of {len(data)} bytes is shorter than the 4-byte length header")
    (length,) = HEADER.unpack_from(data)
    if length > max_frame_size:
        raise FrameProblem(DropReason.OVERSIZED_FRAME, f"length header {length} exceeds max_frame_size={max_frame_size}")
    actual = len(data) - HEADER_SIZE
    if actual < length:
        raise FrameProblem(DropReason.TRUNCATED_FRAME, f"frame announces {length} bytes but carries {actual}")
    if actual > length:
        raise FrameProblem(DropReason.MALFORMED_FRAME, f"frame announces {length} bytes but carries {actual}")
    return decode_body(data[HEADER_SIZE:])


async def read_frame(reader: asyncio.StreamReader, max_frame_size: int) -> Message | None:
    """Read one frame from a stream; ``None`` on a clean end of stream between frames.

    Short reads are handled with ``readexactly``. A length header above the
    limit is rejected before any of the body is read.

    Raises:
        FrameProblem: truncated, oversized or malformed frame.
        ConnectionError: the connection was reset between frames.
    """
    try:
        header = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameProblem(
            DropReason.TRUNCATED_FRAME, f"connection closed after {len(exc.partial)} of 4 header bytes"
        ) from exc
    (length,) = HEADER.unpack(header)
    if length > max_frame_size:
        raise FrameProblem(DropReason.OVERSIZED_FRAME, f"length header {length} exceeds max_frame_size={max_frame_size}")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FrameProblem(
            DropReason.TRUNCATED_FRAME, f"connection closed after {len(exc.partial)} of {length} body bytes"
        ) from exc
    except ConnectionError as exc:
        raise FrameProblem(DropReason.TRUNCATED_FRAME, f"connection reset inside a {length}-byte frame: {exc}") from exc
    return decode_body(body)
