"""Coordination through running runtimes: agents exchange Propose/Accept, bids, votes, delegations and tasks."""

from __future__ import annotations

import asyncio
import time

import pytest

from converge.coordination.bidding import AuctionType, BiddingProtocol
from converge.coordination.consensus import Consensus, StoreVotes
from converge.coordination.delegation import DelegationProtocol
from converge.coordination.negotiation import NegotiationProtocol, NegotiationState
from converge.coordination.pool_manager import PoolManager
from converge.coordination.task_manager import TaskManager
from converge.core.decisions import (
    AcceptProposal,
    ClaimTask,
    Delegate,
    JoinPool,
    Propose,
    RejectProposal,
    ReportTask,
    RevokeDelegation,
    SendMessage,
    SubmitBid,
    Vote,
)
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.task import Task, TaskState
from converge.extensions.storage.sqlite_store import SQLiteStore
from converge.network.transport.local import LocalTransport, LocalTransportRegistry
from converge.policy.admission import WhitelistAdmission
from converge.policy.governance import DemocraticGovernance
from converge.runtime import AgentRuntime
from converge.testing.agents import FunctionAgent
from conftest import eventually as wait_for


pytestmark = pytest.mark.usefixtures("no_leaked_tasks")


@pytest.fixture
def registry():
    return LocalTransportRegistry.isolated()




def tell(registry, agent, payload):
    """Deliver a command message to ``agent`` as its transport would."""
    boss = Identity.generate()
    registry.get_queue(agent.id).put_nowait(Message(recipient=agent.id, payload=payload).sign(boss))


class Network:
    """Two agents (buyer, seller) in runtimes sharing one store, managers and protocols."""

    def __init__(self, registry, store):
        self.store = store
        self.pools = PoolManager(store)
        self.tasks = TaskManager(store)
        self.negotiation = NegotiationProtocol(store)
        self.delegation = DelegationProtocol(store)
        self.votes = StoreVotes(store)
        self.auctions = {"lot-1": BiddingProtocol(AuctionType.SECOND_PRICE_SEALED_BID)}
        self.buyer = FunctionAgent(self.buyer_decide, name="buyer", capabilities=["buy"])
        self.seller = FunctionAgent(self.seller_decide, name="seller", capabilities=["sell"])
        kwargs = {
            "negotiation_protocol": self.negotiation,
            "delegation_protocol": self.delegation,
            "votes_store": self.votes,
            "bidding_protocols": self.auctions,
        }
        self.runtimes = [
            AgentRuntime(
                agent, LocalTransport(agent.id, registry=registry), pool_manager=self.pools, task_manager=self.tasks,
                executor_kwargs=kwargs, receive_timeout_sec=0.5, scheduler_timeout_sec=0.05,
                task_refresh_interval_sec=0.0,
            )
            for agent in (self.buyer, self.seller)
        ]

    def outcomes(self, agent):
        rt = self.runtimes[0 if agent is self.buyer else 1]
        return [o for rec in rt.history for o in rec.outcomes]

    # The agents react to command messages and to each other.
    def buyer_decide(self, agent, messages, tasks):
        out = []
        for m in messages:
            cmd = m.payload.get("cmd")
            if cmd == "countered":  # the seller countered: accept, then try to reject too late
                out += [AcceptProposal("deal"), RejectProposal("deal")]
            elif cmd == "bid":
                out.append(SubmitBid("lot-1", 40.0, {"note": "buyer"}))
            elif cmd == "vote":
                out.append(Vote("policy", "yes"))
            elif cmd == "delegate":
                out.append(Delegate(self.seller.id, ["ClaimTask"]))
            elif cmd == "revoke":
                out.append(RevokeDelegation(m.payload["id"]))
            elif cmd == "join":
                out.append(JoinPool(m.payload["pool"]))
        for t in tasks:
            out += [ClaimTask(t.id), ReportTask(t.id, {"by": "buyer"})]
        return out

    def seller_decide(self, agent, messages, tasks):
        out = []
        for m in messages:
            cmd = m.payload.get("cmd")
            if cmd == "counter":
                out += [
                    Propose("deal", {"price": 120}),
                    SendMessage(Message(sender=agent.id, recipient=self.buyer.id, payload={"cmd": "countered"})),
                ]
            elif cmd == "bid":
                out.append(SubmitBid("lot-1", 55.0))
            elif cmd == "vote":
                out.append(Vote("policy", m.payload["option"]))
            elif cmd == "join":
                out.append(JoinPool(m.payload["pool"]))
        for t in tasks:
            out += [ClaimTask(t.id), ReportTask(t.id, {"by": "seller"})]
        return out


