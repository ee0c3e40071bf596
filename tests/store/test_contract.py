"""両方のバックエンド (memory と sqlite) が同じ約束を守ること: 同じテストを両方に通す。"""

from __future__ import annotations

import pytest

from llm_router.core.schemas.common import Message
from llm_router.core.schemas.thread_record import HistoryEntry
from llm_router.store.base import EventLog, HistoryChange, LogLimits, Store, ThreadStore
from llm_router.store.errors import ThreadExists, UnknownThread
from tests.store.conftest import FakeClock, entry, event, sample_thread


def test_backends_satisfy_the_protocols(make_store):
    """バックエンドは継ぎ目の型 (ThreadStore / EventLog / Store) を満たす。"""
    store = make_store()
    assert isinstance(store, ThreadStore) and isinstance(store, EventLog) and isinstance(store, Store)
    assert store.backend == make_store.backend


def test_create_load_and_owner(make_store):
    """作ったスレッドが設定ごと読め、同じ ID は二度作れない。"""
    store = make_store()
    thread = sample_thread()
    thread.history = [entry("hello")]
    store.create_thread(thread)
    loaded = store.load_thread("thr_1")
    assert loaded == thread
    assert store.thread_owner("thr_1") == "alice"
    assert store.load_thread("nope") is None and store.thread_owner("nope") is None
    with pytest.raises(ThreadExists):
        store.create_thread(sample_thread())
    loaded.history.clear()
    assert len(store.load_thread("thr_1").history) == 1, "the caller's copy must not alias the store"


def test_seq_is_contiguous_and_assigned_by_the_log(make_store):
    """``seq`` は 1 から欠けずに増え、呼ぶ側の dict に入る。"""
    store = make_store()
    store.create_thread(sample_thread())
    first = store.append("thr_1", [event("run_started"), event()])
    second = store.append("thr_1", [event(text="a")])
    assert [e["seq"] for e in first + second] == [1, 2, 3]
    assert [e["seq"] for e in store.after("thr_1", 0)] == [1, 2, 3]
    assert store.after("thr_1", 1)[1] == {**event(text="a"), "seq": 3}
    assert store.after("thr_1", 1, limit=1)[0]["seq"] == 2
    assert store.after("thr_1", 3) == []
    assert store.bounds("thr_1").last_seq == 3 and store.bounds("thr_1").first_seq == 1


def test_unknown_thread_is_refused(make_store):
    """無いスレッドへの追加やリースは UnknownThread。"""
    store = make_store()
    with pytest.raises(UnknownThread):
        store.append("ghost", [event()])
    with pytest.raises(UnknownThread):
        store.acquire_run_lease("ghost", "run_1", "proc", 10)
    with pytest.raises(UnknownThread):
        store.update_thread("ghost", title="x")


def test_trim_by_count_keeps_seq_counting(make_store):
    """件数の上限で古いものを捨てても ``seq`` は減らず、再利用されない。"""
    store = make_store(limits=LogLimits(max_events=3, max_bytes=None, max_age_s=None))
    store.create_thread(sample_thread())
    for i in range(5):
        store.append("thr_1", [event(text=str(i))])
    assert [e["seq"] for e in store.after("thr_1", 0)] == [3, 4, 5]
    bounds = store.bounds("thr_1")
    assert (bounds.first_seq, bounds.last_seq) == (3, 5)
    assert bounds.missing_before(1) and not bounds.missing_before(2)
    assert store.append("thr_1", [event()])[0]["seq"] == 6


def test_trim_by_bytes_keeps_the_newest_event(make_store):
    """バイト数の上限: 先頭から捨て、上限より大きい 1 件でも最新の 1 件は残す。"""
    store = make_store(limits=LogLimits(max_events=None, max_bytes=400, max_age_s=None))
    store.create_thread(sample_thread())
    for i in range(6):
        store.append("thr_1", [event(text="x" * 100, i=i)])
    kept = store.after("thr_1", 0)
    assert 1 <= len(kept) <= 3 and kept[-1]["seq"] == 6
    assert [e["seq"] for e in kept] == list(range(kept[0]["seq"], 7))
    store.append("thr_1", [event(text="y" * 5000)])
    assert [e["seq"] for e in store.after("thr_1", 0)] == [7]


def test_trim_by_wall_clock_age(make_store):
    """経過秒の上限は壁時計で数え、読むときにも古いものは出さない (最新の 1 件は残す)。"""
    clock = FakeClock()
    store = make_store(limits=LogLimits(max_events=None, max_bytes=None, max_age_s=60), clock=clock)
    store.create_thread(sample_thread())
    store.append("thr_1", [event(), event()])
    clock.advance(30)
    store.append("thr_1", [event()])
    clock.advance(40)
    assert [e["seq"] for e in store.after("thr_1", 0)] == [3], "events older than 60 s are not replayed"
    assert store.bounds("thr_1").first_seq == 3
    assert store.trim("thr_1") == 2
    clock.advance(1000)
    assert [e["seq"] for e in store.after("thr_1", 0)] == [3], "the newest event always stays"
    assert store.append("thr_1", [event()])[0]["seq"] == 4


