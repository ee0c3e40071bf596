"""エンドツーエンド (本物のサーバー、eventlet と threading): 敵対的な入力でサーバーが止まらないこと。

- 約 60 の不正なペイロードは、どれも ``ok: false`` とコードで断られ、同じスレッドはその後も普通に答える。
- RE2 が受け付けない pattern のツール定義は ``start`` で断られ、ツール名とキーワードが示される。
- 破滅的な正規表現 (``^(a|a)*$`` に 40 個の a と b) と計算の爆弾を送る利用者がいても、別の利用者の
  ゆっくり流れる応答は最後まで届き、敵対的な実行はその応答より先に終わる (ハブを止めていない)。
"""

from __future__ import annotations

import json

import pytest

from tests.realtime.conftest import live_server, run_events

CATASTROPHIC_TOOL = {
    "name": "match_it",
    "description": "文字列を受け取る (スキーマに破滅的な pattern)",
    "parameters": {
        "type": "object",
        "properties": {"s": {"type": "string", "pattern": "^(a|a)*$"}},
        "required": ["s"],
    },
}


def _tool(pattern_schema: dict) -> list[dict]:
    """``parameters`` だけを変えたツール定義 1 つのリスト。"""
    return [{"name": "bad_tool", "parameters": {"type": "object", **pattern_schema}}]


def _deep(levels: int) -> dict:
    """``levels`` 段の入れ子の object スキーマ。"""
    node: dict = {"type": "string"}
    for _ in range(levels):
        node = {"type": "object", "properties": {"x": node}}
    return node


