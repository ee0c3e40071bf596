"""エンドツーエンド: 本物のサーバープロセス (eventlet / threading) と本物の python-socketio クライアントで、ランの流れを確かめる。

上流は OpenAI の偽サーバーの規則モード (発話にツール名があればそのツールを呼ぶ、``[stall]`` で止まる、など)。
"""

from __future__ import annotations

from tests.fakes.server import StreamResponse
from tests.realtime.conftest import FAKE_MODEL, assert_contiguous, run_events, thread_events, types_of
from tests.realtime.harness import wait_until

ENVELOPE = ("type", "thread_id", "run_id", "seq", "ts")
LOCATION_TOOL = {
    "type": "function",
    "function": {
        "name": "get_location",
        "description": "ブラウザの現在地",
        "parameters": {"type": "object", "properties": {"precise": {"type": "boolean"}}},
    },
}


def _start(client, **payload):
    """start を送り、成功を確かめて ack を返す。"""
    ack = client.start(**payload)
    assert ack["ok"], ack
    return ack


def _send(client, thread_id, content, **extra):
    """user_message を送り、成功を確かめて run_id を返す。"""
    ack = client.send_message(thread_id, content, **extra)
    assert ack["ok"], ack
    return ack["run_id"]


def test_text_run_emits_every_event_in_order_with_contiguous_seq(client):
    """テキストだけのラン: 全イベントが順に届き、seq は 1 から連続し、封筒がそろっている。"""
    ack = _start(client)
    assert ack["model"] == FAKE_MODEL and ack["last_seq"] == 0 and ack["warnings"] == []
    run_id = _send(client, ack["thread_id"], "こんにちは")
    end = client.wait_run_end(run_id)
    events = run_events(client, run_id)
    assert types_of(events)[:3] == ["run_started", "step_started", "text_started"]
    assert types_of(events)[-3:] == ["text_finished", "step_finished", "run_finished"]
    assert set(types_of(events)[3:-3]) == {"text_delta"}
    assert_contiguous(events, first=1)
    for event in events:
        assert all(key in event for key in ENVELOPE) and event["thread_id"] == ack["thread_id"]
    deltas = "".join(e["delta"] for e in events if e["type"] == "text_delta")
    assert deltas == events[-3]["text"] == end["text"] == "了解しました: こんにちは"
    assert end["finish_reason"] == "stop" and end["usage"]["input_tokens"] > 0
    assert events[0]["model"] == FAKE_MODEL and events[0]["max_steps"] >= 1


def test_client_tool_run_answered_by_the_client(client):
    """クライアント側ツール: tool_call_ready (client) に tool_result で答えると、結果がモデルへ戻って終わる。"""
    ack = _start(client, tools=[LOCATION_TOOL])
    assert {"name": "get_location", "executor": "client"} in ack["tools"]
    run_id = _send(client, ack["thread_id"], "get_location を使って")
    ready = client.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id)
    assert ready["executor"] == "client" and ready["name"] == "get_location" and isinstance(ready["arguments"], dict)
    reply = client.call(
        "tool_result",
        {
            "thread_id": ack["thread_id"],
            "run_id": run_id,
            "tool_call_id": ready["tool_call_id"],
            "result": {"city": "大阪"},
        },
    )
    assert reply == {"ok": True}
    end = client.wait_run_end(run_id)
    assert end["type"] == "run_finished" and "大阪" in end["text"]
    events = run_events(client, run_id)
    order = types_of(events)
    assert order.index("tool_call_started") < order.index("tool_call_delta") < order.index("tool_call_ready")
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["executor"] == "client" and result["result"] == {"city": "大阪"} and result["is_error"] is False
    assert_contiguous(events)
    again = client.call(
        "tool_result", {"thread_id": ack["thread_id"], "tool_call_id": ready["tool_call_id"], "result": 1}
    )
    assert again["error"]["code"] == "not_awaiting"


def test_client_tool_timeout_answers_with_an_error_result(client):
    """答えないクライアント側ツールは agent.client_tool_timeout_s 後に is_error の結果になり、ランは続く。"""
    ack = _start(client, tools=[LOCATION_TOOL])
    run_id = _send(client, ack["thread_id"], "get_location で調べて")
    ready = client.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id)
    result = client.wait_for("tool_result", lambda e: e["run_id"] == run_id, timeout=15)
    assert result["tool_call_id"] == ready["tool_call_id"] and result["is_error"] is True
    assert "timed out" in str(result["result"])
    assert client.wait_run_end(run_id)["type"] == "run_finished"
    late = client.call(
        "tool_result",
        {"thread_id": ack["thread_id"], "run_id": run_id, "tool_call_id": ready["tool_call_id"], "result": "late"},
    )
    assert late["error"]["code"] == "not_awaiting"