def test_history_changes_commit_with_events(make_store):
    """履歴の追加・切り詰めと題名・ランの記録は、イベントと同じ呼び出しで入る。"""
    clock = FakeClock()
    store = make_store(clock=clock)
    store.create_thread(sample_thread(created_at=clock.now))
    clock.advance(5)
    store.commit(
        "thr_1",
        [event("run_started")],
        history=HistoryChange(append=[entry("q1", "run_1")]),
        title="q1",
        run_started="run_1",
    )
    assert store.active_runs()[0].run_id == "run_1"
    store.commit(
        "thr_1",
        [event("run_finished")],
        history=HistoryChange(append=[entry("a1", "run_1", role="assistant")]),
        run_ended="run_1",
    )
    thread = store.load_thread("thr_1")
    assert [e.message_id for e in thread.history] == ["msg_q1", "msg_a1"]
    assert thread.title == "q1" and thread.updated_at == clock.now
    assert thread.history[1].message.tool_calls[0].arguments == {"x": 1}
    assert store.active_runs() == []
    # 失敗したランの巻き戻し: ユーザーメッセージごと消す
    store.commit(
        "thr_1",
        [event("run_started", "run_2")],
        history=HistoryChange(append=[entry("q2", "run_2")]),
        run_started="run_2",
    )
    store.commit("thr_1", [event("run_error", "run_2")], history=HistoryChange(truncate_to=2), run_ended="run_2")
    assert [e.message_id for e in store.load_thread("thr_1").history] == ["msg_q1", "msg_a1"]
    assert store.has_run("thr_1", "run_2") and not store.has_run("thr_1", "run_9")


def test_a_bad_element_changes_nothing(make_store):
    """1 つでも悪い要素 (JSON にできないイベント、範囲外の切り詰め) があれば、何も書かれない。"""
    store = make_store()
    store.create_thread(sample_thread())
    store.append("thr_1", [event()])
    bad_events = [event(), event(), event(bad={1, 2})]
    with pytest.raises(TypeError):
        store.commit("thr_1", bad_events, history=HistoryChange(append=[entry("x")]))
    with pytest.raises(ValueError, match="truncate_to"):
        store.commit("thr_1", [event()], history=HistoryChange(truncate_to=5))
    assert store.bounds("thr_1").last_seq == 1
    assert [e["seq"] for e in store.after("thr_1", 0)] == [1]
    assert store.load_thread("thr_1").history == []
    assert "seq" not in bad_events[0]
    assert store.append("thr_1", [event()])[0]["seq"] == 2


def test_list_threads_newest_first_with_cursor_and_isolation(make_store):
    """所有者ごとに ``updated_at`` の新しい順、カーソルで続きを取り、他人のスレッドは出ない。"""
    clock = FakeClock()
    store = make_store(clock=clock)
    for i in range(7):
        store.create_thread(sample_thread(f"thr_{i}", "alice", created_at=clock.now + i))
    store.create_thread(sample_thread("thr_bob", "bob", created_at=clock.now + 100))
    clock.advance(50)
    store.update_thread("thr_2", title="renamed")  # thr_2 が最新になる
    page = store.list_threads("alice", limit=3)
    assert [t.thread_id for t in page.threads] == ["thr_2", "thr_6", "thr_5"]
    assert page.threads[0].title == "renamed" and page.threads[0].model == "openai/gpt-4.1-mini"
    seen = [t.thread_id for t in page.threads]
    while page.next_cursor:
        page = store.list_threads("alice", limit=3, before=page.next_cursor)
        seen += [t.thread_id for t in page.threads]
    assert seen == ["thr_2", "thr_6", "thr_5", "thr_4", "thr_3", "thr_1", "thr_0"]
    assert [t.thread_id for t in store.list_threads("bob").threads] == ["thr_bob"]
    assert store.list_threads("carol").threads == []
    summary = store.list_threads("bob").threads[0].to_dict()
    assert set(summary) == {"thread_id", "title", "model", "created_at", "updated_at", "last_seq", "active_run_id"}


def test_list_threads_reports_last_seq_and_active_run(make_store):
    """一覧の ``last_seq`` と ``active_run_id`` はログとランの記録から。"""
    store = make_store()
    store.create_thread(sample_thread())
    store.commit("thr_1", [event("run_started"), event()], run_started="run_1")
    summary = store.list_threads("alice").threads[0]
    assert (summary.last_seq, summary.active_run_id) == (2, "run_1")
    store.mark_run_ended("thr_1", "run_1")
    assert store.list_threads("alice").threads[0].active_run_id is None


@pytest.mark.parametrize(("limit", "before"), [(0, None), (201, None), ("5", None), (10, "garbage!"), (10, "WzEsMl0")])
def test_list_threads_bad_arguments_name_the_field(make_store, limit, before):
    """不正な ``limit`` / ``before`` は欄を名指しした ValueError。"""
    store = make_store()
    with pytest.raises(ValueError, match="limit" if before is None else "before"):
        store.list_threads("alice", limit=limit, before=before)


