"""`converge run` as a real subprocess: TOML/YAML, local/TCP/WebSocket, SQLite/Redis stores, SIGINT/SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from converge.core.pool import Pool
from converge.extensions.storage.sqlite_store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
STARTED = re.compile(r"^converge run: started (\d+) agent\(s\) \[(.*?)\]: (.*)$")


class Run:
    """A `python -m converge ...` subprocess with its output lines collected by reader threads."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "converge", *args], cwd=cwd,
            env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err, False), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _pump(self, stream, sink: list[str], forward: bool) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            if forward:
                self.lines.put(line.rstrip("\n"))

    def started(self, timeout: float = 30.0) -> tuple[dict[str, str], dict[str, str]]:
        """Wait for the start-up line; return ({agent id: address}, {detail: value})."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = STARTED.match(line)
            if match:
                agents = dict(item.split("@", 1) for item in match.group(3).split())
                assert len(agents) == int(match.group(1))
                details = dict(kv.split("=", 1) for kv in match.group(2).split())
                return agents, details
        self.kill()
        raise AssertionError(f"no start-up line: rc={self.proc.returncode} out={self.out} err={self.err}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()
            for t in self.threads:
                t.join(5)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()
            for t in self.threads:
                t.join(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.mark.slow
def test_toml_local_sqlite_pool_and_discovery(tmp_path):
    db = tmp_path / "state" / "converge.sqlite3"
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'transport = "local"\nagents = 2\npool_id = "workers"\nstore_backend = "sqlite"\nstore_path = "{db}"\n')
    run = Run(["run", "-c", str(cfg)], cwd=tmp_path)
    agents, details = run.started()
    assert details == {"transport": "local", "store": "sqlite", "pool": "workers"}
    assert set(agents.values()) == {"local"} and all(len(a) == 64 for a in agents)
    with SQLiteStore(db) as store:
        pool = store.get("pool:workers")
        assert isinstance(pool, Pool) and pool.agents == set(agents)
        for agent_id in agents:
            entry = store.get(f"discovery:agent:{agent_id}")
            assert entry["id"] == agent_id and entry["public_key"]
    assert run.stop(signal.SIGINT) == 0
    with SQLiteStore(db) as store:
        assert store.list("discovery:agent:") == []  # unregistered on stop
        assert store.get("pool:workers").agents == set(agents)  # membership persists, as in the reference
    assert not any("Traceback" in line for line in run.err)


@pytest.mark.slow
def test_yaml_tcp_port_0_redis_and_sigterm(tmp_path, redis_url):
    import redis as redis_lib

    from converge.extensions.storage.redis_store import RedisStore

    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "transport: tcp\nhost: 127.0.0.1\nport: 0\nagents: 2\npool_id: grid\n"
        f"store_backend: redis\nstore_path: {redis_url}\n"
    )
    run = Run(["run", "-c", str(cfg), "-v"], cwd=tmp_path)
    agents, details = run.started()
    assert details["transport"] == "tcp" and details["store"] == "redis"
    ports = set()
    with RedisStore(redis_url) as store:
        for agent_id, address in agents.items():
            match = re.fullmatch(r"tcp://127\.0\.0\.1:(\d+)", address)
            assert match, address
            port = int(match.group(1))
            ports.add(port)
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass  # the agent really listens there
            topics = store.get(f"discovery:agent:{agent_id}")["topics"]
            assert {"namespace": "transport.tcp", "attributes": {"host": "127.0.0.1", "port": port}, "version": "1.0"} in topics
        assert store.get("pool:grid").agents == set(agents)
    assert len(ports) == 2 and 0 not in ports
    assert run.stop(signal.SIGTERM) == 0
    client = redis_lib.Redis.from_url(redis_url)
    try:
        assert client.keys(b"discovery:agent:*") == []
    finally:
        client.close()
    assert any("DEBUG" in line for line in run.err)  # -v


@pytest.mark.slow
def test_environment_only_and_converge_config_default(tmp_path):
    env = {"CONVERGE_AGENTS": "3", "CONVERGE_STORE_BACKEND": "memory", "CONVERGE_PROT": "9"}
    run = Run(["run"], cwd=tmp_path, env=env)
    agents, details = run.started()
    assert len(agents) == 3 and details == {"transport": "local", "store": "memory", "pool": "-"}
    assert run.stop() == 0
    assert any("unknown environment variable CONVERGE_PROT" in line for line in run.err)  # a typo is not silent

    cfg = tmp_path / "c.toml"
    cfg.write_text('transport = "websocket"\nport = 0\n')
    run = Run(["run"], cwd=tmp_path, env={"CONVERGE_CONFIG": str(cfg)})
    agents, details = run.started()
    assert details["transport"] == "websocket"
    assert re.fullmatch(r"ws://127\.0\.0\.1:[1-9]\d*", next(iter(agents.values())))
    assert run.stop() == 0


def test_bad_config_subprocess_exit_2_one_line(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('transport = "carrier-pigeon"\n')
    run = Run(["run", "-c", str(cfg)], cwd=tmp_path)
    assert run.wait() == 2
    assert run.out == []
    assert len(run.err) == 1
    line = run.err[0]
    assert "transport" in line and "carrier-pigeon" in line and "local, tcp, websocket" in line


def test_port_in_use_exit_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = Run(["run"], cwd=tmp_path, env={"CONVERGE_TRANSPORT": "tcp", "CONVERGE_PORT": str(port)})
        assert run.wait() == 1
    errors = [line for line in run.err if line.startswith("converge run: error:")]
    assert len(errors) == 1 and "could not start" in errors[0] and str(port) in errors[0]


def test_no_command_is_a_usage_error(tmp_path):
    run = Run([], cwd=tmp_path)
    assert run.wait() == 2
    assert any("usage: converge" in line for line in run.err)
