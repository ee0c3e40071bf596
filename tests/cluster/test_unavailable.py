"""Redis に届かないとき: はっきりした StoreUnavailable (パスワードは出さない)、Redis が戻れば同じクライアントのまま動く。"""

from __future__ import annotations

import logging

import pytest

from llm_router.cluster.commands import CommandBus
from llm_router.cluster.connection import connect
from llm_router.cluster.leases import RunLeases
from llm_router.cluster.limits import SharedRateLimiter
from llm_router.core.schemas.errors import StoreUnavailable
from llm_router.store.redis import RedisStore
from tests.cluster.conftest import TEST_REDIS
from tests.support.redis_server import RedisServer, free_port

PASSWORD = "pw-must-never-leak-7f3a"


def test_stopped_redis_gives_a_clear_error_and_service_resumes_after_restart(redis_binary, keys, caplog):
    """Redis を止めると各操作が store_unavailable (何の操作か・宛先・パスワード無し) になり、同じポートで
    再起動すると、作り直さない同じクライアント・部品・受信ループのまま動く。"""
    caplog.set_level(logging.DEBUG)
    with RedisServer(redis_binary, password=PASSWORD) as server:
        client = connect(server.url, TEST_REDIS)
        blocking = connect(server.url, TEST_REDIS, socket_timeout_s=10)
        leases = RunLeases(client, "proc-a", 5, keys)
        limiter = SharedRateLimiter(client, 100, keys=keys)
        owner = CommandBus(client, blocking, "proc-a", lambda k, p: {"ok": True, "k": k}, poll_s=0.2, keys=keys)
        peer = CommandBus(
            client, connect(server.url, TEST_REDIS, socket_timeout_s=10), "proc-b", lambda k, p: {}, keys=keys
        )
        owner.start()
        try:
            assert leases.acquire("t", "run-0").run_id == "run-0"
            assert peer.send("proc-a", "cancel", {}) == {"ok": True, "k": "cancel"}

            server.stop()
            operations = {
                "run lease acquire": lambda: leases.acquire("t", "run-1"),
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
            assert leases.acquire("t", "run-1").run_id == "run-1"  # Lua スクリプトは自動で読み直される
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


def test_background_helpers_survive_an_outage(redis_server, client, make_client, keys, caplog):
    """更新係と検査係は Redis が落ちている間も止まらず (警告だけ)、戻った後にまた働く:
    再起動で消えた貸与は on_lost で知らされ、再起動の後に持ち主を失ったランは引き取られる。"""
    import threading
    import time

    from llm_router.cluster.leases import LeaseRenewer, OrphanScanner

    caplog.set_level(logging.WARNING)
    leases = RunLeases(client, "proc-a", 0.5, keys)
    lost, orphans = [], []
    lost_event, orphan_event = threading.Event(), threading.Event()
    renewer = LeaseRenewer(leases, on_lost=lambda lease: (lost.append(lease), lost_event.set()))
    scanner = OrphanScanner(
        leases, on_orphan=lambda lease: (orphans.append(lease), leases.release(lease), orphan_event.set())
    )
    lease = leases.acquire("t", "run-1")
    renewer.hold(lease)
    renewer.start()
    scanner.start()
    try:
        redis_server.stop()
        deadline = time.monotonic() + 10
        while not any("redis unavailable" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the helpers never noticed the outage"
            time.sleep(0.02)
        redis_server.start()
        assert lost_event.wait(10) and lost == [lease]  # 中身が消えたので貸与は失われた
        RunLeases(make_client(), "proc-dead", 0.5, keys).acquire("u", "run-dead")  # 更新されない貸与
        assert orphan_event.wait(10)
        assert [(o.thread_id, o.orphan.run_id) for o in orphans] == [("u", "run-dead")]
    finally:
        renewer.stop()
        scanner.stop()
