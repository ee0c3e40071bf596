"""エンドツーエンド: キー無しの demo プロバイダでの起動、切断タイムアウト、サーバー終了時のキャンセル。"""

from __future__ import annotations

import pytest

from tests.realtime.conftest import ASYNC_MODES, assert_contiguous, live_server, run_events, types_of
from tests.realtime.harness import ProtocolClient, ServerProcess, wait_until

LOCATION_TOOL = {"name": "get_location", "description": "現在地", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture(scope="module", params=ASYNC_MODES)
def demo_server(request):
    """API キーの無いサーバー (既定は demo)。切断タイムアウトは 2 秒。"""
    yield from live_server(
        request,
        None,
        ["agent.disconnect_timeout_s=2", "agent.client_tool_timeout_s=30", "server.rate_limit_per_minute=0"],
    )


def test_without_keys_the_demo_provider_runs_the_whole_product(demo_server):
    """キーが無ければ demo/scripted が既定で、テキストとサーバー側ツールのランが動き、ログに告げられる。"""
    client = demo_server.client()
    ack = client.start()
    assert ack["ok"] and ack["model"].startswith("demo/")
    run_id = client.send_message(ack["thread_id"], "12 * (3 + 4) は?")["run_id"]
    end = client.wait_run_end(run_id)
    assert end["type"] == "run_finished"
    events = run_events(client, run_id)
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["name"] == "calculator" and result["result"] == 84
    assert_contiguous(events, first=1)
    assert "demo" in demo_server.process.log_text()


def _probe(client, thread_id):
    """スレッドのランがまだ動いているかを、存在しない tool_call_id の tool_result で調べる (状態は変えない)。"""
    ack = client.call("tool_result", {"thread_id": thread_id, "tool_call_id": "probe", "result": None})
    return ack["error"]["code"]


def test_disconnect_timeout_cancels_a_run_left_without_sockets(demo_server):
    """スレッドのソケットが agent.disconnect_timeout_s の間なければ、ランは disconnect_timeout で止まる。"""
    first = demo_server.client()
    ack = first.start(tools=[LOCATION_TOOL])
    thread_id = ack["thread_id"]
    run_id = first.send_message(thread_id, "get_location を使って")["run_id"]
    first.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id and e["executor"] == "client")
    first.disconnect()
    # 同じ主体の別のソケットから、スレッドに入らずに様子を見る (入ると切断タイムアウトが解除される)
    watcher = demo_server.client()
    assert _probe(watcher, thread_id) == "unknown_tool_call"
    wait_until(lambda: _probe(watcher, thread_id) == "not_awaiting", timeout=15, interval=0.1)
    back = watcher.start(thread_id=thread_id, resume_after_seq=0)
    assert back["ok"]
    end = watcher.wait_run_end(run_id)
    assert end["type"] == "run_cancelled" and end["reason"] == "disconnect_timeout"
    assert_contiguous(watcher.event_payloads(thread_id=thread_id), first=1)


def test_a_reconnect_before_the_timeout_keeps_the_run(demo_server):
    """タイムアウト前に再接続すればランは続き、待っているツール呼び出しに答えられる。"""
    first = demo_server.client()
    ack = first.start(tools=[LOCATION_TOOL])
    thread_id = ack["thread_id"]
    run_id = first.send_message(thread_id, "get_location を使って")["run_id"]
    ready = first.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id and e["executor"] == "client")
    last = first.event_payloads(thread_id=thread_id)[-1]["seq"]
    first.disconnect()
    second = demo_server.client()
    assert second.start(thread_id=thread_id, resume_after_seq=last)["ok"]
    reply = second.call(
        "tool_result", {"thread_id": thread_id, "tool_call_id": ready["tool_call_id"], "result": "京都"}
    )
    assert reply == {"ok": True}
    assert second.wait_run_end(run_id)["type"] == "run_finished"


@pytest.mark.parametrize("async_mode", ASYNC_MODES)
def test_server_shutdown_cancels_running_runs(async_mode):
    """サーバーの終了 (SIGINT) では、実行中のランが reason=shutdown で終わり、プロセスは正常に終わる。"""
    process = ServerProcess(async_mode=async_mode).start()
    client = None
    try:
        client = ProtocolClient(process.url).connect()
        ack = client.start()
        run_id = client.send_message(ack["thread_id"], "デモについて長く説明して")["run_id"]
        client.wait_for("text_delta", lambda e: e["run_id"] == run_id)
        assert process.stop() == 0
        end = client.wait_run_end(run_id, timeout=10)
        assert end["type"] == "run_cancelled" and end["reason"] == "shutdown"
        assert types_of(run_events(client, run_id)).count("run_cancelled") == 1
    finally:
        if client is not None:
            client.disconnect()
        process.close()


def test_gevent_mode_serves_a_run():
    """server.async_mode=gevent も 1 行の設定で選べ、ランが動く。"""
    with ServerProcess(async_mode="gevent") as process:
        with ProtocolClient(process.url) as client:
            ack = client.start()
            run_id = client.send_message(ack["thread_id"], "こんにちは")["run_id"]
            assert client.wait_run_end(run_id)["type"] == "run_finished"
            assert_contiguous(client.event_payloads(thread_id=ack["thread_id"]), first=1)
