"""Tools agents may invoke, and a registry that describes them to LLM providers."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Tool(Protocol):
    """A callable capability. Optional duck-typed extras: ``schema`` (JSON Schema of params), ``description``."""

    @property
    def name(self) -> str: ...

    def run(self, params: dict[str, Any]) -> Any: ...


def get_tool_schema(tool: Any) -> dict[str, Any] | None:
    """The tool's ``schema`` attribute, or ``None``."""
    return getattr(tool, "schema", None)


def _parameters(schema: Any) -> dict[str, Any]:
    if schema is None:
        return {"type": "object", "properties": {}, "additionalProperties": True}
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            return schema
        if "properties" in schema:
            # The reference nested such a schema one level too deep; we keep it as given.
            return {"type": "object", **schema}
        return {"type": "object", "properties": schema, "required": []}
    return {"type": "object", "properties": {}, "required": []}


class ToolRegistry:
    """Tools by name, in registration order."""

    def __init__(self) -> None:
        self._tools: dict[str, Any] = {}

    def register(self, tool: Any) -> None:
        """Add (or replace) a tool, keyed by ``tool.name``."""
        self._tools[tool.name] = tool

    def get(self, name: str) -> Any | None:
        return self._tools.get(name)

    def list_names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def to_provider_tools(self) -> list[dict[str, Any]]:
        """OpenAI-style function descriptions of every tool."""
        out = []
        for name, tool in self._tools.items():
            desc = getattr(tool, "description", None) or f"Tool: {name}"
            out.append(
                {
                    "type": "function",
                    "function": {"name": name, "description": desc, "parameters": _parameters(get_tool_schema(tool))},
                }
            )
        return out


__all__ = ["Tool", "ToolRegistry", "get_tool_schema"]