def test_update_thread_config(make_store):
    """設定 (モデル・システムプロンプト・ツール・実行設定) の更新は履歴を変えない。"""
    store = make_store()
    thread = sample_thread()
    thread.history = [entry("q")]
    store.create_thread(thread)
    thread.model, thread.settings, thread.history = "gemini/gemini-2.5-flash", {"temperature": 0.5}, []
    store.update_thread("thr_1", config=thread)
    loaded = store.load_thread("thr_1")
    assert loaded.model == "gemini/gemini-2.5-flash" and loaded.settings == {"temperature": 0.5}
    assert len(loaded.history) == 1


def test_delete_leaves_nothing_and_the_id_starts_fresh(make_store):
    """削除の後はスレッド・履歴・イベント・ランが無く、同じ ID は空のスレッドとして作り直せる (seq は 1 から)。"""
    store = make_store()
    store.create_thread(sample_thread())
    store.commit("thr_1", [event("run_started")], history=HistoryChange(append=[entry("q")]), run_started="run_1")
    assert store.acquire_run_lease("thr_1", "run_1", "proc", 10)
    assert store.delete_thread("thr_1") is True
    assert store.delete_thread("thr_1") is False
    assert store.load_thread("thr_1") is None
    assert store.active_runs() == [] and not store.has_run("thr_1", "run_1")
    assert store.list_threads("alice").threads == []
    store.create_thread(sample_thread())
    assert store.load_thread("thr_1").history == []
    assert store.after("thr_1", 0) == []
    assert store.append("thr_1", [event()])[0]["seq"] == 1


def test_leases_allow_one_run_per_thread(make_store):
    """リースは 1 スレッドに 1 ラン: 期限内は他を断り、期限切れか手放した後は取れる。"""
    clock = FakeClock()
    store = make_store(clock=clock)
    store.create_thread(sample_thread())
    store.create_thread(sample_thread("thr_2"))
    assert store.acquire_run_lease("thr_1", "run_1", "proc_a", 10)
    assert store.acquire_run_lease("thr_1", "run_1", "proc_a", 10), "re-acquiring one's own lease is fine"
    assert not store.acquire_run_lease("thr_1", "run_2", "proc_b", 10)
    assert store.acquire_run_lease("thr_2", "run_x", "proc_b", 10), "leases are per thread"
    clock.advance(8)
    assert store.renew_run_lease("thr_1", "run_1", "proc_a", 10)
    clock.advance(8)
    assert not store.acquire_run_lease("thr_1", "run_2", "proc_b", 10), "renewed lease still holds"
    assert not store.renew_run_lease("thr_1", "run_1", "proc_b", 10), "only the owner renews"
    clock.advance(11)
    assert store.acquire_run_lease("thr_1", "run_2", "proc_b", 10), "an expired lease can be taken over"
    assert not store.renew_run_lease("thr_1", "run_1", "proc_a", 10), "the old owner lost it"
    store.release_run_lease("thr_1", "run_2", "proc_a")  # 他人のものは外さない
    assert not store.acquire_run_lease("thr_1", "run_3", "proc_c", 10)
    store.release_run_lease("thr_1", "run_2", "proc_b")
    assert store.acquire_run_lease("thr_1", "run_3", "proc_c", 10)


def test_active_runs_for_recovery_and_run_end_releases_the_lease(make_store):
    """終わりの記録が無いランは一覧に出る (リースの持ち主と期限つき)。終わりの記録でリースも外れる。"""
    clock = FakeClock()
    store = make_store(clock=clock)
    store.create_thread(sample_thread())
    store.commit("thr_1", [event("run_started")], run_started="run_1")
    store.acquire_run_lease("thr_1", "run_1", "proc_a", 10)
    (run,) = store.active_runs()
    assert (run.thread_id, run.run_id, run.lease_owner, run.lease_expires_at) == (
        "thr_1",
        "run_1",
        "proc_a",
        clock.now + 10,
    )
    store.commit("thr_1", [event("run_error")], run_ended="run_1")
    assert store.active_runs() == []
    assert store.acquire_run_lease("thr_1", "run_2", "proc_b", 10)


def test_history_entries_keep_metadata(make_store):
    """履歴の ``message_id`` / ``run_id`` / ``created_at`` がそのまま戻る (get_history が使う)。"""
    store = make_store()
    store.create_thread(sample_thread())
    item = HistoryEntry(Message(role="assistant", content="途中", interrupted=True), "m9", "run_7", 1_800_000_123.5)
    store.commit("thr_1", history=HistoryChange(append=[item]))
    assert store.load_thread("thr_1").history == [item]


def test_a_title_that_is_not_a_string_is_refused(make_store):
    """文字列でない題名は ``title`` を名指しして断り、何も変えない。"""
    store = make_store()
    store.create_thread(sample_thread())
    with pytest.raises(ValueError, match="title"):
        store.update_thread("thr_1", title=42)
    with pytest.raises(ValueError, match="title"):
        store.commit("thr_1", [event()], title=["x"])
    assert store.load_thread("thr_1").title is None and store.bounds("thr_1").last_seq == 0
