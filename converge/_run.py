"""What ``converge run`` does once its configuration is valid (reference section 10.5).

Builds the store, discovery, the shared pool/task managers, one identity,
agent, transport and :class:`~converge.runtime.AgentRuntime` per agent; starts
them; prints one start-up line; waits for SIGINT/SIGTERM; stops every runtime.

Choices (documented in ``converge run --help`` and the README):

* the start-up line is ``converge run: started N agent(s) [...]: <id>@<address> ...``
  on stdout, flushed, once every runtime is up;
* TCP/WebSocket transports are started before their descriptor is built, so
  with ``port = 0`` the discovery entry of a TCP agent carries its real
  ``transport.tcp`` address topic;
* an existing pool (persistent store) is joined, not overwritten;
* pool membership stays in the store after a stop (as in the reference);
  ``discovery:agent:<id>`` entries are removed when each runtime stops.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from converge._config import RunConfig, close_store, create_store
from converge.coordination.pool_manager import PoolManager
from converge.coordination.task_manager import TaskManager
from converge.core.agent import Agent
from converge.core.identity import Identity
from converge.errors import ConvergeError
from converge.extensions.storage.memory import MemoryStore
from converge.network.discovery import DiscoveryService
from converge.network.network import build_descriptor
from converge.observability.metrics import MetricsCollector
from converge.runtime import AgentRuntime

logger = logging.getLogger("converge.cli")
PROG = "converge run"


def create_transport(kind: str, agent_id: str, host: str, port: int, *, metrics_collector: Any = None) -> Any:
    """A transport for one agent: ``local``, ``tcp`` or ``websocket`` (a WebSocket server endpoint)."""
    if kind == "local":
        from converge.network.transport.local import LocalTransport

        return LocalTransport(agent_id, metrics_collector=metrics_collector)
    if kind == "tcp":
        from converge.network.transport.tcp import TcpTransport

        return TcpTransport(host, port, agent_id, metrics_collector=metrics_collector)
    if kind == "websocket":
        from converge.network.transport.websocket import WebSocketServerTransport

        return WebSocketServerTransport(agent_id, host, port, metrics_collector=metrics_collector)
    raise ConvergeError(f"unknown transport {kind!r}; accepted: local, tcp, websocket")


def transport_address(transport: Any) -> str:
    """A printable address: ``local``, ``tcp://host:port`` or ``ws://host:port``."""
    uri = getattr(transport, "uri", None)
    if isinstance(uri, str):
        return uri
    if hasattr(transport, "port") and hasattr(transport, "host"):
        return f"tcp://{transport.host}:{transport.port}"
    return "local"


def run_agents(config: RunConfig) -> int:
    """Run until SIGINT/SIGTERM; return the exit status (0 clean stop, 1 start-up failure)."""
    try:
        return asyncio.run(_main(config))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        print(f"{PROG}: interrupted during shutdown", file=sys.stderr)
        return 130


class _Network:
    """Everything one ``converge run`` owns, closed in reverse order."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.store: Any = None
        self.runtimes: list[Any] = []
        self.started: list[Any] = []

    def build(self) -> None:
        """Open the store and create discovery and the managers (blocking: run it in a worker thread)."""
        cfg = self.config
        self.store = create_store(cfg.store_backend, cfg.store_path, legacy_discovery_store=cfg.discovery_store)
        if self.store is None and cfg.shared_managers:
            self.store = MemoryStore()
        self.discovery = DiscoveryService(store=self.store) if self.store is not None and cfg.discovery_enabled else None
        self.pool_manager = self.task_manager = None
        if cfg.shared_managers:
            self.pool_manager, self.task_manager = PoolManager(self.store), TaskManager(self.store)
            if cfg.pool_id is not None and self.pool_manager.get_pool(cfg.pool_id) is None:
                self.pool_manager.create_pool({"id": cfg.pool_id})
        self.metrics = MetricsCollector()

    async def start(self) -> None:
        cfg = self.config
        for i in range(cfg.agents):
            agent = Agent(Identity.generate())
            port = cfg.port + i if cfg.port else 0
            transport = create_transport(cfg.transport, agent.id, cfg.host, port, metrics_collector=self.metrics)
            await transport.start()  # binds now, so the descriptor can carry the real address
            self.started.append(transport)
            topic = getattr(transport, "address_topic", None)
            if topic is not None:
                agent.topics.append(topic)
            descriptor = build_descriptor(agent) if self.discovery is not None else None
            runtime = AgentRuntime(
                agent, transport, self.pool_manager, self.task_manager, self.metrics, self.discovery, descriptor
            )
            if cfg.pool_id is not None and not self.pool_manager.join_pool(agent.id, cfg.pool_id):
                logger.warning("agent %s could not join pool %s: %s", agent.id, cfg.pool_id, self.pool_manager.last_denial)
            await runtime.start()
            self.started[-1] = runtime
            self.runtimes.append(runtime)

    def startup_line(self) -> str:
        cfg = self.config
        store = cfg.store_backend or ("legacy:" + cfg.discovery_store if cfg.discovery_store else "none")
        if self.store is not None and cfg.store_backend is None and cfg.discovery_store is None:
            store = "memory"
        details = f"transport={cfg.transport} store={store} pool={cfg.pool_id or '-'}"
        agents = " ".join(f"{r.agent.id}@{transport_address(r.transport)}" for r in self.runtimes)
        return f"{PROG}: started {len(self.runtimes)} agent(s) [{details}]: {agents}"

    async def stop(self) -> list[str]:
        """Stop runtimes (and transports started without a runtime) in reverse order; return the errors."""
        errors = []
        for item in reversed(self.started):
            try:
                await item.stop()
            except Exception as exc:
                logger.exception("stopping %r failed", item)
                errors.append(f"{item!r}: {exc}")
        self.started.clear()
        try:
            await asyncio.to_thread(close_store, self.store)
        except Exception as exc:
            logger.exception("closing the store failed")
            errors.append(f"store: {exc}")
        return errors


async def _main(config: RunConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    network = _Network(config)
    status = 0
    try:
        try:
            await asyncio.to_thread(network.build)
            await network.start()
        except Exception as exc:
            logger.debug("start-up failed", exc_info=True)
            print(f"{PROG}: error: could not start: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
            status = 1
        else:
            print(network.startup_line(), flush=True)
            await stop.wait()
            logger.info("stopping %d agent(s)", len(network.runtimes))
    finally:
        errors = await network.stop()  # a second signal while stopping only sets `stop` again
        for sig in signals:
            loop.remove_signal_handler(sig)
    if errors and status == 0:
        print(f"{PROG}: error: unclean stop: {'; '.join(errors)}", file=sys.stderr)
        status = 1
    return status


__all__ = ["create_transport", "run_agents", "transport_address"]
