"""Extensions: storage backends, crypto, LLM agents and providers, rate limiting, webhook connectors.

Unlike the reference, importing ``converge.extensions`` does not import the
connectors package eagerly; the five re-exported names load on first access.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "ProviderProfile": "converge.extensions.connectors",
    "WebhookConnector": "converge.extensions.connectors",
    "WebhookGateway": "converge.extensions.connectors",
    "WebhookRetryPolicy": "converge.extensions.connectors",
    "WebhookSecurityPolicy": "converge.extensions.connectors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'converge.extensions' has no attribute {name!r}")


__all__ = list(_LAZY)
