"""Planted secrets never show up in any output of a full run.

One run exercises everything that writes text: an ``LLMAgent`` on the real
OpenAI SDK against the loopback server (a key passed as an argument, and a
wrong key from ``$OPENAI_API_KEY`` that the server echoes back in its 401 like
a real vendor), a ``RecordingProvider`` cassette, a ``ReplayLog`` file, the
webhook connector (inbound HMAC secret, an outbound action carrying a bearer
token, retries and a dead letter), a ``Lab`` with its DataFrames, metrics in
Prometheus text, reprs and error messages, and every log record at DEBUG (raw
records via caplog, and the JSON formatter). Then each output is searched for
each secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import secrets
import time

import pytest

from converge.core.identity import Identity
from converge.core.message import Message
from converge.extensions.connectors import OutboundWebhookAction, ProviderProfile, WebhookConnector, WebhookRetryPolicy
from converge.extensions.llm import LLMAgent, OpenAIProvider
from converge.extensions.llm.cassette import RecordingProvider
from converge.observability.logging import JsonFormatter
from converge.observability.replay import ReplayLog
from converge.testing.agents import FunctionAgent
from converge.testing.llm_servers import OpenAIServer, Reply

pytest.importorskip("pandas")
from converge_lab import Lab  # noqa: E402

API_KEY = "sk-planted-arg-" + secrets.token_hex(12)
WRONG_KEY = "sk-planted-wrong-" + secrets.token_hex(12)
ENV_KEY = "sk-planted-env-" + secrets.token_hex(12)
WEBHOOK_SECRET = "whsec_planted_" + secrets.token_hex(12)
BEARER = "tok_planted_" + secrets.token_hex(12)
SECRETS = {"api key argument": API_KEY, "rejected api key argument": WRONG_KEY, "rejected api key from env": ENV_KEY,
           "webhook secret": WEBHOOK_SECRET, "outbound bearer token": BEARER}
# A vendor that echoes a rejected key in its 401 message puts it into the SDK exception; ProviderError
# does not chain it (its __cause__ is a redacted stand-in), so tracebacks logged with exc_info stay clean.


def _respond(peer_id: str):
    def respond(request):
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {API_KEY}":  # like a real vendor: the 401 names the key it got
            return Reply.error(401, f"Incorrect API key provided: {auth.removeprefix('Bearer ')}.",
                               error_type="invalid_request_error")
        decision = [{"type": "SendMessage", "message": {"recipient": peer_id, "payload": {"reply": "done"}}}]
        return Reply(json.dumps(decision))

    return respond


def _signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Webhook-Timestamp": str(time.time()),
            "X-Webhook-Signature": hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()}


async def _webhook_flow(lab: Lab, peer_id: str, outputs: dict[str, str]) -> WebhookConnector:
    sent: list[OutboundWebhookAction] = []

    def failing_sender(action: OutboundWebhookAction) -> tuple[int, bytes]:
        sent.append(action)
        return 503, b'{"error": "try later"}'

    async def no_sleep(_: float) -> None:
        return None

    connector = WebhookConnector(
        provider_profiles={"acme": ProviderProfile(name="acme", secret_ref="acme")}, secrets={"acme": WEBHOOK_SECRET},
        retry_policy=WebhookRetryPolicy(max_attempts=2), outbound_sender=failing_sender, sleep=no_sleep,
    )
    body = json.dumps({"event_id": "e1", "subject": "order", "source": "shop"}).encode()
    statuses = [
        (await connector.accept_inbound_http("acme", method="POST", headers=_signed(body), raw_body=body))[0],
        (await connector.accept_inbound_http("acme", method="POST", headers=_signed(body), raw_body=body))[0],  # duplicate
        (await connector.accept_inbound_http("acme", method="POST", headers={**_signed(body), "X-Webhook-Signature": WEBHOOK_SECRET},
                                             raw_body=body))[0],  # the secret itself as a signature
    ]
    assert statuses == [202, 401, 401]
    inbound = connector.inbound_messages.get_nowait()
    injected = await lab.send(Message(recipient=peer_id, sender=inbound.sender, topics=inbound.topics, payload=inbound.payload))
    outputs["webhook message id"] = injected.id
    action = OutboundWebhookAction(target="crm", method="POST", url="https://crm.example/hook", body={"x": 1},
                                   headers={"Authorization": f"Bearer {BEARER}", "X-Api-Key": BEARER})
    assert await connector.dispatch_outbound_action(action) is False  # retried, then dead-lettered
    assert len(sent) == 2 and sent[0].headers["Authorization"] == f"Bearer {BEARER}"  # the token was really used
    outputs["repr(connector)"] = repr(connector) + repr(connector.security) + repr(action)
    outputs["connector metrics"] = connector.metrics.format_prometheus()

    return connector


async def test_planted_secrets_never_appear_in_outputs(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' included; records as emitted (no redaction filter)
    json_out = io.StringIO()
    json_handler = logging.StreamHandler(json_out)
    json_handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(json_handler)
    outputs: dict[str, str] = {}
    cassette, replay_path = tmp_path / "cassette.jsonl", tmp_path / "replay.jsonl"
    try:
        async with Lab(runtime_defaults={"receive_timeout_sec": 0.2}) as lab:
            peer = FunctionAgent(lambda a, m, t: [], name="peer")
            await lab.add(peer)
            server = OpenAIServer(default=_respond(peer.id))
            async with server:
                recorder = RecordingProvider(OpenAIProvider(api_key=API_KEY, base_url=server.base_url, max_retries=0), cassette)
                good = LLMAgent(Identity.generate(), recorder, retry_delays=())
                env_provider = OpenAIProvider(base_url=server.base_url, max_retries=0)  # the key comes from the env
                wrong = LLMAgent(Identity.generate(), env_provider, retry_delays=())
                wrong_arg = OpenAIProvider(api_key=WRONG_KEY, base_url=server.base_url, max_retries=0)
                wrong2 = LLMAgent(Identity.generate(), wrong_arg, retry_delays=())
                replay_log = ReplayLog(replay_path)
                await lab.add(good, name="good", replay_log=replay_log, identity_registry=lab.identities)
                await lab.add(wrong, name="wrong")
                await lab.add(wrong2, name="wrong2")
                await lab.send(to="good", payload={"task": "answer"}, sender="peer")
                await lab.send(to="wrong", payload={"task": "answer"}, sender="peer")
                await lab.send(to="wrong2", payload={"task": "answer"}, sender="peer")
                await _webhook_flow(lab, peer.id, outputs)
                async with asyncio.timeout(10):
                    while len(server.requests) < 3 or not peer.calls or None in (wrong.last_decide_error, wrong2.last_decide_error):
                        await asyncio.sleep(0.02)
                assert await lab.run_until_idle(timeout=10)
                keys_seen = {r.headers.get("authorization") for r in server.requests}
                assert keys_seen == {f"Bearer {k}" for k in (API_KEY, ENV_KEY, WRONG_KEY)}  # every key was really sent
                errors = [e for e in (wrong.last_decide_error, wrong2.last_decide_error, good.last_decide_error) if e]
                assert [type(e).__name__ for e in errors] == ["ProviderAuthError", "ProviderAuthError"]
                outputs["errors"] = "\n".join(f"{type(e).__name__}: {e} {e!r} {e.__cause__!r}" for e in errors)
                outputs["reprs"] = " ".join(repr(x) for x in (recorder, recorder.provider, env_provider, wrong_arg, good, wrong, lab,
                                                              *lab.agents, *(h.runtime for h in lab.agents)))
                outputs["runtime recent errors"] = repr([list(h.runtime.recent_errors) for h in lab.agents])
                frames = lab.frames
                for name in ("agents", "messages", "steps", "trace", "costs", "inbox", "tasks", "pools"):
                    outputs[f"lab.frames.{name}()"] = getattr(frames, name)().to_csv()
                outputs["lab journal errors"] = repr(list(lab.journal.errors))
                outputs["lab metrics"] = lab.metrics.format_prometheus()
                replay_log.close()
                for provider in (recorder.provider, env_provider, wrong_arg):
                    await provider.aclose()  # an unclosed async SDK client would be finalised on a later test's loop
    finally:
        logging.getLogger().removeHandler(json_handler)
    outputs["cassette file"] = cassette.read_text()
    outputs["replay log file"] = replay_path.read_text()
    outputs["log records (caplog)"] = caplog.text + "\n".join(repr(r.args) + repr(getattr(r, "props", "")) for r in caplog.records)
    outputs["log output (JsonFormatter)"] = json_out.getvalue()
    assert json.loads(outputs["cassette file"].splitlines()[0])["response"]  # a real exchange was recorded
    assert '"direction": "inbound"' in outputs["replay log file"] or "inbound" in outputs["replay log file"]
    assert outputs.pop("webhook message id") in outputs["lab.frames.messages()"]
    assert "ProviderAuthError" in outputs["errors"] and "401" in outputs["errors"]

    leaks = [(what, where) for what, secret in SECRETS.items() for where, text in outputs.items() if secret in text]
    assert leaks == [], f"secrets found in outputs: {leaks}"


@pytest.mark.parametrize("from_env", [False, True], ids=["api_key-argument", "env-variable"])
async def test_vendor_echoed_key_stays_out_of_errors_and_tracebacks(monkeypatch, from_env):
    """A 401 that echoes the rejected key: the ProviderError, its cause chain and a logged traceback stay clean."""
    if from_env:
        monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    key = ENV_KEY if from_env else WRONG_KEY
    async with OpenAIServer(default=_respond("nobody")) as server:
        provider = OpenAIProvider(api_key=None if from_env else key, base_url=server.base_url, max_retries=0)
        with pytest.raises(Exception) as info:
            await provider.achat([{"role": "user", "content": "hi"}])
        await provider.aclose()
    assert type(info.value).__name__ == "ProviderAuthError" and key not in str(info.value)  # the message is redacted
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("converge.test_secrets")
    log.addHandler(handler)
    try:
        log.error("provider failed", exc_info=info.value)
    finally:
        log.removeHandler(handler)
    assert "Traceback" in out.getvalue() or "exception" in out.getvalue()  # the traceback was really formatted
    chain = f"{info.value.__cause__!r} {info.value.__context__!r}"
    assert key not in out.getvalue() and key not in chain


def test_dead_letters_keep_credentials_only_masked(tmp_path):
    """A dead letter is stored for later inspection; the credential headers of its action are masked."""
    connector = WebhookConnector(provider_profiles={}, secrets={}, retry_policy=WebhookRetryPolicy(max_attempts=1),
                                 outbound_sender=lambda action: (500, b""))
    action = OutboundWebhookAction(target="crm", method="POST", url="https://crm.example/hook", body={},
                                   headers={"Authorization": f"Bearer {BEARER}"})
    assert asyncio.run(connector.dispatch_outbound_action(action)) is False
    stored = [connector.store.get(k) for k in connector.store.list("webhook:dead_letter:")]
    assert len(stored) == 1
    text = json.dumps(stored, default=str) + json.dumps(list(connector.dead_letter), default=str)
    assert stored[0]["action"]["url"] == "https://crm.example/hook"  # the dead letter still says what failed
    assert BEARER not in text
