"""ストリームの追従: 別のプロセスがストア (RedisStore.commit) で書いたイベントが、抜けも重複も無く seq 順に届く。Redis の再起動の後も続く。"""

from __future__ import annotations

import threading
import time

import pytest

from llm_router.cluster.follower import StreamFollower
from tests.cluster.conftest import new_thread


class Inbox:
    """届いたイベントをスレッドごとに集め、条件を待てるようにする。"""

    def __init__(self) -> None:
        """空の受け箱。"""
        self.events: dict[str, list[dict]] = {}
        self.cond = threading.Condition()

    def deliver(self, thread_id: str, events: list[dict]) -> None:
        """StreamFollower から呼ばれる。"""
        with self.cond:
            self.events.setdefault(thread_id, []).extend(events)
            self.cond.notify_all()

    def seqs(self, thread_id: str) -> list[int]:
        """届いた seq の列。"""
        with self.cond:
            return [e["seq"] for e in self.events.get(thread_id, [])]

    def wait_count(self, thread_id: str, n: int, timeout: float = 10.0) -> None:
        """``n`` 件届くまで待つ。"""
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.events.get(thread_id, [])) >= n, timeout)
        assert ok, f"only {self.seqs(thread_id)} arrived"


@pytest.fixture
def follower(make_client, keys):
    """別の接続で追う StreamFollower と、その受け箱。"""
    inbox = Inbox()
    f = StreamFollower(make_client(socket_timeout_s=10), "proc-b", inbox.deliver, block_s=2.0, keys=keys)
    f.start()
    try:
        yield f, inbox
    finally:
        f.stop()


def test_events_written_elsewhere_arrive_in_seq_order_without_gaps(follower, store):
    """別の接続 (持ち主の代わり) が書いたイベントが、見始めた seq の後から順に、中身ごと届く。"""
    f, inbox = follower
    new_thread(store, "t")
    store.commit("t", [{"type": "early", "i": i} for i in range(5)])
    f.watch("t", 2)  # 2 まで見た状態からの再開
    for i in range(200):
        store.commit("t", [{"type": "text_delta", "delta": f"差分{i}"}])
    inbox.wait_count("t", 203)
    assert inbox.seqs("t") == list(range(3, 206))
    assert inbox.events["t"][0]["type"] == "early" and inbox.events["t"][-1]["delta"] == "差分199"
    assert f.position("t") == 205


def test_watching_a_new_thread_wakes_the_waiting_read(follower, store):
    """長い XREAD BLOCK の途中で見始めたスレッドも、その待ちの終わりを待たずに届く。"""
    f, inbox = follower
    new_thread(store, "first")
    new_thread(store, "second")
    f.watch("first", 0)
    store.commit("first", [{"type": "x"}])
    inbox.wait_count("first", 1)
    started = time.monotonic()
    f.watch("second", 0)
    store.commit("second", [{"type": "y"}])
    inbox.wait_count("second", 1, timeout=1.5)  # block_s (2 s) を待たずに届く
    assert time.monotonic() - started < 1.5
    f.unwatch("first")
    store.commit("first", [{"type": "not delivered"}])
    store.commit("second", [{"type": "z"}])
    inbox.wait_count("second", 2)
    assert inbox.seqs("first") == [1]


def test_the_follower_resumes_after_a_redis_restart(follower, redis_server, store):
    """Redis が止まって戻っても、同じ StreamFollower がまた届け始める。"""
    f, inbox = follower
    new_thread(store, "t")
    f.watch("t", 0)
    store.commit("t", [{"type": "before"}])
    inbox.wait_count("t", 1)
    redis_server.restart()  # 中身は空になる (永続化なし)
    f.unwatch("t")
    f.watch("t2", 0)
    new_thread(store, "t2")
    store.commit("t2", [{"type": "after"}])
    inbox.wait_count("t2", 1, timeout=15)
    assert inbox.events["t2"][0]["type"] == "after"


def test_many_threads_watched_at_once_wake_the_follower_once_and_are_all_followed(make_client, keys, store, client):
    """同時に 40 本のスレッドを見始めても、起こし (``XADD``) は追う側が読み直すまでに 1 回だけで、
    40 本のどれに書かれたイベントも届く。"""
    inbox = Inbox()
    f = StreamFollower(make_client(socket_timeout_s=10), "proc-b", inbox.deliver, block_s=2.0, keys=keys)
    names = [f"burst-{i}" for i in range(40)]
    for name in names:
        new_thread(store, name)
    try:
        for name in names:  # 追う側はまだ動いていない: 読み直しは起きない
            f.watch(name, 0)
        assert client.xlen(keys.wake("proc-b")) == 1
        f.start()
        for name in names:
            store.commit(name, [{"type": "text_delta", "delta": name}])
        for name in names:
            inbox.wait_count(name, 1)
        assert all(inbox.events[name][0]["delta"] == name for name in names)
        # 読み直した後に見始めたスレッドは、また起こす
        new_thread(store, "later")
        f.watch("later", 0)
        assert client.xlen(keys.wake("proc-b")) == 2
        store.commit("later", [{"type": "text_delta", "delta": "later"}])
        inbox.wait_count("later", 1)
    finally:
        f.stop()
