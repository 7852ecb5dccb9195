"""The store codec: round trips of plain data and project types, determinism, and every kind of bad data."""

from __future__ import annotations

import dataclasses
import enum
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converge.core import codec
from converge.core.capability import Capability, CapabilitySet
from converge.core.message import Message
from converge.core.pool import Pool
from converge.core.task import Task, TaskState
from converge.core.topic import Topic
from converge.errors import CodecError, DecodeError

ROOT = Path(__file__).resolve().parents[1]
HEADER = codec.MAGIC + bytes([codec.VERSION])


def _raw(obj: Any) -> bytes:
    """Codec bytes assembled by hand (to plant data our encoder would not write)."""
    return HEADER + msgpack.packb(obj, use_bin_type=True)


def _ext(code: int, inner: Any) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb(inner, use_bin_type=True))


def rt(value: Any) -> Any:
    return codec.decode(codec.encode(value))


# -- format ----------------------------------------------------------------


def test_header_and_plain_msgpack_body() -> None:
    data = codec.encode({"a": [1, "x", None, True, 1.5, b"\x00"]})
    assert data[:4] == b"CVG\x01"
    assert msgpack.unpackb(data[4:], raw=False) == {"a": [1, "x", None, True, 1.5, b"\x00"]}


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, -1, 2**64 - 1, -(2**63), 1.25, float("inf"), "", "é☃", b"", b"\xff" * 3,
        [], {}, [1, [2, [3]]], {"n": {"m": []}}, {1: "int key", "s": 2}, (), (1, "a", (2,)), {1, 2, 3},
        frozenset({"a"}), {(1, 2), (3, 4)}, {frozenset({1}): {frozenset({"x"})}}, {(1, "k"): "tuple key"},
    ],
)
def test_plain_values_round_trip_with_their_types(value: Any) -> None:
    got = rt(value)
    assert got == value and type(got) is type(value)


def test_nested_container_types_survive() -> None:
    got = rt({"t": (1, {2}), "l": [(3,)], "s": {("a", 1)}})
    assert type(got["t"]) is tuple and type(got["t"][1]) is set and type(got["l"][0]) is tuple


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text() | st.binary(),
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
        | st.tuples(children, children)
        | st.frozensets(st.integers(-(2**63), 2**64 - 1) | st.text(max_size=3), max_size=4),
        max_leaves=20,
    )
)
def test_round_trip_property(value: Any) -> None:
    assert rt(value) == value


def test_sets_encode_canonically_whatever_the_insertion_order() -> None:
    a = {"zeta", "alpha", "mid", 3, 1}
    b = set()
    for item in [1, "mid", 3, "alpha", "zeta"]:
        b.add(item)
    assert codec.encode(a) == codec.encode(b)


