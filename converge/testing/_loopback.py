"""A small threaded HTTP server on 127.0.0.1 that answers from a script and records requests.

Vendor flavours (OpenAI, Anthropic, Mistral) live in :mod:`converge.testing.llm_servers`;
this module holds what they share: :class:`Reply` (one scripted answer),
:class:`RecordedRequest` (what a client sent) and :class:`LoopbackServer` (socket,
threads, script queue, request log, start/stop).

The server runs in its own thread, so it serves synchronous and asynchronous SDK
clients alike, from plain code, pytest or a notebook.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any

logger = logging.getLogger(__name__)

Responder = Callable[["RecordedRequest"], "Reply"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer of a loopback vendor server.

    Build with the constructors: ``Reply("hello")`` (a plain text reply),
    :meth:`tool` (a tool/function call) and :meth:`error` (an HTTP error in the vendor's
    error format). Whether the answer is streamed as server-sent events is decided by the
    request (``"stream": true``), not by the reply.

    Attributes:
        text: assistant text.
        tool_name / tool_arguments: a tool call (arguments: a dict, or a raw JSON string).
        status: HTTP status; anything but 200 is sent as a vendor error body.
        error_type / error_message: the vendor error's ``type`` and message.
        input_tokens / output_tokens: the usage block; ``None`` = estimated (chars // 4, at least 1).
        headers: extra response headers (e.g. ``retry-after-ms``).
        chunk_size: characters per streamed text delta.
        delay: seconds to wait before answering (to provoke client timeouts).
    """

    text: str = ""
    tool_name: str | None = None
    tool_arguments: Any = None
    status: int = 200
    error_type: str | None = None
    error_message: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    chunk_size: int = 4
    delay: float = 0.0

    @classmethod
    def tool(cls, name: str, arguments: Any, *, text: str = "", **kwargs: Any) -> Reply:
        """A reply that calls tool ``name`` with ``arguments`` (dict or JSON string)."""
        return cls(text=text, tool_name=name, tool_arguments=arguments, **kwargs)

    @classmethod
    def error(cls, status: int, message: str = "", *, error_type: str | None = None, retry_after_ms: int | None = None) -> Reply:
        """An HTTP error reply. ``retry_after_ms`` sets the ``retry-after-ms`` header the SDKs honour."""
        headers = {} if retry_after_ms is None else {"retry-after-ms": str(retry_after_ms)}
        return cls(status=status, error_type=error_type, error_message=message or f"scripted HTTP {status}", headers=headers)

    @property
    def is_error(self) -> bool:
        return self.status != 200

    @property
    def arguments_json(self) -> str:
        """The tool arguments as a JSON string."""
        args = self.tool_arguments
        return args if isinstance(args, str) else json.dumps(args if args is not None else {})


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the server received.

    Attributes:
        method / path / query: the request line (path without the query string).
        headers: header names lower-cased.
        body: the JSON-decoded body, or ``None`` when it was empty or not JSON.
        raw: the body bytes.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: Any
    raw: bytes

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True


