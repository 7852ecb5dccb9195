"""Negotiation, bidding, delegation and voting: full rounds, refusals, store-backed sharing."""

from __future__ import annotations

import threading

import pytest

from converge.coordination.bidding import AuctionType, BiddingProtocol
from converge.coordination.consensus import Consensus, StoreVotes
from converge.coordination.delegation import DelegationProtocol, DelegationType
from converge.coordination.negotiation import NegotiationProtocol, NegotiationState
from converge.errors import ConfigError
from converge.extensions.storage.memory import MemoryStore
from converge.extensions.storage.sqlite_store import SQLiteStore


@pytest.fixture(params=["memory", "sqlite", None])
def maybe_store(request, tmp_path):
    if request.param is None:
        yield None
    elif request.param == "memory":
        yield MemoryStore()
    else:
        with SQLiteStore(tmp_path / "proto.db") as s:
            yield s


# -- negotiation ----------------------------------------------------------------


def test_negotiation_full_round(maybe_store):
    neg = NegotiationProtocol(maybe_store, clock=lambda: 123.0)
    sid = neg.create_session("buyer", ["seller"], {"price": 100}, session_id="deal")
    assert sid == "deal"
    session = neg.get_session(sid)
    assert session.participants == ["buyer", "seller"] and session.state is NegotiationState.PROPOSED
    assert session.current_proposal.content == {"price": 100} and session.current_proposal.timestamp == 123.0
    assert neg.propose(sid, "seller", {"price": 120})
    assert neg.propose(sid, "buyer", {"price": 110})
    assert session.state is NegotiationState.COUNTERED  # the object stays live
    assert neg.accept(sid, "seller")
    session = neg.get_session(sid)
    assert session.state is NegotiationState.ACCEPTED
    assert [p.content["price"] for p in session.history] == [100, 120, 110]
    assert [p.proposer_id for p in session.history] == ["buyer", "seller", "buyer"]
    assert session.current_proposal.content == {"price": 110}


def test_negotiation_refusals(maybe_store):
    neg = NegotiationProtocol(maybe_store)
    sid = neg.create_session("a", ["b"], "x")
    assert not neg.propose("missing", "a", "y") and neg.refused["unknown_session"] == 1
    assert not neg.propose(sid, "mallory", "y") and neg.refused["not_participant"] == 1
    assert not neg.accept(sid, "mallory")
    assert neg.reject(sid, "b")
    # fixed quirk: a rejected session cannot be accepted afterwards (nor countered, nor re-rejected)
    assert not neg.accept(sid, "a")
    assert "rejected" in neg.last_refusal
    assert not neg.propose(sid, "a", "z") and not neg.reject(sid, "a") and not neg.close(sid, "a")
    assert neg.get_session(sid).state is NegotiationState.REJECTED
    assert neg.refused["closed"] == 4
    other = neg.create_session("a", ["b"], "x")
    assert neg.close(other, "b") and not neg.accept(other, "a")
    assert neg.get_session(other).state is NegotiationState.CLOSED
    with pytest.raises(ConfigError, match="already exists"):
        neg.create_session("a", [], "x", session_id=sid)


def test_negotiation_shared_by_two_protocol_instances(tmp_path):
    with SQLiteStore(tmp_path / "n.db") as s1, SQLiteStore(tmp_path / "n.db") as s2:
        left, right = NegotiationProtocol(s1), NegotiationProtocol(s2)
        sid = left.create_session("a", ["b"], 1)
        assert right.propose(sid, "b", 2)
        assert left.accept(sid, "a")
        assert not right.reject(sid, "b")  # right sees the acceptance made through the other instance
        assert right.get_session(sid).state is NegotiationState.ACCEPTED
        assert [p.content for p in right.get_session(sid).history] == [1, 2]


# -- bidding ----------------------------------------------------------------------


