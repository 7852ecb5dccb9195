"""The workbench in a real JupyterLab, driven through headless Chromium (Playwright, sync API).

Follows ../shared/recipes/jupyterlab-browser-test: a JupyterLab server on 127.0.0.1 with a
token, news and update checks off and temp Jupyter dirs; a *pristine* copy of each notebook
(no outputs) in the server root; kernel readiness = the debugger button is enabled (the
execution indicator alone reads "idle" before the kernel exists); Chromium is
/usr/bin/chromium through ``launch_persistent_context`` (never ``playwright install``).
Screenshots go to artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port, stop_process, wait_until

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "artifacts"
VENV_BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OVERRIDES = {
    "@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": False},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    # render every cell (no virtual scrolling), so every prompt and output can be checked
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A JupyterLab server on 127.0.0.1 (token, no news/update checks, temp Jupyter dirs)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    pytest.importorskip("playwright.sync_api")
    base = tmp_path_factory.mktemp("jupyterlab")
    env = dict(os.environ)
    for name in ("CONFIG", "DATA", "RUNTIME"):
        d = base / name.lower()
        d.mkdir()
        env[f"JUPYTER_{name}_DIR"] = str(d)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    root, settings = base / "root", base / "settings"
    root.mkdir()
    settings.mkdir()
    (settings / "overrides.json").write_text(json.dumps(OVERRIDES))
    port, token = free_port(), secrets.token_hex(16)
    log = base / "jupyter-lab.log"
    cmd = [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", f"--LabApp.app_settings_dir={settings}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as resp:
            return resp.status == 200

    try:
        wait_until(ready, 90, "jupyter lab", proc, log)
        yield {"url": url, "token": token, "root": root, "pid": proc.pid}
    finally:
        stop_process(proc, timeout=30)  # the server shuts its kernels down on SIGTERM
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / "jupyter-lab.log")


@pytest.fixture
def page() -> Iterator[Any]:
    """A fresh headless Chromium profile and page; the profile dir is removed afterwards."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                       args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
            ctx.set_default_timeout(60_000)
            pg = ctx.new_page()
            pg.page_errors = []
            pg.on("pageerror", lambda e: pg.page_errors.append(str(e)))
            try:
                yield pg
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _pristine_copy(name: str, root: Path) -> None:
    """Copy a notebook with no outputs (stale outputs would satisfy the waits before anything ran)."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("widgets", None)
    (root / name).write_text(json.dumps(nb))


def _open_and_run_all(page: Any, lab: dict[str, Any], name: str) -> Any:
    """Open ``name`` in JupyterLab, wait for a live kernel, Run All Cells; return the notebook panel."""
    from playwright.sync_api import expect

    _pristine_copy(name, lab["root"])
    page.goto(f"{lab['url']}/lab/tree/{name}?reset&token={lab['token']}")
    nb = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    nb.locator(".jp-DebuggerBugButton[aria-disabled='false']").wait_for()  # a kernel really answered
    nb.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle")
    page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
    page.locator(".lm-Menu-content").get_by_text("Run All Cells", exact=True).click()
    select_kernel = page.locator(".jp-Dialog:has-text('Select Kernel') .jp-mod-accept")
    if select_kernel.count():
        select_kernel.click()
    return nb


def _wait_all_ran(page: Any, nb: Any, name: str) -> None:
    """Every code cell has an execution count, the kernel is idle, and no cell shows an error."""
    from playwright.sync_api import expect

    prompts = nb.locator(".jp-CodeCell .jp-InputPrompt")
    try:
        expect(prompts.last).to_have_text(re.compile(r"^\[\d+\]:$"), timeout=90_000)
        nb.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
    except AssertionError:
        _shot(page, f"{name}-FAILED")
        raise
    texts = prompts.all_inner_texts()
    assert all(re.fullmatch(r"\[\d+\]:", t.strip()) for t in texts), texts
    errors = nb.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']:has-text('Traceback')")
    assert nb.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").count() == 0, \
        nb.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").all_inner_texts()
    assert errors.count() == 0


def _shot(page: Any, stem: str, element: Any = None) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{stem}.png"
    (element or page).screenshot(path=str(path))
    return path


def _dashboard(page: Any, nb: Any) -> Any:
    """The rendered dashboard widget, checked for the widget-manager failure texts."""
    dash = nb.locator(".jp-OutputArea-output .converge-lab-dashboard")
    dash.wait_for()
    dash.locator(".converge-lab-step").wait_for()
    assert page.get_by_text("Loading widget...").count() == 0
    assert page.get_by_text("Error displaying widget").count() == 0
    return dash


def _open_tab(dash: Any, title: str) -> None:
    dash.locator(".lm-TabBar-tab", has_text=title).first.click()


def _step_rows(dash: Any) -> int:
    """Data rows in the Steps tab's table (0 while it says "no steps yet")."""
    return max(0, dash.locator(".converge-lab-steps table tr").count() - 1)


