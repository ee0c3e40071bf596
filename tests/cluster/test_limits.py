"""全プロセスで共有するレート制限と、主体の同時ラン数の枠。"""

from __future__ import annotations

import time

from llm_router.cluster.limits import RunSlots, SharedRateLimiter


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


def test_run_slots_with_a_limit_across_clients(client, make_client, keys):
    """同時ラン数の枠は 2 つのクライアント (別プロセスの代わり) で共有され、返せば空く。主体ごとに別。"""
    a = RunSlots(client, 30, keys)
    b = RunSlots(make_client(), 30, keys)
    assert a.acquire("alice", "thr_1", "run_1", 2) and b.acquire("alice", "thr_2", "run_2", 2)
    assert not a.acquire("alice", "thr_3", "run_3", 2) and a.count("alice") == 2
    assert b.acquire("bob", "thr_4", "run_4", 2)
    b.release("alice", "thr_1", "run_1")
    assert a.acquire("alice", "thr_3", "run_3", 2) and b.count("alice") == 2
    assert a.acquire("alice", "thr_9", "run_9", 0), "0 means unlimited"


def test_a_retried_acquire_after_an_outage_does_not_count_the_run_twice(client, keys):
    """Redis が答えを返す前に落ちた取得をやり直しても (同じラン)、枠は 1 つ: 主体が上限を超えて数えられない。"""
    slots = RunSlots(client, 30, keys)
    assert slots.acquire("alice", "thr_1", "run_1", 2)
    assert slots.acquire("alice", "thr_1", "run_1", 2), "the retry of the same run's acquire"
    assert slots.count("alice") == 1
    assert slots.acquire("alice", "thr_2", "run_2", 2), "the second run still fits under the cap of 2"


def test_a_slot_that_was_never_given_back_frees_itself(client, make_client, keys):
    """ランの終わりで返せなかった枠 (Redis に届かなかった、持ち主が死んだ) は、延ばす者がいなければ期限で消え、
    主体は上限に張り付いたままにならない。生きているランの枠は延ばせば残る。"""
    owner = RunSlots(client, 0.3, keys)
    other = RunSlots(make_client(), 0.3, keys)
    assert owner.acquire("alice", "thr_1", "run_lost", 1)
    assert not other.acquire("alice", "thr_2", "run_2", 1)
    deadline = time.monotonic() + 5
    while not other.acquire("alice", "thr_2", "run_2", 1):
        assert time.monotonic() < deadline, "the lost slot kept the principal at its cap"
        time.sleep(0.02)
    # 延ばし続けている枠 (動いているラン) は、期限を何度過ぎても数に残る
    for _ in range(4):
        other.renew([("alice", "thr_2", "run_2")])
        time.sleep(0.1)
    assert other.count("alice") == 1 and not owner.acquire("alice", "thr_3", "run_3", 1)
