"""ベンチマークで起動するサーバーとクライアント: 本物の llm_router プロセス、素のスタック、時刻つきクライアント。

- :func:`router_server`: ``tests/realtime/harness.py`` の :class:`ServerProcess` で ``app.py`` を本物の
  サブプロセスとして起動する (空きポート、``/healthz`` のポーリング、開発者の .env は読まない)。
- :class:`BareServer`: ``benchmarks/bare_stack.py`` を同じやり方で起動する。
- :class:`TimedClient`: ハーネスの :class:`ProtocolClient` に、受信の時刻 (``time.monotonic_ns``) の記録を足したもの。
  ``CLOCK_MONOTONIC`` はマシン全体で共通なので、別プロセスの偽サーバーが付けた時刻と引き算できる。
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from _common import ROOT, wait_until

from llm_router.core.schemas.events import RUN_END_EVENTS
from tests.realtime.harness import ProtocolClient, ServerProcess, free_port

BENCH_KEY = "sk-bench-not-a-real-key"
OPENAI_MODEL = "openai/gpt-4.1-mini"


def router_server(
    openai_base_url: str | None = None, extra: list[str] | None = None, async_mode: str = "eventlet"
) -> ServerProcess:
    """llm_router を起動する。``openai_base_url`` があれば偽の OpenAI を既定のモデルにする。

    レート制限と主体ごとの上限 (全クライアントが同じ主体になる: トークン無し) はベンチマークの邪魔にならないよう
    外し、ログは WARNING 以上にする (本番の既定 INFO でも 1 イベントごとのログ行は無い)。
    """
    overrides = [
        "server.rate_limit_per_minute=100000000",
        "server.log_level=WARNING",
        "server.max_threads_per_principal=0",
        "server.max_active_runs_per_principal=0",
    ]
    secrets: dict[str, str] = {}
    if openai_base_url:
        overrides += [f"providers.openai.base_url={openai_base_url}", f"agent.model={OPENAI_MODEL}"]
        secrets["OPENAI_API_KEY"] = BENCH_KEY
    overrides += extra or []
    return ServerProcess(overrides=overrides, secrets=secrets, async_mode=async_mode).start(timeout=60)


class BareServer:
    """素の Flask-SocketIO サーバー (``benchmarks/bare_stack.py``) のサブプロセス。"""

    def __init__(self) -> None:
        """まだ起動しない (:meth:`start`)。"""
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """接続先の URL (``http://127.0.0.1:PORT``)。"""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> BareServer:
        """起動し、``/healthz`` が応答するまで待つ。"""
        import urllib.request

        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "bare_stack.py"), str(self.port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def healthy() -> bool:
            """``/healthz`` が 200 なら真。"""
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"bare server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1.0) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(healthy, timeout, "bare server not ready", interval=0.05)
        return self

    def stop(self) -> None:
        """止める。"""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def __enter__(self) -> BareServer:
        """``with`` で使う (起動する)。"""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """止める。"""
        self.stop()


class TimedClient(ProtocolClient):
    """受信の時刻も記録するプロトコルのクライアント。``times[i]`` は ``events[i]`` を受け取った時刻 (ns)。"""

    def __init__(self, url: str, token: str | None = None) -> None:
        """時刻の記録を足す。"""
        super().__init__(url, token=token)
        self.times: list[int] = []
        self.ends: dict[str, int] = {}

    def _record(self, event: str, *args: Any) -> None:
        """受信時刻をまず取ってから、記録して待っている者を起こす。"""
        now = time.monotonic_ns()
        data = args[0] if len(args) == 1 else list(args)
        with self._cond:
            self.events.append((event, data))
            self.times.append(now)
            if event in RUN_END_EVENTS and isinstance(data, dict):
                self.ends[data.get("run_id") or ""] = now
            self._cond.notify_all()

    def clear(self) -> None:
        """ここまでの記録を捨てる (計測の区切り)。"""
        with self._cond:
            self.events.clear()
            self.times.clear()
            self.ends.clear()

    def wait_end(self, run_id: str, timeout: float = 120.0) -> None:
        """ラン ``run_id`` の終わりのイベントが届くまで待つ。"""
        with self._cond:
            if not self._cond.wait_for(lambda: run_id in self.ends, timeout):
                raise TimeoutError(f"run {run_id} did not end within {timeout}s")
