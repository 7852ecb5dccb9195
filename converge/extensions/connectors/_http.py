"""A small asyncio HTTP/1.1 server (optionally TLS): one request per connection, bounded reads.

Enough for the webhook sidecar: request line and headers with size limits
and a read timeout, bodies by ``Content-Length`` only (chunked uploads get
``411``), ``Connection: close`` on every answer. Handlers decide when and
whether to read the body, so a request can be refused before it is read.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

MAX_LINE = 8 * 1024
MAX_HEADERS = 100


class BadRequest(Exception):
    """The request cannot be served; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    """One parsed request. ``headers`` keep their original names (later duplicates win)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    remote_addr: str | None
    client_cert_present: bool
    _reader: asyncio.StreamReader
    _timeout: float

    def header(self, name: str, default: str = "") -> str:
        """A header value by case-insensitive name."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default

    def content_length(self) -> int:
        """The declared body size; raises :class:`BadRequest` (411/400) when absent, chunked or malformed."""
        if self.header("transfer-encoding"):
            raise BadRequest(411, "chunked bodies are not supported; send Content-Length")
        raw = self.header("content-length")
        if not raw:
            if self.method in ("GET", "HEAD", "DELETE", "OPTIONS"):
                return 0
            raise BadRequest(411, "Content-Length required")
        if not raw.strip().isdigit():
            raise BadRequest(400, "malformed Content-Length")
        return int(raw)

    async def read_body(self, limit: int) -> bytes:
        """Read exactly ``Content-Length`` bytes (413 if more than ``limit``)."""
        size = self.content_length()
        if size > limit:
            raise BadRequest(413, "body too large")
        try:
            async with asyncio.timeout(self._timeout):
                return await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise BadRequest(400, "body shorter than Content-Length") from None
        except TimeoutError:
            raise BadRequest(408, "body not received in time") from None


Response = tuple[int, dict[str, str], bytes]
Handler = Callable[[Request], Awaitable[Response]]


def json_response(status: int, body: bytes) -> Response:
    return status, {"Content-Type": "application/json"}, body


class HttpServer:
    """Serves ``handler`` on ``host:port`` (port 0 = OS-assigned); see :attr:`address`.

    Every connection is a task owned by the server; :meth:`aclose` waits up
    to ``drain_timeout`` seconds for them and cancels the rest.
    """

    def __init__(
        self, handler: Handler, host: str, port: int, *, read_timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._handler = handler
        self._host, self._port = host, port
        self._ssl = ssl_context
        self._read_timeout = read_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, self._host, self._port, limit=MAX_LINE, ssl=self._ssl,
                ssl_handshake_timeout=self._read_timeout if self._ssl is not None else None,
            )

    async def aclose(self, drain_timeout: float = 5.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=drain_timeout)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            response = await self._respond(reader, writer)
            if response is not None:
                await _write(writer, *response)
        except (OSError, asyncio.IncompleteReadError) as exc:  # reset, broken pipe, TLS errors
            logger.debug("client connection ended early: %r", exc)
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except OSError as exc:
                logger.debug("error while closing a client connection: %r", exc)

    async def _respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Response | None:
        peer = writer.get_extra_info("peername")
        remote = peer[0] if isinstance(peer, tuple) else None
        # Only a certificate the TLS layer verified against the client CA shows up here.
        cert = bool(writer.get_extra_info("peercert")) if self._ssl is not None else False
        try:
            request = await self._parse(reader, remote, cert)
            if request is None:
                return None
            return await self._handler(request)
        except BadRequest as exc:
            return json_response(exc.status, f'{{"error":"{HTTPStatus(exc.status).phrase.lower()}"}}'.encode())
        except Exception:
            logger.exception("unhandled error while serving a request from %s", remote)
            return json_response(500, b'{"error":"internal error"}')

    async def _parse(self, reader: asyncio.StreamReader, remote: str | None, cert: bool) -> Request | None:
        try:
            async with asyncio.timeout(self._read_timeout):
                line = await reader.readline()
                if not line:
                    return None
                parts = line.decode("latin-1").rstrip("\r\n").split(" ")
                if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                    raise BadRequest(400, "malformed request line")
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    if len(headers) >= MAX_HEADERS:
                        raise BadRequest(431, "too many headers")
                    name, sep, value = raw.decode("latin-1").partition(":")
                    if not sep or not name.strip() or name != name.strip():
                        raise BadRequest(400, "malformed header")
                    headers[name] = value.strip()
        except ValueError:  # a line longer than the reader limit
            raise BadRequest(431, "request line or header too long") from None
        except TimeoutError:
            raise BadRequest(408, "request headers not received in time") from None
        url = urlsplit(parts[1])
        return Request(parts[0].upper(), unquote(url.path), url.query, headers, remote, cert, reader, self._read_timeout)


async def _write(writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes) -> None:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Status"
    lines = [f"HTTP/1.1 {status} {phrase}"]
    for name, value in headers.items():
        if name.lower() not in ("content-length", "connection"):
            lines.append(f"{name}: {value}")
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    writer.write("\r\n".join(lines).encode("latin-1") + body)
    await writer.drain()


__all__ = ["BadRequest", "HttpServer", "Request", "Response", "json_response"]
