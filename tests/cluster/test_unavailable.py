"""Redis に届かないとき: はっきりした StoreUnavailable (パスワードは出さない)、Redis が戻れば同じクライアントのまま動く。"""

from __future__ import annotations

import logging

import pytest

from llm_router.cluster.commands import CommandBus
from llm_router.cluster.connection import connect
from llm_router.cluster.limits import SharedRateLimiter
from llm_router.core.schemas.errors import StoreUnavailable
from llm_router.store.redis import RedisStore
from tests.cluster.conftest import TEST_REDIS, new_thread
from tests.support.redis_server import RedisServer, free_port

PASSWORD = "pw-must-never-leak-7f3a"


def test_stopped_redis_gives_a_clear_error_and_service_resumes_after_restart(redis_binary, keys, caplog):
    """Redis を止めると各操作が store_unavailable (何の操作か・宛先・パスワード無し) になり、同じポートで
    再起動すると、作り直さない同じクライアント・部品・受信ループのまま動く。"""
    caplog.set_level(logging.DEBUG)
    with RedisServer(redis_binary, password=PASSWORD) as server:
        client = connect(server.url, TEST_REDIS)
        blocking = connect(server.url, TEST_REDIS, socket_timeout_s=10)
        store = RedisStore(client, keys=keys)
        limiter = SharedRateLimiter(client, 100, keys=keys)
        owner = CommandBus(client, blocking, "proc-a", lambda k, p: {"ok": True, "k": k}, poll_s=0.2, keys=keys)
        peer = CommandBus(
            client, connect(server.url, TEST_REDIS, socket_timeout_s=10), "proc-b", lambda k, p: {}, keys=keys
        )
        owner.start()
        try:
            new_thread(store, "t")
            assert store.acquire_run_lease("t", "run-0", "proc-a", 5)
            assert peer.send("proc-a", "cancel", {}) == {"ok": True, "k": "cancel"}

            server.stop()
            operations = {
                "run lease acquire": lambda: store.acquire_run_lease("t", "run-1", "proc-a", 5),
                "rate limit": lambda: limiter.allow("alice"),
                "command cancel": lambda: peer.send("proc-a", "cancel", {}, timeout_s=0.5),
            }
            for what, operation in operations.items():
                with pytest.raises(StoreUnavailable) as info:
                    operation()
                message = str(info.value)
                assert f"redis unavailable during {what}" in message and f"127.0.0.1:{server.port}" in message
                assert PASSWORD not in message and info.value.code == "store_unavailable"

            server.start()  # 同じポート (永続化していないので中身は空)
            new_thread(store, "t")
            assert store.acquire_run_lease("t", "run-1", "proc-a", 5)  # Lua スクリプトは自動で読み直される
            assert limiter.allow("alice")
            # 受信ループは自分で繋ぎ直している: 別のプロセスからのコマンドにまた答える
            assert peer.send("proc-a", "tool_result", {}, timeout_s=5) == {"ok": True, "k": "tool_result"}
        finally:
            owner.stop()
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)
    assert any("redis unavailable" in record.getMessage() for record in caplog.records)


def test_nothing_listening_is_store_unavailable():
    """誰も聞いていないポートへの最初の操作も StoreUnavailable になる。"""
    client = connect(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", TEST_REDIS)
    with pytest.raises(StoreUnavailable) as info:
        RedisStore(client).load_thread("t")
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("url", ["", "notaurl://x"])
def test_a_missing_or_bad_url_names_the_variable(url):
    """URL が空か不正なら、.env の変数名を含む StoreUnavailable (パスワードは出さない)。"""
    with pytest.raises(StoreUnavailable, match="LLM_ROUTER_REDIS_URL"):
        connect(url, TEST_REDIS)


def test_background_loops_survive_an_outage(redis_server, make_runtime, caplog):
    """サーバーの更新係と検査係 (``ClusterRuntime``) は Redis が落ちている間も止まらず (警告だけ)、戻った後に
    また働く: 再起動で消えたリースは on_lost で知らされ、再起動の後に持ち主を失ったランは on_orphan に渡される。"""
    import threading
    import time

    caplog.set_level(logging.WARNING)
    lost, orphans = [], []
    lost_event, orphan_event = threading.Event(), threading.Event()
    runtime = make_runtime(
        0.5,
        on_lost=lambda thread_id, run_id: (lost.append((thread_id, run_id)), lost_event.set()),
        on_orphan=lambda run: (orphans.append((run.thread_id, run.run_id)), orphan_event.set()),
    )
    new_thread(runtime.store, "t")
    assert runtime.acquire("t", "run-1")
    runtime.start()
    redis_server.stop()
    deadline = time.monotonic() + 10
    while not any("redis unavailable" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the loops never noticed the outage"
        time.sleep(0.02)
    redis_server.start()
    assert lost_event.wait(10) and lost == [("t", "run-1")]  # 中身が消えたのでリースは失われた
    dead = make_runtime(0.5)  # 更新係を動かさない持ち主のラン
    new_thread(dead.store, "u")
    dead.store.commit("u", [{"type": "run_started", "run_id": "run-dead"}], run_started="run-dead")
    assert dead.acquire("u", "run-dead")
    assert orphan_event.wait(10)
    assert orphans[0] == ("u", "run-dead")
