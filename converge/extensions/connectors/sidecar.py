"""The webhook sidecar: a :class:`WebhookGateway` served over HTTP, with the outbound dispatcher running.

Routes:

* ``POST /webhook/<provider>`` — inbound; the header-only checks run before the
  body is read (an oversized body is refused unread). ``202`` accepted,
  ``401`` any security failure (no detail in the body), ``5xx`` other errors.
* ``POST /outbound`` — a JSON action (``target``, ``url``, ``method``, ``body``,
  ``headers``, ``idempotency_key``, ``deadline``) queued for dispatch: ``202``,
  or ``400`` naming the bad field. With ``outbound_token_ref`` configured it
  needs ``Authorization: Bearer <secret>``.
* ``GET /healthz`` (or ``/health``), ``GET /readyz`` (or ``/ready``), ``GET /metrics``
  (Prometheus text). Anything else: ``404``; a known path with the wrong method: ``405``.

Verified events are handed over through the store: an event of a profile with
``emit_as = "task"`` is submitted through a ``TaskManager`` on the sidecar's
store (a pending ``task:<id>`` that agents using the same SQLite/Redis store
pick up on their next refresh); a message becomes
``webhook:inbound:<message id>`` holding ``Message.to_dict()``.

With a ``[tls]`` table it serves HTTPS, and with ``client_ca_file`` a verified
client certificate sets ``client_cert_present`` for the mTLS check.

The sidecar is a single asyncio program (no threads): ``converge webhook-sidecar
-c FILE [--json-logs]`` prints ``webhook-sidecar listening on http(s)://HOST:PORT``
once it accepts connections, and exits with status 0 on SIGINT/SIGTERM after
draining; queued outbound actions that were not sent become dead letters.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hmac
import json
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Mapping
from typing import Any

from converge._config import close_store, create_store
from converge.coordination.task_manager import TaskManager
from converge.core.store import Store
from converge.core.task import Task
from converge.errors import ConfigError
from converge.extensions.connectors._http import HttpServer, Request, Response, json_response
from converge.extensions.connectors._redact import SecretMap
from converge.extensions.connectors._sidecar_config import SidecarConfig, load_sidecar_config
from converge.extensions.connectors.connector import WebhookConnector
from converge.extensions.connectors.gateway import WebhookGateway
from converge.extensions.connectors.retry import WebhookRetryPolicy
from converge.extensions.connectors.security import ProviderProfile, WebhookSecurityPolicy
from converge.observability.metrics import MetricsCollector

logger = logging.getLogger(__name__)

INBOUND_MESSAGE_PREFIX = "webhook:inbound:"
_METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STOP = object()  # tells the hand-over task to return once everything before it is stored


class WebhookSidecar:
    """The sidecar as an async context manager (``async with WebhookSidecar(cfg) as s: s.address``).

    Args:
        config: the validated configuration.
        store: use this store instead of the configured backend (not closed by the sidecar).
        metrics_collector: where the connector counts (default: a new collector).
        outbound_sender: passed to the connector (default: urllib in a worker thread).
        poll_interval_sec: how often the dispatcher checks its stop flag.
        drain_timeout_sec: how long :meth:`aclose` waits for requests and the action in flight.
    """

    def __init__(
        self,
        config: SidecarConfig,
        *,
        store: Store | None = None,
        metrics_collector: MetricsCollector | None = None,
        outbound_sender: Any = None,
        poll_interval_sec: float = 0.1,
        drain_timeout_sec: float = 5.0,
    ) -> None:
        self.config = config
        self._given_store = store
        self._metrics = metrics_collector
        self._sender = outbound_sender
        self._poll = poll_interval_sec
        self._drain = drain_timeout_sec
        self.store: Store | None = None
        self.connector: WebhookConnector | None = None
        self.gateway: WebhookGateway | None = None
        self._server: HttpServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._task_manager: TaskManager | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the sidecar is not started")
        return self._server.address

    async def start(self) -> None:
        """Open the store, bind the HTTP server and start the dispatcher and the hand-over task."""
        if self._server is not None:
            return
        cfg = self.config
        if self._given_store is not None:  # (an empty MemoryStore is falsy: compare with None)
            self.store = self._given_store
        else:
            self.store = await asyncio.to_thread(create_store, cfg.store_backend, cfg.store_path)
        self.connector = WebhookConnector(
            provider_profiles=cfg.provider_profiles, secrets=cfg.secrets, security_policy=cfg.security_policy,
            retry_policy=cfg.retry_policy, store=self.store, metrics_collector=self._metrics,
            connector_id=cfg.connector_id, outbound_sender=self._sender,
        )
        self.gateway = WebhookGateway(self.connector)
        server = HttpServer(self._handle, cfg.bind, cfg.port, ssl_context=_ssl_context(cfg))
        await server.start()
        self._server = server
        self._tasks = [
            asyncio.create_task(self.connector.run_outbound_dispatcher(poll_interval_sec=self._poll)),
            asyncio.create_task(self._hand_over()),
        ]

    async def aclose(self) -> None:
        """Stop accepting, drain requests, stop the dispatcher, dead-letter unsent actions; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        assert self.gateway is not None and self.connector is not None
        self.gateway.set_ready(False)
        await server.aclose(self._drain)
        self.connector.stop_dispatcher()
        dispatcher, hand_over = self._tasks
        self._tasks = []
        self.connector.inbound_messages.put_nowait(_STOP)  # type: ignore[arg-type]
        await asyncio.wait({dispatcher, hand_over}, timeout=self._drain + self._poll)
        for task in (dispatcher, hand_over):
            task.cancel()
        await asyncio.gather(dispatcher, hand_over, return_exceptions=True)
        await self._flush_inbound()
        await self.connector.dead_letter_pending("sidecar stopped before sending")
        if self._given_store is None:
            await asyncio.to_thread(close_store, self.store)

    async def __aenter__(self) -> WebhookSidecar:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- hand-over of verified events to the store -------------------------
    async def _hand_over(self) -> None:
        assert self.connector is not None
        messages, tasks = self.connector.inbound_messages, self.connector.inbound_tasks
        while True:
            get_msg = asyncio.ensure_future(messages.get())
            get_task = asyncio.ensure_future(tasks.get())
            try:
                await asyncio.wait({get_msg, get_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for fut in (get_msg, get_task):
                    if not fut.done():
                        fut.cancel()
            stopping = False
            for fut in (get_msg, get_task):
                if fut.done() and not fut.cancelled():
                    item = fut.result()
                    if item is _STOP:
                        stopping = True
                    else:
                        await self._store_event(item)
            if stopping:
                return

    async def _flush_inbound(self) -> None:
        assert self.connector is not None
        for queue in (self.connector.inbound_messages, self.connector.inbound_tasks):
            while not queue.empty():
                item = queue.get_nowait()
                if item is not _STOP:
                    await self._store_event(item)

    async def _store_event(self, item: Any) -> None:
        assert self.store is not None and self.connector is not None
        if isinstance(item, Task):
            # Through a TaskManager, so the pending index and change log that agents refresh from see it.
            key = f"task:{item.id}"
            if self._task_manager is None:
                self._task_manager = TaskManager(self.store)
            write: Callable[[], Any] = functools.partial(self._task_manager.submit, item)
        else:
            key = f"{INBOUND_MESSAGE_PREFIX}{item.id}"
            write = functools.partial(self.store.put, key, item.to_dict())
        try:
            await asyncio.to_thread(write)
        except Exception:
            self.connector.metrics.inc("webhook_inbound_error_total", labels={"reason": "store"})
            logger.exception("could not hand verified webhook event over to the store as %s", key)

    # -- routing -------------------------------------------------------------
    async def _handle(self, req: Request) -> Response:
        assert self.connector is not None and self.gateway is not None
        if req.path.startswith("/webhook/"):
            return await self._inbound(req, req.path[len("/webhook/"):])
        if req.path == "/outbound":
            return await self._outbound(req) if req.method == "POST" else _status(405)
        gateway = self.gateway
        routes = {
            "/healthz": lambda: json_response(200, gateway.health_payload()),
            "/health": lambda: json_response(200, gateway.health_payload()),
            "/readyz": lambda: json_response(200 if gateway.is_ready() else 503, gateway.ready_payload()),
            "/ready": lambda: json_response(200 if gateway.is_ready() else 503, gateway.ready_payload()),
            "/metrics": lambda: (200, {"Content-Type": _METRICS_CONTENT_TYPE}, gateway.metrics_payload()),
        }
        route = routes.get(req.path)
        if route is None:
            return _status(404)
        return route() if req.method == "GET" else _status(405)

    async def _inbound(self, req: Request, provider: str) -> Response:
        assert self.connector is not None
        if not provider or "/" in provider:
            return _status(404)
        size = req.content_length() if req.method == "POST" else 0
        refused = self.connector.precheck_inbound(
            provider, method=req.method, headers=req.headers, body_size=size,
            remote_addr=req.remote_addr, client_cert_present=req.client_cert_present,
        )
        if refused is not None:
            return refused
        body = await req.read_body(self.config.security_policy.max_payload_bytes)
        return await self.connector.accept_inbound_http(
            provider, method=req.method, headers=req.headers, raw_body=body,
            remote_addr=req.remote_addr, client_cert_present=req.client_cert_present,
        )

    async def _outbound(self, req: Request) -> Response:
        assert self.gateway is not None
        token_ref = self.config.outbound_token_ref
        if token_ref is not None:
            expected = f"Bearer {self.config.secrets[token_ref]}".encode()
            if not hmac.compare_digest(expected, req.header("authorization").encode("utf-8", "surrogateescape")):
                self.gateway.metrics.inc("webhook_outbound_unauthorized_total")
                logger.warning("POST /outbound from %s refused: missing or wrong bearer token", req.remote_addr)
                return json_response(401, b'{"error":"unauthorized"}')
        body = await req.read_body(self.config.security_policy.max_payload_bytes)
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return json_response(400, b'{"error":"invalid json"}')
        status, answer = await self.gateway.handle_outbound_payload(payload)
        return json_response(status, answer)


def _ssl_context(cfg: SidecarConfig) -> ssl.SSLContext | None:
    if cfg.tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cfg.tls.cert_file, cfg.tls.key_file)
    if cfg.tls.client_ca_file is not None:
        context.load_verify_locations(cfg.tls.client_ca_file)
        # Optional: a request without a certificate still gets an answer (401 from the mTLS check, counted).
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _status(code: int) -> Response:
    text = {404: "not found", 405: "method not allowed"}[code]
    return json_response(code, json.dumps({"error": text}).encode())


async def serve(config: SidecarConfig, *, stop: asyncio.Event | None = None, announce: bool = True) -> None:
    """Run the sidecar until ``stop`` is set, or until SIGINT/SIGTERM when ``stop`` is ``None``."""
    loop = asyncio.get_running_loop()
    own_signals = stop is None
    stop = stop or asyncio.Event()
    if own_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with WebhookSidecar(config) as sidecar:
            host, port = sidecar.address
            logger.info("webhook sidecar listening on %s:%d", host, port)
            if announce:
                scheme = "https" if config.tls is not None else "http"
                print(f"webhook-sidecar listening on {scheme}://{host}:{port}", flush=True)
            await stop.wait()
            logger.info("webhook sidecar stopping")
    finally:
        if own_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def run_webhook_sidecar(
    *,
    bind: str,
    port: int,
    provider_profiles: Mapping[str, ProviderProfile],
    secrets: Mapping[str, str],
    security_policy: WebhookSecurityPolicy | None = None,
    retry_policy: WebhookRetryPolicy | None = None,
) -> None:
    """Blocking: serve until SIGINT/SIGTERM. For programs only; inside async code use :class:`WebhookSidecar`."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("run_webhook_sidecar() blocks; inside a running event loop use `async with WebhookSidecar(...)`")
    config = SidecarConfig(
        provider_profiles=dict(provider_profiles), secrets=SecretMap(secrets), bind=bind, port=port,
        security_policy=security_policy or WebhookSecurityPolicy(), retry_policy=retry_policy or WebhookRetryPolicy(),
    )
    asyncio.run(serve(config))


def _load_sidecar_config(path: str) -> tuple[dict[str, ProviderProfile], dict[str, str], str, int]:
    """Reference-compatible loader: ``(providers, secrets, bind, port)``; see :func:`load_sidecar_config`."""
    cfg = load_sidecar_config(path)
    return cfg.provider_profiles, dict(cfg.secrets), cfg.bind, cfg.port


def build_parser(prog: str = "converge-webhook-sidecar") -> argparse.ArgumentParser:
    """The sidecar's argument parser."""
    parser = argparse.ArgumentParser(prog=prog, description="Serve webhook ingress/egress for converge agents.")
    parser.add_argument("-c", "--config", required=True, help="TOML (or JSON) sidecar config file")
    parser.add_argument("--json-logs", action="store_true", help="log one JSON object per line")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Program entry: parse ``argv``, load the config and serve; returns the exit status (2 = bad config)."""
    args = build_parser().parse_args(argv)
    from converge.observability.logging import configure_logging

    configure_logging(logging.INFO, json_format=args.json_logs, stream=sys.stderr)
    try:
        config = load_sidecar_config(args.config)
    except ConfigError as exc:
        print(f"converge webhook-sidecar: error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config))
    except OSError as exc:  # the address is in use, a TLS file does not load, the store is unreachable...
        print(f"converge webhook-sidecar: error: could not start on {config.bind}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["INBOUND_MESSAGE_PREFIX", "WebhookSidecar", "main", "run_webhook_sidecar", "serve"]
