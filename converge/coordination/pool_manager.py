"""Pools: create, join (admission and trust checks), leave, and which pools an agent is in.

Differences from the reference (its §5.2 and quirks 15/16), on purpose:

* ``join_pool(agent_id, pool_id, context=None)`` merges ``context`` (e.g.
  ``{"token": ...}``) into the admission context, so :class:`TokenAdmission
  <converge.policy.admission.TokenAdmission>` works through it. The pool's own
  facts (``pool_id``, ``existing_agents``, ``topics``) win over the caller's.
* A refused join still returns ``False``, and says why: the reason is logged,
  kept in :attr:`PoolManager.last_denial`, counted in :attr:`PoolManager.denials`
  (and in ``pool_join_denied_total{reason}`` when the metrics object has a
  collector); :meth:`PoolManager.check_admission` returns it without joining.
* Membership changes are compare-and-set writes, so concurrent joins from
  several processes never lose a member; pools are re-read from the store
  (the ``pools`` cache holds live objects updated in place), so membership
  changes made by other processes are visible.
* ``get_pools_for_agent`` reads the index key ``poolidx:agent:<agent>`` (the
  list of the agent's pool ids) and those pools: O(the agent's pools), never a
  scan of the store (``list(prefix)`` walks every key in memory and Redis
  stores). Once per manager it scans ``pool:`` keys to index pools written by
  programs that keep no index.
* Bad specs raise :class:`~converge.errors.ConfigError` naming the key
  (the reference dropped non-policy objects silently or raised ``TypeError``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import threading
from collections import Counter
from typing import Any
from urllib.parse import quote

from converge.coordination._cas import cas_update
from converge.core.pool import Pool
from converge.core.store import Store
from converge.core.topic import Topic
from converge.errors import ConfigError

logger = logging.getLogger("converge.coordination.pool_manager")

POOL_PREFIX = "pool:"
MEMBER_INDEX_PREFIX = "poolidx:agent:"
_POOL_FIELDS = frozenset(f.name for f in dataclasses.fields(Pool))
_FIELDS = tuple(f.name for f in dataclasses.fields(Pool))


class _Denied(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def _member_key(agent_id: str) -> str:
    return f"{MEMBER_INDEX_PREFIX}{quote(agent_id, safe='')}"


def _stored_copy(pool: Pool) -> Pool:
    return dataclasses.replace(pool, agents=set(pool.agents), topics=list(pool.topics))


def _topics(raw: Any) -> list[Topic]:
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"pool spec 'topics' must be a list of Topic, got {type(raw).__name__}")
    out = []
    for t in raw:
        if isinstance(t, dict):
            t = Topic.from_dict(t)
        if not isinstance(t, Topic):
            raise ConfigError(f"pool spec 'topics' entries must be Topic or dict, got {t!r}")
        out.append(t)
    return out


def _build_pool(spec: dict[str, Any]) -> Pool:
    if not isinstance(spec, dict):
        raise ConfigError(f"a pool spec must be a dict, got {type(spec).__name__}")
    spec = dict(spec)
    policy = spec.pop("admission_policy", None)
    if policy is not None and not isinstance(policy, dict):
        if not callable(getattr(policy, "can_admit", None)):
            raise ConfigError(f"pool spec 'admission_policy' must have can_admit() (or be a descriptive dict), got {policy!r}")
        if spec.get("admission_policy_instance") is not None:
            raise ConfigError("pool spec gives both 'admission_policy' and 'admission_policy_instance'")
        spec["admission_policy_instance"] = policy
    elif policy is not None:
        spec["admission_policy"] = policy
    model = spec.get("governance_model")
    if model is not None and not callable(getattr(model, "resolve_dispute", None)):
        raise ConfigError(f"pool spec 'governance_model' must have resolve_dispute(), got {model!r}")
    trust = spec.get("trust_model")
    if trust is not None and not callable(getattr(trust, "get_trust", None)):
        raise ConfigError(f"pool spec 'trust_model' must have get_trust(), got {trust!r}")
    unknown = sorted(set(spec) - _POOL_FIELDS)
    if unknown:
        raise ConfigError(f"unknown pool spec keys {unknown}; valid keys: {sorted(_POOL_FIELDS | {'admission_policy'})}")
    if "id" in spec and (not isinstance(spec["id"], str) or not spec["id"]):
        raise ConfigError(f"pool id must be a non-empty string, got {spec['id']!r}")
    if "topics" in spec:
        spec["topics"] = _topics(spec["topics"])
    if "agents" in spec:
        spec["agents"] = set(spec["agents"])
    threshold = spec.get("trust_threshold", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ConfigError(f"trust_threshold must be a finite number, got {threshold!r}")
    return Pool(**spec)


class PoolManager:
    """Pools in a store, with a cache of live pool objects.

    Args:
        store: where pools live (a new :class:`MemoryStore` when ``None``).
        coordination_metrics: an object with ``pool_created()``, ``pool_join()``,
            ``pool_leave()`` and ``pool_size(n)`` (duck-typed; may be assigned later).

    Attributes:
        pools: pool id -> the live ``Pool`` object (updated in place on changes).
        last_denial: why the latest refused join was refused, or ``None``.
        denials: reason kind (``unknown_pool``, ``admission``, ``trust``) -> count.
    """

    def __init__(self, store: Store | None = None, coordination_metrics: Any = None) -> None:
        if store is None:
            # The reference's default; imported here so coordination does not import extensions at load time.
            from converge.extensions.storage.memory import MemoryStore

            store = MemoryStore()
        self.store: Store = store
        self.coordination_metrics = coordination_metrics
        self.pools: dict[str, Pool] = {}
        self.last_denial: str | None = None
        self.denials: Counter[str] = Counter()
        self._scanned = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ helpers
    def _emit(self, name: str, *args: Any) -> None:
        fn = getattr(self.coordination_metrics, name, None)
        if callable(fn):
            fn(*args)

    def _remember(self, stored: Pool) -> Pool:
        cached = self.pools.get(stored.id)
        if cached is None:
            cached = self.pools[stored.id] = _stored_copy(stored)
        elif cached is not stored:
            for name in _FIELDS:
                value = getattr(stored, name)
                setattr(cached, name, set(value) if name == "agents" else list(value) if name == "topics" else value)
        return cached

    def _read(self, pool_id: str) -> Pool | None:
        value = self.store.get(POOL_PREFIX + pool_id)
        if value is None or isinstance(value, Pool):
            return value
        raise ConfigError(f"store key {POOL_PREFIX + pool_id!r} holds a {type(value).__name__}, not a Pool")

    def _index(self, agent_id: str, pool_id: str, *, member: bool = True) -> None:
        """Add ``pool_id`` to (or remove it from) the agent's index entry, atomically."""

        def change(current: Any) -> tuple[list[str], None]:
            ids = [p for p in (current or []) if p != pool_id]
            return ([*ids, pool_id] if member else ids), None

        current = self.store.get(_member_key(agent_id))
        if (pool_id in (current or [])) is member:
            return
        cas_update(self.store, _member_key(agent_id), change)

    # ------------------------------------------------------------------ API
    def create_pool(self, spec: dict[str, Any]) -> Pool:
        """Create (or overwrite) a pool from ``spec`` and store it under ``pool:<id>``.

        ``spec`` keys are ``Pool`` fields plus ``admission_policy`` (an object with
        ``can_admit``, stored as ``admission_policy_instance``; a dict stays the
        descriptive ``admission_policy``). Topics may be given as dicts.

        Raises:
            ConfigError: unknown keys or objects of the wrong kind.
            CodecError: a persistent store cannot encode a policy object (register its type).
        """
        pool = _build_pool(spec)
        with self._lock:
            self.store.put(POOL_PREFIX + pool.id, _stored_copy(pool))
            for agent_id in pool.agents:
                self._index(agent_id, pool.id)
            self.pools[pool.id] = pool
        self._emit("pool_created")
        self._emit("pool_size", len(pool.agents))
        return pool

    def get_pool(self, pool_id: str) -> Pool | None:
        """The pool, re-read from the store (the cached object is updated in place)."""
        with self._lock:
            stored = self._read(pool_id)
            return self.pools.get(pool_id) if stored is None else self._remember(stored)

    def _denial(self, pool: Pool, agent_id: str, context: dict[str, Any] | None) -> _Denied | None:
        ctx = dict(context or {})
        ctx.update(pool_id=pool.id, existing_agents=list(pool.agents), topics=[str(t) for t in pool.topics])
        policy = pool.admission_policy_instance
        if policy is not None and callable(getattr(policy, "can_admit", None)):
            explain = getattr(policy, "denial_reason", None)
            if callable(explain):
                reason = explain(agent_id, ctx)
            else:
                reason = None if policy.can_admit(agent_id, ctx) else f"{type(policy).__name__} refused agent {agent_id}"
            if reason:
                return _Denied("admission", f"pool {pool.id}: {reason}")
        trust = pool.trust_model
        if trust is not None and callable(getattr(trust, "get_trust", None)):
            score = trust.get_trust(agent_id)
            if score < pool.trust_threshold:
                return _Denied("trust", f"pool {pool.id}: trust {score} of agent {agent_id} is below the threshold {pool.trust_threshold}")
        return None

    def check_admission(self, agent_id: str, pool_id: str, context: dict[str, Any] | None = None) -> str | None:
        """Why ``agent_id`` would be refused by the pool now, or ``None`` if it would be admitted."""
        if context is not None and not isinstance(context, dict):
            raise ConfigError(f"join context must be a dict, got {type(context).__name__}")
        pool = self.get_pool(pool_id)
        if pool is None:
            return f"no pool {pool_id!r}"
        denied = self._denial(pool, agent_id, context)
        return None if denied is None else str(denied)

    def join_pool(self, agent_id: str, pool_id: str, context: dict[str, Any] | None = None) -> bool:
        """Add ``agent_id`` to the pool if admission and trust allow; ``False`` (with a reason) otherwise.

        Args:
            context: extra admission context supplied by the agent, e.g. ``{"token": "..."}``.
        """
        if context is not None and not isinstance(context, dict):
            raise ConfigError(f"join context must be a dict, got {type(context).__name__}")

        def add(current: Pool | None) -> tuple[Pool, None]:
            if current is None:
                raise _Denied("unknown_pool", f"no pool {pool_id!r}")
            denied = self._denial(current, agent_id, context)
            if denied is not None:
                raise denied
            return dataclasses.replace(current, agents={*current.agents, agent_id}, topics=list(current.topics)), None

        with self._lock:
            try:
                current = self._read(pool_id)
                if current is not None and agent_id in current.agents:
                    add(current)  # admission still applies to members (reference order)
                    stored = current
                else:
                    stored, _ = cas_update(self.store, POOL_PREFIX + pool_id, add)
            except _Denied as denied:
                if current is not None:
                    self._remember(current)
                return self._refuse(agent_id, pool_id, denied)
            self._index(agent_id, pool_id)
            pool = self._remember(stored)
        self._emit("pool_join")
        self._emit("pool_size", len(pool.agents))
        return True

    def _refuse(self, agent_id: str, pool_id: str, denied: _Denied) -> bool:
        self.last_denial = str(denied)
        self.denials[denied.kind] += 1
        logger.info("join of pool %s by %s refused: %s", pool_id, agent_id, denied)
        fn = getattr(self.coordination_metrics, "pool_join_denied", None)
        collector = getattr(self.coordination_metrics, "collector", None)
        if callable(fn):
            fn(denied.kind)
        elif collector is not None and callable(getattr(collector, "inc", None)):
            collector.inc("pool_join_denied_total", labels={"reason": denied.kind})
        return False

    def leave_pool(self, agent_id: str, pool_id: str) -> bool:
        """Remove ``agent_id`` from the pool; ``False`` when there is no such pool."""

        def remove(current: Pool | None) -> tuple[Pool, None]:
            if current is None:
                raise _Denied("unknown_pool", f"no pool {pool_id!r}")
            return dataclasses.replace(current, agents=current.agents - {agent_id}, topics=list(current.topics)), None

        with self._lock:
            try:
                stored, _ = cas_update(self.store, POOL_PREFIX + pool_id, remove)
            except _Denied as exc:
                logger.info("leave of pool %s by %s ignored: %s", pool_id, agent_id, exc)
                return False
            self._index(agent_id, pool_id, member=False)
            pool = self._remember(stored)
        self._emit("pool_leave")
        self._emit("pool_size", len(pool.agents))
        return True

    def get_pools_for_agent(self, agent_id: str) -> list[str]:
        """Ids of the pools ``agent_id`` is a member of, read from the store through the member index."""
        with self._lock:
            if not self._scanned:
                self._scan_all()
            out = []
            for pool_id in self.store.get(_member_key(agent_id)) or []:
                pool = self._read(pool_id)
                if pool is not None:
                    self._remember(pool)
                    if agent_id in pool.agents:
                        out.append(pool.id)
            return out

    def _scan_all(self) -> None:
        """Index every stored pool once (pools written by programs that keep no index)."""
        for key in self.store.list(POOL_PREFIX):
            pool = self._read(key[len(POOL_PREFIX):])
            if pool is None:
                continue
            for agent_id in pool.agents:
                self._index(agent_id, pool.id)
        self._scanned = True

    def update_trust(self, pool_id: str, agent_id: str, score_delta: float) -> float:
        """Change ``agent_id``'s score in the pool's trust model and persist the pool; returns the new score.

        Raises:
            ConfigError: no such pool, or the pool has no trust model with ``update_trust``.
        """
        def change(current: Pool | None) -> tuple[Pool, float]:
            if current is None:
                raise ConfigError(f"no pool {pool_id!r}")
            if not callable(getattr(current.trust_model, "update_trust", None)):
                raise ConfigError(f"pool {pool_id!r} has no trust model with update_trust()")
            model = copy.deepcopy(current.trust_model)
            score = model.update_trust(agent_id, score_delta)
            return dataclasses.replace(current, trust_model=model, agents=set(current.agents)), score

        with self._lock:
            stored, score = cas_update(self.store, POOL_PREFIX + pool_id, change)
            self._remember(stored)
        return float(score)


__all__ = ["MEMBER_INDEX_PREFIX", "POOL_PREFIX", "PoolManager"]
