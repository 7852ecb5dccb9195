"""Logging helpers: JSON output, structured records and secret redaction.

``log_struct(logger, level, msg, **fields)`` attaches ``fields`` to the record
(``record.props``); :class:`JsonFormatter` writes them as top-level JSON keys.

Secrets never reach the output: the values of keys named like an API key,
secret, token, authorization header or password are replaced by ``"***"``
(recursively, in ``props`` and in dicts passed as log arguments), and
``key=value`` / ``Bearer ...`` fragments in message text are masked too.
:func:`configure_logging` installs that filter on its handler; the JSON
formatter redacts ``props`` on its own as well.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

_SECRET_KEY = re.compile(
    r"^(?:.*[_\-.])?(?:api[_\-]?key|apikey|secrets?|token|access[_\-]?key|private[_\-]?key|"
    r"authorization|proxy[_\-]authorization|password|passwd|passphrase|credentials?|cookie|set[_\-]cookie)$",
    re.IGNORECASE,
)
# `api_key=abc`, `"token": "abc"`, `Authorization: Bearer abc` inside free text.
_SECRET_TEXT = re.compile(
    r"(?P<key>\b[\w\-]*(?:api[_\-]?key|secret|token|password|passwd|authorization)\b[\"']?\s*[:=]\s*)"
    r"(?P<q>[\"']?)(?:bearer\s+|basic\s+)?(?P<val>[^\s\"',;}&]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)

_TEXT_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def is_secret_key(key: Any) -> bool:
    """True when a mapping key names a secret (``api_key``, ``X-Api-Key``, ``client_secret``...)."""
    return isinstance(key, str) and _SECRET_KEY.match(key) is not None


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-named keys masked, recursively through dicts and lists."""
    if isinstance(value, Mapping):
        return {k: (REDACTED if is_secret_key(k) and v is not None else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """Mask ``secret=value`` pairs and bearer credentials inside free text."""
    if not text:
        return text
    text = _SECRET_TEXT.sub(lambda m: f"{m.group('key')}{m.group('q')}{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


class RedactionFilter(logging.Filter):
    """Masks secrets in a record's message, arguments and ``props`` (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        props = getattr(record, "props", None)
        if isinstance(props, Mapping):
            record.props = redact(props)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad %-args: let the handler report it as usual
            return True
        redacted = redact_text(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record.

    Keys: ``timestamp``, ``level``, ``message``, ``logger``, ``module`` (as in
    the reference), ``exception`` when the record carries one, ``trace_id``
    when the record was logged inside a trace (``include_trace_id``), merged
    with the record's ``props``. ``props`` are redacted.
    """

    def __init__(self, *args: Any, include_trace_id: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.include_trace_id = include_trace_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": self.formatTime(record),
            "level": record.levelname,
            "message": redact_text(record.getMessage()),
            "logger": record.name,
            "module": record.module,
        }
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        if self.include_trace_id:
            trace_id = getattr(record, "trace_id", None) or _current_trace_id()
            if trace_id is not None:
                entry["trace_id"] = trace_id
        props = getattr(record, "props", None)
        if isinstance(props, Mapping):
            entry.update(redact(props))
        return json.dumps(entry, default=str)


def _current_trace_id() -> str | None:
    from converge.observability.tracing import _trace_var

    # Only report an id that already exists: formatting a log line must not mint trace ids.
    value = _trace_var.get()
    if value is None or isinstance(value, str):
        return value
    return value._trace_id


def configure_logging(level: int = logging.INFO, *, json_format: bool = False, stream: Any = None) -> None:
    """Configure the root logger: one stream handler (stdout by default), JSON or text, with redaction.

    Removes existing root handlers, as the reference does.
    """
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(_TEXT_FORMAT))
    handler.addFilter(RedactionFilter())
    root.addHandler(handler)


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``."""
    return logging.getLogger(name)


def log_struct(logger: logging.Logger, level: int, message: str, **kwargs: Any) -> None:
    """Log ``message`` with ``kwargs`` as structured fields (top-level keys in JSON output).

    Secret-named fields are redacted before the record is created.
    """
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"props": redact(kwargs)})


__all__ = [
    "REDACTED",
    "JsonFormatter",
    "RedactionFilter",
    "configure_logging",
    "get_logger",
    "is_secret_key",
    "log_struct",
    "redact",
    "redact_text",
]
