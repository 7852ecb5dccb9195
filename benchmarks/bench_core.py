"""The message path of ``converge.core``: sign + to_bytes + from_bytes + verify.

One operation takes an unsigned message with a 200-byte payload, signs it with
an :class:`~converge.core.identity.Identity`, encodes it for the wire, decodes
it and verifies the decoded copy against the sender's public key — what a
sender and a verifying receiver do per message, minus the transport.
Run alone with ``python -m benchmarks.bench_core [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import time

from benchmarks._fixtures import payload
from benchmarks._harness import Plan, Result, Sample, choose, measure
from benchmarks.bench_limits import Probe
from converge.core.identity import Identity
from converge.core.message import Message


def _sign_verify_once(n: int) -> Sample:
    identity = Identity.generate()
    key = identity.public_key
    messages = [Message(sender=identity.fingerprint, recipient="f" * 64, payload=payload()) for _ in range(n)]
    from_bytes = Message.from_bytes
    t0 = time.perf_counter()
    for msg in messages:
        if not from_bytes(msg.sign(identity).to_bytes()).verify(key):
            raise AssertionError("a message signed in the benchmark did not verify")
    return Sample(n, time.perf_counter() - t0)


async def _run_all(quick: bool, tiny: bool) -> dict[str, Result]:
    plan = choose(quick, tiny, Plan(10_000, 1_000, 5, 4.0), Plan(1_000, 200, 3, 1.0))
    probe = Probe(quick, tiny=tiny)
    res = await measure("core.sign_verify", "messages", _sign_verify_once, plan,
                        limit=probe.composite(ed25519_sign=1, ed25519_verify=1, msgpack_rt=1),
                        limit_label="1 sign + 1 verify + 1 pack/unpack")
    return {res.name: res}


def run(quick: bool = False, *, tiny: bool = False) -> dict[str, Result]:
    """Measure the sign/verify path (``tiny``: a handful of operations, for the smoke test)."""
    return asyncio.run(_run_all(quick, tiny))


if __name__ == "__main__":
    for r in run("--quick" in sys.argv).values():
        print(f"{r.name:<28} {r.rate:>12,.0f} {r.unit}/s")
