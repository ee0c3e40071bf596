"""AG-UI のランのエンドツーエンド: 本物のサーバーへ RunAgentInput を POST し、届いたすべてのイベントを
公式の ``ag_ui.core`` のモデルで検証する (テキスト、推論、サーバー側ツール、エラー、キープアライブ、abort)。"""

from __future__ import annotations

import json
import socket
import time

from tests.agui.client import new_id, read_frames, run_input, user, validate_events
from tests.agui.conftest import ALICE, SECRETS, LiveAgui


def test_plain_text_run_streams_valid_agui_events(live: LiveAgui) -> None:
    """テキストだけのラン: RUN_STARTED → STEP → TEXT_MESSAGE_* → RUN_FINISHED (使用量つき)。"""
    body = run_input([user("こんにちは")])
    result = live.client.post(body, ALICE)
    assert result.status == 200, result.body
    assert result.headers["content-type"].startswith("text/event-stream")
    validate_events(result.events)
    types = result.types()
    assert types[0] == "RUN_STARTED" and types[-1] == "RUN_FINISHED"
    assert result.events[0]["threadId"] == body["threadId"] and result.events[0]["runId"] == body["runId"]
    assert result.events[0]["protocolVersion"] == "1.0"
    assert types[1] == "STEP_STARTED" and "STEP_FINISHED" in types
    assert result.text() == "了解しました: こんにちは"
    start = result.of("TEXT_MESSAGE_START")[0]
    assert start["role"] == "assistant"
    assert {e["messageId"] for e in result.of("TEXT_MESSAGE_CONTENT")} == {start["messageId"]}
    finished = result.events[-1]
    assert finished["threadId"] == body["threadId"] and finished["runId"] == body["runId"]
    assert finished["outcome"] == {"type": "success"}
    (usage,) = finished["usage"]
    assert usage["provider"] == "openai" and usage["model"] == "gpt-4.1-mini"
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    # 上流へは AG-UI の履歴がそのまま渡る (ユーザーの発話)
    sent = live.openai.chat_requests()[-1]["messages"]
    assert sent[-1] == {"role": "user", "content": "こんにちは"}


