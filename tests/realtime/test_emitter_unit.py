"""``ThreadEmitter`` の単体テスト: seq の付与 (ストアのログ)、ルームへの送信、再開の再送と警告 (偽の SocketIO と memory のストアで)。"""

from __future__ import annotations

from typing import Any

from llm_router.core.schemas.thread_record import StoredThread
from llm_router.realtime.emitter import ThreadEmitter, room_name
from llm_router.store.base import LogLimits
from llm_router.store.memory import MemoryStore


def memory_store(thread_id: str = "t1", max_events: int = 100) -> MemoryStore:
    """スレッドを 1 つ作った memory のストア。"""
    store = MemoryStore(LogLimits(max_events=max_events, max_age_s=3600))
    store.create_thread(StoredThread(thread_id=thread_id, owner="alice"))
    return store


class FakeServer:
    """``enter_room`` / ``leave_room`` を記録する偽の python-socketio サーバー。"""

    def __init__(self, sent: list[tuple[str, Any, str]]) -> None:
        """送信の記録先を共有する。"""
        self.sent = sent

    def enter_room(self, sid: str, room: str, namespace: str) -> None:
        """ルームへの参加を記録する。"""
        self.sent.append(("enter_room", sid, room))

    def leave_room(self, sid: str, room: str, namespace: str) -> None:
        """ルームからの退出を記録する。"""
        self.sent.append(("leave_room", sid, room))


class FakeSocketIO:
    """``emit`` と ``server`` だけを持つ偽の Flask-SocketIO。送った順に記録する。"""

    def __init__(self) -> None:
        """空の記録で作る。"""
        self.sent: list[tuple[str, Any, str]] = []
        self.server = FakeServer(self.sent)

    def emit(self, event: str, data: Any, to: str, namespace: str) -> None:
        """送信を記録する。"""
        self.sent.append((event, data, to))


def _emitter(max_events: int = 100) -> tuple[ThreadEmitter, FakeSocketIO, list[str | None]]:
    """偽の SocketIO に向けた送出口と、ラン終了の通知の記録。"""
    sio = FakeSocketIO()
    ended: list[str | None] = []
    store = memory_store(max_events=max_events)
    return ThreadEmitter("t1", sio, store, [], [], None, ended.append), sio, ended


def test_emit_stamps_the_envelope_logs_and_sends_to_the_room():
    """封筒 (type / thread_id / run_id / seq / ts) を付け、ログに足し、ルームへ送る。"""
    emitter, sio, ended = _emitter()
    emitter.emit("run_started", "r1", {"model": "demo/scripted", "max_steps": 8})
    emitter.emit("run_finished", "r1", {"finish_reason": "stop", "usage": {}, "text": ""})
    (name, event, to), (_, second, _) = sio.sent
    assert name == "run_started" and to == room_name("t1")
    assert {k: event[k] for k in ("type", "thread_id", "run_id", "seq")} == {
        "type": "run_started",
        "thread_id": "t1",
        "run_id": "r1",
        "seq": 1,
    }
    assert isinstance(event["ts"], float) and event["model"] == "demo/scripted"
    assert second["seq"] == 2 and ended == ["r1"] and emitter.store.bounds("t1").last_seq == 2


def test_attach_replays_after_the_given_seq_to_that_socket_only():
    """再開: ルームに入れてから、seq > N のイベントをそのソケットにだけ送り直す。"""
    emitter, sio, _ = _emitter()
    for _ in range(5):
        emitter.emit("text_delta", "r1", {"message_id": "m", "delta": "x"})
    sio.sent.clear()
    last, warnings = emitter.attach("sid-2", 3)
    assert last == 5 and warnings == []
    assert sio.sent[0] == ("enter_room", "sid-2", room_name("t1"))
    assert [(e["seq"], to) for _, e, to in sio.sent[1:]] == [(4, "sid-2"), (5, "sid-2")]


def test_attach_without_resume_sends_nothing_and_reports_last_seq():
    """resume_after_seq が無ければ、ルームに入るだけで last_seq を返す。"""
    emitter, sio, _ = _emitter()
    emitter.emit("text_delta", "r1", {"message_id": "m", "delta": "x"})
    sio.sent.clear()
    assert emitter.attach("sid-3", None) == (1, [])
    assert sio.sent == [("enter_room", "sid-3", room_name("t1"))]


