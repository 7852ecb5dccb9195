"""The lab's ipywidgets views, clicked programmatically (headless)."""

from __future__ import annotations

import asyncio

import pytest

from converge.core.decisions import SendMessage
from converge.core.message import Message
from converge.testing.agents import EchoAgent, FunctionAgent
from converge_lab import Lab
from conftest import eventually

ipywidgets = pytest.importorskip("ipywidgets")




@pytest.fixture
async def lab():
    async with Lab() as lab:
        yield lab


def dashboard_parts(lab):
    lab.dashboard()
    return lab.views._dashboard


async def test_dashboard_is_one_widget_with_all_tabs(lab):
    await lab.add(EchoAgent(name="alice"))
    box = lab.dashboard()
    assert isinstance(box, ipywidgets.VBox)
    tabs = box.children[-1]
    assert [tabs.get_title(i) for i in range(len(tabs.children))] == [
        "Agents", "Steps", "Inbox", "Pools", "Tasks", "Messages", "Trace", "Costs", "Breakpoints"]
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "alice" in bundle["text/html"]  # static fallback for front ends without widgets


async def test_step_button_steps_the_selected_agent(lab):
    bob = FunctionAgent(lambda ag, m, t: [], name="bob")
    await lab.add(bob, paused=True)
    d = dashboard_parts(lab)
    await lab.send(to="bob", payload={"k": 1})
    await eventually(lambda: len(lab.handle("bob").runtime.inbox) == 1)
    d.agent_picker.value = bob.id
    d.step_button.click()
    await eventually(lambda: len(bob.calls) == 1)
    await eventually(lambda: "bob" in lab.views._views["steps"].widget.value and "1" in lab.views._views["steps"].widget.value)
    assert lab.frames.steps().query("not idle")["agent"].tolist() == ["bob"]


async def test_play_pause_toggle(lab):
    a = FunctionAgent(lambda ag, m, t: [], name="a")
    await lab.add(a, paused=True)
    d = dashboard_parts(lab)
    d.agent_picker.value = a.id
    d.play_button.value = True
    assert lab.handle("a").state == "running"
    d.play_button.value = False
    assert lab.handle("a").state == "paused"


async def test_callback_error_is_shown_in_the_error_area(lab):
    await lab.add(EchoAgent(name="a"))
    d = dashboard_parts(lab)
    lab.break_on(phase="before_decide", agent="a")
    await lab.send(to="a", payload={})
    await eventually(lambda: lab.handle("a").state == "held")
    d.agent_picker.value = lab.handle("a").id
    d.step_button.click()  # stepping a held agent raises LabError inside the task
    await eventually(lambda: "held at a breakpoint" in d.errors.value)
    assert "LabError" in d.errors.value


async def test_approve_button_releases_a_held_agent(lab):
    bob = FunctionAgent(lambda ag, m, t: [], name="bob")
    alice = FunctionAgent(lambda ag, m, t: [SendMessage(Message(recipient=bob.id, payload={"v": 1}))] if m else [],
                          name="alice")
    await lab.add(bob, paused=True)
    await lab.add(alice)
    views = lab.views
    panel_widget = views.breakpoints()
    lab.break_on(decision_type="SendMessage")
    await lab.send(to="alice", payload={})
    await eventually(lambda: lab.handle("alice").state == "held")
    views.flush()
    panel = views._views["breakpoints"].panel
    assert len(panel.approve_buttons) == 1 and panel_widget is panel.widget
    panel.approve_buttons[0].click()
    await eventually(lambda: len(lab.handle("bob").runtime.inbox) == 1)


async def test_drop_button_drops_a_pending_decision(lab):
    bob = FunctionAgent(lambda ag, m, t: [], name="bob")
    alice = FunctionAgent(lambda ag, m, t: [SendMessage(Message(recipient=bob.id, payload={"v": 1}))] if m else [],
                          name="alice")
    await lab.add(bob, paused=True)
    await lab.add(alice)
    lab.views.breakpoints()
    lab.break_on(decision_type="SendMessage")
    await lab.send(to="alice", payload={})
    await eventually(lambda: lab.handle("alice").state == "held")
    lab.views.flush()
    panel = lab.views._views["breakpoints"].panel
    panel.drop_buttons[0].click()
    assert lab.pending("alice") == []
    panel.approve_buttons[0].click()
    await eventually(lambda: lab.handle("alice").state == "paused")
    await asyncio.sleep(0.05)
    assert len(lab.handle("bob").runtime.inbox) == 0


async def test_sequence_diagram_shows_agents_and_verified_marks(lab):
    a, b = EchoAgent(name="ann", limit=1), EchoAgent(name="ben", limit=1)
    await lab.add(a)
    await lab.add(b)
    svg_widget = lab.views.messages()
    await lab.send(to="ann", payload={"n": 1}, sender="ben")
    assert await lab.run_until_idle(timeout=3)
    lab.views.flush()
    html = svg_widget.value
    assert "<svg" in html and ">ann<" in html and ">ben<" in html
    assert "✓" in html


async def test_redraws_are_throttled(lab):
    a, b = EchoAgent(name="a", limit=300), EchoAgent(name="b", limit=300)
    await lab.add(a)
    await lab.add(b)
    lab.views.messages()
    lab.views.agents()
    await lab.send(to="a", payload={}, sender="b")
    t0 = asyncio.get_running_loop().time()
    assert await lab.run_until_idle(timeout=10)
    elapsed = asyncio.get_running_loop().time() - t0
    per_view = lab.views._views["messages"].redraws
    # 600 messages, but one redraw per 0.2 s window at most (plus the first one)
    assert per_view <= elapsed / 0.2 + 2, (per_view, elapsed)


async def test_agent_picker_shows_all_agents_and_steps_everyone(lab):
    a = FunctionAgent(lambda ag, m, t: [], name="a")
    b = FunctionAgent(lambda ag, m, t: [], name="b")
    await lab.add(a, paused=True)
    await lab.add(b, paused=True)
    d = dashboard_parts(lab)
    assert d.agent_picker.label == "all agents" and d.selected_agent is None
    d.step_button.click()
    await eventually(lambda: lab.handle("a").runtime.step_count == 1 and lab.handle("b").runtime.step_count == 1)
