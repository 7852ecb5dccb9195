"""A converge agent in its own process, for notebook 05_beyond_one_process.

    python remote_worker.py --sqlite /path/to/shared.sqlite3
    python remote_worker.py --redis redis://127.0.0.1:6379/0

It listens on TCP (127.0.0.1, port chosen by the OS) and advertises that route as a
topic in discovery, in the shared store (``discovery:agent:<id>``), together with its
public key and the capability ``remote-sum``. Then it

* claims and completes the pending tasks that require ``remote-sum`` (the shared
  store's ``TaskManager``), reporting ``{"sum": ..., "pid": ...}``;
* answers every ``{"ping": n}`` message with ``{"pong": n}``, sent over TCP to the
  ``transport.tcp`` route the sender put in the message's topics (next to ours, which
  routed the message here). Messages whose
  signature does not verify against the sender's key in discovery are dropped.

It stops cleanly (leaving discovery) when its stdin closes — the notebook closes it, and
so does the end of the kernel process, however it ends — or on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from typing import Any

from converge.coordination.pool_manager import PoolManager
from converge.coordination.task_manager import TaskManager
from converge.core.decisions import ClaimTask, ReportTask, SendMessage
from converge.core.message import Message
from converge.network.discovery import DiscoveryService
from converge.network.transport.tcp import TCP_NAMESPACE, TcpTransport
from converge.runtime import AgentRuntime
from converge.testing.agents import FunctionAgent

CAPABILITY = "remote-sum"


class DiscoveryKeys:
    """Public keys of senders, looked up in the shared store's discovery entries."""

    def __init__(self, discovery: DiscoveryService) -> None:
        self.discovery = discovery

    def get(self, agent_id: str) -> bytes | None:
        descriptor = self.discovery.get(agent_id)
        if descriptor is None:
            self.discovery.refresh()  # an agent that registered after our last look
            descriptor = self.discovery.get(agent_id)
        return descriptor.public_key if descriptor is not None else None


class PrintSteps:
    """Runtime hook: one log line per step that had work."""

    def on_step(self, record: Any) -> None:
        if not record.idle:
            did = ", ".join(f"{type(o.decision).__name__}:{o.status}" for o in record.outcomes) or "-"
            print(f"step {record.step}: {len(record.messages)} message(s), {len(record.tasks)} task(s) -> {did}", flush=True)


def decide(agent: Any, messages: list[Message], tasks: list[Any]) -> list[Any]:
    out: list[Any] = []
    for m in messages:
        # the sender's route: a transport.tcp topic that is not ours (ours routed the message here)
        route = [t for t in m.topics if t.namespace == TCP_NAMESPACE and t not in agent.topics][:1]
        if "ping" in m.payload and route:
            out.append(SendMessage(Message(recipient=m.sender, topics=route,
                                           payload={"pong": m.payload["ping"], "pid": os.getpid()})))
    for task in tasks:
        result = {"sum": sum(task.inputs.get("numbers", [])), "pid": os.getpid()}
        out += [ClaimTask(task.id), ReportTask(task.id, result)]
    return out


def open_store(args: argparse.Namespace) -> Any:
    if args.sqlite:
        from converge.extensions.storage.sqlite_store import SQLiteStore

        return SQLiteStore(args.sqlite)
    from converge.extensions.storage.redis_store import RedisStore

    return RedisStore(args.redis)


def stop_on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """A daemon thread waits for EOF on stdin, then sets ``stop`` on the loop."""

    def wait() -> None:
        sys.stdin.read()
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # the loop already ended: nothing left to stop
            return

    threading.Thread(target=wait, name="stdin-eof", daemon=True).start()


async def main(args: argparse.Namespace) -> None:
    store = open_store(args)
    discovery = DiscoveryService(store=store)
    agent = FunctionAgent(decide, name=args.name, capabilities=[CAPABILITY])
    transport = TcpTransport("127.0.0.1", 0, identity_fingerprint=agent.id)
    await transport.start()  # learn the OS-chosen port before advertising it
    agent.topics = [transport.address_topic]
    runtime = AgentRuntime(agent, transport, PoolManager(store), TaskManager(store), discovery_service=discovery,
                           identity_registry=DiscoveryKeys(discovery), runtime_hooks=[PrintSteps()],
                           task_poll_interval_sec=0.1, scheduler_timeout_sec=0.2, receive_timeout_sec=1.0)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stop_on_stdin_eof(loop, stop)
    await runtime.start()
    print(f"worker {args.name} {agent.id[:12]} pid {os.getpid()} listening on {transport.host}:{transport.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runtime.stop()  # also unregisters from discovery and closes the TCP server
        close = getattr(store, "close", None)
        if close is not None:
            close()
        print(f"worker {args.name} stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sqlite", help="path of the shared SQLite store")
    where.add_argument("--redis", help="URL of the shared Redis store")
    parser.add_argument("--name", default="remote", help="display name")
    asyncio.run(main(parser.parse_args()))