def test_history_roles_reach_the_provider(live: LiveAgui) -> None:
    """system / developer はシステムプロンプトに、assistant と tool (toolCalls つき) は履歴として上流へ届く。"""
    call_id = new_id("call")
    messages = [
        {"id": new_id("s"), "role": "system", "content": "あなたは丁寧な助手です。"},
        {"id": new_id("d"), "role": "developer", "content": "短く答えること。"},
        user("前の質問"),
        {
            "id": new_id("a"),
            "role": "assistant",
            "content": "調べます",
            "toolCalls": [
                {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
            ],
        },
        {"id": new_id("t"), "role": "tool", "toolCallId": call_id, "content": "結果は 42"},
        {"id": new_id("a"), "role": "assistant", "content": "42 です"},
        user("ありがとう"),
    ]
    tools = [{"name": "lookup", "description": "調べる", "parameters": {"type": "object", "properties": {}}}]
    body = run_input(messages, tools=tools, context=[{"description": "言語", "value": "日本語"}])
    result = live.client.post(body, ALICE)
    assert result.status == 200, result.body
    validate_events(result.events)
    sent = live.openai.chat_requests()[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert "あなたは丁寧な助手です。" in sent[0]["content"] and "短く答えること。" in sent[0]["content"]
    assert "言語: 日本語" in sent[0]["content"]
    roles = [m["role"] for m in sent[1:]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[2]["tool_calls"][0]["id"] == call_id
    assert sent[3] == {"role": "tool", "tool_call_id": call_id, "content": "結果は 42"}


def test_reasoning_streams_reasoning_events(live: LiveAgui) -> None:
    """思考を流すプロバイダ (Anthropic の偽サーバー): REASONING_* がテキストより先に届き、署名は出ない。"""
    forwarded = {"model": "anthropic/claude-sonnet-4-6", "settings": {"reasoning": "low"}}
    result = live.client.post(run_input([user("考えてから答えて")], forwardedProps=forwarded), ALICE)
    assert result.status == 200, result.body
    validate_events(result.events)
    types = result.types()
    for name in ("REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT", "REASONING_MESSAGE_END"):
        assert name in types, types
    assert types.index("REASONING_END") < types.index("TEXT_MESSAGE_START")
    thinking = "".join(e["delta"] for e in result.of("REASONING_MESSAGE_CONTENT"))
    assert thinking == "ユーザーの依頼を検討しています。"
    assert result.of("REASONING_MESSAGE_START")[0]["role"] == "reasoning"
    assert "sig_" not in str(result.events), "a thinking signature leaked into the AG-UI stream"
    (usage,) = result.events[-1]["usage"]
    assert usage["provider"] == "anthropic"
    assert live.anthropic.bodies()[-1].get("thinking")


def test_server_tool_inside_a_run(live: LiveAgui) -> None:
    """サーバー側ツール (calculator): TOOL_CALL_* の後に TOOL_CALL_RESULT、次のステップで答えてラン終わり。"""
    result = live.client.post(run_input([user('calculator で {"expression": "6*7"}')]), ALICE)
    assert result.status == 200, result.body
    validate_events(result.events)
    types = result.types()
    start = result.of("TOOL_CALL_START")[0]
    assert start["toolCallName"] == "calculator"
    args = "".join(e["delta"] for e in result.of("TOOL_CALL_ARGS"))
    assert args.replace(" ", "") == '{"expression":"6*7"}'
    (tool_result,) = result.of("TOOL_CALL_RESULT")
    assert tool_result["toolCallId"] == start["toolCallId"] and tool_result["role"] == "tool"
    assert "42" in tool_result["content"]
    assert types.index("TOOL_CALL_END") < types.index("TOOL_CALL_RESULT")
    assert result.of("STEP_STARTED")[1]["stepName"] == "step-2"
    assert "42" in result.text()
    assert result.events[-1]["outcome"] == {"type": "success"}


def test_provider_errors_end_with_run_error(live: LiveAgui) -> None:
    """上流の 400 と 500 (再試行の後): RUN_ERROR (code つき) で終わり、それまでのイベントも妥当。"""
    bad = live.client.post(run_input([user("[fail:400] だめな依頼")]), ALICE)
    assert bad.status == 200
    validate_events(bad.events)
    assert bad.types()[-1] == "RUN_ERROR"
    assert bad.events[-1]["code"] == "provider_bad_request" and bad.events[-1]["message"]
    down = live.client.post(run_input([user("[fail:500] 落ちている")]), ALICE)
    validate_events(down.events)
    assert down.types()[-1] == "RUN_ERROR"
    assert down.events[-1]["code"] == "provider_unavailable"
    assert "CUSTOM" in down.types() and down.of("CUSTOM")[0]["name"] == "llm_router.retry"
    for value in SECRETS.values():
        assert value not in json.dumps(bad.events + down.events, ensure_ascii=False), "a secret leaked into an event"


def test_abort_closes_the_upstream_within_two_seconds(live: LiveAgui) -> None:
    """ストリームの途中でクライアントが接続を閉じる → ランは取り消され、上流の接続が 2 秒以内に閉じる。

    その前に、止まった上流を待つ間 ``: keep-alive`` のコメント行が届くことも確かめる。
    """
    conn, response = live.client.open(run_input([user("[stall] 長い話")]), ALICE)
    try:
        seen: list[str] = []
        events: list[dict] = []
        for kind, value in read_frames(response):
            seen.append(value["type"] if kind == "data" else ": " + value)
            if kind == "data":
                events.append(value)
            # 止まった上流を待つ間の keep-alive を待つ (負荷の高いマシンでは最初の本文より先に届くこともある)
            if kind == "comment" and value == "keep-alive" and "TEXT_MESSAGE_CONTENT" in seen:
                break
        assert "TEXT_MESSAGE_CONTENT" in seen, seen
        validate_events(events, partial=True)
        assert live.openai.server.stream_started.is_set()
        assert not live.openai.server.client_disconnected.is_set()
    finally:
        closed_at = time.monotonic()
        response.raw_socket.shutdown(socket.SHUT_RDWR)
        response.raw_socket.close()
        conn.close()
    assert live.openai.server.client_disconnected.wait(2.0), "the upstream stream stayed open after the abort"
    assert live.openai.server.disconnected_at - closed_at < 2.0


def test_reasoning_and_activity_messages_are_accepted_and_not_sent_upstream(live: LiveAgui) -> None:
    """AG-UI のクライアントは推論 (``role: "reasoning"``) も会話に残して送り返す: 受け付け、上流へは送らない。"""
    messages = [
        user("さっきの質問"),
        {"id": new_id("r"), "role": "reasoning", "content": "考えていたこと"},
        {"id": new_id("a"), "role": "assistant", "content": "答え"},
        {"id": new_id("v"), "role": "activity", "activityType": "progress", "content": {"percent": 100}},
        user("次の質問"),
    ]
    result = live.client.post(run_input(messages), ALICE)
    assert result.status == 200, result.body
    validate_events(result.events)
    sent = live.openai.chat_requests()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert "考えていたこと" not in json.dumps(sent, ensure_ascii=False)
