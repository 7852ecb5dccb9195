"""TCP transport: length-prefixed msgpack frames, topic routing, pooled connections.

Frames are byte-compatible with the reference (Appendix A.1): a 4-byte
unsigned big-endian length, then msgpack of the message's eight fields.

Routing is by topic: the first topic whose namespace is ``transport.tcp``
names the destination in its ``host`` and ``port`` attributes (build it with
:func:`tcp_topic`). The receiver learns nothing about the sender's address,
so a sender that wants replies advertises its own route (see
:attr:`TcpTransport.address_topic`) in the message.

Where the reference dropped silently, this transport raises and counts:

* no route → :class:`~converge.errors.UndeliverableError` (``no_route``);
* connect/write failure → :class:`~converge.errors.TransportError`
  (``send_failed``); the pooled connection is closed, so a retry reconnects;
* a peer that stops reading (or a host that vanished without FIN) fills the
  socket buffers: a write that cannot be flushed within ``write_timeout`` is a
  ``send_failed`` too, and that connection is aborted;
* a message that cannot be encoded, or whose frame exceeds ``max_frame_size`` →
  :class:`~converge.errors.FrameError` (``encode_failed`` / ``oversized_frame``).

A send that returns has handed the frame to the kernel; TCP has no
application-level acknowledgement, so a peer that dies at that moment can
still lose it. A write refused on a *pooled* connection the peer has since
closed is retried once on a fresh connection.

Closing a connection (on error or in :meth:`TcpTransport.stop`) lets buffered
frames flush for a short grace period, then aborts it, so ``stop()`` never
hangs on a peer that does not read.

On the server side a malformed, oversized or truncated frame closes **that**
connection only (counted and logged); every other connection keeps being served.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from converge.core.topic import Topic
from converge.errors import TransportError, UndeliverableError
from converge.network.transport._framing import (
    DEFAULT_MAX_FRAME_SIZE,
    FrameProblem,
    check_max_frame_size,
    encode_frame,
    read_frame,
)
from converge.network.transport._queue import ReceiveQueue, install_sink, receive_from
from converge.network.transport.base import DropReason, Transport, _NotStartedError

if TYPE_CHECKING:
    from converge.core.message import Message

logger = logging.getLogger(__name__)

TCP_NAMESPACE = "transport.tcp"


def tcp_topic(host: str, port: int) -> Topic:
    """The routing topic that sends a message to the TCP transport listening on ``host:port``."""
    return Topic(TCP_NAMESPACE, {"host": host, "port": port})


@dataclass(eq=False)
class _Connection:
    """One pooled outgoing connection; the lock serialises connect and writes."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    retired: bool = False  # set by TcpTransport.stop(): never reconnect

    def usable(self) -> bool:
        # The peer never writes back, so EOF on our reader means it closed the connection.
        return self.writer is not None and not self.writer.is_closing() and not (self.reader is not None and self.reader.at_eof())

    async def close(self, *, abort: bool = False) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            await _close_writer(writer, abort=abort)


_CLOSE_GRACE = 1.0
"""Seconds a closing connection may spend flushing its buffer before it is aborted."""


class _Aborted(ConnectionAbortedError):
    """A frame dropped because stop() aborted its connection (not retried)."""


async def _close_writer(writer: asyncio.StreamWriter, *, abort: bool = False) -> None:
    """Close ``writer``; abort it (dropping unsent bytes) if it does not close within the grace period."""
    if abort:
        writer.transport.abort()
    else:
        writer.close()
    # asyncio.wait, not asyncio.timeout: a timeout would cancel wait_closed(), and with it the stream's
    # shared close future, so the wait after abort() would raise CancelledError into stop().
    waiter = asyncio.ensure_future(writer.wait_closed())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=_CLOSE_GRACE)
        if not done:
            # The unsent buffer never flushes (the peer stopped reading): drop it.
            logger.info("TCP connection to %s did not close within %.1fs; aborted it", writer.get_extra_info("peername"), _CLOSE_GRACE)
            writer.transport.abort()
        await waiter
    except (ConnectionError, OSError, ssl.SSLError) as exc:  # the socket is gone either way
        logger.debug("error while closing a TCP connection: %r", exc)
    finally:
        if not waiter.done():  # we were cancelled ourselves: the waiter has no other owner
            waiter.cancel()


