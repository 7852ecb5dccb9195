"""`converge run` configuration: precedence, store selection, every bad-config case, --help."""

from __future__ import annotations

import pytest

from converge import cli
from converge._config import KEYS, RunConfig, create_store, load_run_config
from converge.errors import ConfigError
from converge.extensions.storage.file import FileStore
from converge.extensions.storage.memory import MemoryStore
from converge.extensions.storage.sqlite_store import SQLiteStore


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("CONVERGE_"):
            monkeypatch.delenv(name)


def test_a9_precedence_file_over_environment(tmp_path, monkeypatch):
    cfg = tmp_path / "run.toml"
    cfg.write_text('port = 7000\nstore_backend = "sqlite"\n')
    config = load_run_config(str(cfg), environ={"CONVERGE_PORT": "9000", "CONVERGE_AGENTS": "3"})
    assert config == RunConfig(port=7000, agents=3, store_backend="sqlite")
    assert config.discovery_enabled and config.shared_managers and config.transport == "local"
    monkeypatch.chdir(tmp_path)
    store = create_store(config.store_backend, config.store_path)
    try:
        assert isinstance(store, SQLiteStore) and (tmp_path / ".converge-store.sqlite3").exists()
    finally:
        store.close()


def test_yaml_and_env_values_are_normalised(tmp_path):
    cfg = tmp_path / "run.yml"
    cfg.write_text("transport: TCP\nstore_backend: ' Redis '\nhost: 0.0.0.0\n")
    config = load_run_config(str(cfg), environ={"CONVERGE_POOL_ID": "p1", "CONVERGE_AGENTS": " 2 ", "CONVERGE_HOST": ""})
    assert (config.transport, config.store_backend, config.host, config.pool_id, config.agents) == (
        "tcp", "redis", "0.0.0.0", "p1", 2,
    )
    assert load_run_config(None, environ={}) == RunConfig()
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_run_config(str(empty), environ={}) == RunConfig()


def test_store_selection(tmp_path):
    assert create_store(None) is None
    assert isinstance(create_store(None, legacy_discovery_store="Memory"), MemoryStore)
    legacy = create_store(None, legacy_discovery_store=str(tmp_path / "dir"))
    assert isinstance(legacy, FileStore) and legacy.base_path == tmp_path / "dir"
    assert isinstance(create_store("memory"), MemoryStore)
    assert isinstance(create_store("file", str(tmp_path / "f")), FileStore)
    with create_store("sqlite", str(tmp_path / "s.db")) as sqlite:
        assert sqlite.path == str(tmp_path / "s.db")
    # store_backend + legacy discovery_store as location (reference 10.3)
    assert create_store("file", None, legacy_discovery_store=str(tmp_path / "g")).base_path == tmp_path / "g"


def test_reference_helpers(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVERGE_PORT", "9000")
    cfg = tmp_path / "run.toml"
    cfg.write_text("agents = 2\n")
    assert cli._load_config(str(cfg)) == {"port": "9000", "agents": 2}
    with pytest.raises(ValueError, match="port"):
        cli._validate_config({"port": 70000})
    assert isinstance(cli._create_store({"store_backend": "memory"}), MemoryStore)
    assert type(cli._create_transport("tcp", "a" * 64, "127.0.0.1", 0)).__name__ == "TcpTransport"
    assert type(cli._create_transport("local", "a" * 64, "127.0.0.1", 1)).__name__ == "LocalTransport"


BAD_FILES = [
    ("run.toml", 'colour = "red"\n', ["unknown key 'colour'", "'red'", "accepted keys: transport, host, port"]),
    ("run.toml", 'transport = "smoke"\n', ["transport = 'smoke'", "accepted: local, tcp, websocket"]),
    ("run.toml", 'store_backend = "mongo"\n', ["store_backend = 'mongo'", "accepted: memory, file, sqlite, redis"]),
    ("run.toml", "port = 70000\n", ["port = 70000", "1..65535"]),
    ("run.toml", "port = -1\n", ["port = -1", "1..65535"]),
    ("run.toml", "port = true\n", ["port = True", "1..65535"]),
    ("run.toml", 'port = 0\ntransport = "local"\n', ["port = 0", "'local'", "accepted: 1..65535"]),
    ("run.toml", 'port = 65535\nagents = 2\ntransport = "tcp"\n', ["port 65535", "with 2 agents", "<= 65535"]),
    ("run.toml", "agents = 0\n", ["agents = 0", "1..1024"]),
    ("run.toml", 'pool_id = ""\n', ["pool_id = ''", "non-empty string"]),
    ("run.toml", "host = 5\n", ["host = 5", "non-empty string"]),
    ("run.toml", "port = [\n", ["not valid TOML"]),
    ("run.yaml", "port: [1, 2\n", ["not valid YAML"]),
    ("run.yaml", "- just\n- a list\n", ["must contain a mapping", "list"]),
    ("run.ini", "port=1\n", ["unsupported file type '.ini'", ".toml, .yaml, .yml"]),
]


@pytest.mark.parametrize(("name", "text", "needles"), BAD_FILES)
def test_every_bad_config_file_exits_2_with_one_line(tmp_path, capsys, name, text, needles):
    cfg = tmp_path / name
    cfg.write_text(text)
    assert cli.main(["run", "-c", str(cfg)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("converge run: error: ")
    for needle in needles:
        assert needle in lines[0]
    if name != "run.ini" and "unknown key" not in needles[0]:
        assert str(cfg) in lines[0] or "config file" in lines[0]


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"CONVERGE_PORT": "abc"}, ["port = 'abc'", "environment variable CONVERGE_PORT", "1..65535"]),
        ({"CONVERGE_TRANSPORT": "udp"}, ["transport = 'udp'", "CONVERGE_TRANSPORT", "local, tcp, websocket"]),
        ({"CONVERGE_STORE_BACKEND": "s3"}, ["store_backend = 's3'", "memory, file, sqlite, redis"]),
        ({"CONVERGE_AGENTS": "2.5"}, ["agents = '2.5'", "1..1024"]),
    ],
)
def test_bad_environment_exits_2_with_one_line(monkeypatch, capsys, env, needles):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and all(n in lines[0] for n in needles), lines


def test_missing_config_file_exits_2(tmp_path, capsys, monkeypatch):
    assert cli.main(["run", "-c", str(tmp_path / "absent.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setenv("CONVERGE_CONFIG", str(tmp_path / "also-absent.yaml"))
    assert cli.main(["run"]) == 2  # CONVERGE_CONFIG is the default for -c
    assert "also-absent.yaml" in capsys.readouterr().err


def test_file_value_fixes_a_bad_environment_value(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVERGE_PORT", "not-a-port")
    cfg = tmp_path / "run.toml"
    cfg.write_text("port = 7001\n")
    assert load_run_config(str(cfg)).port == 7001


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help_documents_every_key_and_variable(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    text = capsys.readouterr().out
    for key in KEYS:
        assert key in text and f"CONVERGE_{key.upper()}" in text
    assert "CONVERGE_CONFIG" in text
    for word in ("local, tcp, websocket", "memory, file, sqlite, redis", "Precedence", "Exit status"):
        assert word in text


def test_sidecar_subcommand_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["webhook-sidecar", "--help"])
    assert "--json-logs" in capsys.readouterr().out


def test_bad_value_error_type():
    with pytest.raises(ConfigError):
        cli._validate_config({"agents": "many"})
