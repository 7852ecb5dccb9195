"""Logging: JSON output, structured fields, text format, redaction of secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest

from converge.observability.logging import (
    JsonFormatter,
    RedactionFilter,
    configure_logging,
    get_logger,
    is_secret_key,
    log_struct,
    redact,
    redact_text,
)
from converge.observability.tracing import set_trace_id, trace

SECRET = "sk-planted-7f3a9c1e55"


@pytest.fixture
def root_restored():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_json_formatter_keys_and_struct_fields():
    logger, stream = _json_logger("test.obs.json")
    log_struct(logger, logging.INFO, "task claimed", task_id="t1", attempt=2)
    entry = json.loads(stream.getvalue())
    assert {"timestamp", "level", "message", "logger", "module"} <= set(entry)
    assert entry["level"] == "INFO" and entry["message"] == "task claimed" and entry["logger"] == "test.obs.json"
    assert entry["task_id"] == "t1" and entry["attempt"] == 2
    assert "trace_id" not in entry


def test_log_struct_respects_level():
    logger, stream = _json_logger("test.obs.level")
    logger.setLevel(logging.WARNING)
    log_struct(logger, logging.INFO, "quiet", x=1)
    assert stream.getvalue() == ""


def test_json_includes_trace_id_and_exception():
    logger, stream = _json_logger("test.obs.trace")
    set_trace_id("trace-abc")
    try:
        with trace("op"):
            try:
                raise ValueError("bad thing")
            except ValueError:
                logger.exception("failed")
    finally:
        set_trace_id(None)
    entry = json.loads(stream.getvalue())
    assert entry["trace_id"] == "trace-abc"
    assert "ValueError: bad thing" in entry["exception"]


def test_secrets_are_redacted_in_json_output():
    logger, stream = _json_logger("test.obs.redact")
    log_struct(
        logger, logging.INFO, f"calling provider with api_key={SECRET}",
        api_key=SECRET, headers={"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET, "accept": "json"},
        nested=[{"client_secret": SECRET}], password=SECRET, input_tokens=12, model="gpt",
    )
    # A caller bypassing log_struct is still covered by the formatter.
    logger.info("raw", extra={"props": {"token": SECRET, "note": f"token: {SECRET}"}})
    out = stream.getvalue()
    assert SECRET not in out
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["api_key"] == "***" and first["password"] == "***"
    assert first["headers"] == {"Authorization": "***", "X-Api-Key": "***", "accept": "json"}
    assert first["nested"] == [{"client_secret": "***"}]
    assert first["input_tokens"] == 12 and first["model"] == "gpt"  # look-alikes are kept
    assert first["message"] == "calling provider with api_key=***"
    assert second["token"] == "***" and second["note"] == "token: ***"


def test_configure_logging_text_format_redacts_messages(root_restored):
    stream = io.StringIO()
    configure_logging(logging.DEBUG, stream=stream)
    root = logging.getLogger()
    assert root.level == logging.DEBUG and len(root.handlers) == 1
    get_logger("test.obs.text").info("connect password=%s to %s", SECRET, "db")
    get_logger("test.obs.text").info("header %s", {"Authorization": f"Bearer {SECRET}"})
    out = stream.getvalue()
    assert SECRET not in out
    assert " - test.obs.text - INFO - connect password=*** to db" in out


def test_configure_logging_json_replaces_handlers(root_restored):
    stream = io.StringIO()
    configure_logging(logging.INFO, json_format=True, stream=stream)
    configure_logging(logging.INFO, json_format=True, stream=stream)  # still one handler
    assert len(logging.getLogger().handlers) == 1
    log_struct(get_logger("test.obs.cfg"), logging.INFO, "hello", secret=SECRET)
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "hello" and entry["secret"] == "***"


def test_redaction_helpers():
    assert is_secret_key("OPENAI_API_KEY") and is_secret_key("x-api-key") and is_secret_key("refresh_token")
    assert not is_secret_key("max_tokens") and not is_secret_key("secret_ref") and not is_secret_key("tokens")
    assert redact({"a": {"password": "p", "user": "u"}}) == {"a": {"password": "***", "user": "u"}}
    assert redact_text("Authorization: Bearer abc.def") == "Authorization: ***"
    assert redact_text("sent 3 tokens") == "sent 3 tokens"
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "k %s", ("secret=zzz",), None)
    assert RedactionFilter().filter(record) is True and record.getMessage() == "k secret=***"
