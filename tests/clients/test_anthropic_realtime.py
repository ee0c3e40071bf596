"""Anthropic クライアントを本物のサーバー (eventlet) 越しに: 規則モードの偽 Anthropic を上流にした、思考つきの
クライアントツールの往復。思考は reasoning_* イベントで流れ、署名はどのイベントにもログにも出ず、2 回目の要求に
受け取ったとおりに載ること。
"""

import json

import pytest

from tests.fakes.anthropic_fake import AnthropicFake
from tests.realtime.harness import ProtocolClient, ServerProcess

KEY = "sk-ant-e2e-NEVER-LEAK-0011223344"
LOCALE_TOOL = {
    "name": "get_browser_locale",
    "description": "ブラウザのロケールを返す",
    "input_schema": {"type": "object", "properties": {"format": {"type": "string", "enum": ["short", "long"]}}},
}


@pytest.fixture(scope="module")
def stack():
    """偽 Anthropic と、それに向けた本物のサーバー。"""
    with AnthropicFake(rule_based=True, api_key=KEY) as fake:
        overrides = [
            f"providers.anthropic.base_url={fake.base_url}",
            "agent.model=anthropic/claude-sonnet-4-5",
            "providers.anthropic.retry.initial_backoff_s=0.01",
        ]
        with ServerProcess(overrides=overrides, secrets={"ANTHROPIC_API_KEY": KEY}) as server:
            yield fake, server


def test_thinking_client_tool_round_trip_over_the_protocol(stack):
    """reasoning=low: 思考 → クライアントツール → 結果 → 思考 → 答え。署名はサーバーの外に出ない。"""
    fake, server = stack
    with ProtocolClient(server.url) as client:
        ack = client.start(tools=[LOCALE_TOOL], settings={"reasoning": "low"})
        assert ack["ok"], ack
        thread_id = ack["thread_id"]
        run_id = client.send_message(thread_id, "get_browser_locale で調べて")["run_id"]
        ready = client.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id and e["executor"] == "client")
        assert ready["name"] == "get_browser_locale" and ready["arguments"] == {"format": "short"}
        answer = client.call(
            "tool_result",
            {"thread_id": thread_id, "run_id": run_id, "tool_call_id": ready["tool_call_id"], "result": "ja-JP"},
        )
        assert answer["ok"], answer
        end = client.wait_run_end(run_id)
        assert end["type"] == "run_finished" and end["text"] == "ツールの結果: ja-JP", end
        events = [data for name, data in client.events if isinstance(data, dict) and data.get("run_id") == run_id]
    kinds = [e["type"] for e in events]
    assert kinds.index("reasoning_started") < kinds.index("tool_call_started")
    reasoning = next(e for e in events if e["type"] == "reasoning_finished")
    assert reasoning["text"] == "ユーザーの依頼を検討しています。"
    first_request, second_request = [b for b in fake.bodies() if b.get("stream")][-2:]
    assert first_request["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    sent_back = second_request["messages"][1]["content"]
    assert sent_back[0]["type"] == "thinking" and sent_back[0]["signature"].startswith("sig_")
    signature = sent_back[0]["signature"]
    assert signature not in json.dumps(events, ensure_ascii=False)
    assert signature not in server.log_text() and KEY not in server.log_text()
    assert second_request["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": ready["tool_call_id"],
        "content": "ja-JP",
    }


def test_cancel_while_thinking_closes_the_upstream_stream(stack):
    """思考の途中の cancel: run_cancelled が 1 度だけ届き、偽 Anthropic は接続の切断を見る。"""
    fake, server = stack
    fake.server.client_disconnected.clear()
    fake.stall_after = 4  # message_start, thinking の開始, ping, 最初の thinking_delta の後で止まる
    try:
        with ProtocolClient(server.url) as client:
            thread_id = client.start(settings={"reasoning": "low"})["thread_id"]
            run_id = client.send_message(thread_id, "ゆっくり考えて")["run_id"]
            client.wait_for("reasoning_delta", lambda e: e["run_id"] == run_id)
            assert client.call("cancel", {"thread_id": thread_id})["cancelled"] is True
            end = client.wait_run_end(run_id)
            assert end["type"] == "run_cancelled"
            assert fake.server.client_disconnected.wait(5)
            ends = [n for n, d in client.events if n.startswith("run_") and d.get("run_id") == run_id]
            assert ends.count("run_cancelled") == 1 and "run_finished" not in ends
    finally:
        fake.stall_after = None
