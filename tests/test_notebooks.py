"""Every notebook, executed top to bottom with nbclient on a fresh kernel of this venv.

Each run asserts what a reader sees (printed lines, DataFrames, widget views, the saved
widget state) and, through a probe cell appended to the in-memory copy, the lab's state
in the kernel afterwards. No API key is used: the keys are removed from the kernel's
environment, and the live-provider branch of 03 runs against a loopback server that
speaks OpenAI's wire format (through the real ``openai`` SDK).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXPECTED = ["01_quickstart.ipynb", "02_tasks_and_pools.ipynb", "03_llm_agents.ipynb", "04_debugging.ipynb",
            "05_beyond_one_process.ipynb"]
SECRETS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MISTRAL_API_KEY", "OPENAI_BASE_URL", "CONVERGE_OFFLINE", "REDIS_URL")
PROBE = "PROBE "
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory) -> dict[str, str]:
    """The kernel's environment: temp Jupyter dirs, this checkout on PYTHONPATH, no API keys."""
    base = tmp_path_factory.mktemp("jupyter")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    for name in ("CONFIG", "DATA", "RUNTIME"):
        d = base / name.lower()
        d.mkdir()
        env[f"JUPYTER_{name}_DIR"] = str(d)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def kernel_manager(env: dict[str, str], python: str) -> AsyncKernelManager:
    """A manager for a kernel spec (in ``env``'s JUPYTER_DATA_DIR) that runs exactly ``python``."""
    spec = Path(env["JUPYTER_DATA_DIR"]) / "kernels" / "converge-notebooks"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "converge notebooks", "language": "python",
    }))
    specs = KernelSpecManager(kernel_dirs=[str(spec.parent)], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name=spec.name, kernel_spec_manager=specs)


def execute(name: str, env: dict[str, str], probe: str | None = None, *, python: str = sys.executable) -> nbformat.NotebookNode:
    """Run ``name`` (plus an optional probe cell printing ``PROBE <json>``) on a fresh kernel of ``python``."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    if probe is not None:
        nb.cells.append(new_code_cell(f"import json as _json\nprint({PROBE!r} + _json.dumps({probe}, default=str))"))
    client = NotebookClient(nb, km=kernel_manager(env, python), timeout=120, store_widget_state=True,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env=env)
    return nb


def code_cells(nb: nbformat.NotebookNode) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def text_of(cell: Any) -> str:
    """Everything a reader sees as text in one cell's outputs (streams and text/plain)."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/plain", ""))
    return "\n".join(parts)


def cell_with(nb: nbformat.NotebookNode, snippet: str) -> Any:
    return next(c for c in code_cells(nb) if snippet in c.source)


def all_text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(text_of(c) for c in code_cells(nb))


def probe_of(nb: nbformat.NotebookNode) -> dict[str, Any]:
    line = next(l for l in text_of(code_cells(nb)[-1]).splitlines() if l.startswith(PROBE))
    return json.loads(line[len(PROBE):])


def check_clean_run(nb: nbformat.NotebookNode) -> None:
    """Every code cell ran, none failed, nothing was logged as an error or a traceback."""
    cells = code_cells(nb)
    assert all(c.execution_count for c in cells)
    for c in cells:
        assert not [o for o in c.outputs if o.output_type == "error"], c.source
        stderr = "".join(o.text for o in c.outputs if o.output_type == "stream" and o.name == "stderr")
        assert "Traceback" not in stderr and "ERROR" not in stderr, stderr


def widget_views(nb: nbformat.NotebookNode) -> int:
    return sum(1 for c in code_cells(nb) for o in c.outputs if WIDGET_VIEW in o.get("data", {}))


def widget_html(nb: nbformat.NotebookNode) -> list[str]:
    """The values of the HTML widgets in the widget state nbclient saved at the end of the run."""
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]


# --------------------------------------------------------------------------- the notebooks as files
def test_the_tour_is_complete_and_committed_without_outputs():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == EXPECTED
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        dirty = [c.source.splitlines()[0] for c in code_cells(nb) if c.outputs or c.execution_count is not None]
        assert not dirty, f"{name} holds outputs or execution counts; clear them before committing: {dirty}"
        assert "widgets" not in nb.metadata, f"{name} holds saved widget state; clear it before committing"
        first = nb.cells[0]
        assert first.cell_type == "markdown" and first.source.startswith("# ") and "What this notebook shows" in first.source
        code = "\n".join(c.source for c in code_cells(nb))
        assert "asyncio.run(" not in code and "run_until_complete(" not in code, name


