"""WebSocket transports on the ``websockets`` library (extra ``converge[websocket]``).

Each WebSocket message carries exactly one frame in the TCP format: a 4-byte
big-endian length followed by msgpack of the message (reference Appendix A.1).
Text messages are treated as their UTF-8 bytes, as in the reference.

* :class:`WebSocketTransport` ``(agent_id, uri)`` is the reference's client: it
  connects to ``uri``; ``send`` writes to that one connection and the server
  decides what to do with the message.
* :class:`WebSocketServerTransport` ``(agent_id, host, port)`` is the server
  side the reference lacked: it accepts many clients; a client is known by the
  ``X-Converge-Agent`` header it sends on connect (:class:`WebSocketTransport`
  sends its ``agent_id``). ``send`` goes to ``message.recipient``'s connection,
  or to every connected client when there is no recipient. The header is only
  a routing hint — authenticate messages with ``receive_verified``.

Drop semantics match TCP: a malformed, oversized or truncated frame is counted
and logged, and closes that connection (code 1007, or 1009 for size); other
connections are unaffected. A closed client is not reconnected automatically:
its ``send`` raises :class:`~converge.errors.TransportError` until restarted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from converge._extras import require
from converge.errors import TransportError, UndeliverableError
from converge.network.transport._framing import (
    DEFAULT_MAX_FRAME_SIZE,
    HEADER_SIZE,
    FrameProblem,
    check_max_frame_size,
    decode_frame,
    encode_frame,
)
from converge.network.transport.base import DropReason, Transport, _NotStartedError

if TYPE_CHECKING:
    from converge.core.message import Message

logger = logging.getLogger(__name__)

AGENT_HEADER = "X-Converge-Agent"
_CLOSE_INVALID = 1007
_CLOSE_TOO_BIG = 1009


def _websockets(submodule: str) -> Any:
    return require(f"websockets.{submodule}", "websocket", purpose="the WebSocket transport")


class _WebSocketEndpoint(Transport):
    """Inbox, framing and the per-connection read loop shared by client and server."""

    def __init__(self, agent_id: str, *, max_frame_size: int, metrics_collector: Any) -> None:
        super().__init__(metrics_collector=metrics_collector)
        self.agent_id = agent_id
        self.max_frame_size = check_max_frame_size(max_frame_size)
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message received on any connection.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
        """
        inbox = self.inbox
        if timeout is None:
            return await inbox.get()
        if not inbox.empty():
            return inbox.get_nowait()
        async with asyncio.timeout(timeout):
            return await inbox.get()

    def _encode(self, message: Message) -> bytes:
        try:
            return encode_frame(message, self.max_frame_size)
        except FrameProblem as problem:
            self._record_drop(message, problem.reason, problem.detail)
            raise

    async def _pump(self, conn: Any, peer: str) -> None:
        """Read frames from ``conn`` into the inbox until it closes or sends a bad frame."""
        exceptions = _websockets("exceptions")
        try:
            async for data in conn:
                raw = data.encode("utf-8") if isinstance(data, str) else data
                try:
                    message = decode_frame(raw, self.max_frame_size)
                except FrameProblem as problem:
                    self._record_drop(None, problem.reason, f"{problem.detail} (from {peer}); closed that connection")
                    code = _CLOSE_TOO_BIG if problem.reason == DropReason.OVERSIZED_FRAME else _CLOSE_INVALID
                    await conn.close(code=code, reason=str(problem.reason))
                    return
                self.inbox.put_nowait(message)
        except exceptions.ConnectionClosedError as exc:
            if exc.sent is not None and exc.sent.code == _CLOSE_TOO_BIG:
                detail = f"WebSocket message above max_frame_size={self.max_frame_size} (from {peer}); closed that connection"
                self._record_drop(None, DropReason.OVERSIZED_FRAME, detail)
            else:
                logger.info("WebSocket connection with %s ended abnormally: %s", peer, exc)

    async def _send_on(self, conn: Any, frame: bytes, message: Message, peer: str) -> None:
        exceptions = _websockets("exceptions")
        try:
            await conn.send(frame)
        except (exceptions.ConnectionClosed, OSError) as exc:
            detail = f"sending to {peer} failed: {exc!r}"
            self._record_drop(message, DropReason.SEND_FAILED, detail)
            raise TransportError(f"cannot send message {message.id}: {detail}") from exc


