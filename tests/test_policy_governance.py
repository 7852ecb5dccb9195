"""Governance models on majorities, ties and vetoes (reference §7.3)."""

from __future__ import annotations

import pytest

from converge.errors import ConfigError
from converge.policy.governance import (
    BicameralGovernance,
    DemocraticGovernance,
    DictatorialGovernance,
    EmpiricalGovernance,
    GovernanceModel,
    VetoGovernance,
)


def test_governance_model_is_abstract():
    with pytest.raises(TypeError):
        GovernanceModel()  # type: ignore[abstract]


def test_dictatorial_ignores_the_context():
    model = DictatorialGovernance("lead")
    assert model.resolve_dispute({"votes": ["x", "x"]}) == "Decided by lead"
    assert model.resolve_dispute(None) == "Decided by lead"


@pytest.mark.parametrize(
    ("context", "outcome"),
    [
        ({"votes": ["a", "a", "b"]}, "a"),
        ({"votes": ["a", "b"]}, None),  # a tie is no majority
        ({"votes": ["a", "a", "b", "b"]}, None),
        ({"votes": ["a", "b", "c"]}, None),  # plurality is not majority
        ({"votes": []}, None),
        ({}, None),
        ("not a dict", None),
    ],
)
def test_democratic(context, outcome):
    assert DemocraticGovernance().resolve_dispute(context) == outcome


@pytest.mark.parametrize(
    ("context", "outcome"),
    [
        ({"chamber_a_votes": ["x", "x", "y"], "chamber_b_votes": ["x"], "tie_breaker": "t"}, "x"),
        ({"chamber_a_votes": ["x"], "chamber_b_votes": ["y"], "tie_breaker": "t"}, "t"),  # chambers disagree
        ({"chamber_a_votes": ["x", "y"], "chamber_b_votes": ["x", "y"], "tie_breaker": "t"}, "t"),  # both tied
        ({"chamber_a_votes": ["x", "y"], "chamber_b_votes": ["x", "y"]}, None),
        ({"chamber_a_votes": ["x"]}, None),
        (["x"], None),
    ],
)
def test_bicameral(context, outcome):
    assert BicameralGovernance().resolve_dispute(context) == outcome


@pytest.mark.parametrize(
    ("model", "context", "outcome"),
    [
        (VetoGovernance(), {"votes": ["go", "go", "stop"]}, "go"),
        (VetoGovernance(), {"votes": ["go", "go"], "veto_exercised": True, "fallback": "status quo"}, "status quo"),
        (VetoGovernance(), {"votes": ["go"], "veto_exercised": True}, None),
        (VetoGovernance(), {"votes": ["go", "stop"]}, None),  # a tie without veto
        (VetoGovernance("chair"), {"votes": ["go"], "veto_exercised": True, "fallback": "f"}, "f"),
        (VetoGovernance("chair"), {"votes": ["go"], "veto_exercised": True, "vetoed_by": "chair", "fallback": "f"}, "f"),
        # only the veto holder's veto counts when the context names who vetoed
        (VetoGovernance("chair"), {"votes": ["go"], "veto_exercised": True, "vetoed_by": "intern", "fallback": "f"}, "go"),
        (VetoGovernance(), "x", None),
    ],
)
def test_veto(model, context, outcome):
    assert model.resolve_dispute(context) == outcome


@pytest.mark.parametrize(
    ("context", "outcome"),
    [
        ({"votes": ["a", "b", "b"], "weights": [5, 1, 1]}, "a"),
        ({"votes": ["a", "b"], "weights": [2, 2]}, None),  # tie on the top total
        ({"votes": ["a", "b", "c"], "weights": [1, 3, 3]}, None),
        ({"votes": ["a", "b", "b"], "weights": ["1.5", 1, 0.25]}, "a"),  # numeric strings are weights
        ({"votes": ["a", "b", "b"]}, "b"),  # no weights: plain majority
        ({"votes": ["a", "b", "b"], "weights": [9]}, "b"),  # length mismatch: plain majority
        ({"votes": ["a", "b"], "weights": [9]}, None),
        ({"votes": []}, None),
        (None, None),
    ],
)
def test_empirical(context, outcome):
    assert EmpiricalGovernance().resolve_dispute(context) == outcome


def test_empirical_rejects_bad_weights():
    with pytest.raises(ConfigError, match=r"weights\[1\]"):
        EmpiricalGovernance().resolve_dispute({"votes": ["a", "b"], "weights": [1, "heavy"]})
    with pytest.raises(ConfigError, match="finite"):
        EmpiricalGovernance().resolve_dispute({"votes": ["a"], "weights": [float("inf")]})