# --------------------------------------------------------------------------- executed
def test_01_quickstart(kernel_env):
    nb = execute("01_quickstart.ipynb", kernel_env, probe="""{
        "steps": lab.frames.steps().query("not idle")["agent"].tolist(),
        "verified": bool(lab.frames.messages()["verified"].all()),
        "bob_inbox": len(lab.handle("bob").runtime.inbox),
        "states": {h.name: h.state for h in lab.agents},
    }""")
    check_clean_run(nb)
    text = all_text(nb)
    assert "signature valid with alice's public key: True" in text
    assert "signature valid with bob's public key:   False" in text
    assert "bob's inbox now holds 1 message(s)" in text
    assert WIDGET_VIEW in code_cells(nb)[-2].outputs[0].data  # the dashboard cell
    facts = probe_of(nb)
    assert facts == {"steps": ["alice", "bob", "alice"], "verified": True, "bob_inbox": 1,
                     "states": {"alice": "running", "bob": "paused"}}
    html = widget_html(nb)
    seq = [h for h in html if 'class="cvl-seq"' in h]
    assert seq and ">alice<" in seq[0] and ">bob<" in seq[0] and "✓" in seq[0]


def test_02_tasks_and_pools(kernel_env):
    nb = execute("02_tasks_and_pools.ipynb", kernel_env, probe="""{
        "closed": lab.closed,
        "tasks": lab.frames.tasks()[["priority", "state", "assigned_to"]].values.tolist(),
        "leftover": [t.get_name() for t in __import__("asyncio").all_tasks() if t.get_name().startswith("converge-")],
        "ballots": votes.ballots("release-day"),
    }""")
    check_clean_run(nb)
    text = all_text(nb)
    assert "winner: grace, pays 15.0 (the second-highest bid)" in text
    assert "majority: thursday" in text
    facts = probe_of(nb)
    assert facts["closed"] and facts["leftover"] == []
    assert facts["tasks"] == [[9, "completed", "ada"], [7, "completed", "grace"], [5, "completed", "linus"],
                              [3, "completed", "ada"], [2, "completed", "grace"], [1, "completed", "linus"]]
    assert sorted(option for _, option in facts["ballots"]) == ["thursday", "thursday", "tuesday"]
    assert widget_views(nb) >= 2  # the task board and the dashboard


LAB_FACTS_03 = """{
    "history": [p.content["price"] for p in negotiation.get_session(SESSION).history],
    "state": negotiation.get_session(SESSION).state.value,
    "costs": lab.frames.costs()[["agent", "provider", "model", "cost_usd"]].values.tolist(),
    "verified": bool(lab.frames.messages()["verified"].all()),
    "closed": lab.closed,
}"""


def test_03_llm_agents_offline(kernel_env):
    nb = execute("03_llm_agents.ipynb", kernel_env, probe=LAB_FACTS_03)
    check_clean_run(nb)
    text = all_text(nb)
    assert "OFFLINE: scripted replies (ScriptedProvider), no API key used" in text
    assert "negotiation accepted; finished: True" in text
    facts = probe_of(nb)
    assert facts["history"] == [120, 90, 110, 100] and facts["state"] == "accepted"
    assert [c[0] for c in facts["costs"]] == ["bea", "sam", "bea", "sam", "bea"]
    assert {(c[1], c[2], c[3]) for c in facts["costs"]} == {("scripted", "scripted", 0.0)}
    assert facts["verified"] and facts["closed"]
    assert "at gpt-4o-mini prices" in text_of(cell_with(nb, "costs = lab.frames.costs()"))


def test_03_llm_agents_live_branch_against_a_loopback_openai_server(kernel_env):
    """With OPENAI_API_KEY set the notebook uses OpenAIProvider; here the SDK talks to 127.0.0.1."""
    from converge.extensions.llm import DEFAULT_PRICES
    from converge.testing.llm_servers import OpenAIServer, Reply

    def say(**payload):  # no recipient: a broadcast reaches the only other agent
        return {"type": "SendMessage", "message": {"payload": {"session_id": "gpu-hours", **payload}}}

    moves = [  # bea, sam, bea, sam, bea — each answers the other's message
        [{"type": "Propose", "session_id": "gpu-hours", "proposal_content": {"price": 85}}, say(counter=85)],
        [{"type": "Propose", "session_id": "gpu-hours", "proposal_content": {"price": 105}}, say(counter=105)],
        [{"type": "Propose", "session_id": "gpu-hours", "proposal_content": {"price": 100}}, say(counter=100)],
        [{"type": "AcceptProposal", "session_id": "gpu-hours"}, say(accepted=100)],
        [],
    ]
    replies = [Reply("```json\n" + json.dumps(m) + "\n```", input_tokens=400, output_tokens=60) for m in moves]
    with OpenAIServer(replies, default=Reply("[]"), api_key="sk-loopback") as server:
        env = {**kernel_env, "OPENAI_API_KEY": "sk-loopback", "OPENAI_BASE_URL": server.base_url}
        nb = execute("03_llm_agents.ipynb", env, probe=LAB_FACTS_03)
        requests = server.requests
    check_clean_run(nb)
    text = all_text(nb)
    assert "LIVE: openai gpt-4o-mini" in text and "OFFLINE" not in text_of(code_cells(nb)[0])
    facts = probe_of(nb)
    assert facts["history"] == [120, 85, 105, 100] and facts["state"] == "accepted"
    assert len(requests) == 5 and {r.body["model"] for r in requests} == {"gpt-4o-mini"}
    assert "You are Bea" in requests[0].body["messages"][0]["content"]
    per_call = DEFAULT_PRICES.cost("gpt-4o-mini", 400, 60)
    assert [(c[1], c[2]) for c in facts["costs"]] == [("openai", "gpt-4o-mini")] * 5
    assert [c[3] for c in facts["costs"]] == pytest.approx([per_call] * 5)


