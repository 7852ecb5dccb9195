"""Coordination: pools, tasks, and the negotiation, bidding, delegation and voting protocols.

The modules are :mod:`~converge.coordination.pool_manager`,
:mod:`~converge.coordination.task_manager`, :mod:`~converge.coordination.negotiation`,
:mod:`~converge.coordination.consensus`, :mod:`~converge.coordination.bidding` and
:mod:`~converge.coordination.delegation` (the package itself re-exports nothing,
as in the reference).

Store keys written here (reference §5.1 plus our indexes; other
implementations only need ``pool:`` and ``task:``):

=================================  =============================================
``pool:<pool_id>``                 the ``Pool``
``task:<task_id>``                 the ``Task``
``taskidx:pending:<task_id>``      index: the task is (or is about to be) PENDING
``taskidx:leased:<task_id>``       index: a task with a claim TTL was claimed and is not terminal
``tasklog:<seq>``                  change log: ``{"id", "state", "w"}`` per task write
``meta:tasks:seq``                 highest change-log sequence number written (hint)
``poolidx:agent:<agent>``          index: ids of the pools the agent joined (a list)
``vote:<vote_id>``                 ballots of :class:`~converge.coordination.consensus.StoreVotes`
``negotiation:<session_id>``       a store-backed negotiation session
``delegation:<delegation_id>``     a store-backed delegation record
=================================  =============================================
"""

__all__: list[str] = []
