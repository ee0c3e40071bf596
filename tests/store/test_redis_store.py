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
    leases = RunLeases(store.client, Keys(prefix))
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


def _wait_until(condition, timeout: float = 10.0) -> None:
    """``condition()`` が真になるまで待つ (眠りで競合を隠さない: 条件を見て待つ)。"""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def _queued(store: RedisStore, n: int) -> None:
    """グループコミットの列に ``n`` 件の呼び出しが並ぶまで待つ。"""
    _wait_until(lambda: len(store._group._queue) == n)


def test_commits_that_arrive_during_a_round_trip_are_written_in_one(shared_redis_server):
    """書いている間に来た別々のスレッドのコミットは、次の 1 回の往復でまとめて書かれる。どの呼び出しも自分の分が
    書かれてから返り、各スレッドの ``seq`` は連続する (同じスレッドの 2 つのコミットも並んだ順)。"""
    store = _store(shared_redis_server.url, f"g{uuid.uuid4().hex[:8]}")
    for t in range(5):
        store.create_thread(sample_thread(f"thr_{t}"))
    results: dict[int, list[int]] = {}
    base = store.commit_round_trips
    store._commit_lock.acquire()  # 最初のリーダーの往復を止めておき、その間に他が並ぶ
    try:
        threads = []
        for i in range(6):
            tid = f"thr_{i % 5}"  # thr_0 には 2 つのコミット

            def write(i: int = i, tid: str = tid) -> None:
                """2 件を書く。"""
                results[i] = [e["seq"] for e in store.commit(tid, [event(n=i), event(n=i)])]

            threads.append(threading.Thread(target=write))
            threads[-1].start()
            if i == 0:
                _wait_until(lambda: store._group._leading)
        _queued(store, 5)
        assert results == {}, "nothing returns before it is written"
    finally:
        store._commit_lock.release()
    for t in threads:
        t.join(30)
    assert store.commit_round_trips - base == 2, "the leader's own commit, then the 5 that queued, in one round trip"
    assert results[0] == [1, 2] and results[5] == [3, 4], "thr_0: the later commit follows the earlier one"
    assert all(results[i] == [1, 2] for i in range(1, 5))
    assert [e["n"] for e in store.after("thr_0", 0)] == [0, 0, 5, 5]
    store.close()


def test_a_refused_item_does_not_affect_the_others_in_its_round_trip(shared_redis_server):
    """同じ往復の中で、終わったランへの書き込み (リースを失った書き手) と無いスレッドへの書き込みは断られて何も
    書かず、他の項目は書かれる。"""
    store = _store(shared_redis_server.url, f"r{uuid.uuid4().hex[:8]}")
    store.create_thread(sample_thread("thr_1"))
    store.create_thread(sample_thread("thr_2"))
    store.commit("thr_1", [event("run_started")], run_started="run_1")
    store.commit("thr_1", [event("run_error")], run_ended="run_1")
    outcome: dict[str, object] = {}

    def write(name: str, tid: str, events: list[dict]) -> None:
        """書いて、結果か例外を記録する。"""
        try:
            outcome[name] = [e["seq"] for e in store.commit(tid, events)]
        except Exception as exc:  # 断られた項目の例外を確かめる
            outcome[name] = exc

    store._commit_lock.acquire()
    try:
        first = threading.Thread(target=write, args=("first", "thr_2", [event(run_id="run_9")]))
        first.start()
        _wait_until(lambda: store._group._leading)
        late = [event("text_delta", "run_1", delta="遅れた差分")]
        jobs = [
            threading.Thread(target=write, args=("late", "thr_1", late)),
            threading.Thread(target=write, args=("missing", "thr_404", [event()])),
            threading.Thread(target=write, args=("ok", "thr_2", [event(run_id="run_9"), event(run_id="run_9")])),
        ]
        for job in jobs:
            job.start()
            _queued(store, jobs.index(job) + 1)
    finally:
        store._commit_lock.release()
    for job in [first, *jobs]:
        job.join(30)
    assert outcome["first"] == [1] and outcome["ok"] == [2, 3]
    assert isinstance(outcome["late"], StoreUnavailable) and "already ended" in str(outcome["late"])
    assert "seq" not in late[0]
    assert type(outcome["missing"]).__name__ == "UnknownThread"
    assert [e["type"] for e in store.after("thr_1", 0)] == ["run_started", "run_error"]
    store.close()


