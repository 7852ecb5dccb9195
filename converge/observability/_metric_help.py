"""Default ``# HELP`` texts for the metric names the library emits."""

from __future__ import annotations

from types import MappingProxyType

DEFAULT_HELP = MappingProxyType({
    # runtime
    "messages_received": "Inbound messages accepted by the runtime listener.",
    "messages_rejected_total": "Inbound messages rejected by the runtime, by reason (e.g. unverified signature).",
    "inbox_dropped_total": "Inbound messages dropped because the inbox was full.",
    "runtime_steps_total": "Decide/execute iterations run by agent runtimes.",
    "runtime_step_seconds": "Duration of one decide/execute iteration, in seconds.",
    "runtime_step_errors_total": "Iterations that recorded an error (decide, execute or a hook raised).",
    "runtime_errors_total": "Errors recorded by agent runtimes, by phase.",
    # executor
    "decisions_executed": "Decisions that passed safety checks and were executed.",
    "decisions_failed_total": "Decisions whose execution raised, by decision type.",
    "decisions_ignored_total": "Decisions the executor could not handle, by decision type.",
    "decisions_denied_total": "Decisions refused by a safety policy, by reason.",
    "messages_sent": "Messages sent by the executor.",
    "tools_invoked": "Tool runs that completed successfully.",
    "tools_timed_out_total": "Tool runs cancelled by the tool timeout.",
    # network
    "transport_dropped_total": "Messages a transport could not deliver, by reason.",
    "transport_rejected_total": "Inbound frames or messages a transport rejected, by reason.",
    "rate_limit_egress_dropped_total": "Outbound messages dropped by the rate limiter.",
    "rate_limit_ingress_dropped_total": "Inbound messages dropped by the rate limiter.",
    "rate_limit_dropped_total": "Messages dropped by the rate limiter, by direction and bucket scope.",
    "message_guard_rejected_total": "Messages rejected by a message guard (replay, payload limits), by guard and reason.",
    "message_guard_evictions_total": "Ids a ReplayGuard forgot before their window ended because it was full.",
    "discovery_skipped_total": "Discovery descriptors skipped as unreadable or invalid, by reason.",
    # coordination
    "task_submitted_total": "Tasks submitted to the task manager.",
    "task_claimed_total": "Tasks claimed by an agent.",
    "task_completed_total": "Tasks reported completed.",
    "task_failed_total": "Tasks reported failed.",
    "task_cancelled_total": "Tasks cancelled.",
    "task_released_total": "Task claims released after their TTL expired.",
    "pool_created_total": "Pools created.",
    "pool_join_total": "Pool joins.",
    "pool_leave_total": "Pool leaves.",
    "pool_join_denied_total": "Pool joins refused by admission or trust policy.",
    "pending_tasks": "Pending tasks known to the task manager.",
    "pool_size": "Number of agents in the pool touched last.",
    # LLM
    "llm_calls_total": "LLM provider calls, by provider and model.",
    "llm_input_tokens_total": "Input (prompt) tokens reported by LLM providers.",
    "llm_output_tokens_total": "Output (completion) tokens reported by LLM providers.",
    "llm_tokens_total": "Tokens reported by LLM providers.",
    "llm_cost_usd_total": "Cost of LLM calls in US dollars, from the configured price table.",
    "llm_cost_usd": "Cumulative cost of LLM calls in US dollars, from the configured price table.",
    "llm_errors_total": "LLM provider calls that failed, by provider and reason.",
    "llm_decide_errors_total": "LLM agent decide calls that produced no usable decisions, by reason.",
    "llm_decision_items_skipped_total": "Decision items from an LLM reply that could not be parsed and were skipped.",
    "llm_repairs_total": "LLM replies that needed a repair prompt.",
    "llm_retries_total": "LLM provider calls retried.",
    # webhooks
    "webhook_inbound_accepted_total": "Inbound webhook requests accepted.",
    "webhook_inbound_rejected_total": "Inbound webhook requests rejected by a security check.",
    "webhook_inbound_error_total": "Inbound webhook requests that failed with an internal error.",
    "webhook_outbound_sent_total": "Outbound webhook calls delivered.",
    "webhook_outbound_retry_total": "Outbound webhook retries.",
    "webhook_outbound_circuit_open_total": "Outbound webhook calls refused because the circuit was open.",
    "webhook_dead_letter_total": "Outbound webhook actions written to the dead-letter store.",
    "webhook_dead_letter_store_error_total": "Dead letters that could not be written to the store.",
    "webhook_outbound_dropped_total": "Outbound webhook actions dropped, by reason.",
    "webhook_outbound_error_total": "Outbound webhook calls that failed.",
    "webhook_outbound_unauthorized_total": "Outbound webhook actions refused by the security policy.",
    # replay / tracing
    "replay_events_evicted_total": "Replay events evicted from a bounded in-memory replay log.",
})

__all__ = ["DEFAULT_HELP"]