def test_sets_encode_identically_in_processes_with_different_hash_seeds() -> None:
    script = (
        "from converge.core import codec; from converge.core.pool import Pool;"
        "import sys; sys.stdout.write(codec.encode(Pool(id='p', agents={f'agent-{i}' for i in range(50)})).hex())"
    )
    outs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        outs.add(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1


# -- project types ---------------------------------------------------------


def test_task_round_trip() -> None:
    task = Task(
        id="t1", objective={"goal": "sum"}, inputs={"xs": [1, 2]}, constraints={"claim_ttl_sec": 5},
        state=TaskState.COMPLETED, assigned_to="fp", result={"sum": 3}, claimed_at=12.5, pool_id="p",
        topic=Topic("math", {"op": "add"}), required_capabilities=["add"], priority=7,
    )
    got = rt(task)
    assert got == task and got is not task
    assert got.state is TaskState.COMPLETED and isinstance(got.topic, Topic)


def test_task_state_enum_round_trip() -> None:
    for state in TaskState:
        assert rt(state) is state


def test_pool_with_set_and_topics_round_trip() -> None:
    pool = Pool(id="p", topics=[Topic("a"), Topic("b", {"k": 1}, "2.0")], agents={"x", "y"}, trust_threshold=0.4)
    got = rt(pool)
    assert got == pool and got.agents == {"x", "y"} and isinstance(got.agents, set)


def test_message_round_trip_keeps_signature() -> None:
    msg = Message(id="m", sender="s", recipient="r", topics=[Topic("t")], payload={"a": (1, 2)}, task_id="t1",
                  timestamp=99, signature=b"\x01\x02")
    got = rt(msg)
    assert got == msg and got.signature == b"\x01\x02"


def test_capabilities_round_trip() -> None:
    caps = CapabilitySet([Capability("summarise", "1.0", "summaries", {"max": 5}, {"usd": 0.1}, 20)])
    assert rt(caps) == caps


def test_topic_is_frozen_after_decoding() -> None:
    topic = rt(Topic("ns", {"a": 1}))
    assert str(topic) == "ns[a=1]v1.0"
    with pytest.raises(dataclasses.FrozenInstanceError):
        topic.namespace = "x"  # type: ignore[misc]


def test_policies_on_a_pool_round_trip() -> None:
    admission = pytest.importorskip("converge.policy.admission")
    trust = pytest.importorskip("converge.policy.trust")
    governance = pytest.importorskip("converge.policy.governance")
    safety = pytest.importorskip("converge.policy.safety")
    pool = Pool(
        id="p",
        agents={"a"},
        admission_policy_instance=admission.WhitelistAdmission(["a", "b"]),
        trust_model=trust.TrustModel({"a": 0.9}),
        governance_model=governance.VetoGovernance(veto_agent_id="a"),
    )
    got = rt(pool)
    assert got.admission_policy_instance.can_admit("b", {}) and not got.admission_policy_instance.can_admit("c", {})
    assert got.trust_model.get_trust("a") == 0.9
    assert got.governance_model.resolve_dispute({"veto_exercised": True, "vetoed_by": "a", "fallback": "f"}) == "f"
    token = admission.TokenAdmission("s3cret")
    assert rt(token).can_admit("x", {"token": "s3cret"}) and not rt(token).can_admit("x", {"token": "no"})
    for value in (
        admission.OpenAdmission(), governance.DictatorialGovernance("lead"), governance.DemocraticGovernance(),
        governance.BicameralGovernance(), governance.EmpiricalGovernance(), safety.ResourceLimits(max_memory_mb=64),
        safety.ActionPolicy(["SendMessage"]), safety.ActionPolicy.deny_all(),
    ):
        got = rt(value)
        assert type(got) is type(value) and got == value


def test_agent_descriptor_round_trip() -> None:
    discovery = pytest.importorskip("converge.network.discovery")
    desc = discovery.AgentDescriptor(id="fp", topics=[Topic("t")], capabilities=[Capability("c", "1", "d")],
                                     public_key=b"\x01" * 32)
    assert rt(desc) == desc


# -- registration ----------------------------------------------------------


@dataclasses.dataclass
class _Point:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)


class _Colour(enum.Enum):
    RED = "red"
    BLUE = 2


class _Plain:
    def __init__(self, a: int) -> None:
        self.a = a

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Plain) and other.a == self.a


class _Secretive:
    def __init__(self, visible: int) -> None:
        self.visible = visible
        self.cache = object()  # not storable: custom to_state leaves it out


def test_registered_types_round_trip() -> None:
    codec.register_type(_Point, "tests.Point")
    codec.register_type(_Colour, "tests.Colour")
    codec.register_type(_Plain)
    codec.register_type(
        _Secretive, "tests.Secretive",
        to_state=lambda o: {"visible": o.visible},
        from_state=lambda cls, state: cls(state["visible"]),
    )
    assert rt(_Point(1, 2, ["a"])) == _Point(1, 2, ["a"])
    assert rt(_Colour.RED) is _Colour.RED and rt(_Colour.BLUE) is _Colour.BLUE
    assert rt([_Plain(3)]) == [_Plain(3)]
    got = rt(_Secretive(5))
    assert got.visible == 5 and got.cache is not None
    # Data written before a field existed gets the field's default.
    old = _raw(_ext(1, ["tests.Point", {"x": 9}]))
    assert codec.decode(old) == _Point(9)


