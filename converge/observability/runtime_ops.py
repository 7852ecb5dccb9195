"""HTTP ``/health``, ``/ready`` and ``/metrics`` for a runtime (reference section 8.6).

A stdlib threading HTTP server on a daemon thread, as in the reference; the
thread (and every request thread) is joined by :meth:`RuntimeOpsServer.stop`,
so nothing is left running. ``astart()``/``astop()`` run the blocking
start/stop in a worker thread for callers on an event loop.

Responses:

* ``GET /health`` -> ``200 {"status": "ok"}`` / ``503 {"status": "unhealthy"}``
* ``GET /ready``  -> ``200 {"status": "ready"}`` / ``503 {"status": "not_ready"}``
* ``GET /metrics`` -> ``200`` Prometheus text (``text/plain; version=0.0.4; charset=utf-8``)
* any other path -> ``404 {"error": "not found"}``; any other method -> ``405`` with ``Allow: GET``.

A health or readiness check that raises counts as failing (``503``, logged).
Without a ``metrics_collector`` the runtime's own ``metrics_collector``
attribute is used when it has one (the reference answered an empty body).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from converge.observability._prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE

_log = logging.getLogger("converge.observability.runtime_ops")
JSON_CONTENT_TYPE = "application/json"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins request threads
    ops: RuntimeOpsServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a stalled client cannot hold a request thread (and stop()) forever

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path = urlsplit(self.path).path
        ops = self.server.ops
        if path == "/health":
            ok = ops._check("is_healthy")
            self._json(200 if ok else 503, {"status": "ok" if ok else "unhealthy"})
        elif path == "/ready":
            ok = ops._check("is_ready")
            self._json(200 if ok else 503, {"status": "ready" if ok else "not_ready"})
        elif path == "/metrics":
            try:
                text = ops._metrics_text()
            except Exception as exc:  # answer 500 and log; never kill the request thread silently
                _log.exception("ops server: formatting metrics failed")
                self._json(500, {"error": f"metrics unavailable: {type(exc).__name__}"})
                return
            self._send(200, PROMETHEUS_CONTENT_TYPE, text.encode("utf-8"))
        else:
            self._json(404, {"error": "not found"})

    def _not_allowed(self) -> None:
        body = json.dumps({"error": "method not allowed"}).encode()
        self.send_response(405)
        self.send_header("Allow", "GET")
        self.send_header("Content-Type", JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed  # noqa: N815

    def _json(self, status: int, obj: dict[str, Any]) -> None:
        self._send(status, JSON_CONTENT_TYPE, json.dumps(obj).encode("utf-8"))

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        _log.debug("ops %s - " + format, self.address_string(), *args)


class RuntimeOpsServer:
    """Serves health, readiness and metrics of ``runtime`` over HTTP.

    Args:
        runtime: any object with ``is_healthy()`` and ``is_ready()``.
        metrics_collector: source of ``/metrics`` (``format_prometheus()``).
        host: bind address (loopback by default).
        port: bind port; ``0`` picks a free one (see :attr:`address`).
    """

    def __init__(self, runtime: Any, metrics_collector: Any = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int between 0 and 65535, got {port!r}")
        self.runtime = runtime
        self.metrics_collector = metrics_collector
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Bind and serve on a daemon thread. Idempotent. Bind errors propagate."""
        with self._lock:
            if self._server is not None:
                return
            server_cls = _Server
            if ":" in self.host:
                server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
            server = server_cls((self.host, self.port), _Handler)
            server.ops = self
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.2},
                name=f"converge-ops-{server.server_address[1]}", daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        _log.info("ops server listening on %s", self.url)

    def stop(self) -> None:
        """Shut down, close the socket and join the threads. Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
            if thread.is_alive():
                _log.warning("ops server thread %s did not stop within 5 s", thread.name)

    async def astart(self) -> None:
        """:meth:`start` in a worker thread (does not block the event loop)."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """:meth:`stop` in a worker thread (does not block the event loop)."""
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> RuntimeOpsServer:
        await self.astart()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.astop()

    # -- state ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound ``(host, port)`` while running, else ``None``."""
        server = self._server
        if server is None:
            return None
        addr = server.server_address
        return str(addr[0]), int(addr[1])

    @property
    def url(self) -> str | None:
        """``http://host:port`` while running, else ``None``."""
        addr = self.address
        if addr is None:
            return None
        host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        return f"http://{host}:{addr[1]}"

    # -- request helpers (called on request threads) -------------------------
    def _check(self, method: str) -> bool:
        fn = getattr(self.runtime, method, None)
        if fn is None:
            return True
        try:
            return bool(fn())
        except Exception:  # a failing check is a failed check, and it is logged
            _log.exception("ops server: %s() raised; answering 503", method)
            return False

    def _metrics_text(self) -> str:
        collector = self.metrics_collector
        if collector is None:
            collector = getattr(self.runtime, "metrics_collector", None)
        if collector is None:
            return ""
        return collector.format_prometheus()


__all__ = ["JSON_CONTENT_TYPE", "PROMETHEUS_CONTENT_TYPE", "RuntimeOpsServer"]
