"""``LLMAgent``: an agent whose ``decide`` asks an LLM for a JSON array of decisions.

Differences from the reference (its section 13, quirk 23, and the "no silent drops" rule):

* malformed output gets one repair attempt; if the answer is still unusable the agent
  returns ``[]`` and reports a :class:`~converge.extensions.llm.errors.DecisionParseError`
  (carrying the raw text) to ``on_decide_error``, ``last_decide_error`` and
  :meth:`LLMAgent.drain_errors`; decision items that cannot be used are reported the same way;
* a provider failure is reported likewise and yields ``[]`` (it never raises out of ``adecide``);
* memory records the original user message, not the repair prompt;
* all few-shot pairs are used (the reference used only the first two);
* the sync :meth:`LLMAgent.decide` also works inside a running event loop (a notebook): it
  runs the call on its own loop in a worker thread;
* every provider call's :class:`~converge.core.usage.UsageRecord` is kept until the runtime
  takes them with :meth:`LLMAgent.drain_usage`.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from converge.core.agent import Agent
from converge.core.identity import Identity
from converge.core.usage import UsageRecord
from converge.errors import ConfigError, ConvergeError, ProviderError
from converge.extensions.llm._parsing import ItemError, _extract_json_array, build_decisions, decode_items
from converge.extensions.llm._prompts import (
    _SYSTEM_PROMPT,
    EMIT_DECISIONS_TOOL,
    NO_WORK_PROMPT,
    REPAIR_PROMPT,
    system_prompt_with_tools,
    user_content,
)
from converge.extensions.llm.base import ChatMessage, collect_usage
from converge.extensions.llm.errors import (
    DecisionParseError,
    ProviderCallError,
    ProviderHTTPError,
    ProviderRateLimitError,
    ProviderTimeoutError,
)

logger = logging.getLogger(__name__)

_RETRY_WORDS = ("rate", "timeout", "429", "503")


def _retryable(exc: BaseException) -> bool:
    """Rate limits and timeouts are retried; for foreign exceptions, the reference's text test."""
    if isinstance(exc, (ProviderRateLimitError, ProviderTimeoutError, TimeoutError)):
        return True
    if isinstance(exc, ProviderHTTPError):
        return exc.status in (429, 503)
    if isinstance(exc, (ConvergeError, ProviderCallError)):
        return False
    text = str(exc).lower()
    return any(word in text for word in _RETRY_WORDS)


