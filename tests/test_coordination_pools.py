"""PoolManager: create/join/leave, admission by whitelist, token and trust, recovery, cross-manager views."""

from __future__ import annotations

import threading

import pytest

from converge.coordination.pool_manager import MEMBER_INDEX_PREFIX, PoolManager
from converge.core.pool import Pool
from converge.core.topic import Topic
from converge.errors import CodecError, ConfigError
from converge.extensions.storage.memory import MemoryStore
from converge.extensions.storage.sqlite_store import SQLiteStore
from converge.observability.coordination_metrics import CoordinationMetrics
from converge.observability.metrics import MetricsCollector
from converge.policy.admission import AdmissionPolicy, OpenAdmission, TokenAdmission, WhitelistAdmission
from converge.policy.governance import DemocraticGovernance
from converge.policy.trust import TrustModel


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore()
    else:
        with SQLiteStore(tmp_path / "pools.db") as s:
            yield s


def test_create_join_leave(store):
    collector = MetricsCollector()
    pm = PoolManager(store, CoordinationMetrics(collector))
    pool = pm.create_pool({"id": "p", "topics": [{"namespace": "work"}], "agents": ["x"]})
    assert isinstance(pool, Pool) and pool.topics == [Topic("work")] and pool.agents == {"x"}
    assert pm.join_pool("a", "p") and pm.join_pool("a", "p")  # joining twice is fine
    assert pool.agents == {"x", "a"}  # the returned object is live
    assert PoolManager(store).get_pool("p").agents == {"x", "a"}
    assert pm.get_pools_for_agent("a") == ["p"] and pm.get_pools_for_agent("x") == ["p"]
    assert pm.leave_pool("a", "p") and pm.leave_pool("a", "p")  # leaving twice too
    assert pool.agents == {"x"} and pm.get_pools_for_agent("a") == []
    assert store.get(f"{MEMBER_INDEX_PREFIX}a") == []
    assert pm.leave_pool("a", "missing") is False
    assert collector.get_counter("pool_created_total") == 1
    assert collector.get_counter("pool_join_total") == 2 and collector.get_counter("pool_leave_total") == 2
    assert collector.get_gauge("pool_size") == 1


def test_empty_spec_gets_an_id_and_unknown_pool_is_refused(store):
    pm = PoolManager(store)
    pool = pm.create_pool({})
    assert pool.id and pm.get_pool(pool.id) is pool
    assert pm.join_pool("a", "nope") is False
    assert pm.last_denial == "no pool 'nope'" and pm.denials["unknown_pool"] == 1
    assert pm.get_pool("nope") is None


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"colour": "red"}, "unknown pool spec keys"),
        ({"admission_policy": 42}, "can_admit"),
        ({"governance_model": "democracy"}, "resolve_dispute"),
        ({"trust_model": {"a": 1}}, "get_trust"),
        ({"trust_threshold": float("nan")}, "finite"),
        ({"topics": "work"}, "list of Topic"),
        ({"topics": [3]}, "Topic or dict"),
        ({"id": ""}, "non-empty"),
        ({"admission_policy": OpenAdmission(), "admission_policy_instance": OpenAdmission()}, "both"),
    ],
)
def test_bad_specs_raise_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        PoolManager().create_pool(spec)


def test_descriptive_dicts_stay_descriptive():
    pool = PoolManager().create_pool({"admission_policy": {"kind": "open"}, "governance": {"mode": "vote"}})
    assert pool.admission_policy == {"kind": "open"} and pool.admission_policy_instance is None


def test_whitelist_admission(store):
    pm = PoolManager(store)
    pm.create_pool({"id": "p", "admission_policy": WhitelistAdmission(["a", "b"])})
    assert pm.join_pool("a", "p")
    assert not pm.join_pool("c", "p")
    assert "not on the pool's whitelist" in pm.last_denial and pm.denials["admission"] == 1
    assert pm.check_admission("b", "p") is None
    assert "whitelist" in pm.check_admission("c", "p")
    assert PoolManager(store).get_pool("p").agents == {"a"}


def test_token_admission_through_join_context(store):
    collector = MetricsCollector()
    pm = PoolManager(store, CoordinationMetrics(collector))
    pm.create_pool({"id": "secret", "admission_policy": TokenAdmission("open sesame")})
    assert not pm.join_pool("a", "secret")
    assert "presented no token" in pm.last_denial
    assert not pm.join_pool("a", "secret", {"token": "open sesam"})
    assert "wrong token" in pm.last_denial
    assert not pm.join_pool("a", "secret", {"token": b"open sesame"})
    assert pm.join_pool("a", "secret", {"token": "open sesame"})
    assert collector.get_counter("pool_join_denied_total", labels={"reason": "admission"}) == 3
    # the pool's facts win over what the caller puts in the context
    seen = {}

    class Spy(AdmissionPolicy):
        def can_admit(self, agent_id, pool_context):
            seen.update(pool_context)
            return True

    pm2 = PoolManager()
    pm2.create_pool({"id": "q", "agents": ["z"], "topics": [Topic("t")], "admission_policy": Spy()})
    assert pm2.join_pool("a", "q", {"pool_id": "forged", "existing_agents": [], "extra": 1})
    assert seen == {"pool_id": "q", "existing_agents": ["z"], "topics": ["t[]v1.0"], "extra": 1}
    with pytest.raises(ConfigError, match="context must be a dict"):
        pm2.join_pool("a", "q", "token")  # type: ignore[arg-type]