# (イベント, ペイロードを作る関数 (thread_id を受け取る), 期待するコード)
MALFORMED = [
    ("start", lambda t: "not an object", "invalid_payload"),
    ("start", lambda t: [t], "invalid_payload"),
    ("start", lambda t: 42, "invalid_payload"),
    ("start", lambda t: {"thread_id": 5}, "invalid_payload"),
    ("start", lambda t: {"thread_id": "has spaces"}, "invalid_payload"),
    ("start", lambda t: {"thread_id": "x" * 129}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "tool": []}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "model": 3}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "model": ""}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "system": ["x"]}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "tools": {}}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "tools": [5]}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "tools": [{"name": "bad name!"}]}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "tools": [{"description": "no name"}]}, "invalid_payload"),
    (
        "start",
        lambda t: {"thread_id": t, "tools": [{"name": "t", "parameters": {"type": "string"}}]},
        "invalid_payload",
    ),
    ("start", lambda t: {"thread_id": t, "tools": [{"name": "calculator"}]}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "tools": [{"name": "dup"}, {"name": "dup"}]}, "invalid_payload"),
    (
        "start",
        lambda t: {"thread_id": t, "tools": _tool({"properties": {"s": {"pattern": "(a)\\1"}}})},
        "invalid_payload",
    ),
    (
        "start",
        lambda t: {"thread_id": t, "tools": _tool({"properties": {"s": {"pattern": "a(?=b)"}}})},
        "invalid_payload",
    ),
    ("start", lambda t: {"thread_id": t, "tools": _tool({"patternProperties": {"(?<!x)y": {}}})}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "tools": _tool({"properties": {"s": {"pattern": "("}}})}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "tools": _tool({"properties": {"s": _deep(80)}})}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "server_tools": "calculator"}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "server_tools": [1]}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "settings": []}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "settings": {"temprature": 1}}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "settings": {"temperature": "hot"}}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "settings": {"temperature": 9}}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "settings": {"max_tokens": 0}}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "settings": {"max_tokens": 1.5}}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "settings": {"max_steps": 10_000}}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "settings": {"tool_choice": "sometimes"}}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "settings": {"reasoning": "max"}}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "settings": {"parallel_tool_calls": "yes"}}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "resume_after_seq": -1}, "invalid_payload"),
    ("start", lambda t: {"thread_id": t, "resume_after_seq": "3"}, "invalid_payload"),
    ("user_message", lambda t: {"content": "hi"}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t, "content": ""}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t, "content": "   "}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t, "content": []}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t, "content": 5}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t, "content": [5]}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t, "content": [{"type": "audio", "data": "AAAA"}]}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t, "content": [{"type": "text", "text": 5}]}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t, "content": [{"type": "text"}]}, "invalid_payload"),
    (
        "user_message",
        lambda t: {"thread_id": t, "content": [{"type": "image", "url": "javascript:x"}]},
        "invalid_payload",
    ),
    (
        "user_message",
        lambda t: {"thread_id": t, "content": [{"type": "image", "url": "file:///etc/passwd"}]},
        "invalid_payload",
    ),
    (
        "user_message",
        lambda t: {"thread_id": t, "content": [{"type": "image", "url": "data:text/html;base64,PGI+"}]},
        "invalid_payload",
    ),
    ("user_message", lambda t: {"thread_id": t, "content": [{"type": "image", "data": "AAAA"}]}, "invalid_payload"),
    (
        "user_message",
        lambda t: {"thread_id": t, "content": [{"type": "image", "data": "!!!!", "mime_type": "image/png"}]},
        "invalid_payload",
    ),
    (
        "user_message",
        lambda t: {"thread_id": t, "content": [{"type": "image", "url": "https://e.x/a.png", "data": "AAAA"}]},
        "invalid_payload",
    ),
    ("user_message", lambda t: {"thread_id": t, "content": [{"type": "image"}]}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t, "content": "hi", "contents": "x"}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": t, "content": "hi", "run_id": "../x"}, "invalid_payload"),
    ("user_message", lambda t: {"thread_id": "never-started-thread", "content": "hi"}, "unknown_thread"),
    ("user_message", lambda t: {"thread_id": t, "content": "x" * 70_000}, "payload_too_large"),
    ("tool_result", lambda t: {"thread_id": t, "result": 1}, "invalid_payload"),
    ("tool_result", lambda t: {"thread_id": t, "tool_call_id": "c"}, "invalid_payload"),
    ("tool_result", lambda t: {"thread_id": t, "tool_call_id": 5, "result": 1}, "invalid_payload"),
    ("tool_result", lambda t: {"thread_id": t, "tool_call_id": "c", "result": 1, "is_error": "no"}, "invalid_payload"),
    ("tool_result", lambda t: {"thread_id": t, "tool_call_id": "c", "result": 1, "output": 1}, "invalid_payload"),
    ("tool_result", lambda t: "nope", "invalid_payload"),
    ("cancel", lambda t: {}, "invalid_payload"),
    ("cancel", lambda t: {"thread_id": 5}, "invalid_payload"),
    ("cancel", lambda t: {"thread_id": t, "mode": "later"}, "invalid_payload"),
    ("no_such_event", lambda t: {"thread_id": t}, "invalid_payload"),
]


@pytest.fixture(scope="module")
def victim(server):
    """不正なペイロードを受けるスレッドと、その持ち主のクライアント (モジュールで共有)。"""
    client = server.client()
    ack = client.start()
    assert ack["ok"], ack
    yield client, ack["thread_id"]
    client.disconnect()


def _still_answers(client, thread_id: str) -> None:
    """同じスレッドが普通の発話に最後まで答える。"""
    ack = client.send_message(thread_id, "まだ動きますか")
    assert ack["ok"], ack
    end = client.wait_run_end(ack["run_id"])
    assert end["type"] == "run_finished" and "まだ動きますか" in end["text"], end


@pytest.mark.parametrize(
    ("event", "build", "code"), MALFORMED, ids=[f"{i:02d}-{m[0]}" for i, m in enumerate(MALFORMED)]
)
def test_malformed_payload_is_refused_and_the_thread_goes_on(victim, event, build, code):
    """不正なペイロードは ``ok: false`` と期待のコード、人が読めるメッセージ。その後も同じスレッドは答える。"""
    client, thread_id = victim
    ack = client.call(event, build(thread_id))
    assert isinstance(ack, dict) and ack.get("ok") is False, ack
    assert ack["error"]["code"] == code, ack
    assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]
    _still_answers(client, thread_id)


