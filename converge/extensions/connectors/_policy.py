"""Provider profiles and the inbound security policy (re-exported by ``.security``)."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from converge.errors import ConfigError

CANONICALIZATIONS = ("raw_body", "json_sorted")
EMIT_AS = ("message", "task")
SIGNATURE_ALGORITHMS = tuple(
    sorted(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake") and not a.startswith("blake2"))
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _need_str(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{owner}.{name} must be a non-empty string, got {value!r}")


def _str_tuple(owner: str, name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"{owner}.{name} must be a list of strings, got {value!r}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{owner}.{name} must contain non-empty strings, got {item!r}")
    return items


@dataclass(frozen=True)
class ProviderProfile:
    """How one webhook provider signs and shapes its requests.

    Construction validates every field and raises
    :class:`~converge.errors.ConfigError` naming the field, so a bad profile
    fails at start-up rather than on the first request.

    Attributes:
        name: the provider name used in ``/webhook/<name>`` and dedupe keys.
        secret_ref: the key of this provider's HMAC secret in the ``secrets`` mapping.
        signature_header: header carrying the lowercase hex HMAC (an optional
            ``"<algorithm>="`` prefix such as ``"sha256="`` is accepted).
        timestamp_header: header carrying the send time, wall-clock seconds.
        event_id_field: payload field holding the event id (fallback header ``X-Webhook-Event-Id``).
        signature_algorithm: hashlib name for the HMAC, one of ``SIGNATURE_ALGORITHMS``.
        canonicalization: ``"raw_body"`` (sign the bytes as sent) or ``"json_sorted"``
            (sign the payload re-encoded with sorted keys and compact separators).
        required_payload_fields: payload keys that must be present.
        subject_field: payload field copied to ``InboundWebhookEvent.subject``.
        source_field: payload field copied to ``InboundWebhookEvent.source``.
        emit_as: ``"message"`` (onto ``inbound_messages``) or ``"task"`` (onto ``inbound_tasks``).
    """

    name: str
    secret_ref: str
    signature_header: str = "X-Webhook-Signature"
    timestamp_header: str = "X-Webhook-Timestamp"
    event_id_field: str = "event_id"
    signature_algorithm: str = "sha256"
    canonicalization: str = "raw_body"
    required_payload_fields: tuple[str, ...] = ()
    subject_field: str = "subject"
    source_field: str = "source"
    emit_as: str = "message"

    def __post_init__(self) -> None:
        owner = "ProviderProfile"
        for name in ("name", "secret_ref", "signature_header", "timestamp_header", "event_id_field"):
            _need_str(owner, name, getattr(self, name))
        for name in ("subject_field", "source_field"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{owner}.{name} must be a string, got {getattr(self, name)!r}")
        if self.signature_algorithm not in SIGNATURE_ALGORITHMS:
            raise ConfigError(
                f"{owner}.signature_algorithm must be one of {', '.join(SIGNATURE_ALGORITHMS)}, "
                f"got {self.signature_algorithm!r}"
            )
        if self.canonicalization not in CANONICALIZATIONS:
            raise ConfigError(
                f"{owner}.canonicalization must be one of {', '.join(CANONICALIZATIONS)}, got {self.canonicalization!r}"
            )
        if self.emit_as not in EMIT_AS:
            raise ConfigError(f"{owner}.emit_as must be one of {', '.join(EMIT_AS)}, got {self.emit_as!r}")
        fields = _str_tuple(owner, "required_payload_fields", self.required_payload_fields)
        object.__setattr__(self, "required_payload_fields", fields)


@dataclass(frozen=True)
class WebhookSecurityPolicy:
    """Limits applied to every inbound webhook request.

    Attributes:
        timestamp_skew_limit_sec: maximum ``|now - timestamp header|``, seconds.
        idempotency_ttl_sec: how long an event id is remembered for dedupe, seconds.
        max_payload_bytes: maximum body size.
        allowed_content_types: media types accepted (compared on the type before
            any ``;`` parameters, case-insensitively).
        require_mtls: reject requests without a verified client certificate.
        ip_allowlist: when non-empty, client addresses or CIDR networks
            (``"10.0.0.0/8"``) that may call; everything else is rejected.
        strict_mode: kept for compatibility; verification is always strict.
    """

    timestamp_skew_limit_sec: int = 300
    idempotency_ttl_sec: int = 3600
    max_payload_bytes: int = 1048576
    allowed_content_types: tuple[str, ...] = ("application/json",)
    require_mtls: bool = False
    ip_allowlist: tuple[str, ...] = ()
    strict_mode: bool = True
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        owner = "WebhookSecurityPolicy"
        for name, minimum in (("timestamp_skew_limit_sec", 0), ("idempotency_ttl_sec", 1), ("max_payload_bytes", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
                raise ConfigError(f"{owner}.{name} must be a number >= {minimum}, got {value!r}")
        types = tuple(t.strip().lower() for t in _str_tuple(owner, "allowed_content_types", self.allowed_content_types))
        object.__setattr__(self, "allowed_content_types", types)
        for name in ("require_mtls", "strict_mode"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{owner}.{name} must be true or false, got {getattr(self, name)!r}")
        allow = _str_tuple(owner, "ip_allowlist", self.ip_allowlist)
        networks = []
        for entry in allow:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ConfigError(f"{owner}.ip_allowlist entry {entry!r} is not an IP address or CIDR network") from exc
        object.__setattr__(self, "ip_allowlist", allow)
        object.__setattr__(self, "_networks", tuple(networks))

    def allows_address(self, remote_addr: str | None) -> bool:
        """True when the allowlist is empty or ``remote_addr`` falls in one of its networks."""
        if not self._networks:
            return True
        if not remote_addr:
            return False
        try:
            addr = ipaddress.ip_address(remote_addr.strip().split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._networks)


__all__ = ["CANONICALIZATIONS", "EMIT_AS", "SIGNATURE_ALGORITHMS", "ProviderProfile", "WebhookSecurityPolicy"]
