"""Sending one outbound webhook request, and classifying what came back."""

from __future__ import annotations

import asyncio
import http.client
import inspect
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Literal, NamedTuple, Union

from converge.extensions.connectors.models import OutboundWebhookAction

SenderResult = tuple[int, bytes]
OutboundSender = Callable[[OutboundWebhookAction], Union[SenderResult, Awaitable[SenderResult]]]

_MAX_RESPONSE_BYTES = 64 * 1024
# Statuses worth retrying: the request may succeed later. Other non-2xx statuses are final.
RETRYABLE_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow redirects: a webhook body must not be re-sent to a host the caller did not name."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def urllib_send(action: OutboundWebhookAction, timeout: float) -> SenderResult:
    """Blocking HTTP call with stdlib ``urllib``; returns ``(status, body)`` for every HTTP status.

    Sends the compact-JSON body with ``Content-Type: application/json``, the
    action's headers and ``Idempotency-Key`` when set. Redirects are not
    followed (a 3xx is returned as the status). Network failures raise
    (``URLError``, ``OSError``, ``TimeoutError``). Run it in a worker thread.
    """
    data = json.dumps(action.body, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json", **action.headers}
    if action.idempotency_key:
        headers["Idempotency-Key"] = action.idempotency_key
    request = urllib.request.Request(action.url, data=data, headers=headers, method=action.method.upper())
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status), response.read(_MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read(_MAX_RESPONSE_BYTES) if exc.fp is not None else b""
        return int(exc.code), body


class Outcome(NamedTuple):
    """The classified result of one attempt.

    ``kind`` is ``"ok"`` (2xx), ``"retry"`` (worth another attempt; counts as a
    breaker failure), ``"final"`` (a non-retryable status: the target answered,
    the breaker is untouched) or ``"fatal"`` (an unexpected error: breaker
    failure, no retry). ``reason`` is a short metrics label, ``detail`` a
    human-readable text without secrets.
    """

    kind: Literal["ok", "retry", "final", "fatal"]
    reason: str
    detail: str
    status: int | None = None


async def attempt(
    action: OutboundWebhookAction, sender: OutboundSender | None, timeout: float
) -> Outcome:
    """Make one attempt with ``sender`` (default :func:`urllib_send` in a worker thread) under ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            if sender is None:
                result = await asyncio.to_thread(urllib_send, action, timeout)
            elif inspect.iscoroutinefunction(sender):
                result = await sender(action)
            else:
                result = await asyncio.to_thread(sender, action)
                if inspect.isawaitable(result):
                    result = await result
    except TimeoutError:
        return Outcome("retry", "timeout", f"no response within {timeout}s")
    except urllib.error.HTTPError as exc:  # a custom sender that raises like urllib does
        exc.close()
        return _classify((exc.code, b""))
    except urllib.error.URLError as exc:
        return Outcome("retry", "network", f"network error: {_reason_text(exc.reason)}")
    except (OSError, http.client.HTTPException) as exc:
        return Outcome("retry", "network", f"network error: {type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - classified and reported by the caller (dead letter + log)
        return Outcome("fatal", "error", f"{type(exc).__name__}: {exc}")
    return _classify(result)


def _classify(result: object) -> Outcome:
    if (
        not isinstance(result, tuple)
        or len(result) != 2
        or isinstance(result[0], bool)
        or not isinstance(result[0], int)
    ):
        return Outcome("fatal", "error", f"sender must return (status: int, body: bytes), got {type(result).__name__}")
    status = result[0]
    if 200 <= status < 300:
        return Outcome("ok", "sent", f"http {status}", status)
    if status in RETRYABLE_STATUSES:
        return Outcome("retry", "status", f"http {status}", status)
    return Outcome("final", "rejected", f"http {status} (not retryable)", status)


def _reason_text(reason: object) -> str:
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return str(reason)


__all__ = ["RETRYABLE_STATUSES", "OutboundSender", "Outcome", "SenderResult", "attempt", "urllib_send"]
