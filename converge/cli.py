"""The ``converge`` command line: ``converge run`` and ``converge webhook-sidecar``.

``main(argv=None) -> int`` is the console-script entry point (``python -m
converge`` calls it too). Exit status: 0 after a clean stop (SIGINT/SIGTERM),
2 for a bad command line or configuration (one line on stderr naming the key,
the value and what is accepted), 1 when the agents could not start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from converge._config import (
    CONFIG_ENV,
    ENV_PREFIX,
    KEYS,
    STORE_BACKENDS,
    STORE_DEFAULT_PATHS,
    TRANSPORTS,
    create_store,
    load_run_config,
    read_env,
    read_file,
    unknown_env,
    validate,
)
from converge.errors import ConfigError, MissingExtraError

PROG = "converge"


def _keys_help() -> str:
    width = max(len(k) for k in KEYS)
    lines = ["configuration keys (file key / environment variable, default):"]
    for key, (meaning, default) in KEYS.items():
        env = ENV_PREFIX + key.upper()
        lines.append(f"  {key:<{width}}  {env:<{width + len(ENV_PREFIX)}}  {meaning} (default: {default})")
    lines += [
        f"  {'':<{width}}  {CONFIG_ENV:<{width + len(ENV_PREFIX)}}  default for -c/--config",
        "",
        "Precedence: defaults < CONVERGE_* environment variables < the config file.",
        "Config files: TOML (.toml) or YAML (.yaml/.yml, needs: pip install \"converge[cli]\").",
        "Store defaults: " + ", ".join(f"{b} -> {p}" for b, p in STORE_DEFAULT_PATHS.items()) + ".",
        "Exit status: 0 clean stop (SIGINT/SIGTERM), 1 start-up failure, 2 bad configuration.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``converge`` argument parser (subcommands ``run`` and ``webhook-sidecar``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run converge agents, or the webhook sidecar.",
        epilog=_keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="start agents and run until SIGINT/SIGTERM",
        description=(
            f"Start agents (transports: {', '.join(TRANSPORTS)}; stores: {', '.join(STORE_BACKENDS)}) "
            "and run until SIGINT/SIGTERM. When every agent is up, prints one line on stdout: "
            "'converge run: started N agent(s) [transport=T store=S pool=P]: <agent id>@<address> ...'. "
            "Discovery entries (discovery:agent:<id>) are removed when the agents stop; "
            "pool membership stays in the store."
        ),
        epilog=_keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "-c", "--config", default=os.environ.get(CONFIG_ENV) or None, metavar="FILE",
        help=f"TOML or YAML config file (default: ${CONFIG_ENV})",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="DEBUG logging")
    sidecar = sub.add_parser(
        "webhook-sidecar",
        help="serve webhook ingress/egress over HTTP",
        description="Serve the webhook gateway over HTTP until SIGINT/SIGTERM "
        "(see converge.extensions.connectors.sidecar for the config file).",
    )
    sidecar.add_argument("-c", "--config", required=True, metavar="FILE", help="sidecar TOML (or JSON) config file")
    sidecar.add_argument("--json-logs", action="store_true", help="log one JSON object per line")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "webhook-sidecar":
        from converge.extensions.connectors import sidecar

        return sidecar.main(["--config", args.config] + (["--json-logs"] if args.json_logs else []))
    return _run(args.config, verbose=args.verbose)


def _run(path: str | None, *, verbose: bool) -> int:
    try:
        config = load_run_config(path)
    except (ConfigError, MissingExtraError) as exc:
        print(f"{PROG} run: error: {exc}", file=sys.stderr)
        return 2
    for name in unknown_env():
        accepted = ", ".join(ENV_PREFIX + key.upper() for key in KEYS)
        print(f"{PROG} run: warning: ignoring unknown environment variable {name}; accepted: {accepted}", file=sys.stderr)
    from converge.observability.logging import configure_logging

    configure_logging(logging.DEBUG if verbose else logging.INFO, stream=sys.stderr)
    from converge._run import run_agents

    return run_agents(config)


# -- reference-compatible helpers ----------------------------------------------
def _load_config(path: str | None) -> dict[str, Any]:
    """Environment merged with the file (file wins), as a plain dict (values not yet validated)."""
    merged = read_env()
    if path is not None:
        merged.update(read_file(path))
    return {key: value for key, (value, _source) in merged.items()}


def _validate_config(config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` (a ``ValueError``) naming the first bad key."""
    validate({key: (value, "configuration") for key, value in config.items()})


def _create_store(config: dict[str, Any]) -> Any:
    """The store for a configuration dict (reference section 10.3), or ``None``."""
    return create_store(config.get("store_backend"), config.get("store_path"),
                        legacy_discovery_store=config.get("discovery_store"))


def _create_transport(transport_type: str, agent_id: str, host: str, port: int) -> Any:
    """A transport for one agent: ``local``, ``tcp`` or ``websocket`` (server)."""
    from converge._run import create_transport

    return create_transport(transport_type, agent_id, host, port)


__all__ = ["build_parser", "main"]
