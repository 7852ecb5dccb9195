"""Webhook connectors: strict inbound verification and reliable outbound dispatch.

``WebhookConnector`` turns verified provider webhooks into messages or tasks
and sends agents' outbound actions with retries, idempotency keys, a circuit
breaker per target and dead letters; ``WebhookGateway`` is its HTTP-facing
facade and ``converge webhook-sidecar`` serves it over HTTP
(:mod:`converge.extensions.connectors.sidecar`).
"""

from __future__ import annotations

from converge.extensions.connectors.connector import WebhookConnector
from converge.extensions.connectors.gateway import WebhookGateway
from converge.extensions.connectors.models import InboundWebhookEvent, OutboundWebhookAction
from converge.extensions.connectors.retry import CircuitBreaker, WebhookRetryPolicy
from converge.extensions.connectors.security import (
    ProviderProfile,
    WebhookSecurity,
    WebhookSecurityError,
    WebhookSecurityPolicy,
)

__all__ = [
    "CircuitBreaker",
    "InboundWebhookEvent",
    "OutboundWebhookAction",
    "ProviderProfile",
    "WebhookConnector",
    "WebhookGateway",
    "WebhookRetryPolicy",
    "WebhookSecurity",
    "WebhookSecurityError",
    "WebhookSecurityPolicy",
]
