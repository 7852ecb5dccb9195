"""Admission policies: who may join a pool.

A pool holds one policy instance (``Pool.admission_policy_instance``);
:meth:`converge.coordination.pool_manager.PoolManager.join_pool` asks it with
a *pool context*: ``{"pool_id", "existing_agents", "topics"}`` merged with the
context the joining agent supplied (for example ``{"token": "..."}``).

Policies live on pools, which are written to the store, so every policy here
is a dataclass the store codec knows ("converge.OpenAdmission", ...). A custom
policy must be registered with :func:`converge.core.codec.register_type` to be
stored by a persistent store.
"""

from __future__ import annotations

import hashlib
import hmac
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from converge.errors import ConfigError


class AdmissionPolicy(ABC):
    """Decides whether an agent may join a pool."""

    @abstractmethod
    def can_admit(self, agent_id: str, pool_context: dict[str, Any]) -> bool:
        """True when ``agent_id`` may join the pool described by ``pool_context``."""

    def denial_reason(self, agent_id: str, pool_context: dict[str, Any]) -> str | None:
        """Why ``agent_id`` is refused, or ``None`` when it is admitted.

        The default asks :meth:`can_admit`; subclasses give a precise reason.
        """
        if self.can_admit(agent_id, pool_context):
            return None
        return f"{type(self).__name__} refused agent {agent_id}"


@dataclass
class OpenAdmission(AdmissionPolicy):
    """Admits everyone."""

    def can_admit(self, agent_id: str, pool_context: dict[str, Any]) -> bool:
        return True


@dataclass(init=False)
class WhitelistAdmission(AdmissionPolicy):
    """Admits only the listed agent ids.

    Args:
        whitelist: agent ids (fingerprints) allowed to join; kept as the set ``whitelist``.
    """

    whitelist: set[str]

    def __init__(self, whitelist: Iterable[str]) -> None:
        if isinstance(whitelist, str):
            raise ConfigError(f"whitelist must be a collection of agent ids, got the single string {whitelist!r}")
        ids = set(whitelist)
        bad = [i for i in ids if not isinstance(i, str)]
        if bad:
            raise ConfigError(f"whitelist entries must be agent id strings, got {bad!r}")
        self.whitelist = ids

    def can_admit(self, agent_id: str, pool_context: dict[str, Any]) -> bool:
        return agent_id in self.whitelist

    def denial_reason(self, agent_id: str, pool_context: dict[str, Any]) -> str | None:
        if agent_id in self.whitelist:
            return None
        return f"agent {agent_id} is not on the pool's whitelist"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(init=False)
class TokenAdmission(AdmissionPolicy):
    """Admits agents that present the pool's token in the join context (``{"token": ...}``).

    Only a SHA-256 digest of the token is kept (and therefore stored with the
    pool), and presented tokens are compared in constant time.

    Args:
        required_token: the shared secret; a non-empty string.
    """

    token_sha256: bytes = field(repr=False)

    def __init__(self, required_token: str) -> None:
        if not isinstance(required_token, str) or not required_token:
            raise ConfigError("required_token must be a non-empty string")
        self.token_sha256 = _digest(required_token)

    def can_admit(self, agent_id: str, pool_context: dict[str, Any]) -> bool:
        return self.denial_reason(agent_id, pool_context) is None

    def denial_reason(self, agent_id: str, pool_context: dict[str, Any]) -> str | None:
        token = pool_context.get("token") if isinstance(pool_context, dict) else None
        if token is None:
            return f"agent {agent_id} presented no token (pass context={{'token': ...}} to join_pool)"
        if not isinstance(token, str):
            return f"agent {agent_id} presented a token of type {type(token).__name__}, expected str"
        if not hmac.compare_digest(_digest(token), self.token_sha256):
            return f"agent {agent_id} presented a wrong token"
        return None


__all__ = ["AdmissionPolicy", "OpenAdmission", "TokenAdmission", "WhitelistAdmission"]
