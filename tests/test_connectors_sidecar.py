"""The webhook sidecar over real HTTP: as a subprocess (`python -m converge webhook-sidecar`) and in-process."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from converge.coordination.task_manager import TaskManager
from converge.core.task import Task, TaskState
from converge.errors import ConfigError
from converge.extensions.connectors import ProviderProfile
from converge.extensions.connectors._sidecar_config import load_sidecar_config, parse_sidecar_config
from converge.extensions.connectors.sidecar import WebhookSidecar, main, run_webhook_sidecar
from converge.extensions.storage.memory import MemoryStore
from converge.extensions.storage.sqlite_store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sidecar-secret-value-1"
LISTENING = re.compile(r"^webhook-sidecar listening on http://([\d.]+):(\d+)$")


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Webhook-Timestamp": str(time.time()),
        "X-Webhook-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    """(status, headers, body) of one real HTTP request; error statuses are returned, not raised."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def write_config(tmp_path: Path, extra: str = "", *, store: Path | None = None) -> Path:
    store_lines = f'store_backend = "sqlite"\nstore_path = "{store}"\n' if store else ""
    cfg = tmp_path / "sidecar.toml"
    cfg.write_text(
        f'bind = "127.0.0.1"\nport = 0\n{store_lines}{extra}\n'
        '[[providers]]\nname = "acme"\nsecret_ref = "acme_secret"\n\n'
        '[[providers]]\nname = "jobs"\nsecret_ref = "acme_secret"\nemit_as = "task"\n\n'
        '[secrets]\nacme_secret = "env:TEST_SIDECAR_SECRET"\n\n'
        "[security]\ntimestamp_skew_limit_sec = 120\nmax_payload_bytes = 4096\n\n"
        "[retry]\nmax_attempts = 2\nbase_delay_sec = 0.01\nrequest_timeout_sec = 2.0\n"
    )
    return cfg


class Proc:
    """A sidecar subprocess whose output lines are collected by reader threads."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_SIDECAR_SECRET": SECRET}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "converge", *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.err_lines: list[str] = []
        self.out_lines: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out_lines, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err_lines, None), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, sink: list[str], q: queue.Queue | None) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            if q is not None:
                q.put(line.rstrip("\n"))

    def wait_listening(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.stdout.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = LISTENING.match(line)
            if match:
                return f"http://{match.group(1)}:{match.group(2)}"
        self.kill()
        raise AssertionError(f"sidecar did not start: rc={self.proc.returncode} stderr={self.err_lines}")

    def stop(self, sig: int, timeout: float = 20.0) -> int:
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.kill()
        for t in self._threads:
            t.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Receiver:
    """A real HTTP endpoint that records what the sidecar sends out."""

    def __init__(self) -> None:
        self.bodies: list[tuple[dict, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/in"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def restore_logging():
    """main() configures the root logger like a program does; put it back afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.mark.slow
