"""The README's Python quick-start blocks run as written (top-level await, as in a notebook cell)."""

from __future__ import annotations

import re
import textwrap

from conftest import ROOT


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


async def run_block(code: str) -> dict:
    namespace: dict = {}
    body = textwrap.indent(code, "    ")
    exec(compile(f"async def __block():\n{body}\n    return locals()\n", "README.md", "exec"), namespace)
    return await namespace["__block"]()


async def test_readme_has_the_two_quick_start_blocks():
    assert len(python_blocks()) == 2


async def test_lab_quick_start_runs():
    scope = await run_block(python_blocks()[0])
    lab, record = scope["lab"], scope["record"]
    assert lab.closed
    assert record.messages[0].payload == {"echo": {"hi": 1}}
    df = lab.frames.messages()
    assert df["status"].tolist()[:2] == ["injected", "delivered"] and df["verified"].all()


async def test_library_quick_start_runs():
    scope = await run_block(python_blocks()[1])
    assert scope["record"].step == 1 and scope["record"].idle