def test_quickstart_dashboard_step_and_sequence_diagram(jupyter_lab, page):
    from playwright.sync_api import expect

    name = "01_quickstart.ipynb"
    nb = _open_and_run_all(page, jupyter_lab, name)
    _wait_all_ran(page, nb, name)
    dash = _dashboard(page, nb)
    dash.scroll_into_view_if_needed()

    _open_tab(dash, "Messages")
    svg = dash.locator("svg.cvl-seq")
    svg.wait_for()
    lanes = [t.strip() for t in svg.locator("text.cvl-lane").all_text_contents()]
    assert lanes[:2] == ["alice", "bob"], lanes
    assert "✓" in svg.text_content()
    _shot(page, "01_quickstart-messages")

    _open_tab(dash, "Steps")
    steps = dash.locator(".converge-lab-steps")
    steps.locator("table").wait_for()
    before = _step_rows(dash)
    assert before >= 3 and "bob" in steps.inner_text()
    dash.locator(".widget-dropdown select").select_option(label="bob")
    dash.locator(".converge-lab-step").click()
    rows = steps.locator("table tr")
    expect(rows).not_to_have_count(before + 1, timeout=15_000)  # header + the rows before the click
    new = [r.split("\t")[:2] for r in rows.all_inner_texts()[before + 1:]]
    assert ["bob", "2"] in [[c.strip() for c in r] for r in new], new  # bob's second step, from the click
    assert dash.locator(".converge-lab-errors").inner_text().strip() == ""
    _shot(page, "01_quickstart")
    _shot(page, "01_quickstart-dashboard", dash)
    assert not page.page_errors, page.page_errors


def _agent_row(dash: Any, agent: str) -> dict[str, str]:
    """One agent's row of the Agents tab, as {column: text}."""
    table = dash.locator(".converge-lab-agents table")
    header = [h.strip() for h in table.locator("tr").first.locator("th").all_inner_texts()]
    for row in table.locator("tr").all()[1:]:
        cells = [c.strip() for c in row.locator("td").all_inner_texts()]
        if cells and cells[0] == agent:
            return dict(zip(header, cells))
    raise AssertionError(f"no row for {agent} in the Agents tab")


def test_debugging_approve_button_releases_the_held_agent(jupyter_lab, page):
    from playwright.sync_api import expect

    name = "04_debugging.ipynb"
    nb = _open_and_run_all(page, jupyter_lab, name)
    _wait_all_ran(page, nb, name)
    dash = _dashboard(page, nb)
    dash.scroll_into_view_if_needed()
    expect(dash).to_contain_text("held: alice")
    inbox_before = int(_agent_row(dash, "bob")["inbox"])
    assert _agent_row(dash, "alice")["state"] == "held"
    _open_tab(dash, "Steps")
    dash.locator(".converge-lab-steps table").wait_for()
    steps_before = _step_rows(dash)

    _open_tab(dash, "Breakpoints")
    approve = dash.locator(".converge-lab-approve")
    expect(approve).to_have_count(1)
    expect(dash.locator(".converge-lab-breakpoints")).to_contain_text("held at before_execute")
    _shot(page, "04_debugging-held", dash)
    approve.click()

    expect(approve).to_have_count(0, timeout=15_000)
    expect(dash).not_to_contain_text("held: alice")
    _open_tab(dash, "Agents")
    expect(dash.locator(".converge-lab-agents")).to_contain_text("paused")
    wait_until(lambda: int(_agent_row(dash, "bob")["inbox"]) == inbox_before + 1, 15, "bob's inbox count in the Agents tab")
    assert _agent_row(dash, "alice")["state"] == "paused"  # a hit leaves the agent paused after approval
    _open_tab(dash, "Steps")
    rows = dash.locator(".converge-lab-steps table tr")
    expect(rows).to_have_count(steps_before + 2)
    assert rows.last.inner_text().split("\t")[0].strip() == "alice"
    assert dash.locator(".converge-lab-errors").inner_text().strip() == ""
    _shot(page, "04_debugging")
    _shot(page, "04_debugging-approved", dash)
    assert not page.page_errors, page.page_errors
