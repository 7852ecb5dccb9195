"""Strict verification of inbound webhook requests.

:meth:`WebhookSecurity.validate_and_extract` runs the reference's checks in
the reference's order and raises :class:`WebhookSecurityError` at the first
failure. The error's ``reason`` is a short code (``"signature"``,
``"duplicate"``, ...) for metrics; its message says what failed but never
includes a secret.

Differences from the reference, each closing a hole:

* the signature header may carry an ``"<algorithm>="`` prefix (``sha256=...``)
  and upper-case hex; comparison is constant-time on bytes;
* a non-finite timestamp (``nan``, ``inf``) is an invalid timestamp (the
  reference let ``nan`` through the skew check);
* the content type is compared on the media type (``application/jsonx`` is
  not ``application/json``); the IP allowlist accepts CIDR networks;
* dedupe is one atomic ``put_if_absent`` per request: concurrent duplicates
  are accepted exactly once. Expired records are replaced atomically
  (``compare_and_set``) when their event id comes again, and a sweep removes
  long-expired records at most once per ``idempotency_ttl_sec`` instead of
  scanning every key on every request;
* bad profiles fail at construction (see :class:`ProviderProfile`).
"""

from __future__ import annotations

import hmac
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from converge.core.store import Store
from converge.errors import PolicyDenied
from converge.extensions.connectors._policy import ProviderProfile, WebhookSecurityPolicy
from converge.extensions.connectors._redact import SecretMap
from converge.extensions.storage.memory import MemoryStore

DEDUPE_PREFIX = "webhook:dedupe:"
EVENT_ID_HEADER = "x-webhook-event-id"
_MAX_EVENT_ID_LEN = 512


