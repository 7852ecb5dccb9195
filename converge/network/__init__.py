"""Networking: transports, discovery, the identity registry and ``AgentNetwork``.

Import from the submodules (``converge.network.transport``,
``converge.network.discovery``, ``converge.network.identity_registry``,
``converge.network.network``); like the reference, this package re-exports nothing.
"""