def test_malformed_list_is_about_sixty_payloads():
    """表の大きさ (約 60) を保つ。"""
    assert len(MALFORMED) >= 60


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"properties": {"s": {"type": "string", "pattern": "(a)\\1"}}}, "'pattern'"),
        ({"properties": {"s": {"type": "string", "pattern": "^(?!admin).*$"}}}, "'pattern'"),
        ({"patternProperties": {"(?<=a)b": {"type": "string"}}}, "'patternProperties'"),
    ],
)
def test_patterns_re2_cannot_compile_are_refused_at_start(client, schema, keyword):
    """RE2 が受け付けない pattern: start は invalid_payload で、ツール名とキーワードを挙げる。"""
    tools = [{"name": "needs_backtracking", "parameters": {"type": "object", **schema}}]
    ack = client.start(tools=tools)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", ack
    message = ack["error"]["message"]
    assert "needs_backtracking" in message and keyword in message and "RE2" in message, message


def test_hostile_runs_do_not_stall_another_users_stream(server):
    """一方の利用者が破滅的な正規表現と計算の爆弾を送っても、もう一方のゆっくり流れる応答は途切れずに届く。

    バックトラックする照合器ならこの照合だけで何分もかかり、ハブ (eventlet では 1 本) が止まって
    もう一方の実行は終わらない。RE2 では敵対的な実行の方が先に終わる。
    """
    streamer, attacker = server.client(), server.client()
    stream_thread = streamer.start()["thread_id"]
    hostile_thread = attacker.start(tools=[CATASTROPHIC_TOOL])["thread_id"]
    slow_run = streamer.send_message(stream_thread, "[slow] 長い話をしてください")["run_id"]
    streamer.wait_for("text_delta", lambda e: e["run_id"] == slow_run, timeout=20)
    evil = json.dumps({"s": "a" * 40 + "b"})
    regex_run = attacker.send_message(hostile_thread, f"match_it {evil}")["run_id"]
    regex_end = attacker.wait_run_end(regex_run, timeout=30)
    bomb_run = attacker.send_message(hostile_thread, 'calculator {"expression": "9**9**9**9"}')["run_id"]
    bomb_end = attacker.wait_run_end(bomb_run, timeout=30)
    nesting_run = attacker.send_message(hostile_thread, 'calculator {"expression": "' + "-" * 400 + '1"}')["run_id"]
    nesting_end = attacker.wait_run_end(nesting_run, timeout=30)
    # 敵対的な実行はどれも、ゆっくり流れる応答が終わる前に終わっている
    assert not [e for e in run_events(streamer, slow_run) if e["type"] in ("run_finished", "run_error")]
    slow_end = streamer.wait_run_end(slow_run, timeout=60)
    assert slow_end["type"] == "run_finished" and slow_end["text"].startswith("これはゆっくり")
    ready = next(e for e in run_events(attacker, regex_run) if e["type"] == "tool_call_ready")
    assert "does not match the pattern" in ready["error"]
    assert regex_end["type"] == "run_finished"
    bomb = next(e for e in run_events(attacker, bomb_run) if e["type"] == "tool_result")
    assert bomb["is_error"] and "exponent larger than" in bomb["result"] and bomb_end["type"] == "run_finished"
    nested = next(e for e in run_events(attacker, nesting_run) if e["type"] == "tool_result")
    assert nested["is_error"] and "nested more than" in nested["result"] and nesting_end["type"] == "run_finished"
    # どちらのスレッドも続けて使える
    _still_answers(streamer, stream_thread)
    _still_answers(attacker, hostile_thread)


DUMP_TOOL = {"name": "dump", "description": "大きな結果を返すクライアント側ツール", "parameters": {"type": "object"}}


