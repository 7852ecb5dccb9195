"""``IdentityRegistry``: agent id (fingerprint) → raw Ed25519 public key.

Used by :meth:`Transport.receive_verified <converge.network.transport.base.Transport.receive_verified>`
to look up the key a message's sender must have signed with.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from converge.core.identity import Identity, load_public_key


class IdentityRegistry:
    """A mapping of agent ids to the public keys their messages must verify with.

    Args:
        keys: optional initial ``{agent_id: public_key}`` entries.
    """

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        for agent_id, key in (keys or {}).items():
            self.register(agent_id, key)

    def register(self, agent_id: str, public_key: bytes) -> None:
        """Map ``agent_id`` to ``public_key`` (replacing an earlier key).

        Raises:
            TypeError: ``agent_id`` is not a non-empty string.
            SignatureError: ``public_key`` is not 32 raw Ed25519 bytes.
        """
        if not isinstance(agent_id, str) or not agent_id:
            raise TypeError(f"agent_id must be a non-empty str, got {agent_id!r}")
        key = bytes(public_key)
        load_public_key(key)  # validates; raises SignatureError naming the problem
        self._keys[agent_id] = key

    def register_identity(self, identity: Identity) -> None:
        """Register ``identity.public_key`` under ``identity.fingerprint``."""
        self.register(identity.fingerprint, identity.public_key)

    def unregister(self, agent_id: str) -> None:
        """Forget ``agent_id``; no error when absent."""
        self._keys.pop(agent_id, None)

    def get(self, agent_id: str) -> bytes | None:
        """The public key of ``agent_id``, or ``None``."""
        return self._keys.get(agent_id)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def __repr__(self) -> str:
        return f"IdentityRegistry({len(self._keys)} keys)"


__all__ = ["IdentityRegistry"]