def test_unregistered_type_cannot_be_encoded() -> None:
    class Local:
        pass

    with pytest.raises(CodecError, match="cannot store a value of type .*Local.*register_type") as info:
        codec.encode({"x": [Local()]}, key="k1")
    assert info.value.key == "k1" and "'k1'" in str(info.value)


@pytest.mark.parametrize(
    "value, why",
    [
        (2**64, "does not fit in 64 bits"),
        (-(2**63) - 1, "does not fit in 64 bits"),
        (object(), "builtins.object"),
        ({"k": {1, object()}}, "builtins.object"),
    ],
)
def test_unencodable_values(value: Any, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        codec.encode(value, key="k")


def test_nesting_limit_is_the_same_for_encode_and_decode() -> None:
    deepest: Any = ()
    for _ in range(codec.MAX_DEPTH - 1):
        deepest = (deepest,)
    assert rt(deepest) == deepest
    with pytest.raises(CodecError, match="levels deep"):
        codec.encode((deepest,), key="k")


def test_hostile_nesting_is_refused_without_crashing() -> None:
    # Each nested extension is one more C-level unpack; thousands of them used to overflow the stack.
    inner = msgpack.packb([])
    for _ in range(5000):
        inner = msgpack.packb(msgpack.ExtType(2, inner))
    errors: list[BaseException] = []

    def decode_in_thread() -> None:  # worker threads (asyncio.to_thread) decode too
        try:
            codec.decode(HEADER + inner, key="bomb")
        except CodecError as exc:
            errors.append(exc)

    t = threading.Thread(target=decode_in_thread)
    t.start()
    t.join()
    assert len(errors) == 1 and "levels deep" in str(errors[0]) and errors[0].key == "bomb"
    with pytest.raises(CodecError, match="corrupt stored value"):
        codec.decode(HEADER + b"\x91" * 100_000 + b"\xc0", key="deep")


# -- bad data --------------------------------------------------------------


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "missing 'CVG' header"),
        (b"\x80\x04\x95pickle", "missing 'CVG' header"),
        (msgpack.packb({"a": 1}), "missing 'CVG' header"),
        (b"CVG", "unsupported store format version None"),
        (b"CVG\x02" + msgpack.packb(1), "unsupported store format version 2"),
        (b"CVG\x01", "corrupt stored value"),
        (codec.encode({"a": "some text"})[:-2], "corrupt stored value"),
        (codec.encode([1]) + b"\x01", "corrupt stored value"),
        (b"CVG\x01\xc1", "corrupt stored value"),
        (_raw(_ext(1, ["no.such.Type", {}])), "unregistered type 'no.such.Type'"),
        (_raw(_ext(4, ["no.such.Enum", 1])), "unregistered type 'no.such.Enum'"),
        (_raw(_ext(1, "not a record")), "malformed object record"),
        (_raw(_ext(1, [1, {}])), "malformed object record"),
        (_raw(_ext(1, ["converge.Task", ["not", "a", "map"]])), "malformed state for 'converge.Task'"),
        (_raw(_ext(4, ["converge.TaskState", "exploded"])), "not a valid TaskState"),
        (_raw(msgpack.ExtType(9, b"")), "unknown extension code 9"),
        (_raw(msgpack.ExtType(2, b"\xc1")), "corrupt stored value"),
        (_raw(_ext(3, [[1], [2]])), "unhashable"),
    ],
)
def test_bad_data_raises_codec_error_naming_the_key(data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why) as info:
        codec.decode(data, key="task:42")
    err = info.value
    assert err.key == "task:42" and "'task:42'" in str(err)
    assert isinstance(err, DecodeError) and isinstance(err, ValueError)


@pytest.mark.parametrize("data", ["CVG\x01", None, 5, ["CVG"]])
def test_non_bytes_input(data: Any) -> None:
    with pytest.raises(CodecError, match="expected bytes"):
        codec.decode(data, key="k")


def test_bytes_like_input_is_accepted() -> None:
    data = codec.encode({"a": 1})
    assert codec.decode(bytearray(data)) == {"a": 1} and codec.decode(memoryview(data)) == {"a": 1}


def test_error_without_a_key() -> None:
    with pytest.raises(CodecError) as info:
        codec.decode(b"nope")
    assert info.value.key is None and "key" not in str(info.value)
