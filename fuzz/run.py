"""The dedicated large-budget fuzz run.

    PYTHONPATH=. .venv/bin/python -m fuzz.run --examples 100000            # every target
    PYTHONPATH=. .venv/bin/python -m fuzz.run --targets message frames --examples 2000

For each target of :mod:`fuzz.targets`, in its own process:

* **hypothesis** runs ``--examples`` structure-aware inputs, hostile ones (nesting
  bombs, alias bombs, lone surrogates) included;
* **atheris** (coverage-guided libFuzzer) runs ``--examples`` raw-byte inputs when
  ``import atheris`` works (``pip install atheris``; skipped otherwise).

Every input runs under an alarm of ``--input-timeout`` seconds (a hang is a
finding) and the process under an address-space limit of ``--memory-mb`` (a
``MemoryError`` is a finding: memory was not bounded). Findings are collected,
not fatal: the run continues and reports each distinct problem once, with how
often it occurred and one input. The report is written as JSON (``--out``) and
printed as a markdown table for SECURITY.md. The exit status is 1 when there
were findings.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_NAMES = ["message", "frames", "codec", "config", "sidecar", "webhook", "llm"]  # fuzz.targets.TARGETS, without importing it


class InputTimeout(BaseException):
    """Raised by the alarm when one input runs longer than ``--input-timeout``."""


class Recorder:
    """Counts inputs and distinct findings; writes them as JSON (often, so a killed run keeps its numbers)."""

    def __init__(self, target: str, engine: str, out: Path, budget: int) -> None:
        self.data: dict[str, Any] = {"target": target, "engine": engine, "budget": budget, "examples": 0,
                                     "seconds": 0.0, "findings": {}, "peak_rss_mb": 0.0, "finished": False}
        self.out = out
        self.started = time.monotonic()

    def count(self) -> None:
        self.data["examples"] += 1
        if self.data["examples"] % 1000 == 0:
            self.flush()

    def finding(self, kind: str, detail: str) -> None:
        entry = self.data["findings"].setdefault(kind[:160], {"count": 0, "example": detail[:600]})
        entry["count"] += 1

    def flush(self, *, finished: bool = False) -> None:
        self.data["seconds"] = round(time.monotonic() - self.started, 1)
        self.data["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        self.data["finished"] = finished
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.out)


def _on_alarm(signum: int, frame: Any) -> None:
    raise InputTimeout


def _limit_memory(megabytes: int) -> None:
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _one(target: Any, value: Any, recorder: Recorder, timeout: float) -> None:
    from fuzz.targets import Finding, reset_loop

    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        target.check(value)
    except Finding as finding:
        if "InputTimeout" in finding.kind:
            recorder.finding(f"hang: no result within {timeout}s", str(finding))
            reset_loop()
        elif "MemoryError" in finding.kind:
            recorder.finding("MemoryError (memory not bounded)", str(finding))
        else:
            recorder.finding(finding.kind, str(finding))
    except InputTimeout:
        recorder.finding(f"hang: no result within {timeout}s", repr(value)[:600])
        reset_loop()
    except MemoryError:
        recorder.finding("MemoryError (memory not bounded)", repr(value)[:600])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    recorder.count()


def child_hypothesis(name: str, examples: int, out: Path, timeout: float, seed: int | None, batch: int = 20_000) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hyp_seed

    from fuzz.targets import TARGETS, cleanup

    target = TARGETS[name]
    recorder = Recorder(name, "hypothesis", out, examples)
    strategy = target.strategy(True)
    try:
        # Batches: each is a fresh hypothesis run, so its bookkeeping of explored inputs
        # (which grows with every example) is released between batches.
        for index in range((examples + batch - 1) // batch):
            before = recorder.data["examples"]
            size = min(batch, examples - before)

            @settings(max_examples=size, database=None, deadline=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(strategy)
            def run(value: Any) -> None:
                _one(target, value, recorder, timeout)

            if seed is not None:
                run = hyp_seed(seed + index)(run)
            run()
            if recorder.data["examples"] == before:
                break
    finally:
        recorder.flush(finished=True)
        cleanup()


def child_atheris(name: str, examples: int, out: Path, timeout: float) -> None:
    import atheris

    with atheris.instrument_imports(include=["converge", "fuzz"]):
        from fuzz.targets import TARGETS

    target = TARGETS[name]
    recorder = Recorder(name, "atheris", out, examples)

    def test_one_input(data: bytes) -> None:
        _one(target, target.from_bytes(data), recorder, timeout)
        if recorder.data["examples"] >= examples:
            recorder.flush(finished=True)

    corpus = out.with_suffix(".corpus")  # libFuzzer adds what it finds; the seeds are valid inputs
    corpus.mkdir(exist_ok=True)
    for i, seed in enumerate(target.seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup([sys.argv[0], f"-runs={examples}", "-max_len=4096", "-rss_limit_mb=0", f"-timeout={int(timeout) + 5}",
                   str(corpus)], test_one_input)
    atheris.Fuzz()


def _spawn(engine: str, name: str, args: argparse.Namespace, out: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "fuzz.run", "--child", engine, "--targets", name, "--examples", str(args.examples),
           "--input-timeout", str(args.input_timeout), "--memory-mb", str(args.memory_mb), "--out", str(out)]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = open(out.with_suffix(".log"), "wb")  # noqa: SIM115 - closed with the process below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def _table(results: list[dict[str, Any]]) -> str:
    lines = ["| target | engine | inputs | seconds | peak RSS MB | distinct findings |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['target']} | {r['engine']} | {r['examples']:,} | {r['seconds']} | {r['peak_rss_mb']} | "
                     f"{len(r['findings'])} |")
    for r in results:
        for problem, info in r["findings"].items():
            lines.append(f"\n- **{r['target']}/{r['engine']}** ×{info['count']}: {problem}\n  `{info['example'][:300]}`")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="*", default=TARGET_NAMES, choices=TARGET_NAMES)
    parser.add_argument("--examples", type=int, default=100_000, help="inputs per target and engine")
    parser.add_argument("--engine", choices=["hypothesis", "atheris", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=1, help="target processes at once")
    parser.add_argument("--input-timeout", type=float, default=10.0)
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "fuzz")
    parser.add_argument("--report-only", action="store_true", help="only print the report of the results in --out")
    parser.add_argument("--child", choices=["hypothesis", "atheris"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.report_only:
        return _report(args)

    if args.child:
        signal.signal(signal.SIGALRM, _on_alarm)
        _limit_memory(args.memory_mb)
        (name,) = args.targets
        if args.child == "hypothesis":
            child_hypothesis(name, args.examples, args.out, args.input_timeout, args.seed)
        else:
            child_atheris(name, args.examples, args.out, args.input_timeout)
        return 0

    engines = ["hypothesis", "atheris"] if args.engine == "both" else [args.engine]
    if "atheris" in engines and importlib.util.find_spec("atheris") is None:
        print("atheris is not installed: running hypothesis only (pip install atheris to add it)", file=sys.stderr)
        engines.remove("atheris")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(engine, name, args.out / f"{name}-{engine}.json") for name in args.targets for engine in engines]
    running: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        while jobs or running:
            while jobs and len(running) < args.jobs:
                engine, name, out = jobs.pop(0)
                print(f"fuzzing {name} with {engine} ({args.examples:,} inputs)...", flush=True)
                running.append((_spawn(engine, name, args, out), out))
            time.sleep(0.5)
            for proc, out in list(running):
                if proc.poll() is not None:
                    proc.log.close()  # type: ignore[attr-defined]
                    running.remove((proc, out))
                    if proc.returncode != 0:
                        print(f"  {out.stem} exited with {proc.returncode}; see {out.with_suffix('.log')}", flush=True)
    finally:
        for proc, _ in running:
            proc.kill()
            proc.wait()
    return _report(args)


def _report(args: argparse.Namespace) -> int:
    results = [json.loads(p.read_text()) for p in sorted(args.out.glob("*.json")) if p.stem.split("-")[0] in args.targets]
    (args.out / "report.md").write_text(_table(results) + "\n")
    print(_table(results))
    return 1 if any(r["findings"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
