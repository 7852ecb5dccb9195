"""Admission policies, the trust model and safety limits (reference §7.1, §7.2, §7.4)."""

from __future__ import annotations

import pytest

from converge.core import codec
from converge.errors import ConfigError
from converge.policy.admission import AdmissionPolicy, OpenAdmission, TokenAdmission, WhitelistAdmission
from converge.policy.safety import ActionPolicy, ResourceLimits, validate_safety
from converge.policy.trust import TrustModel


def test_admission_policies():
    with pytest.raises(TypeError):
        AdmissionPolicy()  # type: ignore[abstract]
    assert OpenAdmission().can_admit("anyone", {}) and OpenAdmission().denial_reason("x", {}) is None
    wl = WhitelistAdmission(["a", "b", "a"])
    assert wl.whitelist == {"a", "b"}
    assert wl.can_admit("a", {}) and not wl.can_admit("c", {})
    token = TokenAdmission("tok")
    assert token.can_admit("x", {"token": "tok"})
    assert not token.can_admit("x", {}) and not token.can_admit("x", {"token": "TOK"})
    assert not token.can_admit("x", {"token": 123}) and "type int" in token.denial_reason("x", {"token": 123})
    assert not token.can_admit("x", {"token": "tök"})  # non-ASCII input is compared safely, not an error


def test_custom_policy_gets_a_generic_reason():
    class EvenOnly(AdmissionPolicy):
        def can_admit(self, agent_id, pool_context):
            return len(agent_id) % 2 == 0

    assert EvenOnly().denial_reason("ab", {}) is None
    assert EvenOnly().denial_reason("abc", {}) == "EvenOnly refused agent abc"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: WhitelistAdmission("abc"), "single string"),
        (lambda: WhitelistAdmission([1]), "agent id strings"),
        (lambda: TokenAdmission(""), "non-empty"),
        (lambda: TokenAdmission(None), "non-empty"),  # type: ignore[arg-type]
    ],
)
def test_admission_bad_arguments(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_trust_model_defaults_and_clamps():
    trust = TrustModel()
    assert trust.get_trust("new") == 0.5
    assert trust.update_trust("a", 0.2) == pytest.approx(0.7)
    assert trust.update_trust("a", 5) == 1.0
    assert trust.update_trust("b", -9) == 0.0
    assert trust.scores == {"a": 1.0, "b": 0.0}
    for bad in (float("nan"), "0.1", True):
        with pytest.raises(ConfigError, match="finite number"):
            trust.update_trust("a", bad)  # type: ignore[arg-type]
    assert trust.get_trust("a") == 1.0


def test_action_policy_empty_list_quirk_and_deny_all():
    assert ActionPolicy().is_allowed("SendMessage")
    assert ActionPolicy([]).allowed_actions is None and ActionPolicy([]).is_allowed("Anything")  # reference quirk
    only = ActionPolicy(["SendMessage", "ClaimTask"])
    assert only.is_allowed("ClaimTask") and not only.is_allowed("SubmitTask")
    nothing = ActionPolicy.deny_all()
    assert nothing.allowed_actions == set() and not nothing.is_allowed("SendMessage")
    assert not ActionPolicy([], empty_means_deny=True).is_allowed("SendMessage")
    assert ActionPolicy.allow_all().is_allowed("X")
    assert not codec.decode(codec.encode(nothing)).is_allowed("SendMessage")  # deny-all survives the store
    with pytest.raises(ConfigError, match="single string"):
        ActionPolicy("SendMessage")


@pytest.mark.parametrize(
    ("cpu", "mem", "ok"),
    [
        (1.0, 512, True),  # equality allowed
        (0.5, 100, True),
        (1.01, 10, False),
        (0.1, 513, False),
        (float("nan"), 0, False),
        (0.1, float("inf"), False),
        ("x", 0, False),
    ],
)
def test_validate_safety(cpu, mem, ok):
    assert validate_safety(ResourceLimits(), cpu, mem) is ok