class WebhookSecurityError(PolicyDenied, ValueError):
    """An inbound webhook request failed verification.

    Attributes:
        reason: a short code for metrics: ``method``, ``provider``, ``ip``,
            ``mtls``, ``size``, ``content_type``, ``headers``, ``timestamp``,
            ``skew``, ``json``, ``fields``, ``secret``, ``canonicalization``,
            ``signature``, ``event_id`` or ``duplicate``.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class VerifiedRequest(NamedTuple):
    """What a request that passed every check but dedupe carries."""

    profile: ProviderProfile
    payload: dict[str, Any]
    event_id: str
    timestamp: float


def _fail(message: str, reason: str) -> WebhookSecurityError:
    return WebhookSecurityError(message, reason=reason)


class WebhookSecurity:
    """Verifies inbound requests and records event ids for dedupe.

    Args:
        policy: the limits to enforce.
        provider_profiles: profiles by provider name.
        secrets: ``secret_ref -> secret``; held in a mapping whose ``repr`` hides the values.
        store: where dedupe records live (``webhook:dedupe:<provider>:<event_id>``);
            share it between instances to dedupe across processes. Atomic
            dedupe needs a store with ``atomic_put_if_absent``. Default: a new MemoryStore.
        clock: wall-clock seconds, injectable for tests.
    """

    def __init__(
        self,
        policy: WebhookSecurityPolicy,
        provider_profiles: Mapping[str, ProviderProfile],
        secrets: Mapping[str, str],
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.provider_profiles = dict(provider_profiles)
        self._secrets = SecretMap(secrets)
        self.store: Store = store if store is not None else MemoryStore()
        self._clock = clock
        self._sweep_lock = threading.Lock()
        self._next_sweep_at = clock() + policy.idempotency_ttl_sec

    def __repr__(self) -> str:
        return f"WebhookSecurity(providers={sorted(self.provider_profiles)!r}, secrets={self._secrets!r})"

    # -- the reference entry point ---------------------------------------
    def validate_and_extract(
        self,
        provider: str,
        *,
        method: str,
        headers: Mapping[str, str],
        raw_body: bytes,
        remote_addr: str | None = None,
        client_cert_present: bool = False,
    ) -> tuple[ProviderProfile, dict[str, Any], str, float]:
        """Run every check, record the event id, and return ``(profile, payload, event_id, timestamp)``.

        Raises:
            WebhookSecurityError: at the first failing check (see the module docstring for the order).
        """
        verified = self.verify(
            provider, method=method, headers=headers, raw_body=raw_body,
            remote_addr=remote_addr, client_cert_present=client_cert_present,
        )
        self.claim_event(provider, verified.event_id)
        return verified.profile, verified.payload, verified.event_id, verified.timestamp

    # -- the checks, split so a server can reject before reading a body ----
    def check_envelope(
        self,
        provider: str,
        *,
        method: str,
        headers: Mapping[str, str],
        body_size: int,
        remote_addr: str | None = None,
        client_cert_present: bool = False,
    ) -> tuple[ProviderProfile, dict[str, str], float]:
        """Checks 1-9 (everything that needs only the headers and the body size).

        Returns the profile, the headers with lower-cased names and the timestamp.
        """
        if method.upper() != "POST":
            raise _fail("only POST is allowed", "method")
        profile = self.provider_profiles.get(provider)
        if profile is None:
            raise _fail("unknown provider", "provider")
        policy = self.policy
        if policy.ip_allowlist and not policy.allows_address(remote_addr):
            raise _fail("remote IP not allowlisted", "ip")
        if policy.require_mtls and not client_cert_present:
            raise _fail("mTLS client certificate required", "mtls")
        if body_size > policy.max_payload_bytes:
            raise _fail("payload too large", "size")
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        media_type = lowered.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type not in policy.allowed_content_types:
            raise _fail("content type not allowed", "content_type")
        signature = lowered.get(profile.signature_header.lower(), "").strip()
        stamp = lowered.get(profile.timestamp_header.lower(), "").strip()
        if not signature or not stamp:
            raise _fail("missing signature headers", "headers")
        try:
            ts = float(stamp)
        except ValueError:
            raise _fail("invalid timestamp header", "timestamp") from None
        if not math.isfinite(ts):
            raise _fail("invalid timestamp header", "timestamp")
        if abs(self._clock() - ts) > policy.timestamp_skew_limit_sec:
            raise _fail("timestamp outside allowed skew window", "skew")
        return profile, lowered, ts

    def verify(
        self,
        provider: str,
        *,
        method: str,
        headers: Mapping[str, str],
        raw_body: bytes,
        remote_addr: str | None = None,
        client_cert_present: bool = False,
    ) -> VerifiedRequest:
        """Checks 1-15: everything except dedupe. Touches no store."""
        profile, lowered, ts = self.check_envelope(
            provider, method=method, headers=headers, body_size=len(raw_body),
            remote_addr=remote_addr, client_cert_present=client_cert_present,
        )
        try:
            payload = json.loads(bytes(raw_body).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _fail("invalid JSON payload", "json") from None
        if not isinstance(payload, dict):
            raise _fail("payload must be a JSON object", "json")
        for name in profile.required_payload_fields:
            if name not in payload:
                raise _fail(f"missing required payload field: {name}", "fields")
        secret = self._secrets.get(profile.secret_ref, "")
        if not secret:
            raise _fail("provider secret not configured", "secret")
        if profile.canonicalization == "raw_body":
            canonical = bytes(raw_body)
        elif profile.canonicalization == "json_sorted":
            canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
        else:  # unreachable for validated profiles; kept for profiles built around validation
            raise _fail(f"unsupported canonicalization: {profile.canonicalization}", "canonicalization")
        expected = hmac.new(secret.encode("utf-8"), canonical, profile.signature_algorithm).hexdigest()
        if not hmac.compare_digest(expected.encode("ascii"), _normalise_signature(lowered, profile)):
            raise _fail("signature mismatch", "signature")
        event_id = payload.get(profile.event_id_field) or lowered.get(EVENT_ID_HEADER)
        if not isinstance(event_id, str) or not event_id or len(event_id) > _MAX_EVENT_ID_LEN:
            raise _fail("missing or invalid event id", "event_id")
        try:
            event_id.encode("utf-8")  # a lone surrogate cannot become a dedupe key
        except UnicodeEncodeError:
            raise _fail("missing or invalid event id (not encodable as UTF-8)", "event_id") from None
        return VerifiedRequest(profile, payload, event_id, ts)

    # -- dedupe ------------------------------------------------------------
    def claim_event(self, provider: str, event_id: str) -> dict[str, float]:
        """Record ``event_id`` as seen, atomically; return the stored record.

        Raises:
            WebhookSecurityError: ``"duplicate event id"`` when a live record exists.
        """
        key = f"{DEDUPE_PREFIX}{provider}:{event_id}"
        now = self._clock()
        record = {"seen_at": now}
        self._maybe_sweep(now)
        for _ in range(2):  # a second round covers a record deleted between our two calls
            if self.store.put_if_absent(key, record):
                return record
            existing = self.store.get(key)
            if existing is None:
                continue
            if self._expired(existing, now, self.policy.idempotency_ttl_sec) and self.store.compare_and_set(
                key, existing, record
            ):
                return record
            break
        raise _fail("duplicate event id", "duplicate")

    def release_event(self, provider: str, event_id: str, record: dict[str, float]) -> None:
        """Forget a claimed event id so the provider's retry is accepted (used when delivery failed).

        Only our own record is removed; a newer record written by someone else is kept.
        """
        key = f"{DEDUPE_PREFIX}{provider}:{event_id}"
        self.store.compare_and_delete(key, record)

    def purge_expired(self, *, grace_sec: float | None = None) -> int:
        """Delete dedupe records older than ``ttl + grace`` (default grace: one ttl); return how many.

        The grace period keeps the sweep away from records that a concurrent
        request may be renewing through ``compare_and_set``.
        """
        ttl = self.policy.idempotency_ttl_sec
        limit = ttl + (ttl if grace_sec is None else grace_sec)
        now = self._clock()
        removed = 0
        for key in self.store.list(DEDUPE_PREFIX):
            value = self.store.get(key)
            # compare_and_delete: a record renewed meanwhile (compare_and_set) is never removed
            if value is not None and self._expired(value, now, limit) and self.store.compare_and_delete(key, value):
                removed += 1
        return removed

    def _maybe_sweep(self, now: float) -> None:
        if now < self._next_sweep_at or not self._sweep_lock.acquire(blocking=False):
            return
        try:
            self._next_sweep_at = now + self.policy.idempotency_ttl_sec
            self.purge_expired()
        finally:
            self._sweep_lock.release()

    @staticmethod
    def _expired(value: Any, now: float, limit: float) -> bool:
        if not isinstance(value, dict):
            return True
        seen_at = value.get("seen_at")
        if isinstance(seen_at, bool) or not isinstance(seen_at, (int, float)):
            return True
        return now - seen_at > limit


def _normalise_signature(lowered_headers: Mapping[str, str], profile: ProviderProfile) -> bytes:
    value = lowered_headers.get(profile.signature_header.lower(), "").strip()
    prefix = f"{profile.signature_algorithm}="
    if value[: len(prefix)].lower() == prefix:
        value = value[len(prefix):]
    return value.strip().lower().encode("utf-8", "surrogateescape")


__all__ = [
    "DEDUPE_PREFIX",
    "ProviderProfile",
    "VerifiedRequest",
    "WebhookSecurity",
    "WebhookSecurityError",
    "WebhookSecurityPolicy",
]
