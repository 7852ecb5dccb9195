"""The webhook bridge: verified inbound requests become messages or tasks; outbound actions are sent reliably.

HTTP answers of :meth:`WebhookConnector.accept_inbound_http`:

* ``202 {"status":"accepted"}`` — verified, recorded for dedupe and queued;
* ``401 {"error":"unauthorized"}`` — any failed security check. The body never
  says which check failed; the reason is logged (warning) and counted in
  ``webhook_inbound_rejected_total{reason=...}``;
* ``503 {"error":"busy"}`` — the inbound queue is full (``inbound_queue_maxsize``);
  the dedupe record is released so the provider's retry is accepted;
* ``500 {"error":"internal error"}`` — anything else, logged with its traceback
  and counted in ``webhook_inbound_error_total``.

Outbound, see :meth:`WebhookConnector.dispatch_outbound_action`. Every action
that is not delivered ends as a dead letter, in memory (``dead_letter``) and in
the store under ``webhook:dead_letter:<uuid4>``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from converge.core.message import Message
from converge.core.store import Store
from converge.core.task import Task
from converge.core.topic import Topic
from converge.extensions.connectors import _sender
from converge.extensions.connectors._dispatch import DEAD_LETTER_PREFIX, OutboundDispatchMixin
from converge.extensions.connectors._redact import SecretMap
from converge.extensions.connectors.models import InboundWebhookEvent, OutboundWebhookAction
from converge.extensions.connectors.retry import CircuitBreaker, WebhookRetryPolicy
from converge.extensions.connectors.security import (
    ProviderProfile,
    VerifiedRequest,
    WebhookSecurity,
    WebhookSecurityError,
    WebhookSecurityPolicy,
)
from converge.extensions.storage.memory import MemoryStore
from converge.observability.logging import log_struct
from converge.observability.metrics import MetricsCollector

logger = logging.getLogger(__name__)

INBOUND_TOPIC = "bridge.webhook.inbound"
OUTBOUND_TOPIC = "bridge.webhook.outbound"
JSON_HEADERS = {"Content-Type": "application/json"}
Response = tuple[int, dict[str, str], bytes]


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


class WebhookConnector(OutboundDispatchMixin):
    """Generic webhook bridge with strict inbound verification and reliable outbound dispatch.

    Args:
        provider_profiles: profiles by provider name.
        secrets: ``secret_ref -> secret`` (never shown in reprs, logs or errors).
        security_policy: inbound limits (default :class:`WebhookSecurityPolicy`).
        retry_policy: outbound retries (default :class:`WebhookRetryPolicy`).
        store: shared store for dedupe records and dead letters (default MemoryStore).
        metrics_collector: where counters go (default: a new collector, ``self.metrics``).
        connector_id: sender of inbound messages and attribute of their topic.
        outbound_sender: ``action -> (status, body)``, sync (run in a worker thread)
            or async; default: stdlib urllib in a worker thread.
        breaker_factory: makes the circuit breaker of a new target (default ``CircuitBreaker()``).
        inbound_queue_maxsize: bound of ``inbound_messages``/``inbound_tasks``; 0 = unbounded.
        dead_letter_memory_limit: how many dead letters ``dead_letter`` keeps in memory
            (all of them stay in the store).
        clock: wall-clock seconds (timestamps, deadlines, dedupe), injectable for tests.
        sleep: the coroutine used to wait between retries, injectable for tests.
        rng: random source of the retry jitter.
    """

    def __init__(
        self,
        *,
        provider_profiles: Mapping[str, ProviderProfile],
        secrets: Mapping[str, str],
        security_policy: WebhookSecurityPolicy | None = None,
        retry_policy: WebhookRetryPolicy | None = None,
        store: Store | None = None,
        metrics_collector: MetricsCollector | None = None,
        connector_id: str = "webhook-connector",
        outbound_sender: _sender.OutboundSender | None = None,
        breaker_factory: Callable[[], CircuitBreaker] = CircuitBreaker,
        inbound_queue_maxsize: int = 0,
        dead_letter_memory_limit: int = 1000,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self.metrics = metrics_collector if metrics_collector is not None else MetricsCollector()
        self.security_policy = security_policy or WebhookSecurityPolicy()
        self.retry_policy = retry_policy or WebhookRetryPolicy()
        self.provider_profiles = dict(provider_profiles)
        self.security = WebhookSecurity(
            self.security_policy, self.provider_profiles, SecretMap(secrets), store=self.store, clock=clock
        )
        self.connector_id = connector_id
        self.outbound_sender = outbound_sender
        self.breakers: dict[str, CircuitBreaker] = {}
        self._breaker_factory = breaker_factory
        self.inbound_messages: asyncio.Queue[Message] = asyncio.Queue(inbound_queue_maxsize)
        self.inbound_tasks: asyncio.Queue[Task] = asyncio.Queue(inbound_queue_maxsize)
        self.outbound_actions: asyncio.Queue[OutboundWebhookAction] = asyncio.Queue()
        self.dead_letter: deque[dict[str, Any]] = deque(maxlen=dead_letter_memory_limit)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._stopping = False

    def __repr__(self) -> str:
        return f"WebhookConnector(connector_id={self.connector_id!r}, security={self.security!r})"

    # -- inbound -----------------------------------------------------------
    async def accept_inbound_http(
        self,
        provider: str,
        *,
        method: str,
        headers: Mapping[str, str],
        raw_body: bytes,
        remote_addr: str | None = None,
        client_cert_present: bool = False,
    ) -> Response:
        """Verify one inbound request and queue it; return ``(status, headers, body)`` (see module docs)."""
        try:
            verified, record = await asyncio.to_thread(
                self._verify_and_claim, provider, method, headers, raw_body, remote_addr, client_cert_present
            )
        except WebhookSecurityError as exc:
            return self.reject(provider, exc, remote_addr=remote_addr)
        except Exception:
            return self._internal_error(provider, "verification failed")
        try:
            self._deliver(provider, verified, headers)
        except asyncio.QueueFull:
            await asyncio.to_thread(self.security.release_event, provider, verified.event_id, record)
            self.metrics.inc("webhook_inbound_error_total", labels={"reason": "queue_full"})
            logger.warning("webhook %s event %s refused: inbound queue full", provider, verified.event_id)
            return 503, {**JSON_HEADERS, "Retry-After": "1"}, _json({"error": "busy"})
        except Exception:
            await asyncio.to_thread(self.security.release_event, provider, verified.event_id, record)
            return self._internal_error(provider, "delivery failed")
        self.metrics.inc("webhook_inbound_accepted_total")
        log_struct(
            logger, logging.INFO, "webhook event accepted",
            provider=provider, event_id=verified.event_id, emit_as=verified.profile.emit_as,
        )
        return 202, dict(JSON_HEADERS), _json({"status": "accepted"})

    def precheck_inbound(
        self,
        provider: str,
        *,
        method: str,
        headers: Mapping[str, str],
        body_size: int,
        remote_addr: str | None = None,
        client_cert_present: bool = False,
    ) -> Response | None:
        """Run the header-only checks (1-9) before a server reads the body.

        Returns the 401 response (counted and logged like any rejection) or
        ``None`` when the request may proceed to :meth:`accept_inbound_http`.
        An oversized body is thus refused without being read.
        """
        try:
            self.security.check_envelope(
                provider, method=method, headers=headers, body_size=body_size,
                remote_addr=remote_addr, client_cert_present=client_cert_present,
            )
        except WebhookSecurityError as exc:
            return self.reject(provider, exc, remote_addr=remote_addr)
        return None

    def reject(self, provider: str, exc: WebhookSecurityError, *, remote_addr: str | None = None) -> Response:
        """Count and log a rejected request; the answer is a detail-free 401."""
        self.metrics.inc("webhook_inbound_rejected_total", labels={"reason": exc.reason})
        logger.warning(
            "webhook request rejected (%s: %s) provider=%r remote=%s",
            exc.reason, exc, provider[:64], remote_addr or "-",
            extra={"props": {"provider": provider[:64], "reason": exc.reason, "remote_addr": remote_addr}},
        )
        return 401, dict(JSON_HEADERS), _json({"error": "unauthorized"})

    def _internal_error(self, provider: str, what: str) -> Response:
        self.metrics.inc("webhook_inbound_error_total", labels={"reason": "internal"})
        logger.exception("webhook request from provider %r failed: %s", provider[:64], what)
        return 500, dict(JSON_HEADERS), _json({"error": "internal error"})

    def _verify_and_claim(
        self,
        provider: str,
        method: str,
        headers: Mapping[str, str],
        raw_body: bytes,
        remote_addr: str | None,
        client_cert_present: bool,
    ) -> tuple[VerifiedRequest, dict[str, float]]:
        verified = self.security.verify(
            provider, method=method, headers=headers, raw_body=raw_body,
            remote_addr=remote_addr, client_cert_present=client_cert_present,
        )
        return verified, self.security.claim_event(provider, verified.event_id)

    def _deliver(self, provider: str, verified: VerifiedRequest, headers: Mapping[str, str]) -> None:
        profile, payload = verified.profile, verified.payload
        event = InboundWebhookEvent(
            provider=provider,
            source=str(payload.get(profile.source_field, provider)),
            event_id=verified.event_id,
            occurred_at=verified.timestamp,
            subject=str(payload.get(profile.subject_field, "")),
            payload=payload,
            headers={str(k).lower(): str(v) for k, v in headers.items()},
            trace_id=headers.get("X-Trace-Id") or headers.get("x-trace-id"),
        )
        if profile.emit_as == "task":
            task = Task(objective={"type": "webhook_event", "provider": provider}, inputs={"event": dataclasses.asdict(event)})
            self.inbound_tasks.put_nowait(task)
        else:
            message = Message(
                sender=self.connector_id,
                topics=[Topic(INBOUND_TOPIC, {"connector": self.connector_id})],
                payload={"type": "webhook_event", "event": dataclasses.asdict(event)},
            )
            self.inbound_messages.put_nowait(message)

    # -- outbound: intake --------------------------------------------------
    async def submit_outbound_action(self, action: OutboundWebhookAction) -> None:
        """Queue ``action`` for :meth:`run_outbound_dispatcher`."""
        if not isinstance(action, OutboundWebhookAction):
            raise TypeError(f"action must be an OutboundWebhookAction, got {type(action).__name__}")
        await self.outbound_actions.put(action)

    async def submit_outbound_message(self, message: Message) -> bool:
        """Turn a message routed to ``bridge.webhook.outbound`` into a queued action.

        The first topic with that namespace supplies ``url`` (required),
        ``target`` (default ``"default"``), ``method`` (``"POST"``), ``headers``,
        ``idempotency_key`` and ``deadline``; the body is the message payload.
        Returns ``True`` when queued. A message without such a topic or with an
        unusable ``url`` is not queued: that is logged and counted in
        ``webhook_outbound_dropped_total{reason=...}`` and ``False`` is returned.
        """
        topic = next((t for t in message.topics if t.namespace == OUTBOUND_TOPIC), None)
        if topic is None:
            return self._drop_message(message, "no_route", f"no {OUTBOUND_TOPIC} topic")
        attrs = topic.attributes
        if not attrs.get("url"):
            return self._drop_message(message, "no_url", "the outbound topic has no url")
        headers = attrs.get("headers")
        try:
            action = OutboundWebhookAction(
                target=str(attrs.get("target") or "default"),
                method=str(attrs.get("method") or "POST"),
                url=str(attrs["url"]),
                body=message.payload,
                headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {},
                idempotency_key=str(attrs["idempotency_key"]) if attrs.get("idempotency_key") is not None else None,
                deadline=float(attrs["deadline"]) if attrs.get("deadline") is not None else None,
            )
        except (ValueError, TypeError) as exc:
            return self._drop_message(message, "invalid", str(exc))
        await self.outbound_actions.put(action)
        return True

    def _drop_message(self, message: Message, reason: str, detail: str) -> bool:
        self.metrics.inc("webhook_outbound_dropped_total", labels={"reason": reason})
        logger.warning("outbound message %s not queued: %s", message.id, detail)
        return False



__all__ = ["DEAD_LETTER_PREFIX", "INBOUND_TOPIC", "OUTBOUND_TOPIC", "WebhookConnector"]