def test_04_debugging(kernel_env):
    nb = execute("04_debugging.ipynb", kernel_env, probe="""{
        "held": [h.name for h in lab.held()],
        "phase": lab.hold_info("alice")["phase"],
        "pending": [d.message.payload for d in lab.pending("alice")],
        "bob_inbox": [m.payload for m in lab.handle("bob").runtime.inbox.peek()],
        "costs": lab.frames.costs()[["agent", "model", "cost_usd"]].values.tolist(),
        "exported": sorted(p.name for p in out.iterdir()),
    }""")
    check_clean_run(nb)
    text = all_text(nb)
    assert "alice held at before_execute (step 1): decision SendMessage" in text
    assert "pending: [{'qty': 3, 'price': 30}]" in text
    assert re.search(r"analyst held at before_execute after 3 requests: cost \$[\d.]+ > \$[\d.]+", text)
    assert "held: ['alice']" in text
    facts = probe_of(nb)
    assert facts["held"] == ["alice"] and facts["phase"] == "before_execute"
    assert facts["pending"] == [{"qty": 12, "price": 120}]
    # the edit went through, the dropped quote never arrived, then two injected messages
    assert facts["bob_inbox"] == [{"qty": 3, "price": 27, "note": "edited in the lab"},
                                  {"note": "from the lab, unsigned"}, {"note": "signed as alice"},
                                  {"summary": "quotes look fair"}, {"summary": "quotes look fair"}]
    costs = facts["costs"]
    assert len(costs) == 3 and {c[1] for c in costs} == {"gpt-4o-mini (simulated)"}
    assert sum(c[2] for c in costs[:2]) <= 0.00025 < sum(c[2] for c in costs)
    assert facts["exported"] == sorted(f"{t}.csv" for t in ("agents", "inbox", "pools", "tasks", "messages", "steps",
                                                              "trace", "costs"))
    assert widget_views(nb) >= 4  # costs, trace, messages, dashboard
    assert any('class="cvl-waterfall"' in h for h in widget_html(nb))


LAB_FACTS_05 = """{
    "pongs": [(m, v) for m, v in lab.frames.messages()[["payload", "verified"]].values.tolist() if "pong" in m],
    "worker_exit": worker.returncode,
    "worker_alive": worker.poll() is None,
    "discovery": len(lab.discovery.descriptors),
    "tasks": lab.frames.tasks()["state"].tolist(),
}"""


def test_05_beyond_one_process(kernel_env):
    nb = execute("05_beyond_one_process.ipynb", kernel_env, probe=LAB_FACTS_05)
    check_clean_run(nb)
    text = all_text(nb)
    assert "completed by another process: True" in text
    assert re.search(r"step \d+: 0 message\(s\), 5 task\(s\) -> (ClaimTask:ok, ReportTask:ok(, )?){5}", text)
    assert "worker exit code: 0" in text and "agents left in discovery: 0" in text
    facts = probe_of(nb)
    assert len(facts["pongs"]) == 3 and all(verified for _, verified in facts["pongs"])
    assert facts["worker_exit"] == 0 and not facts["worker_alive"] and facts["discovery"] == 0
    assert facts["tasks"] == ["completed"] * 5


def test_05_beyond_one_process_with_redis(kernel_env, redis_url):
    nb = execute("05_beyond_one_process.ipynb", {**kernel_env, "REDIS_URL": redis_url}, probe=LAB_FACTS_05)
    check_clean_run(nb)
    redis_cell = text_of(cell_with(nb, "redis_reachable(REDIS_URL)"))
    assert re.search(r"completed through Redis by pid \{(\d+)\} \(worker pid \1\)", redis_cell), redis_cell
    assert "redis worker exit code: 0" in redis_cell
    assert probe_of(nb)["worker_exit"] == 0
