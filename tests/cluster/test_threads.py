"""スレッドの記録と履歴: 持ち主の検査、新しい順の一覧とカーソル、全プロセスで共有する上限、削除。"""

from __future__ import annotations

import pytest

from llm_router.cluster.connection import Refused
from llm_router.cluster.leases import RunLeases
from llm_router.cluster.threads import (
    RedisThreadRecords,
)


def _record(thread_id: str, owner: str, updated_at: float, **extra) -> dict:
    """テスト用の記録。"""
    return {"thread_id": thread_id, "owner": owner, "created_at": 1.0, "updated_at": updated_at, **extra}


def test_records_round_trip_with_owner_checks(client, keys):
    """書いた記録がそのまま読め、別の主体には forbidden、無いものは unknown_thread。上書きは持ち主だけ。"""
    store = RedisThreadRecords(client, keys)
    record = _record("t1", "alice", 10.0, title="こんにちは", model="demo/echo", tools=[{"name": "f"}])
    assert store.put(record) is True
    assert store.require("t1", "alice") == record
    with pytest.raises(Refused) as refused:
        store.require("t1", "bob")
    assert refused.value.code == "forbidden"
    with pytest.raises(Refused) as refused:
        store.require("nope", "alice")
    assert refused.value.code == "unknown_thread"
    assert store.put({**record, "title": "新しい題", "updated_at": 11.0}) is False
    assert store.get("t1")["title"] == "新しい題"
    with pytest.raises(Refused) as refused:
        store.put(_record("t1", "bob", 12.0, title="乗っ取り"))
    assert refused.value.code == "forbidden"
    assert store.get("t1")["title"] == "新しい題" and store.get("t1")["owner"] == "alice"


