"""The webhook sidecar's configuration file (TOML, or JSON for any other suffix).

Keys (unknown keys are refused, naming the key and the accepted ones)::

    bind = "127.0.0.1"          # address to listen on
    port = 8090                 # 0 = OS-assigned (the actual port is printed)
    connector_id = "webhook-connector"
    store_backend = "memory"    # memory, file, sqlite, redis: dedupe records and dead letters
    store_path = "..."          # directory, SQLite file or Redis URL
    outbound_token_ref = "..."  # if set, POST /outbound needs "Authorization: Bearer <that secret>"

    [[providers]]               # ProviderProfile fields; name and secret_ref required
    name = "acme"
    secret_ref = "acme_secret"

    [secrets]                   # secret_ref -> value; "env:NAME" reads the environment variable NAME
    acme_secret = "env:ACME_WEBHOOK_SECRET"

    [security]                  # WebhookSecurityPolicy fields (the reference ignored these)
    [retry]                     # WebhookRetryPolicy fields

    [tls]                       # optional: serve HTTPS
    cert_file = "server.pem"    # certificate chain (PEM)
    key_file = "server.key"     # its private key (PEM)
    client_ca_file = "ca.pem"   # verify client certificates against this CA (mTLS)

With ``[tls] client_ca_file`` a request that presents a certificate verified
against that CA counts as ``client_cert_present`` (the reference never set it,
so ``require_mtls`` refused every request); ``require_mtls = true`` without
``client_ca_file`` is refused at load time for that reason.

Secret values never appear in error messages.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converge._config import STORE_BACKENDS, short_repr
from converge.errors import ConfigError
from converge.extensions.connectors._policy import ProviderProfile, WebhookSecurityPolicy
from converge.extensions.connectors._redact import SecretMap
from converge.extensions.connectors.retry import WebhookRetryPolicy

TOP_KEYS = (
    "bind", "port", "connector_id", "store_backend", "store_path", "outbound_token_ref",
    "providers", "secrets", "security", "retry", "tls",
)
TLS_KEYS = ("cert_file", "key_file", "client_ca_file")


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_"))


@dataclass(frozen=True)
class TlsSettings:
    """HTTPS for the sidecar; with ``client_ca_file`` clients may authenticate with certificates."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


@dataclass(frozen=True)
class SidecarConfig:
    """Everything the sidecar needs, validated."""

    provider_profiles: dict[str, ProviderProfile]
    secrets: SecretMap
    bind: str = "127.0.0.1"
    port: int = 8090
    connector_id: str = "webhook-connector"
    store_backend: str = "memory"
    store_path: str | None = None
    outbound_token_ref: str | None = None
    security_policy: WebhookSecurityPolicy = field(default_factory=WebhookSecurityPolicy)
    retry_policy: WebhookRetryPolicy = field(default_factory=WebhookRetryPolicy)
    tls: TlsSettings | None = None


def load_sidecar_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> SidecarConfig:
    """Read and validate a sidecar config file.

    Raises:
        ConfigError: the file is missing or unparsable, or a key or value is bad (one-line message).
    """
    data = _read(Path(path))
    return parse_sidecar_config(data, where=f"config file {str(path)!r}", environ=environ)


def _read(file: Path) -> dict[str, Any]:
    where = f"config file {str(file)!r}"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} cannot be read: {exc}") from exc
    try:
        data = tomllib.loads(text) if file.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        kind = "TOML" if file.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"{where} is not valid {kind}: {' '.join(str(exc).split())}") from exc
    except RecursionError:
        raise ConfigError(f"{where} nests too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must contain a table/object at the top level")
    return data