def test_attach_warns_when_events_were_dropped_or_the_client_is_ahead():
    """捨てられたイベントがあれば、または要求が先を行っていれば、warnings で知らせる。"""
    emitter, sio, _ = _emitter(max_events=3)
    for _ in range(10):
        emitter.emit("text_delta", "r1", {"message_id": "m", "delta": "x"})
    sio.sent.clear()
    last, warnings = emitter.attach("sid-4", 2)
    assert last == 10 and len(warnings) == 1 and "3..7" in warnings[0]
    assert [e["seq"] for _, e, _ in sio.sent[1:]] == [8, 9, 10]
    _, ahead = emitter.attach("sid-5", 99)
    assert len(ahead) == 1 and "ahead" in ahead[0]


class Deferred:
    """``eventlet.spawn_n`` の代わり: 仕掛けられた関数を貯め、テストが「ハブへ戻った」ときに呼ぶ。"""

    def __init__(self) -> None:
        """空で作る。"""
        self.calls: list = []

    def __call__(self, fn) -> None:
        """関数を貯める。"""
        self.calls.append(fn)

    def run(self) -> None:
        """貯めた関数を順に呼ぶ。"""
        calls, self.calls = self.calls, []
        for fn in calls:
            fn()


def _batching_emitter(store) -> tuple[ThreadEmitter, FakeSocketIO, Deferred]:
    """差分をまとめる送出口。"""
    sio, deferred = FakeSocketIO(), Deferred()
    return ThreadEmitter("t1", sio, store, [], [], None, None, deferred), sio, deferred


def test_deltas_are_committed_together_before_they_are_sent_and_other_events_flush_them_first():
    """差分はハブへ戻るまで溜まり (送られず、ストアにも無い)、1 回のコミットの後で順に送られる。
    差分以外のイベントは先に溜まった差分を書き出すので、送る順はいつも seq の順。
    """
    store = memory_store()
    emitter, sio, deferred = _batching_emitter(store)
    for i in range(3):
        emitter.emit("text_delta", "r1", {"message_id": "m", "delta": str(i)})
    assert sio.sent == [] and store.after("t1", 0) == [], "nothing is sent or stored before the commit"
    assert len(deferred.calls) == 1
    deferred.run()
    assert [(e["type"], e["seq"], e["delta"]) for _, e, _ in sio.sent] == [
        ("text_delta", 1, "0"),
        ("text_delta", 2, "1"),
        ("text_delta", 3, "2"),
    ]
    assert [e["seq"] for e in store.after("t1", 0)] == [1, 2, 3]
    emitter.emit("text_delta", "r1", {"message_id": "m", "delta": "x"})
    emitter.emit("text_finished", "r1", {"message_id": "m", "text": "012x"})
    assert [(e["type"], e["seq"]) for _, e, _ in sio.sent[3:]] == [("text_delta", 4), ("text_finished", 5)]
    deferred.run()  # 書き出し済み: 何も増えない
    assert len(sio.sent) == 5


def test_a_refused_batch_is_never_sent_and_the_next_emit_raises(tmp_path):
    """まとまりのコミットを SQLite が拒んだら、その差分は送られず残らず、次の emit が StoreUnavailable を上げる。"""
    import pytest

    from llm_router.store.errors import StoreUnavailable
    from llm_router.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "s.sqlite3")
    store.create_thread(StoredThread(thread_id="t1", owner="alice"))
    emitter, sio, deferred = _batching_emitter(store)
    emitter.emit("text_delta", "r1", {"message_id": "m", "delta": "a"})
    store._conn.execute("PRAGMA query_only = ON")
    deferred.run()
    assert sio.sent == []
    store._conn.execute("PRAGMA query_only = OFF")
    with pytest.raises(StoreUnavailable):
        emitter.emit("text_delta", "r1", {"message_id": "m", "delta": "b"})
    assert store.after("t1", 0) == []
    emitter.emit("run_error", "r1", {"error": {"code": "store_unavailable"}, "usage": {}, "rolled_back": True})
    assert [e["seq"] for _, e, _ in sio.sent] == [1] and store.bounds("t1").last_seq == 1
    store.close()