def test_cancel_while_streaming_closes_the_upstream_connection(client, fresh_fake):
    """ストリーム中の cancel: run_cancelled がすぐ届き、偽の OpenAI は接続が閉じられたことを見る。"""
    ack = _start(client)
    run_id = _send(client, ack["thread_id"], "[stall] 長い話をして")
    client.wait_for("text_delta", lambda e: e["run_id"] == run_id)
    reply = client.call("cancel", {"thread_id": ack["thread_id"]})
    assert reply == {"ok": True, "cancelled": True}
    end = client.wait_run_end(run_id, timeout=5)
    assert end["type"] == "run_cancelled" and end["reason"] == "client" and "usage" in end
    assert fresh_fake.server.client_disconnected.wait(10), "the upstream response was not closed"
    # 中断したテキストは履歴に残り、次のメッセージは普通に動く
    next_run = _send(client, ack["thread_id"], "続けて")
    assert client.wait_run_end(next_run)["type"] == "run_finished"
    assert_contiguous(thread_events(client, ack["thread_id"]), first=1)


def test_cancel_before_the_first_byte_closes_the_upstream_connection(client, fresh_fake):
    """上流が応答ヘッダをまだ返さない (最初のバイトが遅い) 間の cancel でも、上流の接続は閉じられる。"""
    fresh_fake.server.enqueue(StreamResponse([], stall_before_headers=True))
    ack = _start(client)
    run_id = _send(client, ack["thread_id"], "こんにちは")
    assert fresh_fake.server.stream_started.wait(10)
    assert client.call("cancel", {"thread_id": ack["thread_id"]}) == {"ok": True, "cancelled": True}
    end = client.wait_run_end(run_id, timeout=5)
    assert end["type"] == "run_cancelled" and end["reason"] == "client"
    assert fresh_fake.server.client_disconnected.wait(10), "the upstream connection was left open"
    assert len(fresh_fake.server.requests) == 1  # キャンセルの後に再試行しない


def test_cancel_while_awaiting_a_client_tool(client):
    """クライアント側ツールを待っている間の cancel: run_cancelled、その後の tool_result は not_awaiting。"""
    ack = _start(client, tools=[LOCATION_TOOL])
    run_id = _send(client, ack["thread_id"], "get_location お願い")
    ready = client.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id)
    assert client.call("cancel", {"thread_id": ack["thread_id"], "run_id": run_id}) == {"ok": True, "cancelled": True}
    assert client.wait_run_end(run_id)["type"] == "run_cancelled"
    late = client.call(
        "tool_result",
        {"thread_id": ack["thread_id"], "run_id": run_id, "tool_call_id": ready["tool_call_id"], "result": {}},
    )
    assert late["error"]["code"] == "not_awaiting"


def test_cancel_twice_gives_one_run_cancelled(client):
    """cancel は冪等: 2 回目は cancelled=false で、run_cancelled は 1 回だけ。"""
    ack = _start(client)
    run_id = _send(client, ack["thread_id"], "[slow] ゆっくり")
    client.wait_for("text_delta", lambda e: e["run_id"] == run_id)
    first = client.call("cancel", {"thread_id": ack["thread_id"]})
    second = client.call("cancel", {"thread_id": ack["thread_id"], "run_id": run_id})
    assert first == {"ok": True, "cancelled": True} and second == {"ok": True, "cancelled": False}
    client.wait_run_end(run_id)
    # 遅れて何かが届かないことを、次のランの終わりまで見て確かめる
    next_run = _send(client, ack["thread_id"], "次")
    client.wait_run_end(next_run)
    assert types_of(run_events(client, run_id)).count("run_cancelled") == 1
    assert [t for t in types_of(run_events(client, run_id)) if t.startswith("run_")] == [
        "run_started",
        "run_cancelled",
    ]


def test_cancel_after_step_ends_the_run_after_the_current_step(client):
    """after_step: 今のステップを終えてから、次のステップに進まずに終わる。"""
    ack = _start(client, tools=[LOCATION_TOOL])
    run_id = _send(client, ack["thread_id"], "get_location を呼んで")
    ready = client.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id)
    reply = client.call("cancel", {"thread_id": ack["thread_id"], "mode": "after_step"})
    assert reply == {"ok": True, "cancelled": True}
    client.call("tool_result", {"thread_id": ack["thread_id"], "tool_call_id": ready["tool_call_id"], "result": "ok"})
    end = client.wait_run_end(run_id)
    assert end["type"] == "run_cancelled"
    assert types_of(run_events(client, run_id)).count("step_started") == 1


