"""``import converge`` and every module under ``converge/`` work with none of the optional extras,
and ``converge`` never imports the lab stack (IPython, ipywidgets, pandas) or ``converge_lab``.

The import checks run in a fresh interpreter whose ``sys.meta_path`` starts with a
finder that makes every optional package unimportable, exactly as if it were not
installed. Modules that exist only to integrate an optional package must still
import; *using* them must raise ``MissingExtraError`` naming the extra to install.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "converge"

BLOCKED = [
    "IPython", "ipywidgets", "pandas", "nest_asyncio", "websockets", "redis", "yaml",
    "openai", "anthropic", "mistralai", "prometheus_client", "opentelemetry",
]
LAB_STACK = ["IPython", "ipywidgets", "pandas", "converge_lab"]

SCRIPT = r"""
import asyncio, importlib, importlib.abc, json, pathlib, sys

BLOCKED = set(json.loads(sys.argv[1]))


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by test_imports)", name=name)
        return None


preloaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
sys.meta_path.insert(0, _NotInstalled())
out = {"preloaded": preloaded}
try:
    import yaml  # noqa: F401  (proves the blocker works)
    out["blocker"] = "yaml imported"
except ModuleNotFoundError as exc:
    out["blocker"] = str(exc)

import converge
out["after_import_converge"] = sorted(sys.modules)

root = pathlib.Path(converge.__file__).parent
names = []
for path in sorted(root.rglob("*.py")):
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    names.append(".".join(parts))
results = {}
for name in names:
    try:
        importlib.import_module(name)
        results[name] = None
    except BaseException as exc:
        results[name] = f"{type(exc).__name__}: {exc}"
out["imports"] = results

from converge.errors import MissingExtraError


def attempt(label, module, attr, use):
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        out["usage"][label] = {"status": "absent", "error": f"{type(exc).__name__}: {exc}"}
        return
    try:
        use(cls)
        out["usage"][label] = {"status": "no-error"}
    except MissingExtraError as exc:
        out["usage"][label] = {"status": "missing-extra", "message": str(exc)}
    except BaseException as exc:
        out["usage"][label] = {"status": "other", "error": f"{type(exc).__name__}: {exc}"}


CHAT = [{"role": "user", "content": "hi"}]
out["usage"] = {}
attempt("redis", "converge.extensions.storage.redis_store", "RedisStore", lambda c: c())
attempt("redis-client", "converge.extensions.storage.redis_store", "RedisStore", lambda c: c(client=object()))
attempt("openai", "converge.extensions.llm.openai", "OpenAIProvider", lambda c: c(api_key="k").chat(CHAT))
attempt("anthropic", "converge.extensions.llm.anthropic", "AnthropicProvider", lambda c: c(api_key="k").chat(CHAT))
attempt("mistral", "converge.extensions.llm.mistral", "MistralProvider", lambda c: c(api_key="k").chat(CHAT))
attempt("websocket", "converge.network.transport.websocket", "WebSocketTransport",
        lambda c: asyncio.run(c("agent", "ws://127.0.0.1:9").start()))
attempt("otel", "converge.observability.otel", "OpenTelemetrySpanExporter", lambda c: c(object()))
out["modules"] = sorted(sys.modules)
print(json.dumps(out))
"""

# label -> the extra the error message must name
USAGE_EXTRAS = {
    "redis": ["converge[redis]", "store-backends"],
    "redis-client": ["converge[redis]", "store-backends"],
    "openai": ["converge[llm]"],
    "anthropic": ["converge[llm"],
    "mistral": ["converge[llm"],
    "websocket": ["converge[websocket]"],
    "otel": ["converge[otel]"],
}


@pytest.fixture(scope="module")
def without_extras() -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(BLOCKED)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def _top(names: list[str]) -> set[str]:
    return {n.partition(".")[0] for n in names}


def test_the_blocker_really_hides_the_extras(without_extras: dict) -> None:
    assert without_extras["preloaded"] == []
    assert "blocked by test_imports" in without_extras["blocker"]


def test_import_converge_alone_pulls_in_no_extra(without_extras: dict) -> None:
    loaded = _top(without_extras["after_import_converge"])
    assert not loaded & set(BLOCKED + LAB_STACK)


def test_every_module_imports_without_extras(without_extras: dict) -> None:
    imports = without_extras["imports"]
    for name in ("converge.__main__", "converge.core.message", "converge.extensions.storage.sqlite_store"):
        assert name in imports
    failed = {name: err for name, err in imports.items() if err is not None}
    assert failed == {}, "modules that need an optional package at import time:\n" + "\n".join(
        f"  {name}: {err}" for name, err in sorted(failed.items())
    )


def test_nothing_loads_the_lab_stack(without_extras: dict) -> None:
    loaded = _top(without_extras["modules"])
    assert not loaded & set(LAB_STACK)
    assert not loaded & set(BLOCKED)


@pytest.mark.parametrize("label", sorted(USAGE_EXTRAS))
def test_using_an_integration_names_its_extra(without_extras: dict, label: str) -> None:
    result = without_extras["usage"][label]
    if result["status"] == "absent":
        pytest.skip(f"integration not built yet: {result['error']}")
    assert result["status"] == "missing-extra", result
    for needle in USAGE_EXTRAS[label]:
        assert needle in result["message"], result["message"]
    assert "pip install" in result["message"]


def _imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module name a file imports: import statements and literal dynamic imports."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in {"import_module", "__import__", "require"} and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_converge_source_never_imports_the_lab_stack() -> None:
    offenders = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        for lineno, name in _imported_names(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if name.partition(".")[0] in LAB_STACK:
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {name}")
    assert offenders == []


def test_the_ast_check_would_catch_an_offender() -> None:
    src = "import pandas as pd\nfrom IPython.display import HTML\nimportlib.import_module('ipywidgets')\nfrom converge_lab import Lab\n"
    assert sorted(n for _, n in _imported_names(ast.parse(src))) == ["IPython.display", "converge_lab", "ipywidgets", "pandas"]