def estimate_tokens(text: str) -> int:
    """The servers' token estimate: ``len(text) // 4``, at least 1."""
    return max(1, len(text) // 4)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self.server.owner._handle(self)

    do_GET = do_POST  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Silence the default stderr access log; requests are recorded on the server instead."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackServer

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._track(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.owner._untrack(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            # The client gave up (timeout, closed stream): expected in tests of client timeouts.
            logger.debug("loopback client %s went away: %r", client_address, exc)
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """Base class: a scripted HTTP server on ``127.0.0.1`` with an OS-assigned port.

    Args:
        replies: scripted replies, answered in order.
        default: the answer once the script is used up: a :class:`Reply`, or a function of the
            :class:`RecordedRequest` returning one. ``None``: the request gets an HTTP 418
            error saying the script is exhausted.
        api_key: when set, requests whose auth header does not carry this key get a 401.

    Use as a context manager (``with OpenAIServer(...) as server``) or call :meth:`start` and
    :meth:`stop`. ``async with`` works too (stopping runs in a worker thread).
    """

    vendor = "loopback"

    def __init__(self, replies: Iterable[Reply | str] = (), *, default: Reply | Responder | None = None, api_key: str | None = None) -> None:
        self._script: deque[Reply] = deque(_as_reply(r) for r in replies)
        self._default = default
        self.api_key = api_key
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> LoopbackServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread. Idempotent."""
        if self._httpd is None:
            httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
            httpd.owner = self
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.vendor}-loopback", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection. Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by the peer: nothing left to release
                continue
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def __aenter__(self) -> LoopbackServer:
        return self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started; call start() or use it as a context manager")
        return int(self._httpd.server_address[1])

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The URL to give the vendor SDK (``base_url=`` / ``server_url=``)."""
        return self.origin

    # -- script and log --------------------------------------------------
    def enqueue(self, *replies: Reply | str) -> None:
        """Append replies to the script."""
        with self._lock:
            self._script.extend(_as_reply(r) for r in replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        with self._lock:
            return len(self._script)

    def clear(self) -> None:
        """Forget recorded requests and unused scripted replies."""
        with self._lock:
            self._requests.clear()
            self._script.clear()

    # -- vendor hooks ----------------------------------------------------
    def route_ok(self, method: str, path: str) -> bool:
        raise NotImplementedError

    def presented_key(self, request: RecordedRequest) -> str | None:
        raise NotImplementedError

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def default_error_type(self, status: int) -> str:
        return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")

    def completion_body(self, request: RecordedRequest, reply: Reply) -> dict[str, Any]:
        raise NotImplementedError

    def stream_events(self, request: RecordedRequest, reply: Reply) -> Iterable[bytes]:
        raise NotImplementedError

    # -- request handling ------------------------------------------------
    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path, _, query = h.path.partition("?")
        req = RecordedRequest(h.command, path, query, MappingProxyType({k.lower(): v for k, v in h.headers.items()}), body, raw)
        with self._lock:
            self._requests.append(req)
        if not self.route_ok(req.method, req.path):
            return self._send_error(h, Reply.error(404, f"no route {req.method} {req.path} on the {self.vendor} loopback server"))
        if self.api_key is not None and self.presented_key(req) != self.api_key:
            return self._send_error(h, Reply.error(401, "invalid API key", error_type="authentication_error"))
        reply = self._next_reply(req)
        if reply.delay > 0:
            time.sleep(reply.delay)  # this handler's own thread: only this request waits
        if reply.is_error:
            return self._send_error(h, reply)
        if req.stream:
            return self._send_stream(h, req, reply)
        self._send_json(h, 200, self.completion_body(req, reply), reply.headers)

    def _next_reply(self, req: RecordedRequest) -> Reply:
        with self._lock:
            if self._script:
                return self._script.popleft()
        default = self._default
        if default is None:
            return Reply.error(418, f"the {self.vendor} loopback server has no scripted reply left (request #{len(self.requests)})")
        return _as_reply(default(req) if callable(default) else default)

    def _send_error(self, h: _Handler, reply: Reply) -> None:
        etype = reply.error_type or self.default_error_type(reply.status)
        self._send_json(h, reply.status, self.error_body(reply.status, etype, reply.error_message), reply.headers)

    @staticmethod
    def _send_json(h: _Handler, status: int, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        data = json.dumps(body).encode("utf-8")
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _send_stream(self, h: _Handler, req: RecordedRequest, reply: Reply) -> None:
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        h.send_header("connection", "close")
        for k, v in reply.headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.close_connection = True
        for event in self.stream_events(req, reply):
            h.wfile.write(event)
            h.wfile.flush()


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}


def _as_reply(value: Reply | str) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(value)
    raise TypeError(f"a scripted reply must be a Reply or a str, got {type(value).__name__}")


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless it is a str."""
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def chunks(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def prompt_text(messages: Any) -> str:
    """All text content of a request's messages (for the input-token estimate)."""
    out: list[str] = []
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "\n".join(out)


__all__ = ["LoopbackServer", "RecordedRequest", "Reply", "estimate_tokens"]
