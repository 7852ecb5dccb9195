"""Delegation: an agent lets another act for it within a scope of actions.

Records are plain dicts ``{"delegator", "delegatee", "scope", "active"}`` keyed by
a delegation id. With a ``store`` they live under ``delegation:<id>`` (shared by
every process using the store) and revocation is a compare-and-set.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from converge.coordination._cas import cas_update
from converge.core.store import Store
from converge.errors import ConfigError

logger = logging.getLogger("converge.coordination.delegation")

_PREFIX = "delegation:"


class DelegationType:
    DIRECT = "direct"
    POOLED = "pooled"


def _scope(scope: Iterable[str]) -> list[str]:
    if isinstance(scope, str):
        raise ConfigError(f"scope must be a list of action names, got the single string {scope!r}")
    names = list(scope)
    bad = [s for s in names if not isinstance(s, str)]
    if bad:
        raise ConfigError(f"scope entries must be strings, got {bad!r}")
    return names


class DelegationProtocol:
    """Delegations by id.

    Args:
        store: keep delegations in this store; ``None`` keeps them in memory.

    Attributes:
        delegations: delegation id -> record (those this instance has seen).
    """

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.delegations: dict[str, dict[str, Any]] = {}

    def delegate(self, delegator_id: str, delegatee_id: str, scope: list[str]) -> str:
        """Record a delegation and return its id.

        Raises:
            ConfigError: ``scope`` is not a list of strings, or an agent delegates to itself.
        """
        if delegator_id == delegatee_id:
            raise ConfigError(f"agent {delegator_id} cannot delegate to itself")
        record = {"delegator": delegator_id, "delegatee": delegatee_id, "scope": _scope(scope), "active": True}
        delegation_id = str(uuid.uuid4())
        if self.store is not None:
            self.store.put(_PREFIX + delegation_id, dict(record))
        self.delegations[delegation_id] = record
        return delegation_id

    def get(self, delegation_id: str) -> dict[str, Any] | None:
        """The record (fresh from the store when there is one), or ``None``."""
        if self.store is not None:
            stored = self.store.get(_PREFIX + delegation_id)
            if stored is not None:
                self.delegations.setdefault(delegation_id, {}).update(stored)
        return self.delegations.get(delegation_id)

    def revoke(self, delegation_id: str) -> bool:
        """Deactivate; ``True`` if the id is known (also when it was already revoked)."""
        if self.store is not None:
            if self.store.get(_PREFIX + delegation_id) is None:
                logger.info("revoke of unknown delegation %s", delegation_id)
                return False
            new, _ = cas_update(self.store, _PREFIX + delegation_id, lambda cur: ({**cur, "active": False}, None))
            self.delegations.setdefault(delegation_id, {}).update(new)
            return True
        record = self.delegations.get(delegation_id)
        if record is None:
            logger.info("revoke of unknown delegation %s", delegation_id)
            return False
        record["active"] = False
        return True

    def is_active(self, delegation_id: str) -> bool:
        record = self.get(delegation_id)
        return bool(record and record.get("active"))

    def allows(self, delegation_id: str, action: str, *, delegatee_id: str | None = None) -> bool:
        """True when the delegation is active, covers ``action`` and (if given) belongs to ``delegatee_id``."""
        record = self.get(delegation_id)
        if not record or not record.get("active"):
            return False
        if delegatee_id is not None and record.get("delegatee") != delegatee_id:
            return False
        return action in record.get("scope", [])

    def delegations_for(self, delegatee_id: str, *, active_only: bool = True) -> dict[str, dict[str, Any]]:
        """Delegations granted to ``delegatee_id`` (id -> record)."""
        if self.store is not None:
            for key in self.store.list(_PREFIX):
                self.get(key[len(_PREFIX):])
        return {
            i: r for i, r in self.delegations.items()
            if r.get("delegatee") == delegatee_id and (r.get("active") or not active_only)
        }


__all__ = ["DelegationProtocol", "DelegationType"]