def test_first_price_sealed_bid():
    auction = BiddingProtocol()
    assert auction.resolve() is None and auction.active  # no bids: stays open
    assert auction.submit_bid("a", 10, "offer a")
    assert auction.contents == {"a": "offer a"}
    assert auction.submit_bid("b", 12)
    assert auction.submit_bid("c", 12)  # tie with b: b bid first
    assert auction.submit_bid("a", 11)  # a replaces its bid
    assert auction.bids == {"a": 11.0, "b": 12.0, "c": 12.0} and auction.contents["a"] is None
    assert auction.resolve() == "b" and auction.clearing_price == 12.0
    assert not auction.active and auction.resolve() == "b"
    assert not auction.submit_bid("d", 99) and auction.refused["closed"] == 1


def test_second_price_sealed_bid():
    auction = BiddingProtocol(AuctionType.SECOND_PRICE_SEALED_BID)
    for agent, amount in [("a", 5), ("b", 9), ("c", 7)]:
        assert auction.submit_bid(agent, amount)
    assert auction.resolve() == "b" and auction.clearing_price == 7.0
    solo = BiddingProtocol(AuctionType.SECOND_PRICE_SEALED_BID, reserve_price=3)
    assert not solo.submit_bid("a", 2) and solo.refused["below_reserve"] == 1
    assert solo.submit_bid("a", 8)
    assert solo.resolve() == "a" and solo.clearing_price == 3.0  # a sole bidder pays the reserve
    alone = BiddingProtocol(AuctionType.SECOND_PRICE_SEALED_BID)
    alone.submit_bid("a", 8)
    assert alone.resolve() == "a" and alone.clearing_price == 8.0


def test_english_auction():
    auction = BiddingProtocol(AuctionType.ENGLISH, min_increment=1)
    assert auction.submit_bid("a", 10)
    assert not auction.submit_bid("b", 10.5) and auction.refused["not_higher"] == 1
    assert auction.submit_bid("b", 11)
    assert auction.highest_bid == 11.0
    assert auction.submit_bid("a", 13)
    assert auction.resolve() == "a" and auction.clearing_price == 13.0


def test_dutch_auction():
    auction = BiddingProtocol(AuctionType.DUTCH, start_price=100, reserve_price=40)
    assert not auction.submit_bid("a", 80) and auction.refused["below_asking"] == 1
    auction.lower_price(80)
    assert auction.submit_bid("b", 85)  # first bid at or above the asking price wins at once
    assert not auction.active and auction.winner == "b" and auction.clearing_price == 80.0
    assert not auction.submit_bid("a", 90)
    assert auction.resolve() == "b"
    with pytest.raises(ConfigError, match="below the reserve"):
        BiddingProtocol(AuctionType.DUTCH, start_price=100, reserve_price=40).lower_price(30)
    with pytest.raises(ConfigError, match="below the asking price"):
        BiddingProtocol(AuctionType.DUTCH, start_price=100).lower_price(100)
    with pytest.raises(ConfigError, match="only for Dutch"):
        BiddingProtocol().lower_price(1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"auction_type": "vickrey"}, "auction_type must be one of"),
        ({"auction_type": AuctionType.DUTCH}, "start_price"),
        ({"reserve_price": float("nan")}, "finite"),
        ({"min_increment": -1}, ">= 0"),
    ],
)
def test_bidding_bad_configuration(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BiddingProtocol(**kwargs)


def test_bad_bid_amounts_are_refused():
    auction = BiddingProtocol()
    for amount in (float("nan"), float("inf"), "10", True, None):
        assert not auction.submit_bid("a", amount)  # type: ignore[arg-type]
    assert auction.refused["invalid_amount"] == 5 and auction.bids == {}


# -- delegation ---------------------------------------------------------------------


def test_delegation_round(maybe_store):
    delegation = DelegationProtocol(maybe_store)
    did = delegation.delegate("boss", "helper", ["SendMessage", "ClaimTask"])
    assert delegation.is_active(did)
    assert delegation.allows(did, "ClaimTask") and delegation.allows(did, "ClaimTask", delegatee_id="helper")
    assert not delegation.allows(did, "SubmitTask") and not delegation.allows(did, "ClaimTask", delegatee_id="x")
    assert list(delegation.delegations_for("helper")) == [did]
    assert delegation.revoke(did) and delegation.revoke(did)  # known ids revoke (again) fine, as in the reference
    assert not delegation.is_active(did) and not delegation.allows(did, "ClaimTask")
    assert delegation.delegations_for("helper") == {}
    assert list(delegation.delegations_for("helper", active_only=False)) == [did]
    assert not delegation.revoke("unknown") and not delegation.is_active("unknown")
    assert delegation.get(did) == {"delegator": "boss", "delegatee": "helper", "scope": ["SendMessage", "ClaimTask"], "active": False}
    assert DelegationType.DIRECT == "direct" and DelegationType.POOLED == "pooled"


def test_delegation_bad_input():
    delegation = DelegationProtocol()
    with pytest.raises(ConfigError, match="single string"):
        delegation.delegate("a", "b", "ClaimTask")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="strings"):
        delegation.delegate("a", "b", [1])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="itself"):
        delegation.delegate("a", "a", ["x"])
    assert delegation.delegations == {}


