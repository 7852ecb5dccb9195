#!/usr/bin/env bash
# Install converge and run the demo network on embedded defaults (local transport, in-memory store, no API key).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e . </dev/null
exec .venv/bin/python -m converge.demo "$@"
