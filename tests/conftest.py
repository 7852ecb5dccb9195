"""Shared fixtures: free ports, a real redis-server, process cleanup helpers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "artifacts"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """An OS-assigned free port on 127.0.0.1 (for programs that need a number up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Stop exactly the process we started: ``sig``, then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_until(pred, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    end = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            text = log.read_text() if log and log.exists() else ""
            raise RuntimeError(f"{what}: process exited rc={proc.returncode}\n{text}")
        try:
            if pred():
                return
        except (OSError, ConnectionError) as exc:  # not up yet
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last!r})")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on 127.0.0.1 with an OS-assigned port; stopped at session end.

    Skips (with the reason) only when the binary is absent; .ci/run installs it, so CI never skips.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); CI installs it")
    redis = pytest.importorskip("redis")
    data = tmp_path_factory.mktemp("redis")
    log = data / "redis.log"
    # port 0 is not accepted by redis-server for TCP; ask the OS for a free port and bind immediately.
    port = free_port()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(data)],
            stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
        )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        wait_until(client.ping, 15, "redis-server", proc, log)
        yield {"host": "127.0.0.1", "port": port, "url": f"redis://127.0.0.1:{port}/0", "pid": proc.pid}
    finally:
        client.close()
        stop_process(proc)


@pytest.fixture
def redis_url(redis_server):
    """A redis URL on a database flushed before the test."""
    import redis

    client = redis.Redis.from_url(redis_server["url"])
    client.flushdb()
    client.close()
    return redis_server["url"]


async def eventually(pred, timeout: float = 5.0, interval: float = 0.005) -> None:
    """Await until ``pred()`` is true (polling on the running loop); AssertionError after ``timeout``."""
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if pred():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
async def no_leaked_tasks():
    """Fail when a test leaves a task running or the loop reports an unhandled error."""
    import asyncio

    loop = asyncio.get_running_loop()
    loop_errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftover == []
    assert loop_errors == []
