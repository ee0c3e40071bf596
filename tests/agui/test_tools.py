"""AG-UI のツールの規則のエンドツーエンド: フロントエンドツールはランを終わらせ、答えは次のランの messages で届く。
サーバー側ツールと同じステップなら、サーバー側の結果は次のランへ渡される (docs/agui.md「ツールの規則」)。"""

from __future__ import annotations

import json

from tests.agui.client import new_id, run_input, user, validate_events
from tests.agui.conftest import ALICE, BOB, LiveAgui

PANEL = {
    "name": "show_panel",
    "description": "画面にパネルを出す",
    "parameters": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
}


def assistant_from(result, message_id: str | None = None) -> dict:
    """ラン 1 のイベントから、AG-UI のクライアントが組み立てるのと同じアシスタントメッセージを作る。"""
    calls = []
    for start in result.of("TOOL_CALL_START"):
        call_id = start["toolCallId"]
        args = "".join(e["delta"] for e in result.of("TOOL_CALL_ARGS") if e["toolCallId"] == call_id)
        calls.append(
            {"id": call_id, "type": "function", "function": {"name": start["toolCallName"], "arguments": args}}
        )
    return {
        "id": message_id or result.of("TOOL_CALL_START")[0]["parentMessageId"],
        "role": "assistant",
        "toolCalls": calls,
    }


def test_frontend_tool_round_trip(live: LiveAgui) -> None:
    """ラン 1 は TOOL_CALL_END の後 RUN_FINISHED (pendingToolCallIds) で終わり、ラン 2 は tool の結果で答える。"""
    first_user = user('show_panel で {"title": "売上"} を出して')
    body = run_input([first_user], tools=[PANEL])
    first = live.client.post(body, ALICE)
    assert first.status == 200, first.body
    validate_events(first.events)
    types = first.types()
    assert "TOOL_CALL_RESULT" not in types
    assert types[types.index("TOOL_CALL_END") + 1 :] == ["STEP_FINISHED", "RUN_FINISHED"]
    (start,) = first.of("TOOL_CALL_START")
    assert start["toolCallName"] == "show_panel"
    assert json.loads("".join(e["delta"] for e in first.of("TOOL_CALL_ARGS"))) == {"title": "売上"}
    assert first.events[-1]["outcome"] == {"type": "success", "pendingToolCallIds": [start["toolCallId"]]}
    assert len(live.openai.chat_requests()) == 1, "the run must not wait for or call the model again"

    tool_message = {
        "id": new_id("t"),
        "role": "tool",
        "toolCallId": start["toolCallId"],
        "content": "パネルを出しました",
    }
    second_body = run_input(
        [first_user, assistant_from(first), tool_message], thread_id=body["threadId"], tools=[PANEL]
    )
    second = live.client.post(second_body, ALICE)
    assert second.status == 200, second.body
    validate_events(second.events)
    assert second.text() == "ツールの結果: パネルを出しました"
    assert second.events[-1]["outcome"] == {"type": "success"}
    sent = live.openai.chat_requests()[-1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == start["toolCallId"]
    assert sent[-1] == {"role": "tool", "tool_call_id": start["toolCallId"], "content": "パネルを出しました"}


def test_server_and_frontend_tools_in_one_step(live: LiveAgui) -> None:
    """同じステップの calculator (サーバー) と show_panel (フロントエンド): サーバー側は実行して TOOL_CALL_RESULT、
    ランはフロントエンドの答え待ちで終わる。次のランに calculator の結果が無くても、覚えておいた結果が補われる。"""
    first_user = user("calculator と show_panel を使って")
    body = run_input([first_user], tools=[PANEL])
    first = live.client.post(body, ALICE)
    validate_events(first.events)
    starts = {e["toolCallName"]: e["toolCallId"] for e in first.of("TOOL_CALL_START")}
    assert set(starts) == {"calculator", "show_panel"}
    (server_result,) = first.of("TOOL_CALL_RESULT")
    assert server_result["toolCallId"] == starts["calculator"]
    assert first.events[-1]["outcome"]["pendingToolCallIds"] == [starts["show_panel"]]

    # 別の主体は同じ threadId を使えない
    panel_answer = {"id": new_id("t"), "role": "tool", "toolCallId": starts["show_panel"], "content": "出しました"}
    history = [first_user, assistant_from(first), panel_answer]
    forbidden = live.client.post(run_input(history, thread_id=body["threadId"], tools=[PANEL]), BOB)
    assert forbidden.status == 403 and forbidden.body["error"]["code"] == "forbidden"

    second = live.client.post(run_input(history, thread_id=body["threadId"], tools=[PANEL]), ALICE)
    validate_events(second.events)
    sent = live.openai.chat_requests()[-1]["messages"]
    tool_messages = [m for m in sent if m["role"] == "tool"]
    by_id = {m["tool_call_id"]: m["content"] for m in tool_messages}
    assert by_id[starts["show_panel"]] == "出しました"
    # サーバーが覚えていた calculator の結果 (失敗の印も保たれ、OpenAI へは "Error: " つきで渡る)
    assert by_id[starts["calculator"]] == "Error: " + server_result["content"]
    # 呼び出し順 (アシスタントの tool_calls の順) に並ぶ
    order = [c["id"] for c in sent[-3]["tool_calls"]]
    assert [m["tool_call_id"] for m in tool_messages] == order
    assert second.types()[-1] == "RUN_FINISHED"


def test_unanswered_frontend_call_gets_an_error_result(live: LiveAgui) -> None:
    """フロントエンドが答えずに次の発話を送ったら、その呼び出しには失敗の結果を補う (履歴をプロバイダへ送れる形に)。"""
    first_user = user('show_panel で {"title": "在庫"}')
    body = run_input([first_user], tools=[PANEL])
    first = live.client.post(body, ALICE)
    validate_events(first.events)
    history = [first_user, assistant_from(first), user("やっぱりいいです")]
    second = live.client.post(run_input(history, thread_id=body["threadId"], tools=[PANEL]), ALICE)
    validate_events(second.events)
    sent = live.openai.chat_requests()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert "no result" in sent[2]["content"]


def test_tool_message_error_field_marks_a_failure(live: LiveAgui) -> None:
    """tool メッセージの ``error`` (AG-UI の失敗の印) は、内容が空ならその文言が結果になる。"""
    call_id = new_id("call")
    history = [
        user("前の依頼"),
        {
            "id": new_id("a"),
            "role": "assistant",
            "toolCalls": [{"id": call_id, "type": "function", "function": {"name": "show_panel", "arguments": "{}"}}],
        },
        {"id": new_id("t"), "role": "tool", "toolCallId": call_id, "content": "", "error": "画面が閉じていた"},
    ]
    result = live.client.post(run_input(history, tools=[PANEL]), ALICE)
    validate_events(result.events)
    assert live.openai.chat_requests()[-1]["messages"][-1]["content"] == "Error: 画面が閉じていた"
