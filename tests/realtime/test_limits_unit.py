"""主体ごとの上限 (プロセス内の Flask-SocketIO の test_client、threading モード、demo プロバイダ)。

- ``server.max_threads_per_principal``: 上限に達した主体の新しい ``start`` は、ソケットもランも無い最古の
  スレッドを消して通す。どのスレッドも使われていれば ``limit_reached`` で断り、何も変えない。
- ``server.max_active_runs_per_principal``: 同時のランが上限の主体の ``user_message`` は ``limit_reached``。
  ランが終われば次は通る。ランはクライアント側ツールの答えを待たせて、確実に動いたままにする。
"""

from __future__ import annotations

import pytest

from llm_router.config.settings import load_settings
from llm_router.server import create_app
from tests.realtime.harness import wait_until

NS = "/agent"
TOOL = {"name": "get_locale", "description": "ブラウザのロケール", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture
def app_and_socketio():
    """スレッド 2 つ・同時のラン 1 つが上限の、キー無し (demo) のアプリ。"""
    settings = load_settings(
        [
            "server.async_mode=threading",
            "store.backend=memory",
            "server.max_threads_per_principal=2",
            "server.max_active_runs_per_principal=1",
            "providers.demo.stream_delay_s=0",
        ],
        env_file=None,
        environ={},
    )
    app, socketio = create_app(settings)
    yield app, socketio
    app.extensions["llm_router"].registry.shutdown(2)


def _call(client, event, payload):
    """ack を待って返す。"""
    return client.emit(event, payload, namespace=NS, callback=True)


class Received:
    """test_client が受け取ったイベントを貯めて探す。"""

    def __init__(self, client) -> None:
        """クライアントを受け取る。"""
        self.client = client
        self.events: list[dict] = []

    def find(self, type_: str, run_id: str) -> dict | None:
        """届いた分を取り込み、``run_id`` の ``type_`` のイベントを返す (無ければ ``None``)。"""
        for item in self.client.get_received(NS):
            self.events.append(item["args"][0] if item["args"] else {})
        return next((e for e in self.events if e.get("type") == type_ and e.get("run_id") == run_id), None)


def test_thread_cap_evicts_the_oldest_idle_thread_or_refuses_with_limit_reached(app_and_socketio):
    """上限 2: 使われている 2 つがあれば 3 つ目は limit_reached。ソケットが離れたスレッドは最古から消して通す。"""
    app, socketio = app_and_socketio
    registry = app.extensions["llm_router"].registry
    a = socketio.test_client(app, namespace=NS)
    assert _call(a, "start", {"thread_id": "old-1"})["ok"]
    assert _call(a, "start", {"thread_id": "old-2"})["ok"]
    refused = _call(a, "start", {"thread_id": "new-3"})
    assert refused["ok"] is False and refused["error"]["code"] == "limit_reached"
    assert "max_threads_per_principal" in refused["error"]["message"]
    assert "new-3" not in registry._threads
    # 既にあるスレッドへの start は数に入らない
    assert _call(a, "start", {"thread_id": "old-1"})["ok"]
    a.disconnect(namespace=NS)
    b = socketio.test_client(app, namespace=NS)
    assert _call(b, "start", {"thread_id": "old-2"})["ok"]  # old-2 は再び使われている。old-1 は最古の空き
    assert _call(b, "start", {"thread_id": "new-3"})["ok"]
    assert set(registry._threads) == {"old-2", "new-3"}
    b.disconnect(namespace=NS)


def test_active_run_cap_refuses_with_limit_reached_until_a_run_ends(app_and_socketio):
    """上限 1: 1 つ目のランがツールの答えを待つ間、別スレッドの user_message は limit_reached。終われば通る。"""
    app, socketio = app_and_socketio
    client = socketio.test_client(app, namespace=NS)
    seen = Received(client)
    assert _call(client, "start", {"thread_id": "t-a", "tools": [TOOL]})["ok"]
    assert _call(client, "start", {"thread_id": "t-b"})["ok"]
    first = _call(client, "user_message", {"thread_id": "t-a", "content": "get_locale を使って"})
    ready = wait_until(lambda: seen.find("tool_call_ready", first["run_id"]), timeout=10)
    refused = _call(client, "user_message", {"thread_id": "t-b", "content": "こんにちは"})
    assert refused["ok"] is False and refused["error"]["code"] == "limit_reached"
    assert "max_active_runs_per_principal" in refused["error"]["message"]
    reply = {"thread_id": "t-a", "tool_call_id": ready["tool_call_id"], "result": "ja-JP"}
    assert _call(client, "tool_result", reply) == {"ok": True}
    wait_until(lambda: seen.find("run_finished", first["run_id"]), timeout=10)
    second = _call(client, "user_message", {"thread_id": "t-b", "content": "こんにちは"})
    assert second["ok"], second
    wait_until(lambda: seen.find("run_finished", second["run_id"]), timeout=10)
    client.disconnect(namespace=NS)


def test_thread_cap_of_one_keeps_counting_after_an_eviction():
    """上限 1: 空いた最古を消して作った後も数え続ける (消した直後の 3 つ目の start は limit_reached)。"""
    settings = load_settings(
        ["server.async_mode=threading", "store.backend=memory", "server.max_threads_per_principal=1"],
        env_file=None,
        environ={},
    )
    app, socketio = create_app(settings)
    registry = app.extensions["llm_router"].registry
    first = socketio.test_client(app, namespace=NS)
    assert _call(first, "start", {"thread_id": "one"})["ok"]
    first.disconnect(namespace=NS)
    second = socketio.test_client(app, namespace=NS)
    assert _call(second, "start", {"thread_id": "two"})["ok"]
    assert set(registry._threads) == {"two"}
    refused = _call(second, "start", {"thread_id": "three"})
    assert refused["ok"] is False and refused["error"]["code"] == "limit_reached"
    assert set(registry._threads) == {"two"}
    second.disconnect(namespace=NS)
    registry.shutdown(1)