@pytest.fixture(scope="module", params=["eventlet", "gevent"])
def roomy_server(request, openai_fake):
    """ペイロードの上限が既定 (1 MiB) のサーバー (ハブを持つ 2 つの非同期モード)。"""
    yield from live_server(
        request, openai_fake, ["agent.client_tool_timeout_s=30", "server.rate_limit_per_minute=100000"]
    )


def test_a_large_structured_tool_result_round_trips_while_another_stream_flows(roomy_server):
    """約 800 KB の構造のあるツール結果 (小さな dict が 2 万個) を返しても、別の利用者の応答は流れ続け、
    結果は ``tool_result`` と ``get_history`` にそのまま残り、モデルには縮めた形で届き、スレッドは続けて使える。

    大きな JSON の解読・変換・保存はハブの外の OS スレッドで行う (``server.offload_json_bytes``)。
    """
    streamer, attacker = roomy_server.client(), roomy_server.client()
    stream_thread = streamer.start()["thread_id"]
    big_thread = attacker.start(tools=[DUMP_TOOL])["thread_id"]
    slow_run = streamer.send_message(stream_thread, "[slow] 長い話をしてください")["run_id"]
    streamer.wait_for("text_delta", lambda e: e["run_id"] == slow_run, timeout=20)
    big = [{"i": i, "name": f"項目{i}", "ok": i % 2 == 0} for i in range(20_000)]
    run_id = attacker.send_message(big_thread, "dump {}")["run_id"]
    ready = attacker.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id and e["executor"] == "client")
    reply = attacker.call(
        "tool_result", {"thread_id": big_thread, "tool_call_id": ready["tool_call_id"], "result": big}, timeout=60
    )
    assert reply == {"ok": True}
    end = attacker.wait_run_end(run_id, timeout=60)
    assert end["type"] == "run_finished"
    echoed = next(e for e in run_events(attacker, run_id) if e["type"] == "tool_result")
    assert echoed["result"] == big
    # 大きな結果が流れている間に、ゆっくりの応答はまだ終わっていない (止められていない) か、普通に終わる
    slow_end = streamer.wait_run_end(slow_run, timeout=60)
    assert slow_end["type"] == "run_finished" and slow_end["text"].startswith("これはゆっくり")
    history = attacker.call("get_history", {"thread_id": big_thread}, timeout=60)
    assert history["ok"], history
    tool_messages = [m for m in history["messages"] if m["role"] == "tool"]
    assert tool_messages, history["messages"][-3:]
    _still_answers(attacker, big_thread)


@pytest.mark.parametrize("async_mode", ["gevent", "threading"])
def test_server_tools_run_off_the_hub_in_every_async_mode(async_mode):
    """gevent と threading でも、サーバー側ツール (デモのモデルが呼ぶ calculator) は OS スレッドのプールで動いて答える。

    ``agent.tool_executor=threads`` は threading モードでだけ使える (gevent ではハブの上で動くので起動で断る)。
    """
    from tests.realtime.harness import ProtocolClient, ServerProcess

    executor = "threads" if async_mode == "threading" else "tpool"
    with ServerProcess(async_mode=async_mode, overrides=[f"agent.tool_executor={executor}"]) as process:
        with ProtocolClient(process.url) as client:
            thread_id = client.start()["thread_id"]
            run_id = client.send_message(thread_id, "12 * (3 + 4) を計算して")["run_id"]
            end = client.wait_run_end(run_id)
            result = next(e for e in run_events(client, run_id) if e["type"] == "tool_result")
            assert result["name"] == "calculator" and result["result"] == 84 and not result["is_error"]
            assert end["type"] == "run_finished"


def test_threads_executor_is_refused_at_startup_under_gevent():
    """``agent.tool_executor=threads`` を gevent で選ぶと、サーバーは起動せず理由をログに出す。"""
    from tests.realtime.harness import ServerProcess

    process = ServerProcess(async_mode="gevent", overrides=["agent.tool_executor=threads"])
    try:
        with pytest.raises(RuntimeError) as info:
            process.start()
        assert "agent.tool_executor" in str(info.value) and "threading" in str(info.value)
    finally:
        process.close()