@pytest.fixture
async def net(registry, tmp_path):
    with SQLiteStore(tmp_path / "net.db") as store:
        network = Network(registry, store)
        for rt in network.runtimes:
            await rt.start()
        try:
            yield network
        finally:
            for rt in network.runtimes:
                await rt.stop()


async def test_negotiation_round_through_runtimes(net, registry):
    net.negotiation.create_session(net.buyer.id, [net.seller.id], {"price": 100}, session_id="deal")
    tell(registry, net.seller, {"cmd": "counter"})
    await wait_for(lambda: any(isinstance(o.decision, RejectProposal) for o in net.outcomes(net.buyer)))
    session = net.negotiation.get_session("deal")
    assert session.state is NegotiationState.ACCEPTED
    assert [(p.proposer_id, p.content) for p in session.history] == [
        (net.buyer.id, {"price": 100}), (net.seller.id, {"price": 120})
    ]
    statuses = {type(o.decision).__name__: o.status for o in net.outcomes(net.buyer)}
    assert statuses == {"AcceptProposal": "ok", "RejectProposal": "rejected"}  # no reject after accept
    assert NegotiationProtocol(net.store).get_session("deal").state is NegotiationState.ACCEPTED  # stored


async def test_auction_round_through_runtimes(net, registry):
    tell(registry, net.buyer, {"cmd": "bid"})
    tell(registry, net.seller, {"cmd": "bid"})
    auction = net.auctions["lot-1"]
    await wait_for(lambda: len(auction.bids) == 2)
    assert auction.resolve() == net.seller.id and auction.clearing_price == 40.0
    assert auction.contents[net.buyer.id] == {"note": "buyer"}
    tell(registry, net.buyer, {"cmd": "bid"})  # the auction is closed now
    await wait_for(lambda: sum(isinstance(o.decision, SubmitBid) for o in net.outcomes(net.buyer)) == 2)
    assert [o.status for o in net.outcomes(net.buyer) if isinstance(o.decision, SubmitBid)] == ["ok", "rejected"]


async def test_vote_round_through_runtimes(net, registry):
    tell(registry, net.buyer, {"cmd": "vote"})
    tell(registry, net.seller, {"cmd": "vote", "option": "yes"})
    await wait_for(lambda: len(net.votes.ballots("policy")) == 2)
    assert sorted(net.votes.ballots("policy")) == sorted([(net.buyer.id, "yes"), (net.seller.id, "yes")])
    options = Consensus.options(StoreVotes(net.store).ballots("policy"))
    assert DemocraticGovernance().resolve_dispute({"votes": options}) == "yes"


async def test_delegation_round_through_runtimes(net, registry):
    tell(registry, net.buyer, {"cmd": "delegate"})
    await wait_for(lambda: any(isinstance(o.decision, Delegate) for o in net.outcomes(net.buyer)))
    [granted] = [o for o in net.outcomes(net.buyer) if isinstance(o.decision, Delegate)]
    delegation_id = granted.result
    assert net.delegation.allows(delegation_id, "ClaimTask", delegatee_id=net.seller.id)
    assert net.delegation.get(delegation_id)["delegator"] == net.buyer.id
    tell(registry, net.buyer, {"cmd": "revoke", "id": delegation_id})
    await wait_for(lambda: not DelegationProtocol(net.store).is_active(delegation_id))


async def test_pool_bound_tasks_reach_members_only(net, registry):
    net.pools.create_pool({"id": "sellers", "admission_policy": WhitelistAdmission([net.seller.id])})
    tell(registry, net.buyer, {"cmd": "join", "pool": "sellers"})  # refused by the whitelist
    tell(registry, net.seller, {"cmd": "join", "pool": "sellers"})
    await wait_for(lambda: net.pools.get_pool("sellers").agents == {net.seller.id})
    await wait_for(lambda: any(isinstance(o.decision, JoinPool) for o in net.outcomes(net.buyer)))
    assert [o.status for o in net.outcomes(net.buyer) if isinstance(o.decision, JoinPool)] == ["rejected"]
    assert "whitelist" in net.pools.last_denial
    ids = [net.tasks.submit(Task(pool_id="sellers", priority=i)) for i in range(5)]
    done = [await net.tasks.wait_until_done(task_id, timeout=10) for task_id in ids]
    assert all(t.state is TaskState.COMPLETED and t.result == {"by": "seller"} for t in done)
    assert not any(isinstance(o.decision, ClaimTask) for o in net.outcomes(net.buyer))
    free = net.tasks.submit(Task())
    finished = await net.tasks.wait_until_done(free, timeout=10)
    assert finished.state is TaskState.COMPLETED  # claimed by exactly one of them
    reports = [o for a in (net.buyer, net.seller) for o in net.outcomes(a)
               if isinstance(o.decision, ReportTask) and o.decision.task_id == free and o.ok]
    assert len(reports) == 1
