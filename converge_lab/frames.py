"""pandas DataFrame snapshots of a lab. This is the only module that imports pandas.

Every method returns a new DataFrame with documented columns (present even
when there are no rows), so a person can filter, group and plot it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from converge.core.decisions import SendMessage
from converge.core.message import Message

if TYPE_CHECKING:
    import pandas as pd

    from converge_lab.controller import Lab

AGENT_COLUMNS = ["agent", "agent_id", "kind", "state", "steps", "inbox", "errors", "pools", "capabilities",
                 "tokens", "cost_usd", "last_step_at"]
INBOX_COLUMNS = ["agent", "position", "message_id", "sender", "topics", "payload", "verified"]
POOL_COLUMNS = ["pool_id", "n_agents", "agents", "topics", "admission", "governance", "trust_threshold"]
TASK_COLUMNS = ["task_id", "state", "priority", "pool_id", "assigned_to", "objective", "result",
                "required_capabilities", "topic"]
MESSAGE_COLUMNS = ["time", "message_id", "sender", "recipient", "delivered_to", "topics", "payload", "signed",
                   "verified", "status", "reason"]
STEP_COLUMNS = ["agent", "step", "time", "messages", "tasks", "decisions", "outcomes", "error", "error_phase",
                "duration_ms", "decide_ms", "execute_ms", "tokens", "cost_usd", "idle"]
TRACE_COLUMNS = ["trace_id", "span_id", "parent_id", "name", "agent", "start", "duration_ms", "status", "error"]
COST_COLUMNS = ["agent", "step", "time", "provider", "model", "input_tokens", "output_tokens", "latency_ms",
                "cost_usd", "cumulative_cost_usd"]


def _pd() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError('lab frames need pandas: pip install "converge[lab]"') from exc
    return pandas


def _ts(t: float | None) -> Any:
    return datetime.fromtimestamp(t, tz=timezone.utc) if t else None


def summarize(value: Any, limit: int = 80) -> str:
    """Short one-line JSON-ish text of a payload or result."""
    try:
        text = json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_decision(d: Any, names: Any = None) -> str:
    """``SendMessage→bob {"x": 1}``, ``ClaimTask(t1)``..."""
    name = type(d).__name__
    if isinstance(d, (SendMessage, Message)):
        m = d.message if isinstance(d, SendMessage) else d
        to = names(m.recipient) if (names and m.recipient) else (m.recipient or "*")
        return f"{name}→{to} {summarize(m.payload, 40)}"
    fields = getattr(d, "__dataclass_fields__", None)
    if fields:
        args = ", ".join(summarize(getattr(d, f), 24) for f in fields)
        return f"{name}({args})"
    return name


class Frames:
    """``lab.frames``: one method per table."""

    def __init__(self, lab: Lab) -> None:
        self._lab = lab

    def _df(self, rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
        return _pd().DataFrame(rows, columns=columns)

    def _verified(self, entry: Any) -> bool | None:
        if entry._verified is None:
            key = self._lab.identities.get(entry.message.sender)
            entry._verified = bool(key and entry.message.signature and entry.message.verify(key))
        return entry._verified

    def agents(self) -> pd.DataFrame:
        """One row per agent: state, steps, inbox size, errors, pools, tokens, cost."""
        lab = self._lab
        rows = []
        for h in lab.agents:
            try:
                pools = list(lab.pool_manager.get_pools_for_agent(h.id))
            except Exception as exc:  # a store problem must not hide the agent
                pools = [f"<error: {exc}>"]
            rows.append({
                "agent": h.name, "agent_id": h.id, "kind": type(h.agent).__name__, "state": h.state,
                "steps": h.runtime.step_count, "inbox": len(h.runtime.inbox), "errors": h.errors, "pools": pools,
                "capabilities": list(getattr(h.agent, "capabilities", []) or []), "tokens": h.tokens,
                "cost_usd": h.cost_usd, "last_step_at": _ts(h.last_step_at),
            })
        return self._df(rows, AGENT_COLUMNS)

    def inbox(self, agent: Any = None) -> pd.DataFrame:
        """Messages waiting in each (or one) agent's inbox, oldest first."""
        lab = self._lab
        rows = []
        for h in lab._select(agent):
            for i, m in enumerate(h.runtime.inbox.peek()):
                key = lab.identities.get(m.sender)
                rows.append({
                    "agent": h.name, "position": i, "message_id": m.id, "sender": lab._name_of(m.sender),
                    "topics": [str(t) for t in m.topics], "payload": summarize(m.payload),
                    "verified": bool(key and m.signature and m.verify(key)),
                })
        return self._df(rows, INBOX_COLUMNS)

    def pools(self) -> pd.DataFrame:
        """Every pool the lab's pool manager knows (cache and store)."""
        lab = self._lab
        pm = lab.pool_manager
        ids = list(dict.fromkeys([*pm.pools, *(k[len("pool:"):] for k in lab.store.list("pool:"))]))
        rows = []
        for pid in ids:
            pool = pm.get_pool(pid)
            if pool is None:
                continue
            rows.append({
                "pool_id": pool.id, "n_agents": len(pool.agents), "agents": sorted(lab._name_of(a) for a in pool.agents),
                "topics": [str(t) for t in pool.topics],
                "admission": type(pool.admission_policy_instance).__name__ if pool.admission_policy_instance else "open",
                "governance": type(pool.governance_model).__name__ if pool.governance_model else "",
                "trust_threshold": pool.trust_threshold,
            })
        return self._df(rows, POOL_COLUMNS)

    def tasks(self) -> pd.DataFrame:
        """Every task the lab's task manager holds, highest priority first."""
        lab = self._lab
        tm = lab.task_manager
        tasks = list(getattr(tm, "tasks", {}).values())
        tasks.sort(key=lambda t: (-t.priority, t.id))
        rows = [{
            "task_id": t.id, "state": t.state.value, "priority": t.priority, "pool_id": t.pool_id,
            "assigned_to": lab._name_of(t.assigned_to) if t.assigned_to else None,
            "objective": summarize(t.objective), "result": summarize(t.result) if t.result is not None else None,
            "required_capabilities": list(t.required_capabilities), "topic": str(t.topic) if t.topic else None,
        } for t in tasks]
        return self._df(rows, TASK_COLUMNS)

    def messages(self, last: int | None = None) -> pd.DataFrame:
        """Every message the lab saw (bounded by ``retention``): delivered, injected, rejected, undeliverable.

        Args:
            last: only the newest ``last`` messages.
        """
        lab = self._lab
        entries = list(lab.journal.messages)
        if last is not None:
            entries = entries[-last:]
        rows = [{
            "time": _ts(e.at), "message_id": e.message.id, "sender": lab._name_of(e.message.sender),
            "recipient": lab._name_of(e.message.recipient) if e.message.recipient else None,
            "delivered_to": [lab._name_of(a) for a in e.delivered_to], "topics": [str(t) for t in e.message.topics],
            "payload": summarize(e.message.payload), "signed": bool(e.message.signature),
            "verified": self._verified(e), "status": e.status, "reason": e.reason,
        } for e in entries]
        return self._df(rows, MESSAGE_COLUMNS)

    def steps(self, last: int | None = None, *, include_idle: bool = True) -> pd.DataFrame:
        """Every StepRecord the lab kept (idle steps included unless ``include_idle=False``).

        Args:
            last: only the newest ``last`` records (after the idle filter).
        """
        lab = self._lab
        records = [r for r in list(lab.journal.steps) if include_idle or not r.idle]
        if last is not None:
            records = records[-last:]
        rows = []
        for r in records:
            t = r.timings
            rows.append({
                "agent": lab._name_of(r.agent_id), "step": r.step, "time": _ts(r.started_at),
                "messages": len(r.messages), "tasks": len(r.tasks),
                "decisions": [describe_decision(d, lab._name_of) for d in r.decisions],
                "outcomes": [o.status for o in r.outcomes], "error": r.error, "error_phase": r.error_phase,
                "duration_ms": 1000 * t.get("total", 0.0), "decide_ms": 1000 * t.get("decide", 0.0),
                "execute_ms": 1000 * t.get("execute", 0.0), "tokens": r.tokens, "cost_usd": r.cost_usd, "idle": r.idle,
            })
        return self._df(rows, STEP_COLUMNS)

    def trace(self) -> pd.DataFrame:
        """Spans (runtime.step → agent.decide / executor.execute) with parent ids and durations."""
        lab = self._lab
        rows = []
        for s in list(lab.journal.spans):
            attrs = s.attributes or {}
            rows.append({
                "trace_id": s.trace_id, "span_id": s.span_id, "parent_id": s.parent_id, "name": s.name,
                "agent": lab._name_of(attrs["agent_id"]) if "agent_id" in attrs else None,
                "start": _ts(s.start_time), "duration_ms": 1000 * (s.duration_sec or 0.0), "status": s.status,
                "error": s.error,
            })
        return self._df(rows, TRACE_COLUMNS)

    def costs(self) -> pd.DataFrame:
        """One row per LLM call: tokens and cost per agent, model and step, with a running total."""
        lab = self._lab
        rows = []
        total = 0.0
        for r in list(lab.journal.steps):
            for u in r.usage:
                total += float(getattr(u, "cost_usd", 0.0) or 0.0)
                rows.append({
                    "agent": lab._name_of(r.agent_id), "step": r.step, "time": _ts(r.started_at),
                    "provider": getattr(u, "provider", None), "model": getattr(u, "model", None),
                    "input_tokens": getattr(u, "input_tokens", 0), "output_tokens": getattr(u, "output_tokens", 0),
                    "latency_ms": 1000 * float(getattr(u, "latency_sec", 0.0) or 0.0),
                    "cost_usd": float(getattr(u, "cost_usd", 0.0) or 0.0), "cumulative_cost_usd": total,
                })
        return self._df(rows, COST_COLUMNS)
