"""``/agent`` 名前空間の速い単体テスト (Flask-SocketIO の test_client、プロセス内、threading モード)。

プロトコル全体は本物のサーバーで確かめる (test_e2e_*.py)。ここでは、クライアントからは起こせない
「予期しない例外 → internal」の変換と、ack の形だけを見る。
"""

from __future__ import annotations

import pytest

from llm_router.config.settings import load_settings
from llm_router.server import create_app


@pytest.fixture
def app_and_socketio():
    """キー無し (demo) の設定で、threading モードのアプリを作る。"""
    settings = load_settings(["server.async_mode=threading", "store.backend=memory"], env_file=None, environ={})
    return create_app(settings)


def test_unexpected_errors_become_internal_without_details(app_and_socketio, monkeypatch):
    """ハンドラの中の予期しない例外は internal になり、メッセージに例外の中身もスタックトレースも出ない。"""
    app, socketio = app_and_socketio
    registry = app.extensions["llm_router"].registry

    def boom(*args, **kwargs):
        """秘密めいた文字列を含む例外を投げる。"""
        raise RuntimeError("sk-secret-value Traceback")

    monkeypatch.setattr(registry, "start", boom)
    client = socketio.test_client(app, namespace="/agent")
    ack = client.emit("start", {}, namespace="/agent", callback=True)
    assert ack == {"ok": False, "error": {"code": "internal", "message": "internal server error"}}
    client.disconnect(namespace="/agent")


def test_start_and_cancel_acks_in_process(app_and_socketio):
    """プロセス内でも start の ack は PROTOCOL.md のキーだけを持ち、cancel は冪等。"""
    app, socketio = app_and_socketio
    client = socketio.test_client(app, namespace="/agent")
    ack = client.emit("start", {"thread_id": "unit-1"}, namespace="/agent", callback=True)
    assert set(ack) == {"ok", "thread_id", "model", "tools", "last_seq", "warnings", "protocol"}
    assert ack["protocol"] == "1.1"
    assert ack["model"].startswith("demo/") and ack["thread_id"] == "unit-1"
    cancel = client.emit("cancel", {"thread_id": "unit-1"}, namespace="/agent", callback=True)
    assert cancel == {"ok": True, "cancelled": False}
    client.disconnect(namespace="/agent")


def test_connection_is_refused_without_a_token_when_tokens_are_set():
    """トークンが設定されていれば、トークン無しの接続は拒否される。"""
    settings = load_settings(
        ["server.async_mode=threading", "store.backend=memory"],
        env_file=None,
        environ={"LLM_ROUTER_API_TOKENS": "unit-token-1234"},
    )
    app, socketio = create_app(settings)
    refused = socketio.test_client(app, namespace="/agent")
    assert not refused.is_connected(namespace="/agent")
    accepted = socketio.test_client(app, namespace="/agent", auth={"token": "unit-token-1234"})
    assert accepted.is_connected(namespace="/agent")
    accepted.disconnect(namespace="/agent")


def test_idle_threads_without_sockets_are_swept_by_the_timer():
    """ソケットもランも無く server.thread_idle_ttl_s を過ぎたスレッドは、start を待たずに見回りのタイマーで消える。"""
    from tests.realtime.harness import wait_until

    settings = load_settings(
        [
            "server.async_mode=threading",
            "store.backend=memory",
            "server.thread_idle_ttl_s=0",
            "server.thread_sweep_interval_s=0.05",
        ],
        env_file=None,
        environ={},
    )
    app, socketio = create_app(settings)
    registry = app.extensions["llm_router"].registry
    first = socketio.test_client(app, namespace="/agent")
    assert first.emit("start", {"thread_id": "idle-1"}, namespace="/agent", callback=True)["ok"]
    assert first.emit("start", {"thread_id": "kept-1"}, namespace="/agent", callback=True)["ok"]
    second = socketio.test_client(app, namespace="/agent")
    assert second.emit("start", {"thread_id": "kept-1"}, namespace="/agent", callback=True)["ok"]
    first.disconnect(namespace="/agent")
    # 以後 start は送らない: 消すのはタイマーだけ
    wait_until(lambda: "idle-1" not in registry._threads, timeout=5, message="idle thread was not swept")
    assert "kept-1" in registry._threads, "a thread with a socket must stay"
    unknown = second.emit("user_message", {"thread_id": "idle-1", "content": "x"}, namespace="/agent", callback=True)
    assert unknown["error"]["code"] == "unknown_thread"
    second.disconnect(namespace="/agent")
    registry.shutdown(1)


def test_ack_strings_are_redacted_like_events(monkeypatch):
    """ack のメッセージ (ProtocolError) と成功の ack の文字列も、秘密の値を *** に伏せる (イベントと同じ関数)。"""
    from llm_router.realtime.protocol_errors import ProtocolError

    key = "sk-unit-ack-SECRET-42424242"
    settings = load_settings(
        ["server.async_mode=threading", "store.backend=memory"], env_file=None, environ={"OPENAI_API_KEY": key}
    )
    app, socketio = create_app(settings)
    registry = app.extensions["llm_router"].registry

    def leaky_start(*args, **kwargs):
        """秘密の値を含むメッセージで断る。"""
        raise ProtocolError("invalid_payload", f"upstream rejected key {key}")

    def leaky_cancel(*args, **kwargs):
        """秘密の値を含む成功の ack。"""
        return {"ok": True, "cancelled": False, "note": [f"key={key}"]}

    monkeypatch.setattr(registry, "start", leaky_start)
    monkeypatch.setattr(registry, "cancel", leaky_cancel)
    client = socketio.test_client(app, namespace="/agent")
    refused = client.emit("start", {}, namespace="/agent", callback=True)
    assert refused["error"]["message"] == "upstream rejected key ***"
    ok = client.emit("cancel", {"thread_id": "t1"}, namespace="/agent", callback=True)
    assert ok["note"] == ["key=***"]
    client.disconnect(namespace="/agent")
