"""エンドツーエンド: サーバー側ツール (calculator)、クライアント側ツールとの並列実行、不正な引数、ツール定義の形式。"""

from __future__ import annotations

from tests.realtime.conftest import assert_contiguous, run_events, types_of

LOCATION_TOOL = {
    "name": "get_location",
    "description": "ブラウザの現在地 (Anthropic 形式)",
    "input_schema": {"type": "object", "properties": {"precise": {"type": "boolean"}}},
}
STRICT_TOOL = {
    "name": "set_volume",
    "description": "音量 (正規形)",
    "parameters": {
        "type": "object",
        "properties": {"level": {"type": "integer", "minimum": 0, "maximum": 10}},
        "required": ["level"],
        "additionalProperties": False,
    },
}


def test_server_tool_run_calculator(client):
    """サーバー側ツール: calculator が実行され、その結果がモデルへ戻る。"""
    ack = client.start()
    assert {"name": "calculator", "executor": "server"} in ack["tools"]
    run_id = client.send_message(ack["thread_id"], 'calculator {"expression": "2+3*4"}')["run_id"]
    end = client.wait_run_end(run_id)
    assert end["type"] == "run_finished"
    events = run_events(client, run_id)
    ready = next(e for e in events if e["type"] == "tool_call_ready")
    assert ready["executor"] == "server" and ready["arguments"] == {"expression": "2+3*4"}
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["executor"] == "server" and result["is_error"] is False and result["result"] == 14
    assert isinstance(result["duration_ms"], int | float)
    assert types_of(events).count("step_started") == 2 and "14" in end["text"]
    assert_contiguous(events)


def test_parallel_client_and_server_tools(client):
    """1 ステップに server と client のツール: 両方が告知され、サーバー側は client の答えを待たずに終わる。"""
    ack = client.start(tools=[LOCATION_TOOL])
    run_id = client.send_message(ack["thread_id"], "calculator と get_location を同時に")["run_id"]
    ready = client.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id and e["executor"] == "client")
    server_result = client.wait_for(
        "tool_result", lambda e: e["run_id"] == run_id and e["executor"] == "server", timeout=10
    )
    assert server_result["name"] == "calculator"
    readies = [e for e in run_events(client, run_id) if e["type"] == "tool_call_ready"]
    assert {e["name"] for e in readies} == {"calculator", "get_location"}
    reply = client.call(
        "tool_result",
        {"thread_id": ack["thread_id"], "tool_call_id": ready["tool_call_id"], "result": {"city": "札幌"}},
    )
    assert reply == {"ok": True}
    end = client.wait_run_end(run_id)
    assert end["type"] == "run_finished" and "札幌" in end["text"]


def test_invalid_arguments_are_not_sent_to_the_client(client):
    """スキーマに合わない引数のクライアント側ツールは実行を頼まれず、is_error の結果がモデルへ戻る。"""
    ack = client.start(tools=[STRICT_TOOL])
    run_id = client.send_message(ack["thread_id"], 'set_volume {"level": 99}')["run_id"]
    end = client.wait_run_end(run_id)
    assert end["type"] == "run_finished"
    events = run_events(client, run_id)
    ready = next(e for e in events if e["type"] == "tool_call_ready")
    assert ready.get("error")
    assert ready["executor"] == "server"  # クライアントには実行を頼まない
    assert not any(e["type"] == "tool_call_ready" and e["executor"] == "client" for e in events)
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["is_error"] is True and result["tool_call_id"] == ready["tool_call_id"]
    assert result["executor"] == "server"


def test_tool_definitions_in_every_format_are_accepted(client):
    """OpenAI / OpenAI 平ら / Anthropic / Gemini / 正規形の定義がすべて受け付けられる。"""
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    tools = [
        {"type": "function", "function": {"name": "t_openai", "description": "a", "parameters": schema}},
        {"type": "function", "name": "t_flat", "description": "b", "parameters": schema},
        {"name": "t_anthropic", "description": "c", "input_schema": schema},
        {
            "functionDeclarations": [
                {"name": "t_gemini", "description": "d", "parameters": {"type": "OBJECT", "properties": {}}},
                {"name": "t_gemini2", "description": "e", "parametersJsonSchema": schema},
            ]
        },
        {"name": "t_canonical", "description": "f", "parameters": schema},
    ]
    ack = client.start(tools=tools)
    assert ack["ok"], ack
    names = {t["name"] for t in ack["tools"] if t["executor"] == "client"}
    assert names == {"t_openai", "t_flat", "t_anthropic", "t_gemini", "t_gemini2", "t_canonical"}


def test_server_tools_subset_and_unknown_server_tool(client):
    """server_tools で使うサーバー側ツールを絞れる。有効でない名前は invalid_payload。"""
    ack = client.start(server_tools=["calculator"])
    assert [t for t in ack["tools"] if t["executor"] == "server"] == [{"name": "calculator", "executor": "server"}]
    bad = client.start(server_tools=["rm_rf"])
    assert bad["error"]["code"] == "invalid_payload" and "server_tools[0]" in bad["error"]["message"]
