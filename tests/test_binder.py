"""Binder's environment, rebuilt from binder/ alone, runs every notebook.

Like repo2docker: a fresh virtual environment (no system site-packages), then
``pip install -r binder/requirements.txt`` from the repository root. The kernel that runs
the notebooks is that environment's Python, started with no PYTHONPATH, so everything it
imports — converge included — comes from what binder/requirements.txt installed. nbclient
drives it from the test process. The notebooks run offline (no API keys in the kernel's
environment); the Redis part of 05 is skipped because redis is not in the Binder extras.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_notebooks import EXPECTED, SECRETS, all_text, check_clean_run, execute

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_binder_files_say_what_binder_needs():
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    requirements = [line.strip() for line in (BINDER / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    assert requirements == ["-e .[lab,llm]"]


@pytest.fixture(scope="module")
def binder_venv(tmp_path_factory) -> Iterator[Path]:
    venv = tmp_path_factory.mktemp("binder") / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    try:
        run([str(venv / "bin" / "pip"), "install", "-q", "-r", "binder/requirements.txt"], cwd=ROOT, env=env, timeout=900)
        yield venv
    finally:
        # ~550 MB that pytest would otherwise keep around; `rm -rf` is much faster than shutil.rmtree here
        subprocess.run(["rm", "-rf", "--", str(venv)], check=False, stdin=subprocess.DEVNULL)


@pytest.fixture
def clean_env(tmp_path) -> dict[str, str]:
    """No PYTHONPATH, no API keys, temp Jupyter dirs (nothing from ~/.jupyter or ~/.local)."""
    env = {k: v for k, v in os.environ.items() if k not in (*SECRETS, "PYTHONPATH", "VIRTUAL_ENV")}
    for name in ("CONFIG", "DATA", "RUNTIME"):
        (tmp_path / name.lower()).mkdir()
        env[f"JUPYTER_{name}_DIR"] = str(tmp_path / name.lower())
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


def test_binder_environment_serves_the_widgets_extension(binder_venv, clean_env):
    py = str(binder_venv / "bin" / "python")
    probe = "import converge, converge_lab, ipywidgets, pandas, openai, anthropic, mistralai; print(converge_lab.__file__)"
    out = run([py, "-c", probe], cwd=BINDER, env=clean_env)
    assert Path(out.stdout.strip()).is_relative_to(ROOT / "converge_lab")  # the editable install of this checkout
    run([str(binder_venv / "bin" / "jupyter"), "lab", "--version"], env=clean_env)
    # the prebuilt ipywidgets front end, where the JupyterLab server of this environment loads it from
    manager = binder_venv / "share" / "jupyter" / "labextensions" / "@jupyter-widgets" / "jupyterlab-manager"
    assert json.loads((manager / "package.json").read_text())["name"] == "@jupyter-widgets/jupyterlab-manager"


def test_every_notebook_runs_in_the_binder_environment(binder_venv, clean_env):
    for name in EXPECTED:
        nb = execute(name, clean_env, python=str(binder_venv / "bin" / "python"))
        check_clean_run(nb)
        text = all_text(nb)
        if name.startswith("03"):
            assert "OFFLINE: scripted replies" in text
        if name.startswith("05"):
            assert "completed by another process: True" in text
            assert "the redis package is not installed" in text
