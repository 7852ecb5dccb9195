#!/usr/bin/env bash
# Install converge with the lab extras and open JupyterLab on the quickstart notebook.
# Embedded defaults: local transport, in-memory store, scripted/recorded LLM providers - no API key needed.
# Set CONVERGE_LAB_PORT to choose the port (default 8888); extra arguments go to `jupyter lab`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e ".[lab,llm]" </dev/null
ARGS=(--notebook-dir=notebooks --port="${CONVERGE_LAB_PORT:-8888}" --LabApp.news_url=None
      --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate)
[ "$(id -u)" -eq 0 ] && ARGS+=(--allow-root)
exec .venv/bin/jupyter lab "${ARGS[@]}" "$@" 01_quickstart.ipynb
