"""MCP サーバーの設定を読み、検証して :class:`ServerSpec` にする。

供給元は 2 つ: Hydra の ``mcp.servers.<name>`` と、``mcp.config_file`` の JSON (Claude Desktop / Cursor /
VS Code と同じ ``{"mcpServers": {"<name>": {...}}}``。VS Code の ``{"servers": ...}`` も読む)。同じ名前が
両方にあれば Hydra の方を使う。誤りは起動時に :class:`ConfigurationError` で、サーバー名とキーを挙げて断る。
``${VAR}`` (ヘッダと env の値) は .env / 環境変数から置き換える (``settings.substitute_env``)。
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_router.config.schema import McpConfig, McpServerConfig
from llm_router.config.settings import Secrets, substitute_env
from llm_router.core.schemas.errors import ConfigurationError

logger = logging.getLogger(__name__)

SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TRANSPORTS = ("stdio", "http")
# mcpServers 形式の "type" の値 -> 私たちのトランスポート
FILE_TYPES = {"stdio": "stdio", "http": "http", "streamable-http": "http", "streamableHttp": "http"}
START_MODES = ("lazy", "eager")
FILE_KEYS = frozenset({"command", "args", "env", "url", "headers", "type", "cwd", "disabled", "start"})


@dataclass(frozen=True)
class ServerSpec:
    """検証済みの MCP サーバー 1 つ (秘密を置き換えた後の値を持つ。``repr`` に出さない)。"""

    name: str
    transport: str
    where: str
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    start: str = "lazy"
    startup_timeout_s: float = 30.0
    call_timeout_s: float = 60.0
    secrets: tuple[str, ...] = field(default=(), repr=False)


def load_specs(config: McpConfig, secrets: Secrets) -> list[ServerSpec]:
    """設定ファイルと ``mcp.servers`` を合わせ、検証した有効なサーバーの一覧を返す (名前順ではなく定義順)。

    Raises:
        ConfigurationError: ファイルが無い・JSON でない、値の型や組み合わせの誤り、許可されていないコマンド。
    """
    _check_globals(config)
    raw: dict[str, tuple[str, dict[str, Any]]] = {}
    if config.config_file:
        for name, entry in _read_file(config.config_file).items():
            raw[name] = (f"mcp.config_file ({config.config_file}): mcpServers.{name}", _from_file(name, entry, config))
    for name, server in config.servers.items():
        if name in raw:
            logger.info("MCP server %s is defined in mcp.servers and in mcp.config_file: mcp.servers is used", name)
        raw[name] = (f"mcp.servers.{name}", _from_hydra(server))
    specs = []
    for name, (where, values) in raw.items():
        if not SERVER_NAME.match(str(name)):
            raise ConfigurationError(f"{where}: the server name must match ^[A-Za-z0-9_-]{{1,64}}$")
        if not values.get("enabled", True):
            continue
        specs.append(_validate(str(name), where, values, config, secrets))
    return specs


def _check_globals(config: McpConfig) -> None:
    """``mcp`` 直下の値の検査。"""
    if config.start not in START_MODES:
        raise ConfigurationError(f"mcp.start: must be one of {', '.join(START_MODES)} (got {config.start!r})")
    if config.protocol_version not in config.accepted_protocol_versions:
        raise ConfigurationError("mcp.protocol_version: must be one of mcp.accepted_protocol_versions")
    for key in ("startup_timeout_s", "call_timeout_s", "request_timeout_s", "connect_timeout_s"):
        if getattr(config, key) <= 0:
            raise ConfigurationError(f"mcp.{key}: must be positive")


def _read_file(path: str) -> dict[str, Any]:
    """``mcpServers`` 形式のファイルを読み、名前 -> エントリの辞書を返す。"""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"mcp.config_file: cannot read {path} ({exc.strerror or type(exc).__name__})"
        ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"mcp.config_file: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"mcp.config_file: {path} must hold a JSON object with 'mcpServers'")
    servers = data.get("mcpServers", data.get("servers"))
    if not isinstance(servers, dict):
        raise ConfigurationError(f"mcp.config_file: {path} must have an object 'mcpServers' (name -> server)")
    return servers


def _from_file(name: str, entry: Any, config: McpConfig) -> dict[str, Any]:
    """ファイルの 1 エントリを共通の形 (Hydra の項目名) にする。"""
    where = f"mcp.config_file ({config.config_file}): mcpServers.{name}"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: must be an object")
    unknown = sorted(set(entry) - FILE_KEYS)
    if unknown:
        logger.info("MCP server %s: keys not used by llm_router ignored: %s", name, ", ".join(unknown[:10]))
    kind = entry.get("type")
    if kind is None:
        transport = "http" if "url" in entry and "command" not in entry else "stdio"
    elif kind in FILE_TYPES:
        transport = FILE_TYPES[kind]
    else:
        raise ConfigurationError(
            f"{where}.type: unsupported transport {kind!r} (supported: stdio, http; the old HTTP+SSE transport is not)"
        )
    command = entry.get("command")
    args = entry.get("args", [])
    if command is not None and not isinstance(command, str):
        raise ConfigurationError(f"{where}.command: must be a string (the executable; arguments go in 'args')")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigurationError(f"{where}.args: must be a list of strings")
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise ConfigurationError(f"{where}.disabled: must be true or false")
    return {
        "transport": transport,
        "command": [command, *args] if command else [],
        "env": entry.get("env", {}),
        "cwd": entry.get("cwd"),
        "url": entry.get("url"),
        "headers": entry.get("headers", {}),
        "start": entry.get("start"),
        "enabled": not disabled,
    }


def _from_hydra(server: McpServerConfig) -> dict[str, Any]:
    """Hydra の 1 項目を共通の形にする。"""
    return {
        "transport": server.transport,
        "command": list(server.command),
        "env": dict(server.env),
        "cwd": server.cwd,
        "url": server.url,
        "headers": dict(server.headers),
        "start": server.start,
        "enabled": server.enabled,
        "startup_timeout_s": server.startup_timeout_s,
        "call_timeout_s": server.call_timeout_s,
    }


def _validate(name: str, where: str, values: dict[str, Any], config: McpConfig, secrets: Secrets) -> ServerSpec:
    """共通の形の値を検査し、``${VAR}`` を置き換えて :class:`ServerSpec` にする。"""
    transport = values["transport"]
    if transport not in TRANSPORTS:
        raise ConfigurationError(f"{where}.transport: must be one of {', '.join(TRANSPORTS)} (got {transport!r})")
    start = values.get("start") or config.start
    if start not in START_MODES:
        raise ConfigurationError(f"{where}.start: must be one of {', '.join(START_MODES)} (got {start!r})")
    used: list[str] = []
    env = _string_map(values.get("env"), f"{where}.env", secrets, used)
    headers = _string_map(values.get("headers"), f"{where}.headers", secrets, used)
    timeouts = {}
    for key in ("startup_timeout_s", "call_timeout_s"):
        value = values.get(key)
        value = getattr(config, key) if value is None else value
        if not isinstance(value, int | float) or value <= 0:
            raise ConfigurationError(f"{where}.{key}: must be a positive number of seconds")
        timeouts[key] = float(value)
    command = [str(c) for c in values.get("command") or []]
    url = values.get("url")
    cwd = values.get("cwd")
    if transport == "stdio":
        if not command or not command[0]:
            raise ConfigurationError(
                f"{where}.command: required for transport stdio (the executable and its arguments)"
            )
        if url:
            raise ConfigurationError(f"{where}.url: not used with transport stdio (remove it or set transport: http)")
        if cwd is not None and not isinstance(cwd, str):
            raise ConfigurationError(f"{where}.cwd: must be a string")
        check_allowed(name, where, command[0], list(config.allowed_commands))
    else:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"{where}.url: required for transport http (an http:// or https:// URL)")
        if command:
            raise ConfigurationError(f"{where}.command: not used with transport http")
    return ServerSpec(
        name=name,
        transport=transport,
        where=where,
        command=command,
        env=env,
        cwd=cwd,
        url=url if transport == "http" else None,
        headers=headers,
        start=start,
        secrets=tuple(used),
        **timeouts,
    )


def _string_map(value: Any, where: str, secrets: Secrets, used: list[str]) -> dict[str, str]:
    """文字列 -> 文字列の辞書であることを確かめ、値の ``${VAR}`` を置き換える。"""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}: must be an object of name -> string")
    out = {}
    for key, item in value.items():
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise ConfigurationError(f"{where}.{key}: must be a string")
        text, refs = substitute_env(str(item), secrets, f"{where}.{key}")
        used.extend(refs)
        out[str(key)] = text
    return out


def check_allowed(name: str, where: str, executable: str, allowed: list[str]) -> None:
    """``mcp.allowed_commands`` (空ならどれでも) に実行ファイルがあることを確かめる。

    名前どうしが一致するか、PATH で解決した絶対パスどうしが一致すれば許す (``/tmp/x/npx`` は ``npx`` ではない)。

    Raises:
        ConfigurationError: 許可されていないとき。
    """
    if not allowed:
        return
    if executable in allowed:
        return
    resolved = _resolve(executable)
    if resolved is not None and any(_resolve(a) == resolved for a in allowed):
        return
    raise ConfigurationError(
        f"{where}.command: '{executable}' is not in mcp.allowed_commands (allowed: {', '.join(allowed)}); "
        f"MCP server '{name}' is not started"
    )


def _resolve(executable: str) -> str | None:
    """実行ファイルの絶対パス (PATH で探す。見つからなければ ``None``)。"""
    found = shutil.which(executable)
    return os.path.realpath(found) if found else None
