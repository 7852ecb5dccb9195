"""Transports: how messages move between agents.

Re-exports the five names of the reference (``__all__``). The TCP and
WebSocket transports live in :mod:`converge.network.transport.tcp` and
:mod:`converge.network.transport.websocket` (the latter needs ``converge[websocket]``).
"""

from converge.network.transport.base import Transport
from converge.network.transport.hooks import HookedTransport, MessageHook
from converge.network.transport.local import LocalTransport, LocalTransportRegistry

__all__ = ["HookedTransport", "LocalTransport", "LocalTransportRegistry", "MessageHook", "Transport"]