def test_two_processes_with_batched_commits_keep_seq_contiguous(shared_redis_server):
    """2 つのプロセス (eventlet、それぞれ 8 本のグリーンスレッド) が同じスレッドへまとめ書きで競っても、``seq`` は
    1 から隙間なく続き、1 回のコミットの 2 件は連続する。まとめ書きは実際に起きている (往復 < コミット)。"""
    import json
    import subprocess
    import sys

    prefix = f"p{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "tests.store.redis_group_writer", shared_redis_server.url, prefix]
    procs = [subprocess.Popen([*cmd, name, "8", "25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in "ab"]
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()[-2000:]
            outputs.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    shared = [pair for out in outputs for pair in out["shared"]]
    assert all(b == a + 1 for a, b in shared), "one commit's events are consecutive"
    assert sorted(s for pair in shared for s in pair) == list(range(1, 2 * 8 * 25 * 2 + 1))
    for out in outputs:
        for seqs in out["own"].values():
            assert seqs == list(range(1, 51))
        assert out["round_trips"] < out["commits"], "concurrent commits shared round trips"
    reader = _store(shared_redis_server.url, prefix)
    logged = reader.after("thr_shared", 0)
    assert [e["seq"] for e in logged] == list(range(1, 801))
    assert len({e["text"] for e in logged}) == 800, "every event is stored once"
    reader.close()


def test_commits_go_on_after_a_script_flush_and_a_killed_connection(shared_redis_server):
    """Redis のスクリプトのキャッシュが消えても (再起動の後と同じ)、コミットの接続が切られても、次のコミットは
    そのまま書け、``seq`` は続く。"""
    store = _store(shared_redis_server.url, f"k{uuid.uuid4().hex[:8]}")
    store.create_thread(sample_thread())
    assert [e["seq"] for e in store.commit("thr_1", [event()])] == [1]
    admin = connect(shared_redis_server.url, TEST_REDIS)
    admin.script_flush()
    assert [e["seq"] for e in store.commit("thr_1", [event(), event()])] == [2, 3]
    admin.client_kill_filter(_type="normal", skipme=True)
    assert [e["seq"] for e in store.commit("thr_1", [event()])] == [4]
    assert [e["seq"] for e in store.after("thr_1", 0)] == [1, 2, 3, 4]
    admin.close()
    store.close()


def test_old_events_are_trimmed_by_age_while_commits_go_on(shared_redis_server):
    """経過秒の上限を過ぎたイベントは、明示の ``trim`` を呼ばなくても、コミットを続けるうちに捨てられる
    (年齢の確認は ``seq`` が 32 の倍数をまたぐコミットで行う)。読み取りには、捨てる前から出ない。"""
    from tests.store.conftest import FakeClock

    clock = FakeClock()
    store = RedisStore(
        connect(shared_redis_server.url, TEST_REDIS),
        LogLimits(max_events=None, max_bytes=None, max_age_s=60),
        Keys(f"a{uuid.uuid4().hex[:8]}"),
        clock=clock,
    )
    store.create_thread(sample_thread())
    store.commit("thr_1", [event() for _ in range(10)])
    clock.advance(120)
    store.commit("thr_1", [event()])
    assert [e["seq"] for e in store.after("thr_1", 0)] == [11], "expired events are not replayed"
    for _ in range(30):
        store.commit("thr_1", [event()])
    assert int(store.client.xlen(store._k("thr_1", "events"))) == 31, "the commit that passed seq 32 trimmed them"
    store.close()


def test_a_caller_interrupted_while_queued_leaves_the_queue(shared_redis_server):
    """列で待っている呼び出しが止められると (シグナルからの例外。eventlet のタイムアウトや kill と同じ)、列から抜けて
    何も書かれない。リーダーの分と、その後のコミットはふつうに書かれる。"""
    import signal

    store = _store(shared_redis_server.url, f"i{uuid.uuid4().hex[:8]}")
    store.create_thread(sample_thread("thr_1"))
    store.create_thread(sample_thread("thr_2"))
    seen: list[int] = []

    def interrupt(signum, frame) -> None:
        """列に並んでいれば止める。まだなら少し後にもう一度見る。"""
        if len(store._group._queue) == 1:
            seen.append(1)
            raise TimeoutError("interrupted while queued")
        signal.setitimer(signal.ITIMER_REAL, 0.05)

    previous = signal.signal(signal.SIGALRM, interrupt)
    leader_result: list[int] = []
    store._commit_lock.acquire()
    try:
        leader = threading.Thread(
            target=lambda: leader_result.extend(e["seq"] for e in store.commit("thr_1", [event()]))
        )
        leader.start()
        _wait_until(lambda: store._group._leading)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(TimeoutError):
            store.commit("thr_2", [event()])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        store._commit_lock.release()
    leader.join(30)
    assert seen == [1] and store._group._queue == []
    assert not store._group._leading, "nobody is left holding the leader's role"
    assert leader_result == [1]
    assert store.after("thr_2", 0) == [], "the interrupted caller's events were not written"
    assert [e["seq"] for e in store.commit("thr_2", [event()])] == [1]
    store.close()


def test_a_designated_leader_that_is_stopped_hands_over(shared_redis_server):
    """次のリーダーを任された呼び出しが、起きる前に止められても、リーダーの役は列の次の者に渡り、その者の分は
    書かれる (誰も書かなくなってストアが止まることはない)。"""
    from llm_router.store.base import CommitItem
    from llm_router.store.redis_pipeline import Waiter

    store = _store(shared_redis_server.url, f"h{uuid.uuid4().hex[:8]}")
    store.create_thread(sample_thread("thr_1"))
    queue = store._group
    stopped = Waiter([CommitItem("thr_1", [event()])])
    item = CommitItem("thr_1", [event(n=2)])
    waiting = Waiter([item])
    with queue._lock:
        queue._leading = True
        stopped.lead = True  # 前のリーダーが任した (列からはもう出ている)
        queue._queue.append(waiting)

    def wait_and_lead() -> None:
        """列で待つ呼び出しと同じ: 起こされ、任されていればリーダーとして書く。"""
        waiting.gate.acquire()
        if waiting.lead:
            queue._lead(waiting.items)

    follower = threading.Thread(target=wait_and_lead, daemon=True)
    follower.start()
    queue._abandon(stopped)
    follower.join(10)
    assert item.error is None and [e["seq"] for e in item.result] == [1]
    assert not queue._leading and queue._queue == []
    assert [e["seq"] for e in store.commit("thr_1", [event()])] == [2]
    store.close()


def test_lease_renewals_go_in_one_round_trip(shared_redis_server):
    """更新係の 1 回分 (持っているリース全部) は 1 回の往復で延びる。結果はリースごと: 自分のもので、ランが
    終わっていなければ真。スクリプトのキャッシュが消えていても延ばせる。"""
    store = _store(shared_redis_server.url, f"w{uuid.uuid4().hex[:8]}")
    for t in (1, 2, 3):
        store.create_thread(sample_thread(f"thr_{t}"))
        store.commit(f"thr_{t}", [event("run_started")], run_started="run_1")
    assert store.acquire_run_lease("thr_1", "run_1", "proc-a", 10)
    assert store.acquire_run_lease("thr_2", "run_1", "proc-a", 10)
    assert store.acquire_run_lease("thr_3", "run_1", "proc-b", 10)
    store.commit("thr_2", [event("run_error")], run_ended="run_1")  # 終わりの記録でリースが外れる
    before = store.commit_round_trips
    runs = [("thr_1", "run_1"), ("thr_2", "run_1"), ("thr_3", "run_1")]
    assert store.renew_run_leases(runs, "proc-a", 10) == [True, False, False]
    assert store.commit_round_trips - before == 1
    assert store.open_run("thr_1").lease_expires_at is not None
    assert store.open_run("thr_3").lease_owner == "proc-b", "another owner's lease is untouched"
    admin = connect(shared_redis_server.url, TEST_REDIS)
    admin.script_flush()
    assert store.renew_run_leases([("thr_1", "run_1")], "proc-a", 10) == [True]
    assert store.renew_run_leases([], "proc-a", 10) == []
    admin.close()
    store.close()
