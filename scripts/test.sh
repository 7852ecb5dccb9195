#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian 12 machine (Python 3.11), then run it.
# Extra arguments go to pytest, e.g. ./scripts/test.sh -k store -x
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

# Debian packages: a real redis-server for store tests, Chromium for the JupyterLab browser tests.
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" </dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e ".[test]" </dev/null

mkdir -p artifacts
# pytest exits 5 when it collects no tests; set -e turns that (and any failure) into a failed run.
exec .venv/bin/python -m pytest -p no:cacheprovider --junitxml=artifacts/junit.xml "$@" </dev/null
