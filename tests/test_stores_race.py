"""Several real processes racing on one SQLite file / one FileStore directory.

Each worker process opens its own store on the shared path, reports that it
is ready, waits for "go" on stdin (so they all start together), then:

* races ``put_if_absent`` on ``KEYS`` keys (exactly one process wins each);
* races ``compare_and_set(key, None, me)`` on ``KEYS`` keys (exactly one wins each);
* increments one counter ``INCREMENTS`` times through a ``get``/``compare_and_set`` loop
  (a lost update would leave the counter below processes x increments).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from converge.extensions.storage.file import FileStore
from converge.extensions.storage.sqlite_store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 4
KEYS = 25
INCREMENTS = 20

WORKER = r"""
import json, sys
kind, path, me = sys.argv[1], sys.argv[2], sys.argv[3]
keys, increments = int(sys.argv[4]), int(sys.argv[5])
if kind == "sqlite":
    from converge.extensions.storage.sqlite_store import SQLiteStore
    store = SQLiteStore(path)
else:
    from converge.extensions.storage.file import FileStore
    store = FileStore(path, locking=True)
print("ready", flush=True)
sys.stdin.readline()
pia = [k for k in range(keys) if store.put_if_absent(f"pia:{k}", me)]
cas = [k for k in range(keys) if store.compare_and_set(f"cas:{k}", None, me)]
done = 0
for _ in range(increments):
    while True:
        cur = store.get("counter")
        if store.compare_and_set("counter", cur, (cur or 0) + 1):
            done += 1
            break
print(json.dumps({"pia": pia, "cas": cas, "done": done}), flush=True)
"""


def _race(kind: str, path: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, kind, str(path), f"w{i}", str(KEYS), str(INCREMENTS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for i in range(PROCESSES)
    ]
    try:
        for p in procs:
            line = p.stdout.readline()
            assert line.strip() == "ready", f"worker did not start: {line!r} {p.stderr.read()}"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _check(results: list[dict], read) -> None:
    for phase in ("pia", "cas"):
        winners = sorted(k for r in results for k in r[phase])
        assert winners == list(range(KEYS)), f"{phase}: each key must have exactly one winner, got {winners}"
    assert sum(r["done"] for r in results) == PROCESSES * INCREMENTS
    assert read("counter") == PROCESSES * INCREMENTS
    # The stored value is the winner's own value.
    for k in range(KEYS):
        owner = [f"w{i}" for i, r in enumerate(results) if k in r["pia"]]
        assert read(f"pia:{k}") == owner[0]


def test_processes_race_on_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    results = _race("sqlite", path)  # the workers create the file concurrently, too
    with SQLiteStore(path) as store:
        _check(results, store.get)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="FileStore locking needs a POSIX platform (fcntl)")
def test_processes_race_on_one_locked_file_store(tmp_path: Path) -> None:
    path = tmp_path / "shared-files"
    results = _race("file", path)
    store = FileStore(path)
    _check(results, store.get)
    assert not [n for n in os.listdir(path) if n.startswith(".tmp-")]
