"""Inbound webhook verification: check order, HMAC, dedupe (atomic, expiring), no leaked secrets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

import pytest

from converge.errors import ConfigError, PolicyDenied
from converge.extensions.connectors import (
    ProviderProfile,
    WebhookConnector,
    WebhookSecurity,
    WebhookSecurityError,
    WebhookSecurityPolicy,
)
from converge.extensions.storage.memory import MemoryStore
from converge.extensions.storage.sqlite_store import SQLiteStore

SECRET = "secret-1"
A6_BODY = b'{"event_id": "e1", "subject": "hello", "source": "ext"}'


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def a6_headers(body: bytes = A6_BODY, ts: float | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Webhook-Timestamp": str(time.time() if ts is None else ts),
        "X-Webhook-Signature": sign(body),
    }


def a6_connector(**kwargs) -> WebhookConnector:
    return WebhookConnector(
        provider_profiles={"acme": ProviderProfile(name="acme", secret_ref="acme_secret")},
        secrets={"acme_secret": SECRET},
        **kwargs,
    )


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a6_example_accepted_then_duplicate_401_without_detail():
    connector = a6_connector()
    headers = a6_headers()
    status, resp_headers, body = await connector.accept_inbound_http(
        "acme", method="POST", headers=headers, raw_body=A6_BODY
    )
    assert (status, resp_headers, json.loads(body)) == (202, {"Content-Type": "application/json"}, {"status": "accepted"})
    message = connector.inbound_messages.get_nowait()
    assert message.sender == "webhook-connector"
    assert [str(t) for t in message.topics] == ["bridge.webhook.inbound[connector=webhook-connector]v1.0"]
    assert message.signature == b""
    event = message.payload["event"]
    assert message.payload["type"] == "webhook_event"
    assert event == {
        "provider": "acme",
        "source": "ext",
        "event_id": "e1",
        "occurred_at": float(headers["X-Webhook-Timestamp"]),
        "subject": "hello",
        "payload": {"event_id": "e1", "subject": "hello", "source": "ext"},
        "headers": {k.lower(): v for k, v in headers.items()},
        "trace_id": None,
    }
    assert connector.store.get("webhook:dedupe:acme:e1")["seen_at"] == pytest.approx(time.time(), abs=60)

    status, _, body = await connector.accept_inbound_http("acme", method="POST", headers=headers, raw_body=A6_BODY)
    assert (status, json.loads(body)) == (401, {"error": "unauthorized"})
    assert connector.inbound_messages.empty()
    assert connector.metrics.get_counter("webhook_inbound_accepted_total") == 1
    assert connector.metrics.get_counter("webhook_inbound_rejected_total", labels={"reason": "duplicate"}) == 1


async def test_every_check_in_reference_order():
    """Start from a request that fails every check and repair one check at a time.

    Each step must be rejected by exactly the next check in the reference order,
    which proves the order (a later check never pre-empts an earlier one).
    """
    clock = FakeClock()
    store = MemoryStore()
    policy = WebhookSecurityPolicy(
        ip_allowlist=("10.0.0.0/8",), require_mtls=True, max_payload_bytes=256, timestamp_skew_limit_sec=300
    )
    profile = ProviderProfile(name="acme", secret_ref="acme_secret", required_payload_fields=("subject",))

    def security(secrets):
        return WebhookSecurity(policy, {"acme": profile}, secrets, store=store, clock=clock)

    good = {"acme_secret": SECRET}
    req = {
        "provider": "nope", "method": "GET", "remote_addr": "192.168.1.1", "client_cert_present": False,
        "raw_body": b"x" * 300, "headers": {"Content-Type": "text/plain"},
    }
    body_no_id = b'{"subject": "hello", "source": "ext"}'
    steps = [
        ("only POST is allowed", "method", {"method": "POST"}),
        ("unknown provider", "provider", {"provider": "acme"}),
        ("remote IP not allowlisted", "ip", {"remote_addr": "10.1.2.3"}),
        ("mTLS client certificate required", "mtls", {"client_cert_present": True}),
        ("payload too large", "size", {"raw_body": b"not json"}),
        ("content type not allowed", "content_type", {"headers": {"Content-Type": "application/json; charset=utf-8"}}),
        ("missing signature headers", "headers",
         {"headers": {"content-type": "application/json", "X-Webhook-Signature": "00", "X-Webhook-Timestamp": "abc"}}),
        ("invalid timestamp header", "timestamp",
         {"headers": {"content-type": "application/json", "X-Webhook-Signature": "00",
                      "X-Webhook-Timestamp": str(clock.now - 301)}}),
        ("timestamp outside allowed skew window", "skew",
         {"headers": {"content-type": "application/json", "X-Webhook-Signature": "00",
                      "X-Webhook-Timestamp": str(clock.now - 299)}}),
        ("invalid JSON payload", "json", {"raw_body": b"[1]"}),
        ("payload must be a JSON object", "json", {"raw_body": b'{"source": "ext"}'}),
        ("missing required payload field: subject", "fields", {"raw_body": body_no_id}),
        ("provider secret not configured", "secret", {"secrets": good}),
        ("signature mismatch", "signature",
         {"headers": {"content-type": "application/json", "X-Webhook-Signature": "sha256=" + sign(body_no_id),
                      "X-Webhook-Timestamp": str(clock.now)}}),
        ("missing or invalid event id", "event_id",
         {"headers": {"content-type": "application/json", "X-Webhook-Signature": "sha256=" + sign(body_no_id),
                      "X-Webhook-Timestamp": str(clock.now), "X-Webhook-Event-Id": "e7"}}),
    ]
    secrets: dict[str, str] = {"acme_secret": ""}
    for message, reason, fix in steps:
        with pytest.raises(WebhookSecurityError) as info:
            security(secrets).validate_and_extract(**req)
        assert (str(info.value), info.value.reason) == (message, reason)
        if "secrets" in fix:
            secrets = fix["secrets"]
        else:
            req.update(fix)
    result_profile, payload, event_id, ts = security(secrets).validate_and_extract(**req)
    assert (result_profile, payload, event_id, ts) == (profile, {"subject": "hello", "source": "ext"}, "e7", clock.now)
    with pytest.raises(WebhookSecurityError, match="^duplicate event id$") as info:
        security(secrets).validate_and_extract(**req)
    assert info.value.reason == "duplicate"
    assert store.list() == ["webhook:dedupe:acme:e7"]


def test_security_error_is_a_value_error_and_policy_denied():
    assert issubclass(WebhookSecurityError, ValueError)
    assert issubclass(WebhookSecurityError, PolicyDenied)


@pytest.mark.parametrize(
    "signature",
    [sign(A6_BODY), "sha256=" + sign(A6_BODY), "SHA256=" + sign(A6_BODY).upper(), f"  {sign(A6_BODY)} "],
)
def test_signature_forms_accepted(signature):
    sec = WebhookSecurity(WebhookSecurityPolicy(), {"acme": ProviderProfile("acme", "s")}, {"s": SECRET})
    headers = {**a6_headers(), "X-Webhook-Signature": signature}
    assert sec.validate_and_extract("acme", method="post", headers=headers, raw_body=A6_BODY)[2] == "e1"


@pytest.mark.parametrize(
    "signature",
    ["sha1=" + sign(A6_BODY), sign(A6_BODY)[:-1], sign(A6_BODY, "other"), "é" * 64, sign(A6_BODY + b" ")],
)
def test_bad_signatures_rejected(signature):
    sec = WebhookSecurity(WebhookSecurityPolicy(), {"acme": ProviderProfile("acme", "s")}, {"s": SECRET})
    headers = {**a6_headers(), "X-Webhook-Signature": signature}
    with pytest.raises(WebhookSecurityError, match="signature mismatch"):
        sec.validate_and_extract("acme", method="POST", headers=headers, raw_body=A6_BODY)


def test_json_sorted_canonicalization_and_sha512():
    profile = ProviderProfile("acme", "s", canonicalization="json_sorted", signature_algorithm="sha512")
    sec = WebhookSecurity(WebhookSecurityPolicy(), {"acme": profile}, {"s": SECRET})
    body = b'{ "subject": "x",  "event_id": "e2" }'
    canonical = b'{"event_id":"e2","subject":"x"}'
    headers = {**a6_headers(body), "X-Webhook-Signature": hmac.new(SECRET.encode(), canonical, "sha512").hexdigest()}
    assert sec.validate_and_extract("acme", method="POST", headers=headers, raw_body=body)[2] == "e2"


@pytest.mark.parametrize("stamp", ["nan", "inf", "-inf", ""])
def test_non_finite_or_empty_timestamp_rejected(stamp):
    sec = WebhookSecurity(WebhookSecurityPolicy(), {"acme": ProviderProfile("acme", "s")}, {"s": SECRET})
    headers = {**a6_headers(), "X-Webhook-Timestamp": stamp}
    with pytest.raises(WebhookSecurityError) as info:
        sec.validate_and_extract("acme", method="POST", headers=headers, raw_body=A6_BODY)
    assert info.value.reason in {"timestamp", "headers"}


@pytest.mark.parametrize("ctype", ["application/jsonx", "text/json", "", "multipart/form-data"])
def test_content_type_compared_on_media_type(ctype):
    sec = WebhookSecurity(WebhookSecurityPolicy(), {"acme": ProviderProfile("acme", "s")}, {"s": SECRET})
    headers = {**a6_headers(), "Content-Type": ctype}
    with pytest.raises(WebhookSecurityError, match="content type not allowed"):
        sec.validate_and_extract("acme", method="POST", headers=headers, raw_body=A6_BODY)


@pytest.mark.parametrize(
    ("allow", "addr", "ok"),
    [
        (("127.0.0.1",), "127.0.0.1", True),
        (("10.0.0.0/8",), "10.200.3.4", True),
        (("10.0.0.0/8",), "::ffff:10.0.0.1", True),
        (("10.0.0.0/8",), "11.0.0.1", False),
        (("10.0.0.0/8",), None, False),
        (("10.0.0.0/8",), "not-an-ip", False),
        (("2001:db8::/32",), "2001:db8::1", True),
    ],
)
def test_ip_allowlist(allow, addr, ok):
    policy = WebhookSecurityPolicy(ip_allowlist=allow)
    assert policy.allows_address(addr) is ok


def test_event_id_from_header_when_payload_has_none():
    sec = WebhookSecurity(WebhookSecurityPolicy(), {"acme": ProviderProfile("acme", "s")}, {"s": SECRET})
    body = b'{"subject": "x"}'
    headers = {**a6_headers(body), "X-Webhook-Event-Id": "hdr-1"}
    assert sec.validate_and_extract("acme", method="POST", headers=headers, raw_body=body)[2] == "hdr-1"
    bad = b'{"event_id": 5}'
    with pytest.raises(WebhookSecurityError, match="missing or invalid event id"):
        sec.validate_and_extract("acme", method="POST", headers=a6_headers(bad), raw_body=bad)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"canonicalization": "xml"}, "canonicalization"),
        ({"signature_algorithm": "md4x"}, "signature_algorithm"),
        ({"emit_as": "event"}, "emit_as"),
        ({"required_payload_fields": "subject"}, "required_payload_fields"),
    ],
)
def test_bad_profile_fails_at_construction(kwargs, field):
    base = {"name": "acme", "secret_ref": "s"}
    with pytest.raises(ConfigError, match=field):
        ProviderProfile(**{**base, **kwargs})


def test_profile_list_fields_become_tuples():
    assert ProviderProfile("a", "s", required_payload_fields=["x", "y"]).required_payload_fields == ("x", "y")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_payload_bytes": 0}, "max_payload_bytes"),
        ({"idempotency_ttl_sec": 0}, "idempotency_ttl_sec"),
        ({"ip_allowlist": ("10.0.0.0/33",)}, "ip_allowlist"),
        ({"allowed_content_types": "application/json"}, "allowed_content_types"),
        ({"require_mtls": "yes"}, "require_mtls"),
    ],
)
def test_bad_policy_fails_at_construction(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        WebhookSecurityPolicy(**kwargs)


# -- dedupe ----------------------------------------------------------------------------


async def test_concurrent_duplicates_delivered_once():
    connector = a6_connector()
    headers = a6_headers()
    results = await asyncio.gather(
        *(connector.accept_inbound_http("acme", method="POST", headers=headers, raw_body=A6_BODY) for _ in range(32))
    )
    statuses = sorted(r[0] for r in results)
    assert statuses == [202] + [401] * 31
    assert connector.inbound_messages.qsize() == 1


def _hammer(path, n_connectors: int, n_requests: int) -> list[int]:
    """n connectors on one SQLite file (as separate sidecars would be) race on the same event."""

    async def go():
        connectors = [a6_connector(store=SQLiteStore(path)) for _ in range(n_connectors)]
        headers = a6_headers()
        calls = [
            c.accept_inbound_http("acme", method="POST", headers=headers, raw_body=A6_BODY)
            for _ in range(n_requests)
            for c in connectors
        ]
        results = await asyncio.gather(*calls)
        delivered = sum(c.inbound_messages.qsize() for c in connectors)
        for c in connectors:
            c.store.close()
        return [r[0] for r in results], delivered

    return go()


async def test_concurrent_duplicates_across_connectors_sharing_sqlite(tmp_path):
    statuses, delivered = await _hammer(tmp_path / "shared.sqlite3", 4, 8)
    assert sorted(statuses) == [202] + [401] * 31
    assert delivered == 1


async def test_concurrent_duplicates_across_connectors_sharing_redis(redis_url):
    from converge.extensions.storage.redis_store import RedisStore

    connectors = [a6_connector(store=RedisStore(redis_url)) for _ in range(4)]
    headers = a6_headers()
    results = await asyncio.gather(
        *(c.accept_inbound_http("acme", method="POST", headers=headers, raw_body=A6_BODY) for c in connectors for _ in range(6))
    )
    assert sorted(r[0] for r in results) == [202] + [401] * 23
    assert sum(c.inbound_messages.qsize() for c in connectors) == 1
    for c in connectors:
        c.store.close()


class CountingStore(MemoryStore):
    """A MemoryStore that counts full-prefix scans (to prove dedupe does not scan per request)."""

    def __init__(self) -> None:
        super().__init__()
        self.list_calls = 0

    def list(self, prefix: str = "") -> list[str]:
        self.list_calls += 1
        return super().list(prefix)


def _request(sec: WebhookSecurity, clock: FakeClock, event_id: str) -> None:
    body = json.dumps({"event_id": event_id}).encode()
    sec.validate_and_extract("acme", method="POST", headers=a6_headers(body, ts=clock.now), raw_body=body)


def test_dedupe_expires_lazily_and_sweeps_rarely():
    clock = FakeClock()
    store = CountingStore()
    ttl = 100
    sec = WebhookSecurity(
        WebhookSecurityPolicy(idempotency_ttl_sec=ttl, timestamp_skew_limit_sec=10),
        {"acme": ProviderProfile("acme", "s")}, {"s": SECRET}, store=store, clock=clock,
    )
    for i in range(50):
        _request(sec, clock, f"e{i}")
    assert store.list_calls == 0  # no scan per request
    with pytest.raises(WebhookSecurityError, match="duplicate"):
        _request(sec, clock, "e1")

    clock.now += ttl + 1  # e1's record has expired: the same id is accepted again (lazy, per key)
    _request(sec, clock, "e1")
    assert store.get("webhook:dedupe:acme:e1") == {"seen_at": clock.now}
    with pytest.raises(WebhookSecurityError, match="duplicate"):
        _request(sec, clock, "e1")
    assert store.list_calls == 1  # one sweep after a ttl: nothing was old enough (2 x ttl) to remove yet
    assert len(store.list("webhook:dedupe:")) == 50

    clock.now += 2 * ttl + 1
    _request(sec, clock, "fresh")
    assert sorted(store.list("webhook:dedupe:")) == ["webhook:dedupe:acme:fresh"]


def test_garbage_dedupe_record_is_replaced():
    clock = FakeClock()
    store = MemoryStore()
    store.put("webhook:dedupe:acme:e1", "garbage")
    sec = WebhookSecurity(WebhookSecurityPolicy(), {"acme": ProviderProfile("acme", "s")}, {"s": SECRET},
                          store=store, clock=clock)
    _request(sec, clock, "e1")
    assert store.get("webhook:dedupe:acme:e1") == {"seen_at": clock.now}


async def test_full_inbound_queue_answers_503_and_releases_the_event():
    connector = a6_connector(inbound_queue_maxsize=1)
    first = b'{"event_id": "a"}'
    second = b'{"event_id": "b"}'
    assert (await connector.accept_inbound_http("acme", method="POST", headers=a6_headers(first), raw_body=first))[0] == 202
    status, headers, _ = await connector.accept_inbound_http("acme", method="POST", headers=a6_headers(second), raw_body=second)
    assert status == 503 and headers["Retry-After"] == "1"
    assert connector.store.get("webhook:dedupe:acme:b") is None  # the provider's retry will be accepted
    connector.inbound_messages.get_nowait()
    assert (await connector.accept_inbound_http("acme", method="POST", headers=a6_headers(second), raw_body=second))[0] == 202
    assert connector.metrics.get_counter("webhook_inbound_error_total", labels={"reason": "queue_full"}) == 1


async def test_emit_as_task():
    connector = WebhookConnector(
        provider_profiles={"acme": ProviderProfile("acme", "s", emit_as="task")}, secrets={"s": SECRET}
    )
    headers = {**a6_headers(), "X-Trace-Id": "t-1"}
    assert (await connector.accept_inbound_http("acme", method="POST", headers=headers, raw_body=A6_BODY))[0] == 202
    task = connector.inbound_tasks.get_nowait()
    assert task.objective == {"type": "webhook_event", "provider": "acme"}
    assert task.inputs["event"]["event_id"] == "e1" and task.inputs["event"]["trace_id"] == "t-1"
    assert connector.inbound_messages.empty()


async def test_internal_error_is_500_logged_and_counted(caplog):
    class BrokenStore(MemoryStore):
        def put_if_absent(self, key, value):
            raise OSError("disk on fire")

    connector = a6_connector(store=BrokenStore())
    with caplog.at_level(logging.ERROR):
        status, _, body = await connector.accept_inbound_http("acme", method="POST", headers=a6_headers(), raw_body=A6_BODY)
    assert (status, json.loads(body)) == (500, {"error": "internal error"})
    assert connector.metrics.get_counter("webhook_inbound_error_total", labels={"reason": "internal"}) == 1
    assert any("disk on fire" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_secrets_never_leak(caplog):
    connector = a6_connector()
    reprs = [repr(connector), repr(connector.security), str(vars(connector.security)), repr(connector.security._secrets)]
    with caplog.at_level(logging.DEBUG):
        for body in (A6_BODY, A6_BODY, b"{bad"):
            await connector.accept_inbound_http("acme", method="POST", headers=a6_headers(body), raw_body=body)
        headers = {**a6_headers(), "X-Webhook-Signature": sign(A6_BODY, "wrong")}
        await connector.accept_inbound_http("acme", method="POST", headers=headers, raw_body=A6_BODY)
    texts = reprs + [r.getMessage() for r in caplog.records] + [str(getattr(r, "props", "")) for r in caplog.records]
    assert caplog.records  # rejections were logged
    assert all(SECRET not in t for t in texts)
    assert any("signature mismatch" in t for t in texts)  # the detailed reason is in the log, not the response


def test_public_names_match_the_reference():
    import converge.extensions
    import converge.extensions.connectors as connectors

    assert sorted(connectors.__all__) == [
        "CircuitBreaker", "InboundWebhookEvent", "OutboundWebhookAction", "ProviderProfile", "WebhookConnector",
        "WebhookGateway", "WebhookRetryPolicy", "WebhookSecurity", "WebhookSecurityError", "WebhookSecurityPolicy",
    ]
    for name in ("ProviderProfile", "WebhookConnector", "WebhookGateway", "WebhookRetryPolicy", "WebhookSecurityPolicy"):
        assert getattr(converge.extensions, name) is getattr(connectors, name)
    from converge.extensions.connectors import sidecar

    assert callable(sidecar.run_webhook_sidecar) and callable(sidecar._load_sidecar_config) and callable(sidecar.main)