def test_delegation_shared_through_a_store(tmp_path):
    with SQLiteStore(tmp_path / "d.db") as s1, SQLiteStore(tmp_path / "d.db") as s2:
        granting, checking = DelegationProtocol(s1), DelegationProtocol(s2)
        did = granting.delegate("a", "b", ["Vote"])
        assert checking.allows(did, "Vote")
        assert checking.revoke(did)
        assert not granting.is_active(did)


# -- voting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("votes", "majority", "plurality"),
    [
        ([], None, None),
        (["a"], "a", "a"),
        (["a", "a", "b"], "a", "a"),
        (["a", "b"], None, None),
        (["a", "a", "b", "c"], None, "a"),  # plurality without majority
        (["a", "a", "b", "b", "c"], None, None),  # tie for first place
    ],
)
def test_consensus(votes, majority, plurality):
    assert Consensus.majority_vote(votes) == majority
    assert Consensus.plurality_vote(votes) == plurality


def test_consensus_options():
    ballots = [("a", "x"), ("b", "y"), ("a", "z")]
    assert Consensus.options(ballots) == ["x", "y", "z"]
    assert Consensus.options(ballots, one_per_agent=True) == ["z", "y"]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_store_votes_mapping(kind, tmp_path):
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "v.db")
    try:
        votes = StoreVotes(store)
        assert "q" not in votes and len(votes) == 0
        with pytest.raises(KeyError):
            votes["q"]
        ballots = votes.setdefault("q", [])
        ballots.append(("a", "yes"))  # the executor's pattern: append on the returned list ...
        votes["q"] = ballots  # ... then assign it back (a no-op for the live list)
        votes.record("q", "b", "no")
        votes.setdefault("q", []).append(("c", "yes"))
        assert list(votes["q"]) == [("a", "yes"), ("b", "no"), ("c", "yes")]
        assert votes["q"] == [("a", "yes"), ("b", "no"), ("c", "yes")] and len(votes["q"]) == 3
        assert Consensus.majority_vote(Consensus.options(votes.ballots("q"))) == "yes"
        votes["other"] = [("z", 1)]
        assert sorted(votes) == ["other", "q"] and votes.ballots("other") == [("z", 1)]
        del votes["other"]
        assert list(votes) == ["q"] and votes.ballots("missing") == []
    finally:
        if kind == "sqlite":
            store.close()


def test_store_votes_concurrent_appends_are_not_lost(tmp_path):
    path = tmp_path / "votes.db"
    with SQLiteStore(path):
        pass
    barrier = threading.Barrier(4)

    def voter(k: int) -> None:
        with SQLiteStore(path) as store:
            votes = StoreVotes(store)
            barrier.wait()
            for i in range(20):
                votes.setdefault("poll", []).append((f"agent-{k}-{i}", k % 2))

    threads = [threading.Thread(target=voter, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with SQLiteStore(path) as store:
        ballots = StoreVotes(store).ballots("poll")
    assert len(ballots) == 80 and len({a for a, _ in ballots}) == 80
