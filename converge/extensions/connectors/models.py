"""Value types that cross the webhook bridge: inbound events and outbound actions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from converge.errors import ConfigError
from converge.extensions.connectors._redact import redact_headers, safe_url

@dataclass(frozen=True)
class InboundWebhookEvent:
    """A verified inbound webhook request, as delivered to agents.

    Attributes:
        provider: the provider profile name (the ``<provider>`` of ``/webhook/<provider>``).
        source: ``payload[profile.source_field]``, else the provider name.
        event_id: the deduplicated event id.
        occurred_at: the signed timestamp header, wall-clock seconds.
        subject: ``payload[profile.subject_field]`` as a string, else ``""``.
        payload: the JSON object that was signed.
        headers: the request headers with lower-cased names.
        trace_id: the ``X-Trace-Id`` header, if any.
    """

    provider: str
    source: str
    event_id: str
    occurred_at: float
    subject: str
    payload: dict[str, Any]
    headers: dict[str, str]
    trace_id: str | None = None


@dataclass(frozen=True)
class OutboundWebhookAction:
    """An HTTP call the connector should make on behalf of an agent.

    Construction validates the request shape (``url`` must be an absolute
    ``http``/``https`` URL, ``method`` a non-empty token, ``deadline`` finite)
    and raises :class:`~converge.errors.ConfigError` (a ``ValueError``) naming
    the field otherwise. The ``repr`` hides credential headers.

    Attributes:
        target: a name for the receiving system; one circuit breaker per target.
        method: the HTTP method (sent upper-cased).
        url: the absolute ``http(s)`` URL.
        body: the JSON object to send.
        headers: extra request headers.
        idempotency_key: sent as ``Idempotency-Key``; when ``None`` the connector
            generates one per action, so every retry of an action carries the same key.
        deadline: wall-clock seconds after which the action is dead-lettered instead of sent.
    """

    target: str
    method: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    deadline: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target:
            raise ConfigError(f"target must be a non-empty string, got {self.target!r}")
        if not isinstance(self.method, str) or not self.method.isalpha():
            raise ConfigError(f"method must be an HTTP method such as 'POST', got {self.method!r}")
        if not isinstance(self.url, str):
            raise ConfigError(f"url must be a string, got {type(self.url).__name__}")
        try:
            parts = urlsplit(self.url)
        except ValueError as exc:
            raise ConfigError(f"url is not a valid URL: {exc}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"url must be an absolute http:// or https:// URL, got {safe_url(self.url)!r}")
        if not isinstance(self.body, dict):
            raise ConfigError(f"body must be a JSON object (dict), got {type(self.body).__name__}")
        if not isinstance(self.headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise ConfigError("headers must be a dict of str to str")
        if self.idempotency_key is not None and (not isinstance(self.idempotency_key, str) or not self.idempotency_key):
            raise ConfigError(f"idempotency_key must be a non-empty string or None, got {self.idempotency_key!r}")
        if self.deadline is not None and (
            isinstance(self.deadline, bool) or not isinstance(self.deadline, (int, float)) or not math.isfinite(self.deadline)
        ):
            raise ConfigError(f"deadline must be finite wall-clock seconds or None, got {self.deadline!r}")

    def __repr__(self) -> str:
        return (
            f"OutboundWebhookAction(target={self.target!r}, method={self.method!r}, url={safe_url(self.url)!r}, "
            f"body=<{len(self.body)} keys>, headers={redact_headers(self.headers)!r}, "
            f"idempotency_key={self.idempotency_key!r}, deadline={self.deadline!r})"
        )


__all__ = ["InboundWebhookEvent", "OutboundWebhookAction"]
