"""MCP の設定: mcpServers 形式のファイル、mcp.servers との合成、誤りの文 (サーバー名とキー)、許可リスト、名前付け。"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from llm_router.config.schema import McpConfig, McpServerConfig
from llm_router.config.settings import load_settings, read_secrets
from llm_router.core.schemas.errors import ConfigurationError
from llm_router.mcp.config import load_specs
from llm_router.mcp.tools import exposed_name

NO_SECRETS = read_secrets(None, {})


def write(path: Path, data: object) -> str:
    """JSON を書いてパスを返す。"""
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def specs(config: McpConfig, environ: dict[str, str] | None = None):
    """検証済みの一覧 (名前 -> spec)。"""
    return {s.name: s for s in load_specs(config, read_secrets(None, environ or {}))}


def test_mcp_servers_file_with_stdio_and_http_entries(tmp_path):
    """command + args + env は stdio、url + headers は http。type があればそれに従う。${VAR} は置き換わる。"""
    path = write(
        tmp_path / "mcp.json",
        {
            "mcpServers": {
                "files": {"command": "python3", "args": ["-m", "server"], "env": {"TOKEN": "${FILES_TOKEN}"}},
                "search": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ${S}"}},
                "typed": {"type": "http", "url": "http://127.0.0.1:1/mcp", "headers": {"X-Key": "k=${env:S}"}},
                "off": {"command": "python3", "disabled": True},
            }
        },
    )
    out = specs(McpConfig(config_file=path), {"FILES_TOKEN": "FILES-SECRET-66", "S": "SEARCH-SECRET-77"})
    assert set(out) == {"files", "search", "typed"}
    assert out["files"].transport == "stdio" and out["files"].command == ["python3", "-m", "server"]
    assert out["files"].env == {"TOKEN": "FILES-SECRET-66"}
    assert out["search"].transport == "http" and out["search"].headers == {"Authorization": "Bearer SEARCH-SECRET-77"}
    assert out["typed"].headers == {"X-Key": "k=SEARCH-SECRET-77"}
    assert set(out["files"].secrets) | set(out["search"].secrets) == {"FILES-SECRET-66", "SEARCH-SECRET-77"}
    assert "SEARCH-SECRET-77" not in repr(out["search"]) and "FILES-SECRET-66" not in repr(out["files"])


def test_hydra_servers_are_merged_with_the_file_and_win(tmp_path):
    """同じ名前が両方にあれば mcp.servers の方。ほかは両方から。"""
    path = write(tmp_path / "mcp.json", {"mcpServers": {"a": {"command": "python3"}, "b": {"command": "python3"}}})
    config = McpConfig(
        config_file=path, servers={"b": McpServerConfig(transport="http", url="http://127.0.0.1:9/mcp", start="eager")}
    )
    out = specs(config)
    assert out["a"].transport == "stdio" and out["b"].transport == "http" and out["b"].start == "eager"


def test_vs_code_servers_key_is_read(tmp_path):
    """VS Code の mcp.json (``servers``) も読む。"""
    path = write(tmp_path / "mcp.json", {"servers": {"v": {"type": "stdio", "command": "python3"}}})
    assert specs(McpConfig(config_file=path))["v"].command == ["python3"]


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (McpServerConfig(transport="stdio"), "mcp.servers.bad.command: required for transport stdio"),
        (
            McpServerConfig(transport="websocket", command=["x"]),
            "mcp.servers.bad.transport: must be one of stdio, http",
        ),
        (McpServerConfig(transport="http"), "mcp.servers.bad.url: required for transport http"),
        (McpServerConfig(transport="http", url="ftp://x"), "mcp.servers.bad.url: required for transport http"),
        (McpServerConfig(command=["x"], url="http://a"), "mcp.servers.bad.url: not used with transport stdio"),
        (McpServerConfig(command=["x"], start="soon"), "mcp.servers.bad.start: must be one of lazy, eager"),
        (McpServerConfig(command=["x"], call_timeout_s=0), "mcp.servers.bad.call_timeout_s: must be a positive"),
        (McpServerConfig(command=["x"], env={"K": "${UNSET_VAR}"}), "mcp.servers.bad.env.K: variable ${UNSET_VAR}"),
    ],
)
def test_bad_hydra_entries_name_the_server_and_the_key(server, message):
    """誤った mcp.servers の項目は、サーバー名とキーを挙げて断る。"""
    with pytest.raises(ConfigurationError) as info:
        load_specs(McpConfig(servers={"bad": server}), NO_SECRETS)
    assert message in info.value.message


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"command": ["python3"]}, "mcpServers.bad.command: must be a string"),
        ({"command": "python3", "args": "-m x"}, "mcpServers.bad.args: must be a list of strings"),
        ({"type": "sse", "url": "http://a"}, "mcpServers.bad.type: unsupported transport 'sse'"),
        ({"url": "http://a", "headers": {"X": ["no"]}}, "mcpServers.bad.headers.X: must be a string"),
        ("python3", "mcpServers.bad: must be an object"),
    ],
)
def test_bad_file_entries_name_the_server_and_the_key(tmp_path, entry, message):
    """誤った mcpServers のエントリも、ファイル・サーバー名・キーを挙げて断る。"""
    path = write(tmp_path / "mcp.json", {"mcpServers": {"bad": entry}})
    with pytest.raises(ConfigurationError) as info:
        load_specs(McpConfig(config_file=path), NO_SECRETS)
    assert message in info.value.message and path in info.value.message


def test_bad_files_and_names(tmp_path):
    """無いファイル、JSON でないファイル、mcpServers の無いファイル、規則に合わないサーバー名。"""
    cases = [
        (str(tmp_path / "missing.json"), "mcp.config_file: cannot read"),
        (str(tmp_path / "broken.json"), "is not valid JSON"),
        (write(tmp_path / "empty.json", {"other": {}}), "must have an object 'mcpServers'"),
        (write(tmp_path / "name.json", {"mcpServers": {"a b": {"command": "x"}}}), "the server name must match"),
    ]
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    for path, message in cases:
        with pytest.raises(ConfigurationError) as info:
            load_specs(McpConfig(config_file=path), NO_SECRETS)
        assert message in info.value.message


def test_allowed_commands_refuses_other_executables():
    """許可リストに無い実行ファイルは起動前に断る。名前が同じでも別の場所のものは別 (絶対パスで比べる)。"""
    config = McpConfig(servers={"x": McpServerConfig(command=["/tmp/evil/python3"])}, allowed_commands=["python3"])
    with pytest.raises(ConfigurationError) as info:
        load_specs(config, NO_SECRETS)
    assert "mcp.servers.x.command: '/tmp/evil/python3' is not in mcp.allowed_commands" in info.value.message
    allowed = McpConfig(servers={"x": McpServerConfig(command=[sys.executable])}, allowed_commands=[sys.executable])
    assert load_specs(allowed, NO_SECRETS)[0].command == [sys.executable]
    by_name = McpConfig(servers={"x": McpServerConfig(command=["python3"])}, allowed_commands=["python3"])
    assert load_specs(by_name, NO_SECRETS)[0].command == ["python3"]


def test_hydra_override_with_an_unknown_key_names_it():
    """Hydra で知らないキーを書くと、構造化設定がそのキー (mcp.servers.<name>.<key>) を挙げて断る。"""
    ok = load_settings(["++mcp.servers={a:{command:[python3,-m,x]}}"], env_file=None, environ={})
    assert ok.config.mcp.servers["a"].command == ["python3", "-m", "x"]
    with pytest.raises(Exception) as info:
        load_settings(["++mcp.servers={a:{comand:[x]}}"], env_file=None, environ={})
    assert "mcp.servers.a.comand" in str(info.value.__cause__)


def test_exposed_names_are_stable_and_short():
    """<server>__<tool>。64 文字を超える・使えない文字があるときは安定したハッシュの接尾辞。"""
    assert exposed_name("files", "read_file") == "files__read_file"
    long = exposed_name("server", "t" * 80)
    assert len(long) == 64 and long == exposed_name("server", "t" * 80)
    assert long != exposed_name("server", "t" * 81)
    dotted = exposed_name("s", "fs.read")
    assert dotted.startswith("s__fs_read_") and dotted != exposed_name("s", "fs_read")


@pytest.mark.parametrize(
    ("entry", "extra", "message"),
    [
        ({"args": ["-m", "x"]}, [], "mcpServers.broken.command: required for transport stdio"),
        ({"command": "python3"}, ["mcp.allowed_commands=[node]"], "mcpServers.broken.command: 'python3' is not in"),
    ],
)
def test_the_server_refuses_to_start_with_a_bad_mcp_configuration(tmp_path, entry, extra, message):
    """本物のサーバーの起動: 誤った MCP の設定は、サーバー名とキーを挙げた文で起動を断る (待ち受けない)。"""
    from tests.realtime.harness import ServerProcess

    path = write(tmp_path / "mcp.json", {"mcpServers": {"broken": entry}})
    server = ServerProcess([f"mcp.config_file={path}", *extra], log_dir=tmp_path)
    try:
        with pytest.raises(RuntimeError) as info:
            server.start()
    finally:
        server.close()
    assert "configuration error:" in str(info.value) and message in str(info.value)
