"""redis バックエンドに固有の約束: 複数の接続 (プロセス) から書いても ``seq`` が連続すること、Redis が落ちたときの
``store_unavailable`` と、Redis が戻った後にプロセスを作り直さずに続くこと、リースがクラスタの部品と読み合えること。"""

from __future__ import annotations

import threading
import uuid

import pytest

from llm_router.cluster.connection import Keys, connect
from llm_router.cluster.leases import RunLeases
from llm_router.core.schemas.errors import StoreUnavailable
from llm_router.store.base import HistoryChange, LogLimits
from llm_router.store.redis import RedisStore
from tests.store.conftest import entry, event, sample_thread
from tests.support.redis_fixtures import TEST_REDIS
from tests.support.redis_server import RedisServer

PASSWORD = "pw-store-must-never-leak-41c"


def _store(url: str, prefix: str, limits: LogLimits | None = None) -> RedisStore:
    """新しい接続でストアを開く (別のプロセスの代わり)。"""
    return RedisStore(connect(url, TEST_REDIS), limits, Keys(prefix))


def test_writers_on_separate_connections_get_contiguous_seq(shared_redis_server):
    """4 本の接続が同じスレッドへ同時に書いても、``seq`` は 1 から重複も飛びもなく続き、ログもその順で読める。"""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    stores = [_store(shared_redis_server.url, prefix) for _ in range(4)]
    stores[0].create_thread(sample_thread())
    got: list[list[int]] = [[] for _ in stores]
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        """50 回、1〜3 件ずつ書く。"""
        try:
            for n in range(50):
                batch = [event(w=i, n=n) for _ in range(1 + n % 3)]
                got[i] += [e["seq"] for e in stores[i].commit("thr_1", batch)]
        except BaseException as exc:  # テストの失敗として報告する
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(len(stores))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors
    every = sorted(s for seqs in got for s in seqs)
    assert every == list(range(1, len(every) + 1))
    for seqs in got:
        assert seqs == sorted(seqs), "one writer's events keep their order"
    assert [e["seq"] for e in stores[1].after("thr_1", 0)] == every
    assert stores[2].bounds("thr_1").last_seq == len(every)
    for s in stores:
        s.close()


def test_unreachable_redis_gives_store_unavailable_and_service_resumes(redis_binary):
    """Redis を止めると読み書きもリースも ``store_unavailable`` (宛先つき、パスワードなし)。同じポートで戻れば、
    同じストアのオブジェクトのまま書ける。失敗した書き込みは何も残さない。"""
    with RedisServer(redis_binary, password=PASSWORD) as server:
        store = _store(server.url, "down")
        store.create_thread(sample_thread())
        assert [e["seq"] for e in store.commit("thr_1", [event(), event()])] == [1, 2]
        server.stop()
        batch = [event()]
        operations = [
            lambda: store.commit("thr_1", batch, history=HistoryChange(append=[entry("q")])),
            lambda: store.after("thr_1", 0),
            lambda: store.load_thread("thr_1"),
            lambda: store.acquire_run_lease("thr_1", "run_1", "proc", 10),
            lambda: store.list_threads("alice"),
            store.active_runs,
        ]
        for op in operations:
            with pytest.raises(StoreUnavailable) as info:
                op()
            assert info.value.code == "store_unavailable"
            assert PASSWORD not in str(info.value) and f"127.0.0.1:{server.port}" in str(info.value)
        assert "seq" not in batch[0]
        server.start()  # 永続化なしなので中身は空: 作り直して続けられること
        store.create_thread(sample_thread())
        assert [e["seq"] for e in store.commit("thr_1", [event()], run_started="run_1")] == [1]
        assert store.acquire_run_lease("thr_1", "run_1", "proc", 10)
        store.close()


def test_lease_is_readable_by_the_cluster_parts(shared_redis_server):
    """ストアのリースは ``…:t:<id>:lease`` にあり、クラスタの部品 (``RunLeases.holder``: コマンドの宛先を引く) が
    持ち主のプロセスとランを読める。終わりの記録でリースが外れると、持ち主はいなくなる。"""
    prefix = f"l{uuid.uuid4().hex[:8]}"
    store = _store(shared_redis_server.url, prefix)
    leases = RunLeases(store.client, "reader", 10, Keys(prefix))
    store.create_thread(sample_thread())
    store.commit("thr_1", [event("run_started")], run_started="run_1")
    assert store.acquire_run_lease("thr_1", "run_1", "proc-a", 10)
    holder = leases.holder("thr_1")
    assert (holder.process_id, holder.run_id) == ("proc-a", "run_1")
    store.commit("thr_1", [event("run_finished")], run_ended="run_1")
    assert leases.holder("thr_1") is None
    store.close()


def test_an_ended_run_cannot_be_leased_again(shared_redis_server):
    """持ち主を失ったランを 2 つのプロセスが閉じようとしても、閉じられるのは 1 回だけ: 最初の 1 つがリースを取って
    終わりを書いた後、もう 1 つはそのランのリースを取れない (2 つ目の ``interrupted`` は書かれない)。"""
    prefix = f"o{uuid.uuid4().hex[:8]}"
    a, b = _store(shared_redis_server.url, prefix), _store(shared_redis_server.url, prefix)
    a.create_thread(sample_thread())
    a.commit("thr_1", [event("run_started")], run_started="run_1")
    (orphan,) = b.active_runs()
    assert orphan.lease_owner is None
    assert b.acquire_run_lease("thr_1", "run_1", "proc-b", 10)
    assert not a.acquire_run_lease("thr_1", "run_1", "proc-a", 10), "proc-b holds it"
    b.commit("thr_1", [event("run_error")], run_ended="run_1")
    assert not a.acquire_run_lease("thr_1", "run_1", "proc-a", 10), "the run has ended"
    assert a.active_runs() == [] and a.acquire_run_lease("thr_1", "run_2", "proc-a", 10)
    a.close()
    b.close()