def test_sidecar_subprocess_serves_and_stops_on_sigint(tmp_path, receiver):
    from prometheus_client.parser import text_string_to_metric_families

    store_path = tmp_path / "sidecar.sqlite3"
    proc = Proc(["webhook-sidecar", "-c", str(write_config(tmp_path, store=store_path)), "--json-logs"])
    base = proc.wait_listening()
    body = b'{"event_id": "e1", "subject": "hello", "source": "ext"}'
    headers = signed(body)
    status, resp_headers, answer = http("POST", f"{base}/webhook/acme", body, headers)
    assert (status, json.loads(answer)) == (202, {"status": "accepted"})
    assert resp_headers["Content-Type"] == "application/json"
    status, _, answer = http("POST", f"{base}/webhook/acme", body, headers)
    assert (status, json.loads(answer)) == (401, {"error": "unauthorized"})
    job = b'{"event_id": "j1", "subject": "work"}'
    assert http("POST", f"{base}/webhook/jobs", job, signed(job))[0] == 202

    assert http("GET", f"{base}/healthz")[:3:2] == (200, b'{"status":"ok"}')
    assert http("GET", f"{base}/readyz")[:3:2] == (200, b'{"status":"ready"}')
    outbound = {"target": "crm", "url": receiver.url, "body": {"n": 1}, "idempotency_key": "out-1"}
    status, _, answer = http("POST", f"{base}/outbound", json.dumps(outbound).encode(), {"Content-Type": "application/json"})
    assert (status, json.loads(answer)) == (202, {"status": "queued"})
    _wait(lambda: receiver.bodies)
    sent_headers, sent_body = receiver.bodies[0]
    assert json.loads(sent_body) == {"n": 1} and sent_headers["Idempotency-Key"] == "out-1"

    _wait(lambda: b"webhook_outbound_sent_total 1" in http("GET", f"{base}/metrics")[2])
    status, metric_headers, text = http("GET", f"{base}/metrics")
    assert status == 200 and metric_headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text.decode())
        for s in fam.samples
    }
    assert samples[("webhook_inbound_accepted_total", ())] == 2
    assert samples[("webhook_inbound_rejected_total", (("reason", "duplicate"),))] == 1

    assert proc.stop(signal.SIGINT) == 0
    with SQLiteStore(store_path) as store:
        assert store.get("webhook:dedupe:acme:e1") is not None
        (msg_key,) = store.list("webhook:inbound:")
        message = store.get(msg_key)
        assert message["payload"]["event"]["event_id"] == "e1"
        assert message["sender"] == "webhook-connector"
        tasks = [store.get(k) for k in store.list("task:")]
        assert len(tasks) == 1 and isinstance(tasks[0], Task) and tasks[0].state is TaskState.PENDING
        assert tasks[0].inputs["event"]["event_id"] == "j1"
        # an agent's task manager on the same store sees it as pending work
        assert [t.id for t in TaskManager(store).list_pending_tasks(refresh_from_store=True)] == [tasks[0].id]
    logs = [json.loads(line) for line in proc.err_lines if line.strip()]
    assert any(entry.get("reason") == "duplicate" for entry in logs)
    assert all(SECRET not in line for line in proc.err_lines + proc.out_lines)


@pytest.mark.slow
def test_sidecar_subprocess_stops_on_sigterm(tmp_path):
    proc = Proc(["webhook-sidecar", "-c", str(write_config(tmp_path))])
    base = proc.wait_listening()
    assert http("GET", f"{base}/healthz")[0] == 200
    assert proc.stop(signal.SIGTERM) == 0
    assert any("stopping" in line for line in proc.err_lines)


def test_sidecar_subprocess_bad_config_exit_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('port = 0\ncolour = "red"\n')
    proc = Proc(["webhook-sidecar", "-c", str(cfg)])
    rc = proc.proc.wait(20)
    for t in proc._threads:
        t.join(5)
    assert rc == 2
    assert len(proc.err_lines) == 1
    assert "unknown key 'colour'" in proc.err_lines[0] and "accepted keys: bind, port" in proc.err_lines[0]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("port = 70000", "port = 70000"),
        ("port = 0\n[[providers]]\nname = 'a'\n", "missing the required key 'secret_ref'"),
        ("[[providers]]\nname = 'a'\nsecret_ref = 'nope'\n", "secret_ref 'nope'"),
        ("[[providers]]\nname = 'a'\nsecret_ref = 's'\nemit_as = 'fax'\n[secrets]\ns = 'x'\n", "emit_as"),
        ("[security]\nmax_payload_bytes = -1\n", "max_payload_bytes"),
        ("[retry]\nmax_attempts = 0\n", "max_attempts"),
        ("[retry]\ncolour = 1\n", "unknown key 'colour' in [retry]"),
        ("[secrets]\ns = 'env:SURELY_UNSET_VARIABLE_XYZ'\n", "SURELY_UNSET_VARIABLE_XYZ"),
        ("store_backend = 'mongo'", "store_backend = 'mongo'"),
        ("port = [", "not valid TOML"),
    ],
)
def test_bad_config_one_line_names_the_problem(tmp_path, capsys, restore_logging, text, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_missing_config_file_and_secret_not_echoed(tmp_path, capsys, restore_logging):
    assert main(["-c", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ConfigError) as info:
        parse_sidecar_config({"secrets": {"s": 12345678}})
    assert "12345678" not in str(info.value)


def test_json_config_and_env_secret(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"port": 0, "providers": [{"name": "a", "secret_ref": "s",
                                                          "required_payload_fields": ["x"]}],
                               "secrets": {"s": "env:MY_SECRET"}, "security": {"ip_allowlist": ["127.0.0.1"]}}))
    config = load_sidecar_config(cfg, environ={"MY_SECRET": "hunter2-value"})
    assert config.secrets["s"] == "hunter2-value" and "hunter2" not in repr(config.secrets)
    assert config.provider_profiles["a"] == ProviderProfile("a", "s", required_payload_fields=("x",))
    assert config.security_policy.ip_allowlist == ("127.0.0.1",)


