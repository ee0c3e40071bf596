"""テスト用の本物の ``redis-server``: 空きポートで起動し、ディスクには何も書かず、止めて同じポートで再起動できる。

- Debian の ``redis-server`` (``/usr/bin/redis-server``、無ければ ``PATH``) を一時フォルダで
  ``--save "" --appendonly no --port N --bind 127.0.0.1`` で起動する (永続化なし)。
- 準備完了は PING をポーリングして待つ (固定の sleep はしない)。
- :meth:`RedisServer.stop` と :meth:`RedisServer.start` で同じポートのまま止めて起こせる
  (「Redis の再起動」のテスト用。データは消える。``appendonly=True`` なら AOF で残る)。
- バイナリが無ければ ``apt-get install redis-server`` を理由にスキップし、``LLM_ROUTER_REQUIRE_REDIS=1`` の
  ときは失敗させる (:func:`require_redis_server`)。
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DEBIAN_BINARY = Path("/usr/bin/redis-server")
INSTALL_HINT = "Redis のテストには Debian の redis-server が必要です: sudo apt-get install redis-server"
READY_TIMEOUT_S = 10.0


def redis_server_binary() -> str | None:
    """``redis-server`` のパス (Debian の場所を優先し、無ければ ``PATH`` を探す)。無ければ ``None``。"""
    if DEBIAN_BINARY.exists():
        return str(DEBIAN_BINARY)
    return shutil.which("redis-server")


def require_redis_server() -> str:
    """``redis-server`` のパスを返す。無ければスキップし、``LLM_ROUTER_REQUIRE_REDIS=1`` なら失敗させる。"""
    import pytest

    binary = redis_server_binary()
    if binary:
        return binary
    if os.environ.get("LLM_ROUTER_REQUIRE_REDIS") == "1":
        pytest.fail(INSTALL_HINT + " [LLM_ROUTER_REQUIRE_REDIS=1]")
    pytest.skip(INSTALL_HINT)


def free_port() -> int:
    """ループバックの空きポートを 1 つ返す (OS に選ばせる)。"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int, timeout: float = 0.5) -> bool:
    """``127.0.0.1:port`` に生の RESP で PING を送り、``+PONG`` (または認証を求める ``-NOAUTH``) が返れば真。"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            answer = s.recv(64)
            return answer.startswith(b"+PONG") or answer.startswith(b"-NOAUTH")
    except OSError:
        return False


class RedisServer:
    """テストが所有する 1 つの ``redis-server`` プロセス。

    Args:
        binary: ``redis-server`` のパス。
        port: 使うポート (省略時は空きポート)。
    """

    def __init__(
        self, binary: str, port: int | None = None, password: str | None = None, appendonly: bool = False
    ) -> None:
        """起動はしない (:meth:`start` で起動する)。``password`` があれば ``--requirepass`` を付ける。

        ``appendonly`` なら AOF (``appendfsync always``) を一時フォルダに書き、再起動しても中身が残る
        (本番の構成と同じ「Redis が戻った」の試験用)。
        """
        self.appendonly = appendonly
        self.binary = binary
        self.port = port or free_port()
        self.password = password
        self._dir = tempfile.TemporaryDirectory(prefix="llm_router_redis_")
        self.workdir = Path(self._dir.name)
        self.log_path = self.workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """接続 URL (``redis://127.0.0.1:<port>/0``、パスワードがあれば ``redis://:<pw>@...``)。"""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """起動して PING が通るまで待つ。途中で終了したり期限を過ぎたりしたら、ログを付けて例外にする。"""
        if self.process is not None and self.process.poll() is None:
            return self
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.log_path),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        self.process = subprocess.Popen(args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server on port {self.port} not ready:\n{self.log_text()}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """止める (SIGTERM、応じなければ SIGKILL)。ポートが閉じるまで待つ。何度呼んでもよい。"""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.process = None
        deadline = time.monotonic() + 5
        while _ping(self.port, timeout=0.2) and time.monotonic() < deadline:
            time.sleep(0.01)

    def restart(self) -> None:
        """同じポートで止めて起こし直す (中身は空になる)。"""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        """プロセスが生きていて PING に答えれば真。"""
        return self.process is not None and self.process.poll() is None and _ping(self.port)

    def log_text(self) -> str:
        """redis-server のログの末尾 (失敗の説明用)。"""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def close(self) -> None:
        """止めて一時フォルダを消す。"""
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        """``with`` で起動する。"""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """``with`` を抜けるとき (失敗時も) 止めて片付ける。"""
        self.close()