class TcpTransport(Transport):
    """Length-prefixed msgpack over TCP (optionally TLS).

    Args:
        host: interface to listen on.
        port: port to listen on; ``0`` lets the OS choose — read :attr:`port`
            or :attr:`bound_address` after :meth:`start`.
        identity_fingerprint: this agent's id (informational; routing is by topic).
        ssl_context: TLS context for the server and, unless ``client_ssl_context``
            is given, for outgoing connections.
        client_ssl_context: TLS context for outgoing connections.
        max_frame_size: largest accepted (and sent) frame body in bytes (default 10 MiB).
        connect_timeout: seconds allowed for opening an outgoing connection.
        write_timeout: seconds a send may wait for the socket buffer to drain
            (a peer that stops reading); on expiry the send raises
            :class:`~converge.errors.TransportError` (``send_failed``) and the
            connection is aborted. ``None`` waits without bound.
        metrics_collector: optional metrics collector for drop counters.

    Attributes:
        host, port, fingerprint, ssl_context, server, inbox, pool.
    """

    def __init__(
        self,
        host: str,
        port: int,
        identity_fingerprint: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        client_ssl_context: ssl.SSLContext | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        connect_timeout: float = 10.0,
        write_timeout: float | None = 30.0,
        metrics_collector: Any = None,
    ) -> None:
        super().__init__(metrics_collector=metrics_collector)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int between 0 and 65535, got {port!r}")
        self.host = host
        self.port = port
        self.fingerprint = identity_fingerprint
        self.ssl_context = ssl_context
        self.client_ssl_context = client_ssl_context if client_ssl_context is not None else ssl_context
        self.max_frame_size = check_max_frame_size(max_frame_size)
        self.connect_timeout = connect_timeout
        bad = isinstance(write_timeout, bool) or not isinstance(write_timeout, (int, float)) or not write_timeout > 0
        if write_timeout is not None and bad:
            raise ValueError(f"write_timeout must be a positive number of seconds or None, got {write_timeout!r}")
        self.write_timeout = write_timeout
        self.server: asyncio.Server | None = None
        self.inbox: asyncio.Queue[Message] = ReceiveQueue()
        self.pool: dict[tuple[str, int], _Connection] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._server_writers: set[asyncio.StreamWriter] = set()
        self._stopped = False  # after stop(), send() refuses until start() again

    route_topic = staticmethod(tcp_topic)

    @property
    def bound_address(self) -> tuple[str, int] | None:
        """``(host, port)`` the server listens on, or ``None`` when not started."""
        if self.server is None or not self.server.sockets:
            return None
        return self.host, self.port

    @property
    def address_topic(self) -> Topic:
        """The ``transport.tcp`` topic that routes to this transport (valid after :meth:`start`)."""
        return tcp_topic(self.host, self.port)

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        """Listen on ``(host, port)``. Idempotent."""
        if self.server is not None:
            return
        self._stopped = False
        self.server = await asyncio.start_server(self._serve_connection, self.host, self.port, ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the server, every accepted and pooled connection, and their tasks. Idempotent.

        A send blocked on a peer that does not read gets a :class:`TransportError`;
        later sends raise until :meth:`start` is called again.
        """
        self._stopped = True
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for writer in list(self._server_writers):
            writer.close()  # the handlers' finally blocks wait for (or abort) the close
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        pool, self.pool = self.pool, {}
        for conn in pool.values():
            conn.retired = True
        if pool:  # concurrently: each close may take the grace period on a peer that does not read
            await asyncio.gather(*(conn.close() for conn in pool.values()))

    # -- server side -------------------------------------------------------
    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self.server is None:  # accepted just before stop(): refuse rather than outlive it
            await _close_writer(writer)
            return
        self._handlers.add(task)
        self._server_writers.add(writer)
        peer = writer.get_extra_info("peername")
        try:
            await self._read_frames(reader, peer)
        except asyncio.CancelledError:
            # Only stop() cancels this task. Ending normally matters on Python 3.11, whose
            # streams callback calls task.exception() and would log a cancelled handler as an error.
            pass
        except (ConnectionError, ssl.SSLError) as exc:
            logger.info("TCP connection from %s ended: %r", peer, exc)
        finally:
            self._server_writers.discard(writer)
            self._handlers.discard(task)
            await _close_writer(writer)

    async def _read_frames(self, reader: asyncio.StreamReader, peer: Any) -> None:
        while True:
            try:
                message = await read_frame(reader, self.max_frame_size)
            except FrameProblem as problem:
                self._record_drop(None, problem.reason, f"{problem.detail} (from {peer}); closed that connection")
                return
            if message is None:
                return
            self.inbox.put_nowait(message)

    # -- client side -------------------------------------------------------
    def _route(self, message: Message) -> tuple[str, int]:
        for topic in message.topics:
            if topic.namespace == TCP_NAMESPACE:
                host = topic.attributes.get("host")
                port = topic.attributes.get("port")
                if isinstance(port, str) and port.isdigit():
                    port = int(port)
                if isinstance(host, str) and host and isinstance(port, int) and not isinstance(port, bool) and 0 < port <= 65535:
                    return host, port
                detail = f"the transport.tcp topic has an invalid host/port ({host!r}, {port!r})"
                break
        else:
            detail = "the message has no transport.tcp topic (add TcpTransport.route_topic(host, port))"
        self._record_drop(message, DropReason.NO_ROUTE, detail)
        raise UndeliverableError(f"cannot route message {message.id}: {detail}")

    async def send(self, message: Message) -> None:
        """Send ``message`` to the address in its ``transport.tcp`` topic.

        Raises:
            UndeliverableError: no usable ``transport.tcp`` topic (``no_route``).
            FrameError: the message cannot be encoded or is larger than
                ``max_frame_size`` (``encode_failed`` / ``oversized_frame``).
            TransportError: connecting or writing failed (``send_failed``); the
                pooled connection is dropped, so the next send reconnects.
        """
        if self._stopped:
            raise _NotStartedError(f"TcpTransport {self.fingerprint!r} was stopped: call start() before send()")
        address = self._route(message)
        try:
            frame = encode_frame(message, self.max_frame_size)
        except FrameProblem as problem:
            self._record_drop(message, problem.reason, problem.detail)
            raise
        conn = self.pool.get(address)
        if conn is None:
            conn = self.pool[address] = _Connection()
        async with conn.lock:
            try:
                await self._write(conn, address, frame)
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                # Stays pooled but empty: the next send reconnects. A timed-out write may
                # have left half a frame in the buffer, so that connection is aborted.
                await conn.close(abort=isinstance(exc, TimeoutError))
                detail = f"sending to {address[0]}:{address[1]} failed: {exc!r}"
                self._record_drop(message, DropReason.SEND_FAILED, detail)
                raise TransportError(f"cannot send message {message.id}: {detail}") from exc

    async def _write(self, conn: _Connection, address: tuple[str, int], frame: bytes) -> None:
        reused = conn.usable()
        if not reused:
            await conn.close()
            await self._connect(conn, address)
        assert conn.writer is not None
        try:
            conn.writer.write(frame)
            await self._drain(conn.writer)
            if conn.retired:  # stop() aborted the connection while the frame was still buffered
                raise _Aborted("the transport was stopped before the frame was flushed")
        except _Aborted:
            raise
        except ConnectionError:
            if not reused:
                raise
            # A pooled connection the peer has meanwhile closed (e.g. it restarted):
            # the write was refused, so reconnecting and writing once more is safe.
            logger.debug("pooled connection to %s:%s was stale; reconnecting", *address)
            await conn.close()
            await self._connect(conn, address)
            assert conn.writer is not None
            conn.writer.write(frame)
            await self._drain(conn.writer)

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        if self.write_timeout is None:
            await writer.drain()
            return
        deadline = asyncio.timeout(self.write_timeout)
        try:
            async with deadline:
                await writer.drain()
        except TimeoutError as exc:
            if not deadline.expired():  # an OS-level ETIMEDOUT: report it as it is
                raise
            raise TimeoutError(f"the peer did not read for {self.write_timeout}s (write timeout)") from exc

    async def _connect(self, conn: _Connection, address: tuple[str, int]) -> None:
        if conn.retired:
            raise ConnectionAbortedError("the transport was stopped while this send was waiting")
        async with asyncio.timeout(self.connect_timeout):
            conn.reader, conn.writer = await asyncio.open_connection(
                address[0], address[1], ssl=self.client_ssl_context, limit=1024
            )

    def set_delivery_sink(self, sink: Callable[[Message], bool] | None) -> bool:
        """Hand received messages to ``sink(message) -> bool`` directly while nothing is queued.

        Messages the sink declines (it returns False) are queued for :meth:`receive` as
        usual, so nothing is lost and order is kept. Returns True when installed.
        """
        return install_sink(self.inbox, sink)

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message received on any connection.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
        """
        return await receive_from(self.inbox, timeout)

    def __repr__(self) -> str:
        state = "listening" if self.server is not None else "stopped"
        return f"<TcpTransport {self.host}:{self.port} {state}>"


__all__ = ["TCP_NAMESPACE", "TcpTransport", "tcp_topic"]
