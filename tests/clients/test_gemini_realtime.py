"""Gemini クライアントを本物のサーバー (eventlet) 越しに: 規則モードの偽 Gemini (関数呼び出しに ID を付けない
古いモデルの振る舞い) を上流にした、思考つきのクライアントツールの往復。思考の要約は reasoning_* イベントで流れ、
thoughtSignature はどのイベントにもログにも出ず、2 回目の要求に受け取ったとおりに載ること。
"""

import json

import pytest

from tests.fakes.gemini_fake import GeminiFake
from tests.realtime.harness import ProtocolClient, ServerProcess

KEY = "AIza-e2e-NEVER-LEAK-5566778899"
# Gemini の形のクライアントツール (OpenAPI の大文字の型)
LOCALE_TOOL = {
    "functionDeclarations": [
        {
            "name": "get_browser_locale",
            "description": "ブラウザのロケールを返す",
            "parameters": {"type": "OBJECT", "properties": {"format": {"type": "STRING", "enum": ["short", "long"]}}},
        }
    ]
}


@pytest.fixture(scope="module")
def stack():
    """偽 Gemini と、それに向けた本物のサーバー。"""
    with GeminiFake(rule_based=True, api_key=KEY) as fake:
        overrides = [
            f"providers.gemini.base_url={fake.base_url}",
            "agent.model=gemini/gemini-2.5-flash",
            "providers.gemini.retry.initial_backoff_s=0.01",
        ]
        with ServerProcess(overrides=overrides, secrets={"GEMINI_API_KEY": KEY}) as server:
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
        assert end["usage"]["reasoning_tokens"] > 0
        events = [data for name, data in client.events if isinstance(data, dict) and data.get("run_id") == run_id]
    kinds = [e["type"] for e in events]
    assert kinds.index("reasoning_started") < kinds.index("tool_call_started")
    first, second = fake.bodies()[-2:]
    assert first["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
    model_turn = second["contents"][1]["parts"]
    call_part = next(p for p in model_turn if "functionCall" in p)
    signature = call_part["thoughtSignature"]
    assert "id" not in call_part["functionCall"]
    assert second["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_browser_locale", "response": {"output": "ja-JP"}}}
    ]
    assert signature not in json.dumps(events, ensure_ascii=False)
    assert signature not in server.log_text() and KEY not in server.log_text()


def test_cancel_while_thinking_closes_the_upstream_stream(stack):
    """思考の途中の cancel: run_cancelled が 1 度だけ届き、偽 Gemini は接続の切断を見る。"""
    fake, server = stack
    fake.server.client_disconnected.clear()
    fake.stall_after = 1  # 最初の思考のチャンクの後で止まる
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
