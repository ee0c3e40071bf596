"""エージェントのイベント → AG-UI のイベントの写し (プロセス内、台本どおりの偽モデル)。

``end_on_client_tools`` のラン (フロントエンドツールで終わる)、入力を足さないラン (履歴は呼び手が組み立て済み)、
``step_reset`` (開いたテキストを閉じる)、次のモデルへの切り替え (使用量はモデルごと) を、公式の
``ag_ui.core`` のモデルと並びの規則で確かめる。
"""

from __future__ import annotations

from typing import Any

from llm_router.agent import AgentRun, ThreadState
from llm_router.agui.events import AguiEventMapper
from llm_router.agui.input import MISSING_RESULT, complete_tool_results
from llm_router.config.schema import AgentConfig
from llm_router.core.schemas.common import Message, ToolCall, ToolResult
from llm_router.core.schemas.errors import ProviderStreamBrokenError, ProviderUnavailableError
from tests.agent.scripted_model import (
    Call,
    Fail,
    FakeRegistry,
    FakeRouter,
    ScriptedModel,
    Text,
    Turn,
    Use,
    calculator_tool,
    client_tool,
)
from tests.agui.client import validate_events


def agui_run(
    model: Any, thread: ThreadState, *, registry: Any = None, router: Any = None, content: Any = None
) -> tuple[AgentRun, AguiEventMapper, list[dict[str, Any]]]:
    """AG-UI と同じ組み立て (入力は履歴に済み、フロントエンドツールで終わる) のランと、写したイベントの入れ物。"""
    events: list[dict[str, Any]] = []
    mapper = AguiEventMapper(thread.thread_id, "run-1", events.append)
    config = AgentConfig(server_tools=list(registry.names()) if registry else [], client_tool_timeout_s=5.0)
    run = AgentRun(
        "run-1",
        thread,
        content,
        router or FakeRouter({model.provider: model}),
        registry,
        mapper,
        config,
        end_on_client_tools=True,
    )
    return run, mapper, events


def test_a_client_tool_ends_the_run_after_the_server_tools_of_its_step():
    """同じステップのサーバー側ツールは実行し、クライアント側ツールは待たずに run_finished (client_tools)。"""
    model = ScriptedModel(Turn([Call("s1", "calculator", {"expression": "2+3"}), Call("c1", "get_locale")]))
    thread = ThreadState(thread_id="t1", history=[Message.user("両方")], client_tools=[client_tool()])
    run, mapper, events = agui_run(model, thread, registry=FakeRegistry(calculator_tool()))
    run.run()
    model.assert_done()
    validate_events(events)
    types = [e["type"] for e in events]
    assert types.count("TOOL_CALL_RESULT") == 1
    assert events[-1]["outcome"] == {"type": "success", "pendingToolCallIds": ["c1"]}
    assert mapper.server_results == {"s1": ("calculator", 5, False)}
    assert len(model.requests) == 1
    # 入力は呼び手の履歴のまま (ユーザーメッセージを足していない)
    assert [m.role for m in model.requests[0].messages] == ["user"]
    starts = [e for e in events if e["type"] == "TOOL_CALL_START"]
    assert {e["parentMessageId"] for e in starts} and len({e["parentMessageId"] for e in starts}) == 1


def test_a_step_reset_closes_the_open_text_before_the_retry():
    """出力の途中の失敗 (step_reset): 開いていた TEXT_MESSAGE を閉じてから CUSTOM の step_reset、やり直しの文。"""
    broken = ProviderStreamBrokenError("the stream broke", provider="scripted")
    model = ScriptedModel(Turn([Text("壊れる 前"), Fail(broken)]), Turn([Text("やり直し")]))
    thread = ThreadState(thread_id="t1", history=[Message.user("話して")])
    run, _, events = agui_run(model, thread)
    run.run()
    validate_events(events)
    types = [e["type"] for e in events]
    reset = next(i for i, e in enumerate(events) if e["type"] == "CUSTOM" and e["name"] == "llm_router.step_reset")
    assert types[reset - 1] == "TEXT_MESSAGE_END"
    assert types.count("TEXT_MESSAGE_START") == 2
    assert events[-1]["type"] == "RUN_FINISHED"


def test_usage_is_reported_per_model_after_a_fallback():
    """次のモデルへの切り替え: 使用量は実際に答えたモデルの TokenUsage に入る。"""
    primary = ScriptedModel(
        Turn([Fail(ProviderUnavailableError("overloaded", provider="primary", status=529))]), provider="primary"
    )
    backup = ScriptedModel(Turn([Text("予備です"), Use(7, 3)]), provider="backup")
    router = FakeRouter({"primary": primary, "backup": backup}, chain=["primary/big", "backup/small"])
    thread = ThreadState(thread_id="t1", history=[Message.user("どうぞ")])
    run, _, events = agui_run(primary, thread, router=router)
    run.run()
    validate_events(events)
    retry = next(e for e in events if e["type"] == "CUSTOM")
    assert retry["name"] == "llm_router.retry" and retry["value"]["model"] == "backup/small"
    assert events[-1]["usage"] == [
        {
            "provider": "backup",
            "model": "small",
            "inputTokens": 7,
            "outputTokens": 3,
            "totalTokens": 10,
            "reasoningTokens": 0,
        }
    ]


def test_tool_results_are_placed_after_their_calls():
    """結果は呼び出しの直後に呼び出し順で並ぶ: 覚えておいたサーバーの結果 → 送られた結果 → 失敗の結果。"""
    calls = [ToolCall("a", "calculator"), ToolCall("b", "show"), ToolCall("c", "show")]
    history = [
        Message.user("x"),
        Message.assistant("", calls),
        Message.tool("b", "show", "frontend b"),
        Message.tool("a", "calculator", "echoed a"),
    ]
    kept = {"a": ToolResult("a", "calculator", "server a", True)}
    out = complete_tool_results(history, kept)
    assert [m.role for m in out] == ["user", "assistant", "tool", "tool", "tool"]
    results = [m.tool_result for m in out[2:]]
    assert [(r.tool_call_id, r.result, r.is_error) for r in results] == [
        ("a", "server a", True),
        ("b", "frontend b", False),
        ("c", MISSING_RESULT, True),
    ]
