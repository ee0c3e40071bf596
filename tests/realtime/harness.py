"""本物のサーバーをサブプロセスで起動するテスト用ハーネスと、プロトコルを話す小さなクライアント。

- :class:`ServerProcess`: README のとおり ``python app.py server.port=<空きポート> ...`` をリポジトリの
  ルートで起動し、``/healthz`` をポーリングして準備完了を待ち (固定の sleep はしない)、ログをファイルに取り、
  終了時に止める。秘密情報は一時的な .env ファイル (``LLM_ROUTER_ENV_FILE``) と環境変数だけで渡し、
  開発者のリポジトリ直下の ``.env`` は読ませない。
- :class:`ProtocolClient`: ``socketio.Client`` (websocket トランスポート) の薄い包み。受け取ったすべての
  イベントを ``on('*')`` で記録し、``call(event, payload) -> ack`` と ``wait_for(type, predicate, timeout)`` を持つ。

コンソール担当もブラウザテストでこのハーネスを使う。
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import socketio

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "/agent"
CLOSE_WAIT_S = 0.2
# サブプロセスへ引き継がない変数 (秘密情報は明示的に渡したものだけにする)
SECRET_VARS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "LLM_ROUTER_API_TOKENS",
    "FLASK_SECRET_KEY",
)


def free_port() -> int:
    """ループバックの空きポートを 1 つ返す (OS に選ばせる)。"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, message: str = "") -> Any:
    """``condition()`` が真を返すまで、期限つきでポーリングする。真になった値を返す。

    Raises:
        TimeoutError: 期限までに真にならなかったとき。
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(message or f"condition not met within {timeout}s")
        time.sleep(interval)


class ServerProcess:
    """``app.py`` を本物のサブプロセスとして起動・停止する。

    Args:
        overrides: Hydra のオーバーライド (``server.port`` はハーネスが付ける)。
        secrets: .env 形式で渡す秘密情報 (例 ``{"OPENAI_API_KEY": "sk-test"}``)。既定は無し (demo)。
        async_mode: ``server.async_mode`` (``None`` なら YAML の既定 = eventlet)。
        log_dir: ログファイルを置くディレクトリ (既定は一時ディレクトリ)。
        env: そのほかに足す環境変数 (秘密以外)。
    """

    def __init__(
        self,
        overrides: Iterable[str] = (),
        secrets: Mapping[str, str] | None = None,
        async_mode: str | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """起動条件を覚える (起動は :meth:`start`)。"""
        self.overrides = list(overrides)
        self._tmp = tempfile.TemporaryDirectory(prefix="llm_router_srv_")
        if not any(o.startswith(("store.path=", "store.backend=")) for o in self.overrides):
            # テストのサーバーはリポジトリの data/ に決して書かない: 一時フォルダのストア
            self.overrides.append(f"store.path={Path(self._tmp.name) / 'store.sqlite3'}")
        if async_mode:
            self.overrides.append(f"server.async_mode={async_mode}")
        self.secrets = dict(secrets or {})
        self.extra_env = dict(env or {})
        self.log_dir = Path(log_dir) if log_dir else Path(self._tmp.name)
        self.log_path = self.log_dir / "server.log"
        self.env_file = Path(self._tmp.name) / "test.env"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``。"""
        return f"http://127.0.0.1:{self.port}"

    def _environment(self) -> dict[str, str]:
        """サブプロセスの環境変数 (秘密は消してから、指定された .env ファイルだけを読ませる)。"""
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
        env["LLM_ROUTER_ENV_FILE"] = str(self.env_file)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """起動し、``/healthz`` が応答するまで待つ。途中で終了したらログ付きで失敗する。

        動いているうちにもう一度呼ぶのは誤り (``with ServerProcess(...).start()`` は 2 つ目のプロセスを作り、
        1 つ目の参照を失って止められなくなる): :class:`RuntimeError` にする。
        """
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("ServerProcess.start() called while the server is running (use `with` or start())")
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.secrets.items()), encoding="utf-8")
        self.port = free_port()
        cmd = [sys.executable, "app.py", f"server.port={self.port}", *self.overrides]
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self._environment(), stdout=self._log_file, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            if self._healthy():
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"server not ready within {timeout}s:\n{self.log_text()}")

    def _healthy(self) -> bool:
        """``GET /healthz`` が 200 を返せば真。"""
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1.0) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_text(self) -> str:
        """ここまでのサーバーログ全文。"""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT で止め (実行中のランは ``shutdown`` で終わる)、期限を過ぎたら kill する。終了コードを返す。"""
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            code = proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def close(self) -> None:
        """止めて一時ディレクトリを消す。"""
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> ServerProcess:
        """``with`` で使う (起動する)。"""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """``with`` を抜けたら止める。"""
        self.close()


class ProtocolClient:
    """``/agent`` 名前空間を話す python-socketio クライアント。受け取ったイベントはすべて記録する。

    ``events`` は受信順の ``(イベント名, ペイロード)`` の一覧。
    """

    def __init__(self, url: str, token: str | None = None, namespace: str = NAMESPACE) -> None:
        """接続先とトークンを覚え、全イベントを記録するハンドラを付ける (接続は :meth:`connect`)。"""
        self.url = url
        self.token = token
        self.namespace = namespace
        # 長時間ポーリングは 1 回の poll で 16 パケットを超えると切断される (DESIGN.md) ので websocket を使う
        self.sio = socketio.Client(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.connect_errors: list[Any] = []
        self._cond = threading.Condition()
        self.sio.on("*", self._record, namespace=namespace)
        self.sio.on("connect_error", self._connect_error, namespace=namespace)
        self._deliver_in_order()

    def _deliver_in_order(self) -> None:
        """受信したメッセージを、届いた順に読み取りスレッドの中で処理させる。

        python-engineio のクライアントはメッセージごとに別スレッドでハンドラを呼ぶ (``run_async=True``) ので、
        そのままでは記録の順序がサーバーの送信順と入れ替わることがある (ブラウザのクライアントは順序どおり)。
        記録するハンドラは待たない処理だけなので、同期で呼んでも読み取りを止めない。
        """
        eio = self.sio.eio
        original = eio._trigger_event

        def trigger(event: str, *args: Any, **kwargs: Any) -> Any:
            """``message`` を同期で処理する。"""
            if event == "message":
                kwargs["run_async"] = False
            return original(event, *args, **kwargs)

        eio._trigger_event = trigger

    def _record(self, event: str, *args: Any) -> None:
        """1 イベントを記録し、待っている者を起こす。"""
        with self._cond:
            self.events.append((event, args[0] if len(args) == 1 else list(args)))
            self._cond.notify_all()

    def _connect_error(self, data: Any = None) -> None:
        """接続拒否 (``connect_error``) を記録する。"""
        with self._cond:
            self.connect_errors.append(data)
            self._cond.notify_all()

    def connect(self, timeout: float = 10.0) -> ProtocolClient:
        """websocket トランスポートで接続する (トークンがあれば ``auth={"token": ...}``)。"""
        auth = {"token": self.token} if self.token is not None else None
        self.sio.connect(
            self.url, namespaces=[self.namespace], transports=["websocket"], auth=auth, wait_timeout=timeout
        )
        self._shorten_close_wait()
        return self

    def _shorten_close_wait(self) -> None:
        """切断時に WebSocket の close フレームの返事を待つ時間を短くする (テストの速さのため)。

        websocket-client の ``close()`` はサーバーの close フレームを最大 3 秒待つが、threading モードの
        Werkzeug サーバーはそれを返さない。サーバーへの切断の知らせは、その前に送る engine.io の CLOSE
        パケットで済んでいるので、待ち時間を短くしても振る舞いは変わらない。
        """
        ws = getattr(self.sio.eio, "ws", None)
        if ws is None:
            return
        original = ws.close

        def close(*args: Any, **kwargs: Any) -> Any:
            """待ち時間の上限だけを変えて閉じる。"""
            kwargs["timeout"] = CLOSE_WAIT_S
            return original(*args, **kwargs)

        ws.close = close

    def disconnect(self) -> None:
        """切断する (既に切れていても良い)。"""
        try:
            self.sio.disconnect()
        except Exception:
            pass

    def call(self, event: str, payload: Any = None, timeout: float = 10.0) -> Any:
        """イベントを送り、ack を待って返す。``payload`` が ``None`` なら引数なしで送る。"""
        return self.sio.call(event, payload, namespace=self.namespace, timeout=timeout)

    def start(self, **payload: Any) -> dict[str, Any]:
        """``start`` を送って ack を返す (成功を前提にしない)。"""
        return self.call("start", payload)

    def send_message(self, thread_id: str, content: Any, **extra: Any) -> dict[str, Any]:
        """``user_message`` を送って ack を返す。"""
        return self.call("user_message", {"thread_id": thread_id, "content": content, **extra})

    def event_payloads(self, type_: str | None = None, thread_id: str | None = None) -> list[dict[str, Any]]:
        """記録したイベントのペイロード (型やスレッドで絞れる)。"""
        with self._cond:
            items = list(self.events)
        out = []
        for name, data in items:
            if type_ is not None and name != type_:
                continue
            if thread_id is not None and (not isinstance(data, dict) or data.get("thread_id") != thread_id):
                continue
            out.append(data)
        return out

    def wait_for(
        self, type_: str, predicate: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 15.0
    ) -> dict[str, Any]:
        """``type_`` のイベントで ``predicate`` を満たすものが届くまで待ち、そのペイロードを返す。

        Raises:
            TimeoutError: 期限までに届かなかったとき (それまでに届いたイベント名を添える)。
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name, data in self.events:
                    if name == type_ and (predicate is None or predicate(data)):
                        return data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [n for n, _ in self.events][-30:]
                    raise TimeoutError(f"no '{type_}' event within {timeout}s; last events: {seen}")
                self._cond.wait(remaining)

    def wait_run_end(self, run_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """ラン ``run_id`` の終わり (run_finished / run_error / run_cancelled) を待ってそのペイロードを返す。"""
        ends = ("run_finished", "run_error", "run_cancelled")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name, data in self.events:
                    if name in ends and isinstance(data, dict) and data.get("run_id") == run_id:
                        return data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [n for n, _ in self.events][-30:]
                    raise TimeoutError(f"run {run_id} did not end within {timeout}s; last events: {seen}")
                self._cond.wait(remaining)

    def __enter__(self) -> ProtocolClient:
        """``with`` で使う (接続する)。"""
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        """``with`` を抜けたら切断する。"""
        self.disconnect()
