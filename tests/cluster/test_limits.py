"""全プロセスで共有するレート制限とカウンタ。"""

from __future__ import annotations

from llm_router.cluster.limits import SharedCounters, SharedRateLimiter


def test_rate_limit_is_shared_by_two_clients(client, make_client, keys):
    """1 分あたり 5 件の制限を 2 つのクライアント (別プロセスの代わり) が合わせて 5 件で使い切る。主体ごとに別。"""
    a = SharedRateLimiter(client, 5, keys=keys)
    b = SharedRateLimiter(make_client(), 5, keys=keys)
    results = [a.allow("alice"), b.allow("alice"), a.allow("alice"), b.allow("alice"), a.allow("alice")]
    assert results == [True] * 5
    assert b.allow("alice") is False and a.allow("alice") is False
    assert b.allow("bob") is True


def test_rate_limit_refills_over_time(client, keys):
    """使い切った後、時間とともに (1 分あたりの割合で) また許される。"""
    import time

    limiter = SharedRateLimiter(client, 600, keys=keys)  # 10 件/秒
    while limiter.allow("alice"):
        pass
    deadline = time.monotonic() + 5
    while not limiter.allow("alice"):
        assert time.monotonic() < deadline, "the bucket never refilled"
        time.sleep(0.01)


def test_zero_means_unlimited_without_asking_redis(redis_server, client, keys):
    """0 以下は無制限で、Redis が止まっていても許す (問い合わせない)。"""
    limiter = SharedRateLimiter(client, 0, keys=keys)
    redis_server.stop()
    assert all(limiter.allow("alice") for _ in range(100))


def test_counters_with_a_limit_across_clients(client, make_client, keys):
    """上限つきのカウンタは 2 つのクライアントで共有され、0 より下にはならない。"""
    a = SharedCounters(client, "active_runs", keys)
    b = SharedCounters(make_client(), "active_runs", keys)
    assert a.acquire("alice", 2) and b.acquire("alice", 2)
    assert not a.acquire("alice", 2) and a.value("alice") == 2
    assert b.release("alice") == 1 and a.acquire("alice", 2)
    assert a.release("alice") == 1 and a.release("alice") == 0 and a.release("alice") == 0
    assert b.value("alice") == 0 and client.exists(keys.counter("active_runs", "alice")) == 0
