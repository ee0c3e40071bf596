"""stdio トランスポート: MCP サーバーを子プロセスで起動し、改行区切りの JSON-RPC を標準入出力でやりとりする。

MCP 仕様 "Transports / stdio" のとおり、1 行 1 メッセージ (メッセージの中に改行は無い)、標準エラーはサーバーの
ログ (ここでは私たちのロガーへ 1 行ずつ流す)。読み手はスレッド 1 本 (eventlet のモンキーパッチの下では
グリーンスレッドで、``subprocess`` のパイプは協調的に読まれる)。環境変数は親のものを全部は渡さない
(API キーが漏れないように): ``mcp.inherited_env`` の名前と、設定の ``env`` だけ。
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from typing import Any

from llm_router.mcp.errors import McpUnavailable
from llm_router.mcp.transport import Link, Transport

logger = logging.getLogger(__name__)


class StdioTransport(Transport):
    """子プロセス 1 つとのパイプ。

    Args:
        link: クライアント側の端。``limits`` の ``max_stderr_line_chars`` は標準エラーをログに流すときの 1 行の
            上限、``max_message_bytes`` は 1 メッセージ (1 行) の上限で、超えたら接続を切る (待っている呼び出しは
            その理由で失敗)。
        command: 実行ファイルと引数 (設定から。クライアントからは決して来ない)。
        env: 子プロセスの環境変数 (置き換え済み)。
        cwd: 作業ディレクトリ (``None`` なら親と同じ)。
    """

    def __init__(self, link: Link, command: list[str], env: dict[str, str], cwd: str | None) -> None:
        """設定を受け取る (まだ起動しない)。"""
        super().__init__(link)
        self._command = command
        self._env = env
        self._cwd = cwd
        self._write_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """子プロセスの PID (起動前は ``None``)。"""
        return self._process.pid if self._process is not None else None

    def open(self) -> None:
        """子プロセスを起動し、標準出力と標準エラーの読み手を始める。

        Raises:
            McpUnavailable: 実行ファイルが無い・起動できないとき。
        """
        try:
            self._process = subprocess.Popen(
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise McpUnavailable(
                f"MCP server '{self.name}' could not be started: {type(exc).__name__}: {exc.strerror or exc}"
            ) from None
        threading.Thread(target=self._read_stdout, name=f"mcp-{self.name}-out", daemon=True).start()
        threading.Thread(target=self._read_stderr, name=f"mcp-{self.name}-err", daemon=True).start()
        logger.info("MCP server %s started (pid %s)", self.name, self._process.pid)

    def send(self, message: dict[str, Any]) -> None:
        """メッセージを 1 行で書く。

        Raises:
            McpUnavailable: 子プロセスが居ない・パイプが閉じているとき。
        """
        process = self._process
        if process is None or process.stdin is None:
            raise McpUnavailable(f"MCP server '{self.name}' is not running")
        line = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        try:
            with self._write_lock:
                process.stdin.write(line)
                process.stdin.flush()
        except (OSError, ValueError) as exc:
            raise McpUnavailable(f"MCP server '{self.name}' is not accepting input ({type(exc).__name__})") from None

    def _read_stdout(self) -> None:
        """標準出力を 1 行ずつ JSON として読み、終わったら子の終了コードを理由にして閉じる。"""
        process = self._process
        assert process is not None and process.stdout is not None
        try:
            while True:
                raw = process.stdout.readline(self._max_message + 1)
                if not raw:
                    break
                if len(raw) > self._max_message:
                    logger.warning(
                        "MCP server %s sent a message over %d bytes; disconnecting", self.name, self._max_message
                    )
                    self._on_closed(f"MCP server '{self.name}' sent a message larger than {self._max_message} bytes")
                    self._terminate()
                    return
                line = raw.strip()
                if not line:
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    logger.warning("MCP server %s wrote a line that is not JSON on stdout; ignored", self.name)
                    continue
                try:
                    self._on_message(message)
                except Exception:
                    logger.warning("MCP server %s: handling a message failed", self.name, exc_info=True)
        except (OSError, ValueError):
            pass
        code = self._wait_exit()
        detail = f"exit code {code}" if code is not None else "its output closed"
        self._on_closed(f"MCP server '{self.name}' stopped ({detail})")

    def _terminate(self) -> None:
        """子プロセスに SIGTERM を送る (もう居なければ何もしない)。"""
        if self._process is not None and self._process.poll() is None:
            try:
                self._process.terminate()
            except OSError:
                pass

    def _wait_exit(self) -> int | None:
        """子の終了を少しだけ待って終了コードを返す (まだ動いていれば ``None``)。"""
        process = self._process
        if process is None:
            return None
        try:
            return process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return None

    def _read_stderr(self) -> None:
        """標準エラーを 1 行ずつ私たちのロガーへ流す (長い行は切る)。"""
        process = self._process
        assert process is not None and process.stderr is not None
        try:
            for raw in process.stderr:
                text = raw.decode("utf-8", errors="replace").rstrip()
                if text:
                    logger.info("MCP server %s stderr: %s", self.name, text[: self._limits.max_stderr_line_chars])
        except (OSError, ValueError):
            pass

    def close(self, timeout: float) -> None:
        """標準入力を閉じて終わるのを待ち、終わらなければ SIGTERM、それでもなら SIGKILL (仕様の手順)。"""
        process = self._process
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        for step in (None, process.terminate, process.kill):
            if step is not None:
                try:
                    step()
                except OSError:
                    pass
            try:
                process.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        logger.info("MCP server %s stopped (exit code %s)", self.name, process.returncode)


def child_environment(inherited: list[str], configured: dict[str, str]) -> dict[str, str]:
    """子プロセスの環境変数: 親の ``inherited`` の名前のものと、設定の ``configured`` (こちらが優先)。"""
    env = {name: os.environ[name] for name in inherited if os.environ.get(name)}
    env.update(configured)
    return env
