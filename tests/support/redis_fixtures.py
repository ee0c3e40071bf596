"""本物の ``redis-server`` を使う pytest の部品 (``tests/cluster`` と ``tests/store`` と複数プロセスのテストで共有する)。

使う側の ``conftest.py`` はここから名前を import する (pytest は import された fixture もその conftest のものとして
扱う)。redis-server が無ければ ``apt-get install redis-server`` を理由にスキップし、
``LLM_ROUTER_REQUIRE_REDIS=1`` なら失敗させる (:func:`tests.support.redis_server.require_redis_server`)。
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from llm_router.cluster.connection import Keys
from llm_router.config.schema import RedisStoreConfig
from tests.support.redis_server import RedisServer, require_redis_server

# テストの接続設定: 落ちた Redis にすぐ気づくよう短めにする
TEST_REDIS = RedisStoreConfig(
    connect_timeout_s=1.0, socket_timeout_s=2.0, retries=1, command_timeout_s=2.0, command_poll_s=0.2
)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """``redis-server`` のパス (無ければスキップ、必須の指定があれば失敗)。"""
    return require_redis_server()


@pytest.fixture
def redis_server(redis_binary: str) -> Iterator[RedisServer]:
    """テスト専用の redis-server (テストの終わりに、失敗しても止める)。"""
    server = RedisServer(redis_binary)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def shared_redis_server(redis_binary: str) -> Iterator[RedisServer]:
    """セッションで 1 つの redis-server (キーの接頭辞をテストごとに変えて使う。止めたり再起動したりしない試験用)。"""
    server = RedisServer(redis_binary)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def keys() -> Keys:
    """テストごとに別のキーの接頭辞。"""
    return Keys(f"t{uuid.uuid4().hex[:8]}")
