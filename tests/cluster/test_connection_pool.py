"""Redis のクライアントの接続の上限: 上限に達した呼び出しは空きを待ち、待ちきれなければはっきりした store_unavailable。"""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_router.cluster.connection import connect, unavailable_errors
from llm_router.core.schemas.errors import StoreUnavailable
from tests.cluster.conftest import TEST_REDIS
from tests.realtime.harness import wait_until


def _clients_named(checker, name: str) -> list[dict]:
    """``CLIENT LIST`` のうち、名前が ``name`` の接続。"""
    return [c for c in checker.client_list() if c.get("name") == name]


def test_more_callers_than_connections_wait_for_a_free_one(redis_server):
    """接続 2 本のクライアントに 12 の呼び出しが同時に来ても、どれも失敗せず、接続は 2 本を超えない。

    (redis-py の既定のプールは上限で待たずに MaxConnectionsError を上げ、同時に始まった start が
    store_unavailable になっていた。)
    """
    config = dataclasses.replace(TEST_REDIS, pool_size=2, pool_timeout_s=10.0, socket_timeout_s=5.0)
    client = connect(redis_server.url, config)
    checker = connect(redis_server.url, TEST_REDIS)
    try:

        def hold(i: int) -> object:
            """接続を 0.2 秒持つ呼び出し (空のリストを待つ BLPOP)。"""
            client.client_setname("pool-test")
            return client.blpop([f"pool-test:{i}"], timeout=0.2)

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(hold, range(12)))
        assert results == [None] * 12
        assert len(_clients_named(checker, "pool-test")) <= 2
    finally:
        client.close()
        checker.close()


def test_a_pool_that_stays_full_gives_a_clear_store_unavailable(redis_server):
    """上限の接続がずっと使われていれば、待った呼び出しは pool_timeout_s で store_unavailable (宛先と理由つき)。"""
    config = dataclasses.replace(TEST_REDIS, pool_size=1, pool_timeout_s=0.2, socket_timeout_s=10.0)
    client = connect(redis_server.url, config)
    checker = connect(redis_server.url, TEST_REDIS)
    held: list[object] = []
    holder = threading.Thread(target=lambda: held.append(client.blpop(["pool-test:hold"], timeout=8)))
    try:
        holder.start()
        wait_until(
            lambda: any(c.get("cmd") == "blpop" for c in checker.client_list()),
            5,
            message="the holder did not block",
        )
        with pytest.raises(StoreUnavailable) as caught, unavailable_errors(client, "pool test"):
            client.get("pool-test:other")
        assert "pool test" in str(caught.value)
        assert "No connection available" in str(caught.value)
    finally:
        checker.lpush("pool-test:hold", "done")  # 待っている BLPOP をすぐ終わらせる
        holder.join(10)
        client.close()
        checker.close()
    assert held == [(b"pool-test:hold", b"done")]
