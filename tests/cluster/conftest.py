"""Redis のテストの共通部品: テストごとに本物の ``redis-server`` (空きポート、永続化なし) とクライアント。

redis-server が無ければ ``apt-get install redis-server`` を理由にスキップし、``LLM_ROUTER_REQUIRE_REDIS=1``
なら失敗させる (``tests/support/redis_server.py``)。
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llm_router.cluster.connection import connect
from tests.support.redis_fixtures import TEST_REDIS, keys, redis_binary, redis_server
from tests.support.redis_server import RedisServer

__all__ = ["TEST_REDIS", "keys", "new_thread", "redis_binary", "redis_server"]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_client(redis_server: RedisServer) -> Iterator[Callable[..., object]]:
    """``make_client(**overrides)``: テストの redis-server への新しいクライアント (別々の接続プール)。"""
    made = []

    def factory(socket_timeout_s: float | None = None) -> object:
        """新しいクライアントを作る。"""
        client = connect(redis_server.url, TEST_REDIS, socket_timeout_s=socket_timeout_s)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., object]) -> object:
    """テストの redis-server へのクライアント。"""
    return make_client()


@pytest.fixture
def store(client: object, keys: object) -> object:
    """テストの redis-server の上の、サーバーと同じストア (``RedisStore``、テストのキーの接頭辞)。イベントはこれで書く。"""
    from llm_router.store.redis import RedisStore

    return RedisStore(client, keys=keys)


@pytest.fixture
def make_runtime(redis_server: RedisServer, keys: object) -> Iterator[Callable[..., object]]:
    """``make_runtime(lease_s, **callbacks)``: テストの redis-server の上に、サーバーと同じストアと部品一式
    (``ClusterRuntime``、テストのキーの接頭辞) を作る (まだ動かさない。終わりに必ず止めて閉じる)。"""
    from tests.cluster.cluster_worker import build_runtime

    made = []

    def factory(lease_s: float, **callbacks: object) -> object:
        """部品一式を 1 つ作る (コールバックは ``handler`` / ``deliver`` / ``on_lost`` / ``on_orphan``)。"""
        runtime = build_runtime(redis_server.url, keys.prefix, lease_s, **callbacks)  # type: ignore[attr-defined]
        made.append(runtime)
        return runtime

    yield factory
    for runtime in made:
        runtime.stop()
        runtime.store.close()


def new_thread(store: object, thread_id: str, owner: str = "alice") -> None:
    """ストアにスレッドを作る (イベントを書く前に要る)。"""
    from llm_router.core.schemas.thread_record import StoredThread

    store.create_thread(StoredThread(thread_id, owner))  # type: ignore[attr-defined]


@pytest.fixture
def spawn_worker(redis_server: RedisServer) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``spawn_worker(*args)``: ``tests/cluster/cluster_worker.py`` を別プロセスで起動する (終わりに必ず止める)。"""
    procs: list[subprocess.Popen[str]] = []

    def spawn(*args: str) -> subprocess.Popen[str]:
        """ワーカーを起動する (URL は環境変数で渡す)。"""
        env = {**os.environ, "LLM_ROUTER_REDIS_URL": redis_server.url}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.cluster_worker", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream:
                stream.close()