def test_run_finished_then_immediate_message_is_not_run_in_progress(client):
    """run_finished を受け取った直後の user_message は受け付けられる。"""
    ack = _start(client)
    for i in range(3):
        run_id = _send(client, ack["thread_id"], f"{i} 回目")
        client.wait_run_end(run_id)


def test_resume_after_a_disconnect_mid_run_has_no_gap_and_no_duplicate(server):
    """ラン中に切断し、別のソケットで resume_after_seq から再開: 抜けも重複もない。"""
    first, observer = server.client(), server.client()
    ack = _start(first)
    thread_id = ack["thread_id"]
    _start(observer, thread_id=thread_id)
    run_id = _send(first, thread_id, "[slow] 長く話して")
    wait_until(lambda: len([e for e in run_events(first, run_id) if e["type"] == "text_delta"]) >= 3, timeout=10)
    first.disconnect()
    seen = [e["seq"] for e in thread_events(first, thread_id)]
    last = seen[-1]
    assert seen == list(range(1, last + 1))
    # 切断中にもランは続き、イベントはログに溜まる (もう 1 つのソケットで確かめてから再開する)
    wait_until(lambda: thread_events(observer, thread_id)[-1]["seq"] >= last + 3, timeout=10)
    second = server.client()
    resumed = _start(second, thread_id=thread_id, resume_after_seq=last)
    assert resumed["last_seq"] >= last + 3
    second.wait_run_end(run_id, timeout=30)
    events = thread_events(second, thread_id)
    assert events[0]["seq"] == last + 1
    assert_contiguous(events, first=last + 1)
    assert types_of(events)[-1] == "run_finished"
    text = "".join(e["delta"] for e in run_events(first, run_id) + events if e.get("type") == "text_delta")
    assert text == events[-1]["text"]
    observer.wait_run_end(run_id)
    assert thread_events(observer, thread_id) == thread_events(first, thread_id) + events


def test_two_sockets_on_one_thread_see_the_same_events(server):
    """同じスレッドに 2 つのソケット: どちらも同じイベント列を受け取る。"""
    a, b = server.client(), server.client()
    ack = _start(a)
    assert _start(b, thread_id=ack["thread_id"])["thread_id"] == ack["thread_id"]
    run_id = _send(b, ack["thread_id"], "二人で聞く")
    a.wait_run_end(run_id)
    b.wait_run_end(run_id)
    assert thread_events(a, ack["thread_id"]) == thread_events(b, ack["thread_id"])
    assert_contiguous(thread_events(a, ack["thread_id"]), first=1)


def test_reattach_replaces_tools_for_later_runs(client):
    """再接続で tools を送ると次のランから置き換わる (ack の tools に反映)。"""
    ack = _start(client, tools=[LOCATION_TOOL])
    again = _start(client, thread_id=ack["thread_id"], tools=[])
    assert all(t["executor"] == "server" for t in again["tools"])
    run_id = _send(client, ack["thread_id"], "get_location はもう無い")
    assert client.wait_run_end(run_id)["type"] == "run_finished"
    assert "tool_call_started" not in types_of(run_events(client, run_id))


def test_concurrent_runs_on_many_threads_keep_each_threads_seq_contiguous(server):
    """多数のスレッドで同時にランを動かしても、スレッドごとの seq は 1 から連続し、混ざらない。"""
    import threading

    clients = [server.client() for _ in range(6)]
    threads = [c.start()["thread_id"] for c in clients]
    run_ids: list[str | None] = [None] * len(clients)

    def go(i: int) -> None:
        """1 つのクライアントから 2 つのランを順に送る。"""
        for n in range(2):
            run_ids[i] = _send(clients[i], threads[i], f"並行 {i}-{n}")
            clients[i].wait_run_end(run_ids[i], timeout=30)

    workers = [threading.Thread(target=go, args=(i,)) for i in range(len(clients))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    for client, thread_id in zip(clients, threads, strict=True):
        events = thread_events(client, thread_id)
        assert_contiguous(events, first=1)
        assert types_of(events).count("run_finished") == 2
        assert all(e["thread_id"] == thread_id for _, e in client.events if isinstance(e, dict))