def test_a_run_is_ended_only_once(shared_redis_server):
    """既に終わったランの終わりやイベントを書こうとすると (リースを失った古い持ち主)、何も書かれずに断られる。"""
    store = _store(shared_redis_server.url, f"e{uuid.uuid4().hex[:8]}")
    store.create_thread(sample_thread())
    store.commit("thr_1", [event("run_started")], run_started="run_1")
    store.commit("thr_1", [event("run_error")], run_ended="run_1")
    late = [event("run_cancelled")]
    with pytest.raises(StoreUnavailable, match="already ended"):
        store.commit("thr_1", late, run_ended="run_1")
    assert "seq" not in late and [e["type"] for e in store.after("thr_1", 0)] == ["run_started", "run_error"]
    with pytest.raises(StoreUnavailable, match="already ended"):
        store.commit("thr_1", [event("text_delta", delta="遅れた差分")])
    rewound = store.commit("thr_1", [event("thread_rewound", removed_runs=["run_1"])])
    assert rewound[0]["seq"] == 3, "thread_rewound names an ended run and is still written"
    assert store.commit("thr_1", [event("run_started", "run_2")], run_started="run_2")[0]["seq"] == 4
    store.close()


def test_a_new_run_waits_for_the_open_run_to_be_closed(shared_redis_server):
    """リースの切れた (持ち主を失った) ランが終わっていない間は、新しいランのリースは取れない。そのランの
    リースは取れ、閉じると新しいランが取れる。"""
    store = _store(shared_redis_server.url, f"n{uuid.uuid4().hex[:8]}")
    store.create_thread(sample_thread())
    assert store.open_run("thr_1") is None
    store.commit("thr_1", [event("run_started")], run_started="run_1")
    orphan = store.open_run("thr_1")
    assert (orphan.run_id, orphan.lease_owner) == ("run_1", None)
    assert not store.acquire_run_lease("thr_1", "run_2", "proc-b", 10)
    assert store.acquire_run_lease("thr_1", "run_1", "proc-b", 10)
    assert store.open_run("thr_1").lease_owner == "proc-b"
    store.commit("thr_1", [event("run_error")], run_ended="run_1")
    assert store.open_run("thr_1") is None
    assert store.acquire_run_lease("thr_1", "run_2", "proc-b", 10)
    store.close()


def test_a_writer_whose_lease_expired_cannot_append_before_another_process_closes_the_run(shared_redis_server):
    """リースの期限が過ぎた持ち主 (長く止まっていたプロセス A) は、別のプロセスがランを閉じる前でも、そのランの
    イベントを 1 件も書けず (``RunAlreadyEnded``、ログは変わらない)、期限の過ぎたリースを延ばすこともできない。
    引き取った B は同じランを ``interrupted`` で閉じられ、A の書きそびれた終わりは断られる。"""
    from llm_router.store.errors import RunAlreadyEnded

    lease_lost = "no longer holds the run lease"

    prefix = f"f{uuid.uuid4().hex[:8]}"
    clock = [1000.0]
    store_a = RedisStore(connect(shared_redis_server.url, TEST_REDIS), keys=Keys(prefix), clock=lambda: clock[0])
    store_b = _store(shared_redis_server.url, prefix)
    store_a.fence_writes("proc-a")
    store_b.fence_writes("proc-b")
    try:
        store_a.create_thread(sample_thread())
        # Redis の上の期限 (PX) は長く、A の時計で見たリースの期限 (exp) だけが過ぎる: 止まっていた A が目覚めた瞬間
        assert store_a.acquire_run_lease("thr_1", "run_1", "proc-a", 60)
        store_a.commit("thr_1", [event(run_id="run_1", type="run_started")], run_started="run_1")
        assert [e["seq"] for e in store_a.commit("thr_1", [event(run_id="run_1")])] == [2]
        clock[0] += 61
        with pytest.raises(RunAlreadyEnded, match=lease_lost):
            store_a.commit("thr_1", [event(run_id="run_1")])
        assert store_b.bounds("thr_1").last_seq == 2, "nothing was appended by the writer whose lease expired"
        assert not store_a.renew_run_lease("thr_1", "run_1", "proc-a", 60), "an expired lease is not extended"

        # Redis の上でもリースが消えた (PX が過ぎた) 後も同じ: まだ誰もランを閉じていなくても書けない
        store_a.client.delete(f"{prefix}:t:thr_1:lease")
        clock[0] = 1000.0
        with pytest.raises(RunAlreadyEnded, match=lease_lost):
            store_a.commit("thr_1", [event(run_id="run_1")])

        # B が引き取って閉じる。A の書きそびれた終わりはその後も書かれない (終わりは 1 つだけ)
        assert store_b.acquire_run_lease("thr_1", "run_1", "proc-b", 60)
        with pytest.raises(RunAlreadyEnded, match=lease_lost):
            store_a.commit("thr_1", [event(run_id="run_1")])
        store_b.commit("thr_1", [event(run_id="run_1", type="run_error")], run_ended="run_1")
        with pytest.raises(RunAlreadyEnded):
            store_a.commit("thr_1", [event(run_id="run_1", type="run_cancelled")], run_ended="run_1")
        assert [e["type"] for e in store_b.after("thr_1", 0)][-1] == "run_error"
        assert store_b.bounds("thr_1").last_seq == 3
    finally:
        store_a.close()
        store_b.close()
