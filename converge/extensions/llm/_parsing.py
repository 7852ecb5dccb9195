"""From model text to decisions: JSON extraction and one builder per decision type.

Improvements over the reference (its quirk 23): a ``SendMessage`` gets a fresh uuid id and
the current timestamp when the model gives none, reads ``recipient``, and always carries
the agent's own id as sender; ``SubmitTask`` gets a fresh id; the coordination decisions
(bids, votes, proposals, delegation) are understood; and items that cannot be used are
reported (type, index and reason) instead of vanishing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from converge.core.decisions import (
    AcceptProposal,
    ClaimTask,
    CreatePool,
    Decision,
    Delegate,
    InvokeTool,
    JoinPool,
    LeavePool,
    Propose,
    RejectProposal,
    ReportTask,
    RevokeDelegation,
    SendMessage,
    SubmitBid,
    SubmitTask,
    Vote,
)
from converge.core.message import Message
from converge.core.task import Task
from converge.core.topic import Topic

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)


class ItemError(ValueError):
    """One decision item is unusable (the message says why)."""


def _balanced(text: str, open_ch: str, close_ch: str) -> str | None:
    start = text.find(open_ch)
    if start < 0:
        return None
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def _extract_json_array(response: str) -> str:
    """The JSON part of a model answer (reference §9.3 "Response extraction").

    Empty → ``"[]"``; else the first fenced code block; else the first balanced
    ``[...]`` span (string-aware), else the first balanced ``{...}``; else the text.
    """
    text = (response or "").strip()
    if not text:
        return "[]"
    fenced = _FENCE.search(text)
    if fenced:
        return fenced.group(1).strip()
    for open_ch, close_ch in (("[", "]"), ("{", "}")):
        span = _balanced(text, open_ch, close_ch)
        if span is not None:
            return span
    return text


def decode_items(response: str) -> list[Any]:
    """The list of decision items in a model answer.

    Raises:
        ItemError: the answer is not JSON, is nested too deeply, or is not a list (nor
            ``{"decisions": [...]}``).
    """
    extracted = _extract_json_array(response)
    try:
        data = json.loads(extracted)
    except json.JSONDecodeError as exc:
        raise ItemError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except RecursionError:
        raise ItemError("JSON nested too deeply to decode") from None
    if isinstance(data, dict) and "decisions" in data:
        data = data["decisions"]
    if not isinstance(data, list):
        raise ItemError(f"expected a JSON array of decisions, got a JSON {type(data).__name__}")
    return data


def _str(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise ItemError(f"{key!r} must be a non-empty string, got {value!r}")
    return value


def _dict(item: dict[str, Any], key: str, default: Any = ...) -> dict[str, Any]:
    value = item.get(key, default)
    if value is ... or not isinstance(value, dict):
        raise ItemError(f"{key!r} must be an object, got {item.get(key)!r}")
    return value


def _topics(raw: Any) -> list[Topic]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ItemError(f"'topics' must be a list, got {raw!r}")
    out = []
    for t in raw:
        if isinstance(t, str) and t:
            out.append(Topic(t))
        elif isinstance(t, dict) and isinstance(t.get("namespace"), str) and isinstance(t.get("attributes", {}), dict):
            out.append(Topic(t["namespace"], t.get("attributes", {})))
        else:
            raise ItemError(f"each topic must be a namespace string or {{'namespace', 'attributes'}}, got {t!r}")
    return out


def _send_message(item: dict[str, Any], agent_id: str) -> SendMessage:
    msg = _dict(item, "message")
    recipient = msg.get("recipient", item.get("recipient"))
    if recipient is not None and not isinstance(recipient, str):
        raise ItemError(f"'recipient' must be an agent id string, got {recipient!r}")
    payload = msg.get("payload", {})
    if not isinstance(payload, dict):
        raise ItemError(f"'payload' must be an object, got {payload!r}")
    task_id = msg.get("task_id")
    if task_id is not None and not isinstance(task_id, str):
        raise ItemError(f"'task_id' must be a string, got {task_id!r}")
    fields: dict[str, Any] = {"sender": agent_id, "recipient": recipient or None, "topics": _topics(msg.get("topics")), "payload": payload, "task_id": task_id}
    if isinstance(msg.get("id"), str) and msg["id"]:
        fields["id"] = msg["id"]
    ts = msg.get("timestamp")
    if isinstance(ts, int) and not isinstance(ts, bool) and ts > 0:
        fields["timestamp"] = ts
    return SendMessage(Message(**fields))


def _submit_task(item: dict[str, Any], agent_id: str) -> SubmitTask:
    spec = _dict(item, "task")
    fields: dict[str, Any] = {"objective": spec.get("objective", {}), "inputs": spec.get("inputs", {})}
    for key, types in (("id", str), ("constraints", dict), ("pool_id", str), ("priority", int), ("required_capabilities", list)):
        if key in spec and spec[key] is not None:
            if not isinstance(spec[key], types) or isinstance(spec[key], bool):
                raise ItemError(f"task {key!r} has the wrong type: {spec[key]!r}")
            fields[key] = spec[key]
    if not isinstance(fields["objective"], dict) or not isinstance(fields["inputs"], dict):
        raise ItemError("task 'objective' and 'inputs' must be objects")
    if not fields.get("id"):
        fields.pop("id", None)
    return SubmitTask(Task(**fields))


def _submit_bid(item: dict[str, Any], agent_id: str) -> SubmitBid:
    amount = item.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ItemError(f"'amount' must be a number, got {amount!r}")
    return SubmitBid(_str(item, "auction_id"), float(amount), item.get("content"))


def _vote(item: dict[str, Any], agent_id: str) -> Vote:
    if "option" not in item:
        raise ItemError("'option' is missing")
    return Vote(_str(item, "vote_id"), item["option"])


def _delegate(item: dict[str, Any], agent_id: str) -> Delegate:
    scope = item.get("scope", [])
    if not isinstance(scope, list) or not all(isinstance(s, str) for s in scope):
        raise ItemError(f"'scope' must be a list of strings, got {scope!r}")
    return Delegate(_str(item, "delegatee_id"), list(scope))


def _invoke_tool(item: dict[str, Any], agent_id: str) -> InvokeTool:
    params = item.get("params")
    return InvokeTool(_str(item, "tool_name"), params if isinstance(params, dict) else {})


_BUILDERS: dict[str, Callable[[dict[str, Any], str], Decision]] = {
    "SendMessage": _send_message,
    "JoinPool": lambda i, a: JoinPool(_str(i, "pool_id")),
    "LeavePool": lambda i, a: LeavePool(_str(i, "pool_id")),
    "CreatePool": lambda i, a: CreatePool(_dict(i, "spec")),
    "SubmitTask": _submit_task,
    "ClaimTask": lambda i, a: ClaimTask(_str(i, "task_id")),
    "ReportTask": lambda i, a: ReportTask(_str(i, "task_id"), i.get("result")),
    "InvokeTool": _invoke_tool,
    "SubmitBid": _submit_bid,
    "Vote": _vote,
    "Propose": lambda i, a: Propose(_str(i, "session_id"), i.get("proposal_content", i.get("content"))),
    "AcceptProposal": lambda i, a: AcceptProposal(_str(i, "session_id")),
    "RejectProposal": lambda i, a: RejectProposal(_str(i, "session_id")),
    "Delegate": _delegate,
    "RevokeDelegation": lambda i, a: RevokeDelegation(_str(i, "delegation_id")),
}

DECISION_TYPES = tuple(_BUILDERS)


def build_decisions(items: list[Any], agent_id: str) -> tuple[list[Decision], list[str]]:
    """``(decisions, problems)``: one decision per usable item, one message per unusable one."""
    decisions: list[Decision] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        kind = item.get("type") if isinstance(item, dict) else None
        builder = _BUILDERS.get(kind) if isinstance(kind, str) else None
        if builder is None:
            what = f"unknown type {kind!r}" if isinstance(item, dict) else f"not an object: {item!r}"
            problems.append(f"item {index}: {what}"[:300])
            continue
        try:
            decisions.append(builder(item, agent_id))
        except (ItemError, TypeError, ValueError) as exc:
            problems.append(f"item {index} ({kind}): {exc}"[:300])
    return decisions, problems


__all__ = ["DECISION_TYPES", "ItemError", "_extract_json_array", "build_decisions", "decode_items"]
