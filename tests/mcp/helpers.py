"""MCP のテストの部品: テスト用 MCP サーバーの起動 (stdio の設定、HTTP は空きポートで起動して待つ) と記録の読み出し。"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llm_router.config.schema import AppConfig, McpConfig, McpServerConfig
from llm_router.config.settings import Settings, read_secrets
from tests.realtime.harness import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
FAST = "tests.mcp.servers.fast_server"
PAGED = "tests.mcp.servers.paged_server"


def stdio_server(module: str, events: Path, *args: str, **overrides: Any) -> McpServerConfig:
    """``python -m <module>`` を stdio で起動する設定 (作業ディレクトリはリポジトリ)。"""
    return McpServerConfig(
        transport="stdio",
        command=[sys.executable, "-m", module, "--events", str(events), *args],
        cwd=str(ROOT),
        **overrides,
    )


def settings_with(servers: dict[str, McpServerConfig], environ: dict[str, str] | None = None, **mcp: Any) -> Settings:
    """``mcp.servers`` と ``mcp`` の値を持つ設定 (秘密は ``environ`` からだけ)。"""
    config = AppConfig(mcp=McpConfig(servers=servers, **mcp))
    return Settings(config=config, secrets=read_secrets(None, environ or {}))


def read_events(path: Path) -> list[dict[str, Any]]:
    """サーバーが書いた記録 (JSON Lines)。書きかけの最後の行 (改行がまだ無い) は次の読みまで待つ。"""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def received(path: Path, method: str) -> list[dict[str, Any]]:
    """サーバーが受け取った ``method`` の JSON-RPC メッセージ (stdio の行か HTTP の本文)。"""
    out = []
    for entry in read_events(path):
        message = entry.get("message") if entry.get("kind") == "stdin" else entry.get("body")
        if entry.get("kind") in ("stdin", "request") and isinstance(message, dict) and message.get("method") == method:
            out.append(message)
    return out


def port_open(port: int) -> bool:
    """ループバックのポートに接続できれば真。"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class HttpMcpServer:
    """FastMCP の streamable HTTP サーバーを子プロセスで起動し、ポートが開くまで待つ (``with`` で止める)。"""

    def __init__(self, events: Path, json_response: bool) -> None:
        """記録先と、答えを JSON にするか (偽なら SSE) を受け取る。"""
        self.events = events
        self.json_response = json_response
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = events.with_suffix(".server.log")
        self._log: Any = None

    @property
    def url(self) -> str:
        """MCP のエンドポイント。"""
        return f"http://127.0.0.1:{self.port}/mcp"

    def __enter__(self) -> HttpMcpServer:
        """起動して待つ。途中で終われば失敗にする。"""
        cmd = [
            sys.executable,
            "-m",
            FAST,
            "--transport",
            "http",
            "--port",
            str(self.port),
            "--events",
            str(self.events),
        ]
        if self.json_response:
            cmd.append("--json")
        # 標準エラーはファイルへ (パイプのままだと読まれずに詰まり、サーバーが止まる)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._log)
        try:
            wait_until(lambda: self.proc.poll() is not None or port_open(self.port), timeout=30)
            if self.proc.poll() is not None:
                raise RuntimeError(f"MCP HTTP server exited: {self.log_path.read_text(errors='replace')}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """止める (終わらなければ kill)。"""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __exit__(self, *exc: object) -> None:
        """止める。"""
        self.stop()


def wait_for_event(path: Path, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
    """記録に ``predicate`` を満たす行が現れるまで待ってそれを返す。"""
    return wait_until(lambda: next((e for e in read_events(path) if predicate(e)), None), timeout=timeout)


def elapsed(start: float) -> float:
    """``start`` (monotonic) からの秒数。"""
    return time.monotonic() - start