class LLMAgent(Agent):
    """An agent that decides by asking an LLM provider.

    Args:
        identity: the agent's :class:`~converge.core.identity.Identity`.
        provider: an :class:`~converge.extensions.llm.base.LLMProvider`; its ``achat`` is
            awaited when it has one, else ``chat`` runs in a worker thread.
        system_prompt: replaces the default system prompt.
        tool_registry: tools listed (name, description, params schema) in the system prompt.
        use_structured_output: ask the provider for tool-call output
            (``use_structured_output=True, emit_decisions_tool=EMIT_DECISIONS_TOOL``).
        on_decide_error: ``callback(error)`` for provider failures and unusable output.
        memory: e.g. :class:`~converge.core.memory.ShortTermMemory`; its messages precede the
            prompt, and each exchange is appended.
        few_shot_examples: ``(user_content, assistant_json)`` pairs shown before the request.
        retry_delays: seconds to wait before each retry of a rate-limited or timed-out call
            (reference: 1 s then 2 s; the number of entries is the number of retries).
        sleep: the coroutine used to wait (inject one in tests).
        metrics_collector: counts ``llm_decide_errors_total{reason}``,
            ``llm_decision_items_skipped_total``, ``llm_repairs_total``, ``llm_retries_total``.
    """

    def __init__(
        self,
        identity: Identity,
        provider: Any,
        system_prompt: str | None = None,
        tool_registry: Any = None,
        *,
        use_structured_output: bool = False,
        on_decide_error: Callable[[BaseException], Any] | None = None,
        memory: Any = None,
        few_shot_examples: Sequence[tuple[str, str]] | None = None,
        retry_delays: Sequence[float] = (1.0, 2.0),
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        metrics_collector: Any = None,
    ) -> None:
        super().__init__(identity)
        if not callable(getattr(provider, "chat", None)) and not callable(getattr(provider, "achat", None)):
            raise ConfigError(f"provider must have chat(messages, **kwargs) or achat(...), got {type(provider).__name__}")
        examples = list(few_shot_examples or [])
        for pair in examples:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                raise ConfigError(f"few_shot_examples must be (user_content, assistant_json) string pairs, got {pair!r}")
        if any(isinstance(d, bool) or not isinstance(d, (int, float)) or d < 0 for d in retry_delays):
            raise ConfigError(f"retry_delays must be numbers of seconds >= 0, got {list(retry_delays)!r}")
        self.provider = provider
        self.system_prompt = system_prompt
        self.tool_registry = tool_registry
        self.use_structured_output = use_structured_output
        self.on_decide_error = on_decide_error
        self.memory = memory
        self.few_shot_examples: list[tuple[str, str]] = [(u, a) for u, a in examples]
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self._sleep = sleep or asyncio.sleep
        self.metrics_collector = metrics_collector
        self.last_decide_error: BaseException | None = None
        self.last_raw_response: str | None = None
        self.counters: collections.Counter[str] = collections.Counter()
        self._usage: list[UsageRecord] = []
        self._errors: collections.deque[BaseException] = collections.deque(maxlen=100)
        self._lock = threading.Lock()

    # -- prompt ----------------------------------------------------------
    def _system_text(self) -> str:
        base = self.system_prompt or f"{_SYSTEM_PROMPT}\n\nYour agent id is {self.id}."
        return system_prompt_with_tools(base, self.tool_registry)

    def build_chat(self, messages: list[Any], tasks: list[Any], tool_observations: list[dict[str, Any]] | None = None) -> list[ChatMessage]:
        """The chat messages one decide sends: system, memory, few-shot pairs, user (reference A.5)."""
        chat: list[ChatMessage] = [{"role": "system", "content": self._system_text()}]
        get = getattr(self.memory, "get_messages", None)
        if callable(get):
            chat.extend(get())
        content = user_content(messages, tasks, tool_observations)
        if content != NO_WORK_PROMPT:
            for user, assistant in self.few_shot_examples:
                chat += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        chat.append({"role": "user", "content": content})
        return chat

    _format_messages_and_tasks = build_chat  # the reference's name

    def _parse_decisions(self, response: str) -> tuple[list[Any], bool]:
        """The reference's parser: ``(decisions, parsed_ok)``; unusable items are left out."""
        try:
            items = decode_items(response)
        except ItemError:
            return [], False
        return build_decisions(items, self.id)[0], True

    # -- bookkeeping -----------------------------------------------------
    def _count(self, name: str, reason: str | None = None, n: int = 1) -> None:
        self.counters[name if reason is None else f"{name}:{reason}"] += n
        if self.metrics_collector is not None:
            self.metrics_collector.inc(f"llm_{name}_total", n, labels={"reason": reason} if reason else None)

    def _report(self, error: BaseException, reason: str) -> None:
        self.last_decide_error = error
        with self._lock:
            self._errors.append(error)
        self._count("decide_errors", reason)
        logger.warning("LLMAgent %s: %s: %s", self.id[:12], reason, error)
        if self.on_decide_error is not None:
            try:
                self.on_decide_error(error)
            except Exception:  # an observer must not break deciding; its failure is logged with traceback
                logger.exception("on_decide_error callback of LLMAgent %s raised", self.id[:12])

    def drain_usage(self) -> list[UsageRecord]:
        """The usage records of provider calls since the last drain (the runtime calls this per step)."""
        with self._lock:
            out, self._usage = self._usage, []
        return out

    def drain_errors(self) -> list[BaseException]:
        """Errors reported since the last drain (provider failures, unusable output)."""
        with self._lock:
            out = list(self._errors)
            self._errors.clear()
        return out

    def _remember(self, user_text: str, raw: str) -> None:
        append = getattr(self.memory, "append", None)
        if callable(append):
            append("user", user_text)
            append("assistant", raw)

    # -- provider calls --------------------------------------------------
    async def _invoke(self, chat: list[ChatMessage], extra: dict[str, Any], use_sync_chat: bool) -> Any:
        achat = getattr(self.provider, "achat", None)
        chat_fn = getattr(self.provider, "chat", None)
        if achat is not None and inspect.iscoroutinefunction(achat) and (not use_sync_chat or not callable(chat_fn)):
            return await achat(chat, **extra)
        return await asyncio.to_thread(chat_fn, chat, **extra)  # type: ignore[arg-type]

    async def _call_provider(self, chat: list[ChatMessage], use_sync_chat: bool) -> str:
        extra = {"use_structured_output": True, "emit_decisions_tool": EMIT_DECISIONS_TOOL} if self.use_structured_output else {}
        attempt = 0
        while True:
            before = getattr(self.provider, "last_usage", None)
            try:
                with collect_usage() as records:
                    raw = await self._invoke(chat, extra, use_sync_chat)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt >= len(self.retry_delays) or not _retryable(exc):
                    raise
                delay = self.retry_delays[attempt]
                attempt += 1
                self._count("retries")
                logger.info("LLMAgent %s: retry %d in %.2fs after %s", self.id[:12], attempt, delay, exc)
                await self._sleep(delay)
                continue
            if not records:  # a custom provider that only sets last_usage
                after = getattr(self.provider, "last_usage", None)
                if isinstance(after, UsageRecord) and after is not before:
                    records.append(after)
            with self._lock:
                self._usage.extend(records)
            if not isinstance(raw, str):
                raise ProviderError(f"{type(self.provider).__name__}.chat returned {type(raw).__name__}, expected str")
            return raw

    # -- deciding --------------------------------------------------------
    async def _decide(self, messages: list[Any], tasks: list[Any], tool_observations: list[dict[str, Any]] | None, use_sync_chat: bool) -> list[Any]:
        chat = self.build_chat(messages, tasks, tool_observations)
        user_text = chat[-1]["content"]
        self.last_decide_error = None
        try:
            raw = await self._call_provider(chat, use_sync_chat)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._report(exc, "provider_error")
            return []
        self.last_raw_response = raw
        try:
            items = decode_items(raw)
        except ItemError as first:
            self._count("repairs")
            repair = [*chat, {"role": "assistant", "content": raw}, {"role": "user", "content": REPAIR_PROMPT.format(reason=first)}]
            try:
                raw = await self._call_provider(repair, use_sync_chat)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._remember(user_text, raw)
                self._report(exc, "provider_error")
                return []
            self.last_raw_response = raw
            try:
                items = decode_items(raw)
            except ItemError as second:
                self._remember(user_text, raw)
                msg = f"the model's answer is not a JSON array of decisions, also after one repair attempt: {second}"
                self._report(DecisionParseError(msg, raw=raw, reason=str(second)), "parse_error")
                return []
        decisions, problems = build_decisions(items, self.id)
        self._remember(user_text, raw)
        if problems:
            self._count("decision_items_skipped", n=len(problems))
            msg = f"skipped {len(problems)} of {len(items)} decision items: " + "; ".join(problems)
            self._report(DecisionParseError(msg, raw=raw, reason="; ".join(problems)), "items_skipped")
        return decisions

    async def adecide(self, messages: list[Any], tasks: list[Any], tool_observations: list[dict[str, Any]] | None = None, **kwargs: Any) -> list[Any]:
        """Ask the provider for decisions about ``messages`` and ``tasks``.

        ``tool_observations`` (``[{"tool_name", "params", "result" | "error"}]``) are the
        results of this step's earlier ``InvokeTool`` decisions (ReAct loop). Never raises
        for provider failures or malformed output: those return ``[]`` and are reported.
        """
        return await self._decide(list(messages), list(tasks), tool_observations, use_sync_chat=False)

    def decide(self, messages: list[Any], tasks: list[Any], tool_observations: list[dict[str, Any]] | None = None, **kwargs: Any) -> list[Any]:
        """Synchronous :meth:`adecide`, usable with or without a running event loop.

        Without a running loop in this thread it runs on a fresh loop here; inside one (a
        notebook cell) it runs on a fresh loop in a worker thread and blocks until done —
        it never touches the caller's loop, so it cannot deadlock it. The provider's sync
        ``chat`` is used, so no async client gets bound to a short-lived loop.
        """

        def run() -> list[Any]:
            return asyncio.run(self._decide(list(messages), list(tasks), tool_observations, use_sync_chat=True))

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-agent-decide") as pool:
            return pool.submit(run).result()


__all__ = ["EMIT_DECISIONS_TOOL", "LLMAgent", "_SYSTEM_PROMPT", "_extract_json_array"]