# -- in-process ------------------------------------------------------------------------


def _config(**overrides):
    data = {
        "port": 0,
        "providers": [{"name": "acme", "secret_ref": "s"}, {"name": "jobs", "secret_ref": "s", "emit_as": "task"}],
        "secrets": {"s": SECRET, "tok": "outbound-token"},
        "security": {"max_payload_bytes": 1024},
    }
    data.update(overrides)
    return parse_sidecar_config(data)


async def raw_request(address, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_oversized_body_refused_before_it_is_read():
    store = MemoryStore()
    async with WebhookSidecar(_config(), store=store) as sidecar:
        headers = signed(b"{}")
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        # announce 10 MB and send none of it: the answer must come without waiting for the body
        answer = await raw_request(
            sidecar.address, f"POST /webhook/acme HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 10000000\r\n\r\n".encode()
        )
        assert answer.startswith(b"HTTP/1.1 401 ") and answer.endswith(b'{"error":"unauthorized"}')
        counters = sidecar.connector.metrics
        assert counters.get_counter("webhook_inbound_rejected_total", labels={"reason": "size"}) == 1

        chunked = await raw_request(
            sidecar.address, b"POST /webhook/acme HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        assert chunked.startswith(b"HTTP/1.1 411 ")
        garbage = await raw_request(sidecar.address, b"NONSENSE\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        base = "http://%s:%d" % sidecar.address
        assert (await asyncio.to_thread(http, "GET", f"{base}/nowhere"))[0] == 404
        assert (await asyncio.to_thread(http, "POST", f"{base}/healthz", b"{}"))[0] == 405
        assert (await asyncio.to_thread(http, "GET", f"{base}/outbound"))[0] == 405
        status, _, body = await asyncio.to_thread(http, "GET", f"{base}/webhook/acme")
        assert (status, body) == (401, b'{"error":"unauthorized"}')  # method is the first check


async def test_outbound_token_and_invalid_json():
    async with WebhookSidecar(_config(outbound_token_ref="tok"), store=MemoryStore()) as sidecar:
        base = "http://%s:%d" % sidecar.address
        payload = json.dumps({"target": "t", "url": "http://127.0.0.1:9/x"}).encode()
        no_token = await asyncio.to_thread(http, "POST", f"{base}/outbound", payload)
        assert no_token[0] == 401
        wrong = await asyncio.to_thread(http, "POST", f"{base}/outbound", payload, {"Authorization": "Bearer nope"})
        assert wrong[0] == 401
        auth = {"Authorization": "Bearer outbound-token"}
        bad = await asyncio.to_thread(http, "POST", f"{base}/outbound", b"{not json", auth)
        assert (bad[0], bad[2]) == (400, b'{"error":"invalid json"}')
        invalid = await asyncio.to_thread(http, "POST", f"{base}/outbound", b'{"target": "t"}', auth)
        assert invalid[0] == 400 and b"url" in invalid[2]
        sidecar.connector.stop_dispatcher()  # keep the next action queued, to see it dead-lettered at close
        await asyncio.sleep(0.2)
        ok = await asyncio.to_thread(http, "POST", f"{base}/outbound", payload, auth)
        assert ok[0] == 202
        connector = sidecar.connector
    assert connector.dead_letter[-1]["error"] == "sidecar stopped before sending"


async def test_task_profile_is_handed_over_as_pending_task_and_not_ready_on_close():
    store = MemoryStore()
    sidecar = WebhookSidecar(_config(), store=store)
    await sidecar.start()
    base = "http://%s:%d" % sidecar.address
    body = b'{"event_id": "job-1"}'
    status, _, _ = await asyncio.to_thread(http, "POST", f"{base}/webhook/jobs", body, signed(body))
    assert status == 202
    gateway = sidecar.gateway
    await sidecar.aclose()
    await sidecar.aclose()  # idempotent
    assert not gateway.is_ready()
    (key,) = store.list("task:")
    task = store.get(key)
    assert key == f"task:{task.id}" and task.state is TaskState.PENDING
    assert task.objective == {"type": "webhook_event", "provider": "jobs"}
    assert [t.id for t in TaskManager(store).list_pending_tasks(refresh_from_store=True)] == [task.id]


async def test_run_webhook_sidecar_refuses_a_running_loop():
    with pytest.raises(RuntimeError, match="WebhookSidecar"):
        run_webhook_sidecar(bind="127.0.0.1", port=0, provider_profiles={}, secrets={})


# -- TLS and mTLS ----------------------------------------------------------------------


def _pki(tmp_path: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert: x509.Certificate, key) -> None:
        (tmp_path / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp_path / f"{stem}.key").write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )

    def issue(cn: str, issuer_name, issuer_key, *, ca=False, usage=None, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer_name or name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]), critical=False)
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        return cert, key

    ca_cert, ca_key = issue("test-ca", None, None, ca=True)
    write("ca", ca_cert, ca_key)
    write("server", *issue("127.0.0.1", ca_cert.subject, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH, san="127.0.0.1"))
    write("client", *issue("provider", ca_cert.subject, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH))
    return {k: str(tmp_path / k) for k in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def https(url: str, body: bytes, headers: dict[str, str], context) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


async def test_mtls_client_certificate_satisfies_require_mtls(tmp_path):
    import ssl

    pki = _pki(tmp_path)
    config = _config(
        tls={"cert_file": pki["server.pem"], "key_file": pki["server.key"], "client_ca_file": pki["ca.pem"]},
        security={"require_mtls": True},
    )
    async with WebhookSidecar(config, store=MemoryStore()) as sidecar:
        url = "https://127.0.0.1:%d/webhook/acme" % sidecar.address[1]
        with_cert = ssl.create_default_context(cafile=pki["ca.pem"])
        with_cert.load_cert_chain(pki["client.pem"], pki["client.key"])
        without_cert = ssl.create_default_context(cafile=pki["ca.pem"])
        body = b'{"event_id": "tls-1"}'
        assert await asyncio.to_thread(https, url, body, signed(body), without_cert) == 401
        assert await asyncio.to_thread(https, url, body, signed(body), with_cert) == 202
        metrics = sidecar.connector.metrics
        assert metrics.get_counter("webhook_inbound_rejected_total", labels={"reason": "mtls"}) == 1
        assert metrics.get_counter("webhook_inbound_accepted_total") == 1


def test_require_mtls_without_client_ca_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="client_ca_file"):
        _config(security={"require_mtls": True})
    with pytest.raises(ConfigError, match="not a readable file"):
        _config(tls={"cert_file": str(tmp_path / "missing.pem"), "key_file": str(tmp_path / "k")})
