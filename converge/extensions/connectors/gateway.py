"""An HTTP-oriented facade over :class:`WebhookConnector` (what a web server calls)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from converge.errors import ConfigError
from converge.extensions.connectors.connector import Response, WebhookConnector
from converge.extensions.connectors.models import OutboundWebhookAction

_ACTION_KEYS = frozenset({"target", "method", "url", "body", "headers", "idempotency_key", "deadline"})


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _action_from_payload(payload: Any) -> OutboundWebhookAction:
    """Build an action from a JSON object; raises :class:`ConfigError` naming the bad field.

    Keys: ``target`` and ``url`` (required), ``method`` (default ``"POST"``),
    ``body`` (default ``{}``), ``headers`` (object; values stringified),
    ``idempotency_key`` and ``deadline`` (wall-clock seconds). Unknown keys are refused.
    """
    if not isinstance(payload, dict):
        raise ConfigError(f"expected a JSON object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - _ACTION_KEYS)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; accepted keys: {', '.join(sorted(_ACTION_KEYS))}")
    for required in ("target", "url"):
        if required not in payload:
            raise ConfigError(f"missing required key {required!r}")
    headers = payload.get("headers", {})
    if not isinstance(headers, dict):
        raise ConfigError("headers must be a JSON object")
    deadline = payload.get("deadline")
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, (int, float))):
        raise ConfigError(f"deadline must be a number of wall-clock seconds, got {deadline!r}")
    key = payload.get("idempotency_key")
    return OutboundWebhookAction(
        target=payload["target"],
        method=payload.get("method", "POST"),
        url=payload["url"],
        body=payload.get("body", {}),
        headers={str(k): str(v) for k, v in headers.items()},
        idempotency_key=str(key) if key is not None else None,
        deadline=float(deadline) if deadline is not None else None,
    )


class WebhookGateway:
    """HTTP-oriented facade around a :class:`WebhookConnector`.

    Attributes:
        connector: the connector doing the work.
        metrics: the connector's metrics collector.
    """

    def __init__(self, connector: WebhookConnector) -> None:
        self.connector = connector
        self.metrics = connector.metrics
        self._ready = True

    def is_healthy(self) -> bool:
        """Always ``True`` while the process serves requests."""
        return True

    def is_ready(self) -> bool:
        """``True`` unless :meth:`set_ready` turned it off (e.g. while shutting down)."""
        return self._ready

    def set_ready(self, ready: bool) -> None:
        """Switch readiness (a server sets it to ``False`` when it starts draining)."""
        self._ready = bool(ready)

    async def handle_post(
        self,
        provider: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        remote_addr: str | None = None,
        client_cert_present: bool = False,
    ) -> Response:
        """An inbound ``POST /webhook/<provider>``: ``(status, headers, body)`` from the connector."""
        return await self.connector.accept_inbound_http(
            provider, method="POST", headers=headers, raw_body=body,
            remote_addr=remote_addr, client_cert_present=client_cert_present,
        )

    async def handle_outbound_payload(self, payload: dict[str, Any]) -> tuple[int, bytes]:
        """Queue an outbound action described by a JSON object.

        Returns ``(202, {"status":"queued"})``, or ``(400, {"error": "invalid
        outbound payload: <detail>"})`` naming the bad field.
        """
        try:
            action = _action_from_payload(payload)
        except (ValueError, TypeError) as exc:
            self.metrics.inc("webhook_outbound_dropped_total", labels={"reason": "invalid"})
            return 400, _json({"error": f"invalid outbound payload: {exc}"})
        await self.connector.submit_outbound_action(action)
        return 202, _json({"status": "queued"})

    def health_payload(self) -> bytes:
        """``{"status":"ok"}``."""
        return _json({"status": "ok"})

    def ready_payload(self) -> bytes:
        """``{"status":"ready"}`` or ``{"status":"not_ready"}``."""
        return _json({"status": "ready" if self._ready else "not_ready"})

    def metrics_payload(self) -> bytes:
        """The connector's metrics in Prometheus text format (UTF-8)."""
        return self.metrics.format_prometheus().encode("utf-8")


__all__ = ["WebhookGateway"]