def test_token_is_not_stored_in_clear(tmp_path):
    with SQLiteStore(tmp_path / "t.db") as store:
        PoolManager(store).create_pool({"id": "p", "admission_policy": TokenAdmission("hunter2-secret")})
    assert b"hunter2-secret" not in (tmp_path / "t.db").read_bytes()
    assert "hunter2" not in repr(TokenAdmission("hunter2-secret"))


def test_trust_threshold(store):
    pm = PoolManager(store)
    pm.create_pool({"id": "p", "trust_model": TrustModel({"low": 0.2, "high": 0.9}), "trust_threshold": 0.5})
    assert pm.join_pool("high", "p")
    assert pm.join_pool("newcomer", "p")  # neutral 0.5 meets a 0.5 threshold
    assert not pm.join_pool("low", "p")
    assert "trust 0.2 of agent low is below the threshold 0.5" in pm.last_denial and pm.denials["trust"] == 1
    assert pm.update_trust("p", "low", 0.4) == pytest.approx(0.6)
    assert PoolManager(store).get_pool("p").trust_model.get_trust("low") == pytest.approx(0.6)
    assert pm.join_pool("low", "p")
    pm.create_pool({"id": "plain"})
    with pytest.raises(ConfigError, match="no trust model"):
        pm.update_trust("plain", "a", 0.1)


def test_admission_still_applies_to_members():
    pm = PoolManager()
    pool = pm.create_pool({"id": "p", "agents": ["a"], "trust_model": TrustModel({"a": 0.1}), "trust_threshold": 0.3})
    assert not pm.join_pool("a", "p")  # reference order: checks first, then membership
    assert pool.agents == {"a"}


def test_policies_persist_through_the_codec_and_recover(tmp_path):
    path = tmp_path / "recover.db"
    with SQLiteStore(path) as store:
        pm = PoolManager(store)
        pm.create_pool({
            "id": "p", "admission_policy": WhitelistAdmission(["a"]), "trust_model": TrustModel({"a": 0.8}),
            "trust_threshold": 0.7, "governance_model": DemocraticGovernance(), "topics": [Topic("x", {"k": 1})],
        })
        assert pm.join_pool("a", "p")
    with SQLiteStore(path) as store:
        fresh = PoolManager(store)
        assert fresh.get_pools_for_agent("a") == ["p"]
        pool = fresh.get_pool("p")
        assert pool.agents == {"a"} and pool.topics == [Topic("x", {"k": 1})]
        assert pool.governance_model.resolve_dispute({"votes": ["y", "y", "n"]}) == "y"
        assert not fresh.join_pool("b", "p") and "whitelist" in fresh.last_denial


def test_unregistered_policy_type_is_a_codec_error(tmp_path):
    class Custom(AdmissionPolicy):
        def can_admit(self, agent_id, pool_context):
            return True

    with SQLiteStore(tmp_path / "c.db") as store:
        pm = PoolManager(store)
        with pytest.raises(CodecError, match="register"):
            pm.create_pool({"id": "p", "admission_policy": Custom()})
        assert pm.get_pool("p") is None


def test_membership_changes_by_another_manager_are_visible(store):
    a, b = PoolManager(store), PoolManager(store)
    a.create_pool({"id": "p"})
    assert b.get_pool("p").agents == set()
    assert a.join_pool("x", "p")
    assert b.get_pools_for_agent("x") == ["p"]  # b had the pool cached; it re-reads it
    assert b.get_pool("p").agents == {"x"}
    assert b.leave_pool("x", "p")
    assert a.get_pools_for_agent("x") == [] and a.get_pool("p").agents == set()


def test_pools_written_without_the_index_are_found_once():
    store = MemoryStore()
    store.put("pool:legacy", Pool(id="legacy", agents={"a"}))  # e.g. written by another implementation
    pm = PoolManager(store)
    assert pm.get_pools_for_agent("a") == ["legacy"]
    assert store.get(f"{MEMBER_INDEX_PREFIX}a") == ["legacy"]


def test_agent_ids_with_separators_do_not_collide():
    pm = PoolManager()
    pm.create_pool({"id": "p1", "agents": ["a:b"]})
    pm.create_pool({"id": "b:p2", "agents": ["a"]})
    assert pm.get_pools_for_agent("a") == ["b:p2"]
    assert pm.get_pools_for_agent("a:b") == ["p1"]


def test_concurrent_joins_lose_no_member(tmp_path):
    path = tmp_path / "joins.db"
    with SQLiteStore(path) as store:
        PoolManager(store).create_pool({"id": "p"})
    barrier = threading.Barrier(4)

    def joiner(k: int) -> None:
        with SQLiteStore(path) as s:
            pm = PoolManager(s)
            barrier.wait()
            for i in range(15):
                assert pm.join_pool(f"agent-{k}-{i}", "p")

    threads = [threading.Thread(target=joiner, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with SQLiteStore(path) as store:
        assert len(PoolManager(store).get_pool("p").agents) == 60
