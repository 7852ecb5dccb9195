"""The agent runtime: ``AgentRuntime`` (step engine + loop), ``Inbox``, ``Scheduler``, executors, hooks, records."""

from converge.runtime.executor import Executor, StandardExecutor
from converge.runtime.hooks import HookContext, RuntimeHook
from converge.runtime.inbox import Inbox
from converge.runtime.loop import AgentRuntime
from converge.runtime.records import DecisionOutcome, StepRecord
from converge.runtime.scheduler import Scheduler

__all__ = [
    "AgentRuntime",
    "DecisionOutcome",
    "Executor",
    "HookContext",
    "Inbox",
    "RuntimeHook",
    "Scheduler",
    "StandardExecutor",
    "StepRecord",
]
