"""Keeping credentials out of reprs, logs and error messages."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from converge.errors import ConfigError

# Header names whose values are credentials; they are shown as "<redacted>" in reprs and logs.
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token"}
)


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with credential-bearing values replaced by ``"<redacted>"``."""
    return {k: ("<redacted>" if k.lower() in SENSITIVE_HEADERS else v) for k, v in headers.items()}


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (those may carry tokens), for logs and errors."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable url>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


class SecretMap(Mapping[str, str]):
    """A read-only ``secret_ref -> secret`` mapping whose ``repr`` never shows a secret.

    Objects that hold secrets keep them in one of these, so printing the
    object, its ``vars()`` or a traceback's locals shows only the names.
    """

    __slots__ = ("_data",)

    def __init__(self, secrets: Mapping[str, str]) -> None:
        data: dict[str, str] = {}
        for name, value in secrets.items():
            if not isinstance(name, str) or not isinstance(value, str):
                # Name the key only: the value may be a secret.
                raise ConfigError(f"secrets must map str to str; the entry {name!r} is not a str -> str pair")
            data[name] = value
        self._data = data

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<{len(self._data)} secrets: {sorted(self._data)!r}, values redacted>"

    __str__ = __repr__
