"""Test helpers shipped with converge so users can use them too.

* :mod:`converge.testing.agents` — deterministic agents (echo, scripted, function-backed).
* :mod:`converge.testing.llm_servers` — loopback HTTP servers speaking the OpenAI,
  Anthropic and Mistral wire formats, for offline tests of the real SDKs.
"""
