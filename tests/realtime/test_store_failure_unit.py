"""ストアが書き込みを拒んだとき (プロセス内のアプリ、threading モード、demo プロバイダ、本物の sqlite ファイル)。

書き込みの拒否は SQLite 自身の ``PRAGMA query_only`` で起こす (読み取り専用のファイルと同じ
``attempt to write a readonly database``)。確かめること:

- 途中のランは ``run_error`` ``store_unavailable`` で終わる (記録できないので ``seq: null`` の通知)。
- 拒んでいる間、新しいランは ack の ``store_unavailable`` で断られる。
- 書けるようになると、最初にそのランの終わりが記録され (ログにちょうど 1 回、``seq`` は欠けない)、完了した
  ステップの無いランのユーザーメッセージは履歴から外れ、次のランは前に受け付けた履歴の上で動く。
- ファイルは壊れない。
"""

from __future__ import annotations

import sqlite3

import pytest

from llm_router.config.settings import load_settings
from llm_router.server import create_app
from tests.realtime.harness import wait_until

NS = "/agent"
TOOL = {"name": "get_locale", "description": "ブラウザのロケール", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture
def app_and_store(tmp_path):
    """sqlite のストアを一時フォルダに置いたアプリと、そのファイルのパス。"""
    path = tmp_path / "store.sqlite3"
    settings = load_settings(
        ["server.async_mode=threading", f"store.path={path}", "providers.demo.stream_delay_s=0"],
        env_file=None,
        environ={},
    )
    app, socketio = create_app(settings)
    yield app, socketio, path
    registry = app.extensions["llm_router"].registry
    registry.shutdown(2)
    registry.close()


def _call(client, event, payload):
    """ack を待って返す。"""
    return client.emit(event, payload, namespace=NS, callback=True)


def _received(client, events):
    """届いた分をリストに足して返す。"""
    for item in client.get_received(NS):
        events.append(item["args"][0] if item["args"] else {})
    return events


def _refuse_writes(store, on: bool) -> None:
    """SQLite にこの接続の書き込みを拒ませる (または戻す)。"""
    with store._lock:
        store._conn.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


def test_a_refused_write_ends_the_run_with_store_unavailable_and_leaves_nothing_half_written(app_and_store):
    """途中で書けなくなったラン: store_unavailable で終わり、新しいランは断られ、戻れば履歴は前のまま続く。"""
    app, socketio, path = app_and_store
    registry = app.extensions["llm_router"].registry
    store = registry.store
    client = socketio.test_client(app, namespace=NS)
    events: list[dict] = []
    assert _call(client, "start", {"thread_id": "sf-1", "tools": [TOOL]})["ok"]
    first = _call(client, "user_message", {"thread_id": "sf-1", "content": "get_locale を使って"})
    ready = wait_until(
        lambda: next((e for e in _received(client, events) if e.get("type") == "tool_call_ready"), None), timeout=10
    )
    _refuse_writes(store, True)
    try:
        answered = _call(
            client, "tool_result", {"thread_id": "sf-1", "tool_call_id": ready["tool_call_id"], "result": "ja"}
        )
        assert answered["ok"] is False and answered["error"]["code"] == "store_unavailable", answered
        end = wait_until(
            lambda: next((e for e in _received(client, events) if e.get("type") == "run_error"), None), timeout=10
        )
        assert end["run_id"] == first["run_id"] and end["error"]["code"] == "store_unavailable", end
        assert end["seq"] is None and end["rolled_back"] is True
        refused = _call(client, "user_message", {"thread_id": "sf-1", "content": "もう一度"})
        assert refused["ok"] is False and refused["error"]["code"] == "store_unavailable", refused
    finally:
        _refuse_writes(store, False)

    second = _call(client, "user_message", {"thread_id": "sf-1", "content": "こんにちは"})
    assert second["ok"], second
    wait_until(lambda: any(e.get("type") == "run_finished" for e in _received(client, events)), timeout=10)
    log = store.after("sf-1", 0)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    ends = [e for e in log if e["run_id"] == first["run_id"] and e["type"] in ("run_error", "run_finished")]
    assert len(ends) == 1 and ends[0]["error"]["code"] == "store_unavailable" and ends[0]["rolled_back"] is True
    history = store.load_thread("sf-1").history
    assert [e.run_id for e in history] == [second["run_id"]] * 2, "the failed run's user message is rolled back"
    assert history[0].message.text() == "こんにちは"
    assert store.active_runs() == []
    client.disconnect(namespace=NS)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
