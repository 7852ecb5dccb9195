"""Discovery: agent descriptors, queries, and a store-backed registry of agents.

Descriptors are stored under ``discovery:agent:<id>`` as the plain dict of
:meth:`AgentDescriptor.to_dict` (the reference layout, so another
implementation can read our store). A stored value that is not a valid
descriptor is logged and counted (``discovery_skipped_total{reason=...}``
and :attr:`DiscoveryService.skipped`), never skipped silently.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from converge.core.capability import Capability
from converge.core.store import Store
from converge.core.topic import Topic
from converge.errors import DecodeError

logger = logging.getLogger(__name__)

_DISCOVERY_PREFIX = "discovery:agent:"
SKIPPED_METRIC = "discovery_skipped_total"


@dataclass
class DiscoveryQuery:
    """What to look for. ``trust_threshold`` is carried for custom services; the built-in one ignores it."""

    topics: list[Topic] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)
    trust_threshold: float = 0.0


@dataclass
class AgentDescriptor:
    """What an agent advertises: its id, topics, capabilities and optionally its public key."""

    id: str
    topics: list[Topic] = field(default_factory=list)
    capabilities: list[Capability] = field(default_factory=list)
    public_key: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data; ``public_key`` (standard base64) appears only when set."""
        data: dict[str, Any] = {
            "id": self.id,
            "topics": [_topic_of(t).to_dict() for t in self.topics],
            "capabilities": [_capability_dict(c) for c in self.capabilities],
        }
        if self.public_key:
            data["public_key"] = base64.b64encode(self.public_key).decode("ascii")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentDescriptor:
        """Inverse of :meth:`to_dict`.

        Raises:
            DecodeError: (a ``ValueError``) the data is not a valid descriptor; the message names the field.
        """
        if not isinstance(data, dict):
            raise DecodeError(f"agent descriptor must be a dict, got {type(data).__name__}")
        agent_id = data.get("id", "")
        if not isinstance(agent_id, str):
            raise DecodeError(f"agent descriptor 'id' must be a str, got {type(agent_id).__name__}")
        topics = _list_of_dicts(data, "topics")
        capabilities = _list_of_dicts(data, "capabilities")
        try:
            parsed_topics = [Topic.from_dict(t) for t in topics]
        except TypeError as exc:
            raise DecodeError(f"agent descriptor {agent_id!r} has an invalid topic: {exc}") from exc
        parsed_caps = [_capability_from(agent_id, c) for c in capabilities]
        public_key = None
        raw_key = data.get("public_key")
        if raw_key:
            if not isinstance(raw_key, str):
                raise DecodeError(f"agent descriptor {agent_id!r}: 'public_key' must be a base64 str")
            try:
                public_key = base64.b64decode(raw_key, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise DecodeError(f"agent descriptor {agent_id!r}: 'public_key' is not valid base64") from exc
        return cls(id=agent_id, topics=parsed_topics, capabilities=parsed_caps, public_key=public_key)


def _list_of_dicts(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DecodeError(f"agent descriptor {name!r} must be a list of dicts, got {value!r:.80}")
    return value


def _capability_from(agent_id: str, c: dict[str, Any]) -> Capability:
    name = c.get("name")
    if not isinstance(name, str) or not name:
        raise DecodeError(f"agent descriptor {agent_id!r} has a capability without a str 'name': {c!r:.80}")
    return Capability(
        name=name,
        version=c.get("version", "1.0"),
        description=c.get("description", ""),
        constraints=c.get("constraints", {}),
        costs=c.get("costs", {}),
        latency_ms=c.get("latency_ms", 0),
    )


def _capability_dict(c: Capability | str) -> dict[str, Any]:
    if isinstance(c, str):
        c = Capability(name=c, version="1.0", description="")
    return {
        "name": c.name,
        "version": c.version,
        "description": c.description,
        "constraints": c.constraints,
        "costs": c.costs,
        "latency_ms": c.latency_ms,
    }


def _topic_of(t: Topic | dict[str, Any] | str) -> Topic:
    if isinstance(t, Topic):
        return t
    if isinstance(t, dict):
        return Topic.from_dict(t)
    return Topic(namespace=str(t))


def _capability_name(c: Any) -> str:
    if isinstance(c, str):
        return c
    if isinstance(c, dict):
        return str(c.get("name", ""))
    return str(getattr(c, "name", c))


class DiscoveryService:
    """Registry of agent descriptors, optionally persisted in a :class:`Store`.

    With a store, descriptors are loaded at construction and again on
    :meth:`refresh`, and every register/unregister writes through.

    Args:
        store: optional store shared with other services/processes.
        metrics_collector: optional collector for ``discovery_skipped_total{reason=...}``.

    Attributes:
        descriptors: agent id → descriptor.
        store: the store, or ``None``.
        skipped: stored entries skipped since construction, by reason
            (``not_a_descriptor``, ``malformed``, ``undecodable``, ``id_mismatch``).
        load_errors: store key → why it was skipped, for the latest load.
    """

    def __init__(self, store: Store | None = None, *, metrics_collector: Any = None) -> None:
        self.store = store
        self.metrics_collector = metrics_collector
        self.descriptors: dict[str, AgentDescriptor] = {}
        self.skipped: Counter[str] = Counter()
        self.load_errors: dict[str, str] = {}
        if store is not None:
            self.refresh()

    def refresh(self) -> int:
        """Replace :attr:`descriptors` with what the store holds now; returns how many loaded.

        Without a store this is a no-op returning the current count.
        """
        if self.store is None:
            return len(self.descriptors)
        loaded: dict[str, AgentDescriptor] = {}
        self.load_errors = {}
        for key in sorted(self.store.list(_DISCOVERY_PREFIX)):
            descriptor = self._load(key)
            if descriptor is not None:
                loaded[descriptor.id] = descriptor
        self.descriptors = loaded
        return len(loaded)

    def _load(self, key: str) -> AgentDescriptor | None:
        try:
            value = self.store.get(key) if self.store is not None else None
        except DecodeError as exc:  # a codec-backed store could not decode the bytes
            return self._skip(key, "undecodable", str(exc))
        if value is None:  # deleted between list() and get()
            return None
        if isinstance(value, AgentDescriptor):
            descriptor = value
        elif isinstance(value, dict):
            try:
                descriptor = AgentDescriptor.from_dict(value)
            except DecodeError as exc:
                return self._skip(key, "malformed", str(exc))
        else:
            return self._skip(key, "not_a_descriptor", f"value is a {type(value).__name__}, expected a dict")
        if key != _DISCOVERY_PREFIX + descriptor.id:
            return self._skip(key, "id_mismatch", f"descriptor id {descriptor.id!r} does not match the key")
        return descriptor

    def _skip(self, key: str, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        self.load_errors[key] = f"{reason}: {detail}"
        if self.metrics_collector is not None:
            self.metrics_collector.inc(SKIPPED_METRIC, labels={"reason": reason})
        logger.warning("discovery skipped stored entry %r: %s (%s)", key, reason, detail)
        return None

    def register(self, descriptor: AgentDescriptor) -> None:
        """Add or replace a descriptor (and write it to the store)."""
        self.descriptors[descriptor.id] = descriptor
        if self.store is not None:
            self.store.put(_DISCOVERY_PREFIX + descriptor.id, descriptor.to_dict())

    def unregister(self, agent_id: str) -> None:
        """Remove a descriptor (and its store key); no error when absent."""
        self.descriptors.pop(agent_id, None)
        if self.store is not None:
            self.store.delete(_DISCOVERY_PREFIX + agent_id)

    def get(self, agent_id: str) -> AgentDescriptor | None:
        """The descriptor of ``agent_id``, or ``None``."""
        return self.descriptors.get(agent_id)

    def query(self, query: DiscoveryQuery, candidates: list[AgentDescriptor] | None = None) -> list[AgentDescriptor]:
        """Filter ``candidates`` (default: every known descriptor), keeping their order.

        An agent matches when it shares at least one topic with the query (compared
        by ``str(topic)``: namespace, attributes and version) — if the query has
        topics — and has **all** the requested capability names.
        """
        pool = list(self.descriptors.values()) if candidates is None else candidates
        wanted_topics = {str(_topic_of(t)) for t in query.topics}
        wanted_caps = set(query.capabilities)
        result = []
        for descriptor in pool:
            if wanted_topics and not wanted_topics.intersection(str(_topic_of(t)) for t in descriptor.topics):
                continue
            if wanted_caps and not wanted_caps.issubset({_capability_name(c) for c in descriptor.capabilities}):
                continue
            result.append(descriptor)
        return result


__all__ = ["AgentDescriptor", "DiscoveryQuery", "DiscoveryService"]
