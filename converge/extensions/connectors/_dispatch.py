"""Outbound half of :class:`~converge.extensions.connectors.WebhookConnector`: dispatch, retries, dead letters."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from converge.core.store import Store
from converge.extensions.connectors import _sender
from converge.extensions.connectors._redact import redact_headers, safe_url
from converge.extensions.connectors.models import OutboundWebhookAction
from converge.extensions.connectors.retry import CircuitBreaker, WebhookRetryPolicy
from converge.observability.logging import log_struct
from converge.observability.metrics import MetricsCollector

logger = logging.getLogger("converge.extensions.connectors.connector")

DEAD_LETTER_PREFIX = "webhook:dead_letter:"


class OutboundDispatchMixin:
    """Reliable outbound dispatch; the connector's constructor sets the attributes below."""

    store: Store
    metrics: MetricsCollector
    retry_policy: WebhookRetryPolicy
    outbound_sender: _sender.OutboundSender | None
    breakers: dict[str, CircuitBreaker]
    dead_letter: deque[dict[str, Any]]
    outbound_actions: asyncio.Queue[OutboundWebhookAction]
    _breaker_factory: Callable[[], CircuitBreaker]
    _clock: Callable[[], float]
    _sleep: Callable[[float], Awaitable[Any]]
    _rng: random.Random | None
    _stopping: bool

    def breaker_for(self, target: str) -> CircuitBreaker:
        """The circuit breaker of ``target`` (created on first use)."""
        breaker = self.breakers.get(target)
        if breaker is None:
            breaker = self.breakers[target] = self._breaker_factory()
        return breaker

    async def dispatch_outbound_action(self, action: OutboundWebhookAction) -> bool:
        """Send ``action`` with retries; ``True`` when a 2xx came back, else it is dead-lettered.

        Per attempt: a passed ``deadline`` or an open breaker stop the action
        (dead letter ``"deadline exceeded"`` / ``"circuit open"``). A 2xx closes
        the breaker. Timeouts, network errors, 408/425/429 and 5xx count as
        breaker failures and are retried after ``compute_delay(attempt)``
        (unless the wait would pass the deadline); other statuses (3xx, 4xx)
        are final. After ``max_attempts`` the dead letter says ``"max retries
        exceeded"`` with the last error. Every retry of one action carries the
        same ``Idempotency-Key`` (generated when the action has none). If the
        dispatch is cancelled, the action is dead-lettered (``"cancelled"``)
        before the cancellation propagates.
        """
        if action.idempotency_key is None:
            action = dataclasses.replace(action, idempotency_key=uuid.uuid4().hex)
        breaker = self.breaker_for(action.target)
        policy = self.retry_policy
        attempts = 0
        last: _sender.Outcome | None = None
        try:
            while attempts < policy.max_attempts:
                if action.deadline is not None and self._clock() >= action.deadline:
                    return await self._dead(action, "deadline exceeded", "deadline", attempts, last)
                if not breaker.allow_request():
                    self.metrics.inc("webhook_outbound_circuit_open_total")
                    return await self._dead(action, "circuit open", "circuit_open", attempts, last)
                attempts += 1
                last = await _sender.attempt(action, self.outbound_sender, policy.request_timeout_sec)
                if last.kind == "ok":
                    breaker.record_success()
                    self.metrics.inc("webhook_outbound_sent_total")
                    log_struct(logger, logging.INFO, "webhook action sent", target=action.target,
                               url=safe_url(action.url), status=last.status, attempts=attempts)
                    return True
                if last.kind == "final":
                    return await self._dead(action, last.detail, "rejected", attempts, last)
                breaker.record_failure()
                if last.kind == "fatal":
                    return await self._dead(action, last.detail, "error", attempts, last)
                self.metrics.inc("webhook_outbound_retry_total")
                if attempts >= policy.max_attempts:
                    break
                delay = policy.compute_delay(attempts, rng=self._rng)
                if action.deadline is not None and self._clock() + delay >= action.deadline:
                    return await self._dead(action, "deadline exceeded", "deadline", attempts, last)
                logger.info("webhook action to %s failed (%s); retry %d in %.2fs",
                            action.target, last.detail, attempts + 1, delay)
                await self._sleep(delay)
            return await self._dead(action, "max retries exceeded", "max_retries", attempts, last)
        except asyncio.CancelledError:
            self._record_dead(action, "cancelled", "cancelled", attempts, last)
            raise

    async def _dead(
        self, action: OutboundWebhookAction, error: str, reason: str, attempts: int, last: _sender.Outcome | None
    ) -> bool:
        entry, key = self._dead_entry(action, error, reason, attempts, last)
        try:
            await asyncio.to_thread(self.store.put, key, entry)
        except Exception:
            self._store_failed(key)
        return False

    def _record_dead(
        self, action: OutboundWebhookAction, error: str, reason: str, attempts: int, last: _sender.Outcome | None
    ) -> None:
        entry, key = self._dead_entry(action, error, reason, attempts, last)
        try:
            self.store.put(key, entry)  # synchronous: this runs while a cancellation is unwinding
        except Exception:
            self._store_failed(key)

    def _dead_entry(
        self, action: OutboundWebhookAction, error: str, reason: str, attempts: int, last: _sender.Outcome | None
    ) -> tuple[dict[str, Any], str]:
        entry: dict[str, Any] = {
            # credential headers (Authorization, API keys, ...) are masked: dead letters are kept for inspection
            "action": {**dataclasses.asdict(action), "headers": redact_headers(dict(action.headers))},
            "error": error,
            "ts": self._clock(),
            "reason": reason,
            "attempts": attempts,
            "last_error": last.detail if last is not None else None,
        }
        key = f"{DEAD_LETTER_PREFIX}{uuid.uuid4()}"
        self.dead_letter.append(entry)
        self.metrics.inc("webhook_dead_letter_total", labels={"reason": reason})
        logger.warning(
            "webhook action to %s (%s %s) dead-lettered as %s: %s (attempts=%d, last error: %s)",
            action.target, action.method.upper(), safe_url(action.url), key, error, attempts, entry["last_error"],
        )
        return entry, key

    def _store_failed(self, key: str) -> None:
        self.metrics.inc("webhook_dead_letter_store_error_total")
        logger.exception("could not write dead letter %s to the store; it is kept in memory only", key)

    async def run_outbound_dispatcher(self, *, poll_interval_sec: float = 0.1) -> None:
        """Dispatch queued actions one by one until :meth:`stop_dispatcher` is called.

        The stop flag is checked at least every ``poll_interval_sec``. Actions
        still queued when it stops stay in ``outbound_actions`` (see
        :meth:`dead_letter_pending`). An unexpected error while dispatching one
        action is logged and counted (``webhook_outbound_error_total``) and the
        loop goes on.
        """
        self._stopping = False
        while not self._stopping:
            try:
                async with asyncio.timeout(poll_interval_sec):
                    action = await self.outbound_actions.get()
            except TimeoutError:
                continue
            try:
                await self.dispatch_outbound_action(action)
            except Exception:
                self.metrics.inc("webhook_outbound_error_total")
                logger.exception("dispatching webhook action to %s failed", action.target)
            finally:
                self.outbound_actions.task_done()

    def stop_dispatcher(self) -> None:
        """Ask :meth:`run_outbound_dispatcher` to return after the current action."""
        self._stopping = True

    async def dead_letter_pending(self, error: str = "dispatcher stopped") -> int:
        """Dead-letter every action still queued (e.g. at shutdown) so none is lost; return how many."""
        count = 0
        while not self.outbound_actions.empty():
            action = self.outbound_actions.get_nowait()
            self.outbound_actions.task_done()
            await self._dead(action, error, "not_sent", 0, None)
            count += 1
        return count


__all__ = ["DEAD_LETTER_PREFIX", "OutboundDispatchMixin"]