def test_listing_is_newest_first_per_owner_with_a_cursor(client, keys):
    """一覧は自分のスレッドだけを新しい順に返し、カーソルで続きを抜けも重複も無く読める (同時刻も)。"""
    store = RedisThreadRecords(client, keys)
    for i in range(7):
        store.put(_record(f"a{i}", "alice", 100.0 + (i // 2)))  # 2 件ずつ同じ時刻
    store.put(_record("b0", "bob", 500.0))
    store.put(_record("a0", "alice", 200.0))  # 更新すると先頭へ
    seen, cursor = [], None
    while True:
        page = store.list("alice", limit=3, before=cursor)
        seen.extend(t["thread_id"] for t in page.threads)
        if page.next_cursor is None:
            break
        assert "|" not in page.next_cursor  # 不透明なカーソル
        cursor = page.next_cursor
    assert seen[0] == "a0" and sorted(seen) == [f"a{i}" for i in range(7)] and len(seen) == 7
    stamps = [store.get(t)["updated_at"] for t in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert [t["thread_id"] for t in store.list("bob").threads] == ["b0"]
    assert store.list("carol").threads == [] and store.list("carol").next_cursor is None


@pytest.mark.parametrize(
    ("limit", "before", "field"),
    [(0, None, "limit"), (501, None, "limit"), (5, "zzz", "before"), (5, "***", "before"), (5, 7, "before")],
)
def test_bad_list_arguments_name_the_field(client, keys, limit, before, field):
    """不正な limit / before はその名前を含むエラーになる。"""
    with pytest.raises(ValueError, match=field):
        RedisThreadRecords(client, keys).list("alice", limit=limit, before=before)


def test_thread_cap_is_shared_by_two_processes(client, make_client, keys):
    """2 つのクライアント (別プロセスの代わり) から作っても、主体のスレッド数の上限は合計で守られる。"""
    a, b = RedisThreadRecords(client, keys), RedisThreadRecords(make_client(), keys)
    assert a.put(_record("x1", "alice", 1.0), max_threads=3)
    assert b.put(_record("x2", "alice", 2.0), max_threads=3)
    assert a.put(_record("x3", "alice", 3.0), max_threads=3)
    with pytest.raises(Refused) as refused:
        b.put(_record("x4", "alice", 4.0), max_threads=3)
    assert refused.value.code == "limit_reached"
    assert a.get("x4") is None
    assert b.put(_record("x3", "alice", 5.0), max_threads=3) is False  # 既存の更新は上限に数えない
    assert b.put(_record("y1", "bob", 1.0), max_threads=3)  # 別の主体は別に数える


def test_history_append_read_and_replace(client, keys):
    """履歴は順に足され、置き換え (巻き戻し) で丸ごと変わる。"""
    store = RedisThreadRecords(client, keys)
    msgs = [{"role": "user", "content": "質問"}, {"role": "assistant", "content": [{"type": "text", "text": "答え"}]}]
    assert store.append_history("t", *msgs) == 2
    assert store.history("t") == msgs
    store.replace_history("t", msgs[:1])
    assert store.history("t") == msgs[:1]
    store.replace_history("t", [])
    assert store.history("t") == [] and store.history_length("t") == 0


def test_delete_is_refused_during_a_run_and_then_removes_everything(client, keys):
    """削除は実行中のランがあれば断り、終わった後はスレッドのすべてのキーを消す (他のスレッドは残す)。"""
    from llm_router.cluster.event_stream import RedisEventLog

    store, log = RedisThreadRecords(client, keys), RedisEventLog(client, 100, 0, keys)
    leases = RunLeases(client, "proc-a", 5, keys)
    store.put(_record("t", "alice", 1.0))
    store.put(_record("keep", "alice", 2.0))
    store.append_history("t", {"role": "user", "content": "hi"})
    log.append("t", {"type": "x"})
    lease = leases.acquire("t", "run-1")
    with pytest.raises(Refused) as refused:
        store.delete("t", "alice")
    assert refused.value.code == "run_in_progress"
    with pytest.raises(Refused) as refused:
        store.delete("t", "bob")
    assert refused.value.code == "forbidden"
    leases.release(lease)
    assert store.delete("t", "alice") is True
    assert store.get("t") is None and store.history("t") == [] and log.last_seq("t") == 0
    assert sorted(k.decode() for k in client.keys(f"{keys.prefix}:*")) == sorted(
        [keys.thread("keep"), keys.owner_index("alice")]
    )
    assert [t["thread_id"] for t in store.list("alice").threads] == ["keep"]
    assert store.delete("t", "alice") is False


def test_threads_in_use_are_counted_once_across_clients_and_only_idle_ones_are_closed(client, make_client, keys):
    """使用中のスレッドの表: 2 つのクライアント (別プロセスの代わり) が同時に開いても上限を超えない。上限では
    どこにもソケットもランも無い最古のものだけを閉じる (開いたばかりのものは開いたプロセスの在席で守られる)。"""
    import threading

    from llm_router.cluster.threads import OpenThreads

    a = OpenThreads(client, "proc-a", 30, keys)
    b = OpenThreads(make_client(), "proc-b", 30, keys)
    for tid in ("thr_1", "thr_2"):
        client.hset(f"{keys.prefix}:t:{tid}:record", "owner", "alice")
    results: dict[str, bool] = {}
    barrier = threading.Barrier(2)

    def open_one(opener: OpenThreads, tid: str) -> None:
        """合図で同時に開く。"""
        barrier.wait()
        results[tid] = opener.open("alice", tid, 1).allowed

    workers = [
        threading.Thread(target=open_one, args=(a, "thr_1")),
        threading.Thread(target=open_one, args=(b, "thr_2")),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert sorted(results.values()) == [False, True] and a.count("alice") == 1
    winner = next(t for t, ok in results.items() if ok)
    assert a.open("alice", winner, 1).allowed, "opening a thread already in use is not counted again"

    # 開いたプロセスの在席がある間は空きではない。在席が消えてランも無ければ、新しいスレッドに席を譲る
    client.hset(f"{keys.prefix}:t:thr_3:record", "owner", "alice")
    assert not b.open("alice", "thr_3", 1).allowed
    client.delete(f"{keys.prefix}:t:{winner}:present")
    client.hset(f"{keys.prefix}:t:{winner}:record", "active_run", "run_1")
    assert not b.open("alice", "thr_3", 1).allowed, "a thread with an open run is not idle"
    client.hdel(f"{keys.prefix}:t:{winner}:record", "active_run")
    opened = b.open("alice", "thr_3", 1)
    assert opened.allowed and opened.evicted == [winner]
    b.close("alice", ["thr_3"])
    assert b.count("alice") == 1, "a thread with a socket present is not closed by close()"
    b.close("alice", ["thr_3"], force=True)
    assert b.count("alice") == 0
