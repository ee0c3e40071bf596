"""複数プロセスのテストの部品: 本物の redis-server と、同じ Redis を使う 2 つの本物のサーバープロセスと、偽の OpenAI。

サーバーは README のとおり ``app.py store.backend=redis server.port=...`` で起動し、Redis の URL と偽の API キーは
一時的な .env で渡す。リースは短く (``store.run_lease_s=2``)、持ち主の死は 2 期間 (4 秒) 以内に閉じられるはず。
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_fake import OpenAIFake
from tests.realtime.conftest import FAKE_OPENAI_KEY, base_overrides
from tests.realtime.harness import ProtocolClient, ServerProcess
from tests.support.redis_fixtures import redis_binary, redis_server
from tests.support.redis_server import RedisServer

__all__ = ["redis_binary", "redis_server"]

LEASE_S = 2.0


class Cluster:
    """1 つの Redis と、それを共有するサーバープロセスたち。"""

    def __init__(self, redis: RedisServer, fake: OpenAIFake) -> None:
        """Redis と上流の偽サーバーを受け取る (プロセスは :meth:`add` で起動する)。"""
        self.redis = redis
        self.fake = fake
        self.servers: list[ServerProcess] = []
        self.clients: list[ProtocolClient] = []

    def add(self, *extra: str) -> ServerProcess:
        """同じ Redis を使うサーバーを 1 つ起動する。"""
        overrides = [
            "store.backend=redis",
            f"store.run_lease_s={LEASE_S}",
            "store.redis.command_poll_s=0.2",
            "store.redis.command_timeout_s=3",
            "store.redis.connect_timeout_s=0.5",
            "store.redis.socket_timeout_s=1",
            *base_overrides(self.fake),
            *extra,
        ]
        secrets = {"OPENAI_API_KEY": FAKE_OPENAI_KEY, "LLM_ROUTER_REDIS_URL": self.redis.url}
        server = ServerProcess(overrides, secrets=secrets)
        self.servers.append(server)
        return server.start()

    def client(self, server: ServerProcess) -> ProtocolClient:
        """``server`` へ繋いだクライアント (テストの終わりに切断)。"""
        client = ProtocolClient(server.url)
        self.clients.append(client)
        return client.connect()

    def close(self) -> None:
        """クライアントを切断し、サーバーを止める。"""
        for client in self.clients:
            client.disconnect()
        for server in self.servers:
            server.close()


@pytest.fixture
def openai_fake() -> Iterator[OpenAIFake]:
    """規則モードの OpenAI の偽サーバー。"""
    with OpenAIFake(rules=True) as fake:
        yield fake


@pytest.fixture
def cluster(redis_server: RedisServer, openai_fake: OpenAIFake) -> Iterator[Cluster]:
    """Redis と偽の OpenAI (プロセスはテストが ``cluster.add()`` で起動する)。失敗しても全部止める。"""
    made = Cluster(redis_server, openai_fake)
    try:
        yield made
    finally:
        made.close()
