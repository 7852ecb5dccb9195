"""Prompts and the structured-output tool definition of ``LLMAgent``.

The user-message format is the reference's (Appendix A.5): ``Messages: <json>``,
``Tasks: <json>`` and ``Tool observations (previous tool results): <json>`` lines, with
the standard ``json.dumps`` separators.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("converge.extensions.llm.agent")

NO_WORK_PROMPT = "No messages or tasks. Output []."

_SYSTEM_PROMPT = """You are an autonomous agent in a multi-agent system. You receive messages from other agents and tasks you may work on, and you decide what to do next.

Answer with a JSON array of decisions and nothing else. Each decision is an object with a "type" and the fields of that type:
- {"type": "SendMessage", "message": {"recipient": "<agent id, optional>", "topics": [], "payload": {...}}}
- {"type": "JoinPool", "pool_id": "<pool id>"}
- {"type": "LeavePool", "pool_id": "<pool id>"}
- {"type": "CreatePool", "spec": {"id": "<pool id>", "topics": [...], "admission_policy": "<optional>"}}
- {"type": "SubmitTask", "task": {"id": "<optional>", "objective": {...}, "inputs": {...}}}
- {"type": "ClaimTask", "task_id": "<task id>"}
- {"type": "ReportTask", "task_id": "<task id>", "result": {...}}
- {"type": "InvokeTool", "tool_name": "<tool name>", "params": {...}}
- {"type": "SubmitBid", "auction_id": "<auction id>", "amount": <number>, "content": <optional>}
- {"type": "Vote", "vote_id": "<vote id>", "option": <your choice>}
- {"type": "Propose", "session_id": "<negotiation id>", "proposal_content": {...}}
- {"type": "AcceptProposal", "session_id": "<negotiation id>"}
- {"type": "RejectProposal", "session_id": "<negotiation id>"}
- {"type": "Delegate", "delegatee_id": "<agent id>", "scope": ["<permission>", ...]}
- {"type": "RevokeDelegation", "delegation_id": "<delegation id>"}

A message has an optional "recipient" (omit it to broadcast), "topics" (a list of {"namespace": "...", "attributes": {...}}) and a "payload" object; you are always its sender. A task has an "id", an "objective" and "inputs".

Output only a valid JSON array. Output [] when there is nothing to do."""

REPAIR_PROMPT = (
    "Your previous answer was not a valid JSON array of decisions ({reason}). "
    "Answer again with only the JSON array of decisions, and no other text; [] if there is nothing to do."
)

_DECISION_ITEM_PROPERTIES: dict[str, Any] = {
    "type": {"type": "string", "description": "The decision type, e.g. SendMessage, ClaimTask, InvokeTool."},
    "message": {"type": "object"},
    "pool_id": {"type": "string"},
    "task_id": {"type": "string"},
    "result": {},
    "task": {"type": "object"},
    "spec": {"type": "object"},
    "tool_name": {"type": "string"},
    "params": {"type": "object"},
    "auction_id": {"type": "string"},
    "amount": {"type": "number"},
    "content": {},
    "vote_id": {"type": "string"},
    "option": {},
    "session_id": {"type": "string"},
    "proposal_content": {},
    "delegatee_id": {"type": "string"},
    "scope": {"type": "array", "items": {"type": "string"}},
    "delegation_id": {"type": "string"},
}

EMIT_DECISIONS_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "emit_decisions",
        "description": "Emit this agent's decisions for the current step as an array of decision objects.",
        "parameters": {
            "type": "object",
            "properties": {
                "decisions": {
                    "type": "array",
                    "description": "The decisions, in the order they should be executed; empty when there is nothing to do.",
                    "items": {"type": "object", "properties": _DECISION_ITEM_PROPERTIES, "required": ["type"]},
                }
            },
            "required": ["decisions"],
        },
    },
}


def system_prompt_with_tools(base: str, tool_registry: Any) -> str:
    """``base`` plus one entry per registered tool (name, description, params schema)."""
    if tool_registry is None:
        return base
    try:
        tools = tool_registry.to_provider_tools()
    except Exception:  # a broken user tool must not stop the agent from deciding
        logger.exception("tool_registry.to_provider_tools() failed; the prompt lists no tools")
        return base
    if not tools:
        return base
    lines = [base, "", "Tools you can use with an InvokeTool decision (give tool_name and params):"]
    for tool in tools:
        fn = tool.get("function", {}) if isinstance(tool, dict) else {}
        lines.append(f"- {fn.get('name', '?')}: {fn.get('description', '')}")
        lines.append(f"  params schema: {json.dumps(fn.get('parameters', {}), default=str)}")
    return "\n".join(lines)


def _topic_dict(topic: Any) -> dict[str, Any]:
    if isinstance(topic, dict):
        return {"namespace": topic.get("namespace"), "attributes": topic.get("attributes", {})}
    return {"namespace": getattr(topic, "namespace", str(topic)), "attributes": getattr(topic, "attributes", {})}


def _field(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def user_content(messages: list[Any], tasks: list[Any], tool_observations: list[dict[str, Any]] | None) -> str:
    """The user message of one decide (reference Appendix A.5)."""
    parts: list[str] = []
    if messages:
        items = [
            {
                "sender": _field(m, "sender"),
                "payload": _field(m, "payload", {}),
                "topics": [_topic_dict(t) for t in (_field(m, "topics") or [])],
            }
            for m in messages
        ]
        parts.append("Messages: " + json.dumps(items, default=str))
    if tasks:
        parts.append("Tasks: " + json.dumps([{"id": _field(t, "id"), "objective": _field(t, "objective", {})} for t in tasks], default=str))
    if tool_observations:
        parts.append("Tool observations (previous tool results): " + json.dumps(tool_observations, default=str))
    return "\n".join(parts) if parts else NO_WORK_PROMPT


__all__ = ["EMIT_DECISIONS_TOOL", "NO_WORK_PROMPT", "REPAIR_PROMPT", "_SYSTEM_PROMPT", "system_prompt_with_tools", "user_content"]