class WebSocketTransport(_WebSocketEndpoint):
    """Client transport: one WebSocket connection to ``uri``.

    Args:
        agent_id: this agent's id, announced in the ``X-Converge-Agent`` header.
        uri: ``ws://`` or ``wss://`` URI of the server.
        max_frame_size: largest accepted (and sent) frame body in bytes (default 10 MiB).
        open_timeout: seconds allowed for the opening handshake.
        metrics_collector: optional metrics collector for drop counters.
    """

    def __init__(
        self,
        agent_id: str,
        uri: str,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        open_timeout: float = 10.0,
        metrics_collector: Any = None,
    ) -> None:
        super().__init__(agent_id, max_frame_size=max_frame_size, metrics_collector=metrics_collector)
        self.uri = uri
        self.open_timeout = open_timeout
        self._conn: Any = None
        self._listener: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """True while the connection is open (false before start, after stop or after the peer closed)."""
        return self._listener is not None and not self._listener.done()

    async def start(self) -> None:
        """Connect and start reading. Idempotent.

        Raises:
            MissingExtraError: ``websockets`` is not installed.
            TransportError: the connection or handshake failed.
        """
        if self._conn is not None:
            return
        client = _websockets("asyncio.client")
        exceptions = _websockets("exceptions")
        try:
            self._conn = await client.connect(
                self.uri,
                additional_headers={AGENT_HEADER: self.agent_id},
                max_size=self.max_frame_size + HEADER_SIZE,
                open_timeout=self.open_timeout,
            )
        except (OSError, TimeoutError, exceptions.InvalidHandshake, exceptions.InvalidURI) as exc:
            raise TransportError(f"cannot connect to {self.uri!r}: {exc!r}") from exc
        self._listener = asyncio.create_task(self._pump(self._conn, self.uri), name=f"ws-client-listener:{self.agent_id[:12]}")
        self._listener.add_done_callback(self._listener_done)

    def _listener_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("WebSocket listener for %s failed; no more messages will be received", self.uri, exc_info=task.exception())

    async def stop(self) -> None:
        """Stop reading and close the connection. Idempotent; safe before ``start``."""
        conn, self._conn = self._conn, None
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        if conn is not None:
            await conn.close()

    async def send(self, message: Message) -> None:
        """Send one frame to the server.

        Raises:
            RuntimeError: not started.
            FrameError: cannot be encoded or too large (``encode_failed`` / ``oversized_frame``).
            TransportError: the connection is closed or the write failed (``send_failed``).
        """
        if self._conn is None:
            raise _NotStartedError(f"Transport not started: call start() on WebSocketTransport {self.uri!r} before send()")
        await self._send_on(self._conn, self._encode(message), message, self.uri)


class WebSocketServerTransport(_WebSocketEndpoint):
    """Server transport: accepts WebSocket clients on ``(host, port)``.

    Args:
        agent_id: this agent's id.
        host: interface to listen on.
        port: port, ``0`` for an OS-assigned one (read :attr:`port` after start).
        ssl_context: optional server TLS context (``wss://``).
        max_frame_size: largest accepted (and sent) frame body in bytes (default 10 MiB).
        metrics_collector: optional metrics collector for drop counters.
    """

    def __init__(
        self,
        agent_id: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: Any = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        metrics_collector: Any = None,
    ) -> None:
        super().__init__(agent_id, max_frame_size=max_frame_size, metrics_collector=metrics_collector)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int between 0 and 65535, got {port!r}")
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.server: Any = None
        self.clients: dict[str, Any] = {}
        self._connections: set[Any] = set()

    @property
    def uri(self) -> str:
        """The URI clients connect to (valid after :meth:`start`)."""
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def bound_address(self) -> tuple[str, int] | None:
        """``(host, port)`` the server listens on, or ``None`` when not started."""
        return (self.host, self.port) if self.server is not None else None

    async def start(self) -> None:
        """Start listening. Idempotent."""
        if self.server is not None:
            return
        server_mod = _websockets("asyncio.server")
        self.server = await server_mod.serve(
            self._handle, self.host, self.port, ssl=self.ssl_context, max_size=self.max_frame_size + HEADER_SIZE
        )
        self.port = next(iter(self.server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        """Close every connection and the server; waits for the connection handlers. Idempotent."""
        server, self.server = self.server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _handle(self, conn: Any) -> None:
        peer_id = conn.request.headers.get(AGENT_HEADER) if conn.request is not None else None
        peer = f"{peer_id or 'anonymous client'} at {conn.remote_address}"
        self._connections.add(conn)
        if peer_id:
            self.clients[peer_id] = conn
        try:
            await self._pump(conn, peer)
        finally:
            self._connections.discard(conn)
            if peer_id and self.clients.get(peer_id) is conn:
                del self.clients[peer_id]

    async def send(self, message: Message) -> list[str]:
        """Send to ``message.recipient``'s connection, or to every client when there is none.

        Returns:
            The ids of the clients written to (anonymous clients appear as their address).
            An empty list means a broadcast with no client connected (counted as ``no_route``).

        Raises:
            RuntimeError: not started.
            UndeliverableError: the recipient is not connected (``unknown_recipient``).
            FrameError: cannot be encoded or too large.
            TransportError: writing to the recipient failed (``send_failed``). A failed
                write during a broadcast is counted and the other clients still get it.
        """
        if self.server is None:
            raise _NotStartedError("Transport not started: call start() on WebSocketServerTransport before send()")
        recipient = message.recipient
        if recipient:
            conn = self.clients.get(recipient)
            if conn is None:
                detail = f"no WebSocket client {recipient!r} is connected"
                self._record_drop(message, DropReason.UNKNOWN_RECIPIENT, detail)
                raise UndeliverableError(f"cannot deliver message {message.id}: {detail}")
            await self._send_on(conn, self._encode(message), message, recipient)
            return [recipient]
        frame = self._encode(message)
        names = {conn: pid for pid, conn in self.clients.items()}
        delivered: list[str] = []
        for conn in list(self._connections):
            name = names.get(conn) or str(conn.remote_address)
            try:
                await self._send_on(conn, frame, message, name)
            except TransportError:
                continue  # counted and logged by _send_on; the other clients still receive it
            delivered.append(name)
        if not delivered and not self._connections:
            self._record_drop(message, DropReason.NO_ROUTE, "broadcast with no WebSocket client connected")
        return delivered


__all__ = ["AGENT_HEADER", "WebSocketServerTransport", "WebSocketTransport"]
