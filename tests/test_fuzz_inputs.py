"""Property-based fuzzing of every parser that takes outside input (small budget; fuzz/run.py runs the big one).

Each target accepts the input or raises its documented typed error; nothing else
escapes, nothing hangs. The inputs known to break a parser today (nesting bombs,
YAML alias bombs, lone surrogates) are pinned by the regression tests at the
end, which are expected failures until their owners fix them (see SECURITY.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converge.core.identity import Identity
from converge.core.message import Message
from converge.extensions.connectors import ProviderProfile, WebhookConnector
from converge.extensions.llm import LLMAgent, ScriptedProvider
from converge.extensions.llm._parsing import ItemError, decode_items
from converge.network.transport.tcp import TcpTransport

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # the fuzz/ package sits next to tests/ (plain `pytest` runs)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.targets import (  # noqa: E402
    TARGETS, WEBHOOK_NOW, WEBHOOK_SECRET, Finding, check_config, check_sidecar, check_webhook, cleanup,
)

# The suite's fuzzing is derandomized: the same inputs every run (a regression budget that cannot
# flake); fuzz/run.py explores at random with a large budget.
FAST = settings(max_examples=250, database=None, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _cleanup_targets():
    yield
    cleanup()


@pytest.mark.parametrize("name", list(TARGETS))
def test_target_only_raises_its_typed_error(name):
    target = TARGETS[name]

    @FAST
    @given(target.strategy(False))
    def run(value):
        target.check(value)

    run()


@pytest.mark.parametrize("name", list(TARGETS))
def test_seed_inputs_are_accepted(name):
    """The seeds are valid inputs: the checks do not reject good data (the checks can fail)."""
    target = TARGETS[name]
    for seed in target.seeds():
        target.check(target.from_bytes(seed))


# -- the process keeps serving ------------------------------------------------------
def test_tcp_server_keeps_serving_after_fuzzed_streams():
    loop = asyncio.new_event_loop()
    server = TcpTransport("127.0.0.1", 0, "srv", max_frame_size=4096)
    loop.run_until_complete(server.start())
    marker = Message(payload={"marker": True})

    async def exchange(data: bytes) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = marker.to_bytes()
        writer.write(len(body).to_bytes(4, "big") + body)
        await writer.drain()
        async with asyncio.timeout(5):
            while (await server.receive()).id != marker.id:
                pass  # valid frames inside the fuzzed stream are delivered too
        writer.close()
        await writer.wait_closed()

    @settings(max_examples=60, database=None, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(TARGETS["frames"].strategy(False))
    def run(data):
        loop.run_until_complete(exchange(data))

    try:
        run()
        bad = sum(server.drops.values())
        assert bad > 0  # the fuzzed streams did contain bad frames, counted as drops
        assert set(server.drops) <= {"malformed_frame", "oversized_frame", "truncated_frame"}
    finally:
        loop.run_until_complete(server.stop())
        loop.close()


def _signed_request(body: bytes, now: float) -> dict:
    sig = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"method": "POST", "raw_body": body, "remote_addr": "127.0.0.1",
            "headers": {"Content-Type": "application/json", "X-Webhook-Signature": sig, "X-Webhook-Timestamp": str(now)}}


def test_webhook_connector_answers_401_or_202_and_keeps_accepting():
    loop = asyncio.new_event_loop()
    connector = WebhookConnector(provider_profiles={"acme": ProviderProfile(name="acme", secret_ref="acme")},
                                 secrets={"acme": WEBHOOK_SECRET}, clock=lambda: WEBHOOK_NOW)
    counter = iter(range(10**9))

    @settings(max_examples=150, database=None, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(TARGETS["webhook"].strategy(False))
    def run(request):
        request = dict(request)
        request.pop("canonicalization")
        status, _, body = loop.run_until_complete(connector.accept_inbound_http(request.pop("provider"), **request))
        assert status in (202, 401), body
        good = _signed_request(json.dumps({"event_id": f"control-{next(counter)}"}).encode(), WEBHOOK_NOW)
        assert loop.run_until_complete(connector.accept_inbound_http("acme", **good))[0] == 202

    try:
        run()
        assert connector.metrics.counter_total("webhook_inbound_rejected_total") > 0
    finally:
        loop.close()


def test_llm_agent_keeps_deciding_whatever_the_model_says():
    """The whole LLMAgent path: any model text gives a list of decisions (possibly empty), never an exception."""
    loop = asyncio.new_event_loop()
    replies: list[str] = []
    agent = LLMAgent(Identity.generate(), ScriptedProvider(lambda messages: replies[-1]), retry_delays=())
    incoming = [Message(sender="peer", payload={"q": 1})]

    @settings(max_examples=100, database=None, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(TARGETS["llm"].strategy(False))
    def run(text):
        replies.append(text)
        decisions = loop.run_until_complete(agent.adecide(incoming, []))
        assert isinstance(decisions, list)

    try:
        run()
        assert agent.counters["repairs"] > 0  # malformed answers did occur and were handled
    finally:
        loop.close()


# -- regression inputs found by fuzz/run.py (SECURITY.md, "Findings") --------------------
def test_llm_parser_nesting_bomb_is_an_item_error():
    with pytest.raises(ItemError):
        decode_items("[" * 100_000)


def test_llm_agent_survives_a_nesting_bomb_answer():
    """A prompt-injected answer nested 100k deep: ``adecide`` returns ``[]`` and reports, never raises."""
    agent = LLMAgent(Identity.generate(), ScriptedProvider(lambda messages: "[" * 100_000), retry_delays=())
    decisions = asyncio.run(agent.adecide([Message(sender="peer", payload={})], []))
    assert decisions == [] and agent.last_decide_error is not None


@pytest.mark.parametrize(
    ("loader", "suffix", "text"),
    [
        ("run", ".yaml", "agents: " + "[" * 20_000 + "]" * 20_000 + "\n"),
        ("run", ".toml", "agents = " + "[" * 20_000 + "]" * 20_000 + "\n"),
        ("sidecar", ".toml", "port = " + "[" * 20_000 + "]" * 20_000 + "\n"),
        ("sidecar", ".json", '{"port": ' + "[" * 20_000 + "]" * 20_000 + "}"),
    ],
    ids=["run-yaml", "run-toml", "sidecar-toml", "sidecar-json"],
)
def test_config_nesting_bomb_is_a_config_error(loader, suffix, text):
    """The check raises a Finding for anything but ``ConfigError`` (``RecursionError`` before the fix)."""
    if loader == "run":
        check_config((suffix, text, {}))
    else:
        check_sidecar((suffix, text))


@pytest.mark.parametrize("value", ["²", "¹2", "+³", "٣"])
def test_unicode_digit_look_alikes_are_config_errors(value):
    """``str.isdigit`` accepts superscripts that ``int`` refuses (a bare ValueError before the fix)."""
    from converge._config import validate
    from converge.errors import ConfigError

    with pytest.raises(ConfigError, match="agents"):
        validate({"agents": (value, "environment variable CONVERGE_AGENTS")})


@pytest.mark.parametrize("levels", [5, 9])
def test_yaml_alias_bomb_gives_a_short_config_error(levels):
    """9 levels of 9-fold aliases: a 430-byte file whose repr would need gigabytes (the check bounds the message)."""
    lines = ["host:", '  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"  - &b{i} [" + ",".join([f"*{'a' if i == 1 else f'b{i - 1}'}"] * 9) + "]")
    check_config((".yaml", "\n".join(lines) + "\n", {}))


def test_webhook_event_id_with_a_lone_surrogate_is_a_security_error():
    """A correctly signed request: the check raises a Finding unless it is a WebhookSecurityError (not HTTP 500)."""
    body = json.dumps({"event_id": "e\ud800"}).encode()
    check_webhook({"canonicalization": "raw_body", "provider": "acme", **_signed_request(body, WEBHOOK_NOW)})


def test_verify_of_a_deep_in_process_payload_returns_false():
    """``Message.verify`` "never raises"; an in-process payload deeper than the recursion limit made it raise."""
    alice = Identity.generate()
    deep: dict = {"leaf": 1}
    for _ in range(2_000):
        deep = {"d": deep}
    assert Message(sender=alice.fingerprint, payload=deep, signature=b"x" * 64).verify(alice.public_key) is False


def test_hostile_strategies_are_generated_by_the_big_run():
    """fuzz/run.py uses hostile=True: nesting bombs and friends do appear in its inputs."""
    seen = set()

    @settings(max_examples=300, database=None, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(TARGETS["llm"].strategy(True))
    def run(text):
        if text.startswith(("[" * 500, '{"a":' * 500)):
            seen.add("deep")

    run()
    assert seen == {"deep"}


def test_webhook_errors_never_carry_the_secret():
    """Even a request that sends the secret itself as its signature gets an error without it."""

    @FAST
    @given(st.binary(max_size=200), st.sampled_from(["raw_body", "json_sorted"]))
    def run(body, canonicalization):
        request = _signed_request(body, WEBHOOK_NOW)
        request["headers"]["X-Webhook-Signature"] = WEBHOOK_SECRET
        check_webhook({"canonicalization": canonicalization, "provider": "acme", **request})  # a Finding if it leaks

    run()