def parse_sidecar_config(
    data: Mapping[str, Any], *, where: str = "sidecar config", environ: Mapping[str, str] | None = None
) -> SidecarConfig:
    """Validate an already-parsed configuration mapping (see the module docstring for the keys)."""
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"unknown key {short_repr(key)} in {where}; accepted keys: {', '.join(TOP_KEYS)}")
    secrets = _secrets(data.get("secrets", {}), where, os.environ if environ is None else environ)
    providers = _providers(data.get("providers", []), where)
    port = data.get("port", 8090)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"invalid port = {short_repr(port)} in {where}; accepted: an integer 0..65535 (0 = OS-assigned)")
    strings = {}
    for key, default in (("bind", "127.0.0.1"), ("connector_id", "webhook-connector"), ("store_backend", "memory")):
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"invalid {key} = {short_repr(value)} in {where}; accepted: a non-empty string")
        strings[key] = value.strip()
    if strings["store_backend"].lower() not in STORE_BACKENDS:
        raise ConfigError(
            f"invalid store_backend = {strings['store_backend']!r} in {where}; accepted: {', '.join(STORE_BACKENDS)}"
        )
    optional = {}
    for key in ("store_path", "outbound_token_ref"):
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"invalid {key} = {short_repr(value)} in {where}; accepted: a non-empty string")
        optional[key] = value
    token_ref = optional["outbound_token_ref"]
    if token_ref is not None and not secrets.get(token_ref):
        raise ConfigError(f"outbound_token_ref = {token_ref!r} in {where} names no entry of [secrets]")
    for profile in providers.values():
        if not secrets.get(profile.secret_ref):
            raise ConfigError(
                f"provider {profile.name!r} in {where} uses secret_ref {profile.secret_ref!r}, "
                "which has no non-empty entry in [secrets]"
            )
    security = _table(WebhookSecurityPolicy, data.get("security", {}), "security", where)
    tls = _tls(data.get("tls"), where)
    if security.require_mtls and (tls is None or tls.client_ca_file is None):
        raise ConfigError(
            f"[security] require_mtls = true in {where} needs [tls] client_ca_file: "
            "without verified client certificates every request would be refused"
        )
    return SidecarConfig(
        provider_profiles=providers,
        secrets=secrets,
        bind=strings["bind"],
        port=port,
        connector_id=strings["connector_id"],
        store_backend=strings["store_backend"].lower(),
        store_path=optional["store_path"],
        outbound_token_ref=token_ref,
        security_policy=security,
        retry_policy=_table(WebhookRetryPolicy, data.get("retry", {}), "retry", where),
        tls=tls,
    )


def _tls(raw: Any, where: str) -> TlsSettings | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"[tls] in {where} must be a table")
    for key, value in raw.items():
        if key not in TLS_KEYS:
            raise ConfigError(f"unknown key {short_repr(key)} in [tls] of {where}; accepted keys: {', '.join(TLS_KEYS)}")
        if not isinstance(value, str) or not Path(value).is_file():
            raise ConfigError(f"[tls] {key} = {short_repr(value)} in {where} is not a readable file")
    for required in ("cert_file", "key_file"):
        if required not in raw:
            raise ConfigError(f"[tls] in {where} is missing the required key {required!r}")
    return TlsSettings(raw["cert_file"], raw["key_file"], raw.get("client_ca_file"))


def _secrets(raw: Any, where: str, environ: Mapping[str, str]) -> SecretMap:
    if not isinstance(raw, dict):
        raise ConfigError(f"[secrets] in {where} must be a table of name = value")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(value, str):
            raise ConfigError(f"secret {name!r} in {where} must be a string (the value is not shown)")
        if value.startswith("env:"):
            var = value[4:]
            if not environ.get(var):
                raise ConfigError(f"secret {name!r} in {where} reads environment variable {var!r}, which is unset or empty")
            value = environ[var]
        out[str(name)] = value
    return SecretMap(out)


def _providers(raw: Any, where: str) -> dict[str, ProviderProfile]:
    if not isinstance(raw, list):
        raise ConfigError(f"providers in {where} must be a list of tables ([[providers]])")
    accepted = _field_names(ProviderProfile)
    profiles: dict[str, ProviderProfile] = {}
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError(f"providers[{index}] in {where} must be a table")
        for required in ("name", "secret_ref"):
            if required not in entry:
                raise ConfigError(f"providers[{index}] in {where} is missing the required key {required!r}")
        profile = _build(ProviderProfile, entry, f"providers[{index}]", where, accepted)
        if profile.name in profiles:
            raise ConfigError(f"provider name {profile.name!r} appears twice in {where}")
        profiles[profile.name] = profile
    return profiles


def _table(cls: type, raw: Any, name: str, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] in {where} must be a table")
    return _build(cls, raw, f"[{name}]", where, _field_names(cls))


def _build(cls: type, raw: dict[str, Any], label: str, where: str, accepted: tuple[str, ...]) -> Any:
    for key in raw:
        if key not in accepted:
            raise ConfigError(f"unknown key {short_repr(key)} in {label} of {where}; accepted keys: {', '.join(accepted)}")
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{label} of {where}: {exc}") from exc


__all__ = ["TOP_KEYS", "SidecarConfig", "TlsSettings", "load_sidecar_config", "parse_sidecar_config"]
