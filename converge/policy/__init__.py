"""Policy: admission to pools, trust, governance of disputes, and safety limits.

The modules are :mod:`converge.policy.admission`, :mod:`converge.policy.trust`,
:mod:`converge.policy.governance` and :mod:`converge.policy.safety` (the
package itself re-exports nothing, as in the reference).
"""

__all__: list[str] = []
