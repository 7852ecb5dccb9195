"""ToolRegistry (provider tool shapes) and ShortTermMemory (bounded history)."""

from __future__ import annotations

from typing import Any

import pytest

from converge.core.memory import ShortTermMemory
from converge.core.tools import Tool, ToolRegistry, get_tool_schema


class _Tool:
    def __init__(self, name: str, schema: Any = None, description: str | None = None) -> None:
        self._name = name
        if schema is not None:
            self.schema = schema
        if description is not None:
            self.description = description

    @property
    def name(self) -> str:
        return self._name

    def run(self, params: dict[str, Any]) -> Any:
        return params


OBJECT_SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def test_registry_basics() -> None:
    reg = ToolRegistry()
    a, b = _Tool("a"), _Tool("b")
    reg.register(b)
    reg.register(a)
    assert reg.list_names() == ["b", "a"] and reg.get("a") is a and reg.get("zzz") is None
    replacement = _Tool("b", description="new")
    reg.register(replacement)
    assert reg.get("b") is replacement and reg.list_names() == ["b", "a"] and len(reg) == 2 and "a" in reg
    assert isinstance(a, Tool)
    assert get_tool_schema(_Tool("x", OBJECT_SCHEMA)) == OBJECT_SCHEMA and get_tool_schema(a) is None


@pytest.mark.parametrize(
    "schema, parameters",
    [
        (None, {"type": "object", "properties": {}, "additionalProperties": True}),
        (OBJECT_SCHEMA, OBJECT_SCHEMA),
        ({"q": {"type": "string"}}, {"type": "object", "properties": {"q": {"type": "string"}}, "required": []}),
        # The reference nested this one level too deep; we keep the properties where they belong.
        ({"properties": {"q": {"type": "string"}}, "required": ["q"]},
         {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}),
        ("not a dict", {"type": "object", "properties": {}, "required": []}),
    ],
)
def test_to_provider_tools_shapes(schema: Any, parameters: dict) -> None:
    reg = ToolRegistry()
    reg.register(_Tool("search", schema))
    assert reg.to_provider_tools() == [
        {"type": "function", "function": {"name": "search", "description": "Tool: search", "parameters": parameters}}
    ]


def test_to_provider_tools_uses_the_description() -> None:
    reg = ToolRegistry()
    reg.register(_Tool("calc", OBJECT_SCHEMA, "Adds numbers"))
    reg.register(_Tool("empty-desc", None, ""))
    tools = reg.to_provider_tools()
    assert [t["function"]["description"] for t in tools] == ["Adds numbers", "Tool: empty-desc"]


def test_memory_keeps_the_last_n_turns() -> None:
    mem = ShortTermMemory(max_messages=3)
    for i in range(5):
        mem.append("user" if i % 2 == 0 else "assistant", f"m{i}")
    assert mem.get_messages() == [
        {"role": "user", "content": "m2"}, {"role": "assistant", "content": "m3"}, {"role": "user", "content": "m4"}
    ]
    mem.append("tool", {"result": 1})
    assert mem.get_messages()[-1] == {"role": "tool", "content": {"result": 1}} and len(mem) == 3


def test_memory_returns_a_copy_and_clears() -> None:
    mem = ShortTermMemory()
    assert mem.max_messages == 20
    mem.append("user", "hi")
    mem.get_messages().clear()
    assert len(mem.get_messages()) == 1
    mem.clear()
    assert mem.get_messages() == []


@pytest.mark.parametrize("bound, kept", [(0, 1), (-5, 1), (1, 1), (2, 2)])
def test_memory_bound_is_at_least_one(bound: int, kept: int) -> None:
    mem = ShortTermMemory(bound)
    for i in range(4):
        mem.append("user", str(i))
    assert mem.max_messages == kept and [m["content"] for m in mem.get_messages()] == [str(i) for i in range(4 - kept, 4)]
