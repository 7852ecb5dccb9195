"""converge_lab: run, step, break on, approve and inspect a network of converge agents in Jupyter.

Quick start (in a notebook cell; top-level ``await`` works in Jupyter)::

    from converge_lab import Lab
    from converge.testing.agents import EchoAgent

    lab = Lab()
    a = await lab.add(EchoAgent(name="alice"))
    b = await lab.add(EchoAgent(name="bob"), paused=True)
    await lab.send(to="bob", payload={"hello": 1})
    records = await lab.step("bob")
    lab.frames.messages()
    lab.dashboard()

The lab only uses converge's public API. pandas and ipywidgets are imported
when frames and views are first used.
"""

from converge_lab.breakpoints import Breakpoint, BreakEvent, LabError
from converge_lab.controller import AgentHandle, Lab

__all__ = ["AgentHandle", "BreakEvent", "Breakpoint", "Lab", "LabError"]
