"""Core primitives: identities, messages, topics, tasks, pools, decisions, tools, agents, stores.

Nothing in ``converge.core`` does I/O or starts asyncio tasks.
"""
