"""スレッドの設定の語彙 (``core/schemas/thread_settings.py``): 1 つの RunSettings と ThreadConfig を、検証・エージェント・
ストアの 3 か所が同じ型で使う。"""

from __future__ import annotations

import pytest

from llm_router.agent import ThreadState
from llm_router.core.schemas.common import ToolChoice, ToolDefinition
from llm_router.core.schemas.thread_record import StoredThread
from llm_router.core.schemas.thread_settings import RunSettings, ThreadConfig
from llm_router.realtime.schemas import parse_settings

TOOL = ToolDefinition("weather", "天気", {"type": "object", "properties": {"city": {"type": "string"}}})


def test_the_validated_settings_are_what_the_agent_reads():
    """検証の結果はそのままエージェントの設定の型 (変換の往復は要らない)。"""
    settings = parse_settings({"temperature": 0.2, "tool_choice": {"type": "tool", "name": "weather"}})
    assert isinstance(settings, RunSettings)
    assert ThreadState(settings=settings).settings.tool_choice == ToolChoice("tool", "weather")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("auto", ToolChoice("auto")),
        ("required", ToolChoice("required")),
        ("any", ToolChoice("required")),
        ("none", ToolChoice("none")),
        ("calculator", ToolChoice("tool", "calculator")),
        ({"type": "tool", "name": "calculator"}, ToolChoice("tool", "calculator")),
        ({"function": {"name": "calculator"}}, ToolChoice("tool", "calculator")),
        ({"type": "required"}, ToolChoice("required")),
    ],
)
def test_tool_choice_in_its_json_forms_becomes_the_shared_choice(value, expected):
    """tool_choice の JSON の形 (文字列・dict) は共有の ToolChoice になる。"""
    assert RunSettings(tool_choice=value).tool_choice == expected


def test_settings_round_trip_through_the_json_form():
    """to_dict は指定された項目だけの start.settings の形で、from_dict で同じ値に戻る。"""
    settings = RunSettings(max_tokens=99, tool_choice=ToolChoice("tool", "weather"), reasoning="low")
    data = settings.to_dict()
    assert data == {"max_tokens": 99, "tool_choice": {"type": "tool", "name": "weather"}, "reasoning": "low"}
    assert RunSettings.from_dict(data) == settings
    assert RunSettings().to_dict() == {}


def test_thread_state_is_a_thread_config_with_a_history():
    """ThreadState は ThreadConfig の 5 つに履歴を足したもの。use_config は設定だけを入れ替え、履歴はそのまま。"""
    state = ThreadState(thread_id="t1", settings={"max_steps": 2})
    assert isinstance(state, ThreadConfig) and state.settings.max_steps == 2
    state.history.append(object())  # type: ignore[arg-type]
    config = ThreadConfig(model="demo/scripted", system="助手", client_tools=[TOOL], server_tools=["calculator"])
    state.use_config(config)
    assert (state.model, state.system, state.server_tools) == ("demo/scripted", "助手", ["calculator"])
    assert state.client_tools == [TOOL] and state.client_tools is not config.client_tools
    assert len(state.history) == 1 and state.settings == RunSettings()
    assert config.tool_summary() == [
        {"name": "calculator", "executor": "server"},
        {"name": "weather", "executor": "client"},
    ]


def test_the_stored_thread_carries_the_same_five_settings():
    """ストアのスレッドは同じ 5 つを持ち、ThreadConfig と行き来する (settings は JSON の dict で保存)。"""
    config = ThreadConfig(
        model="demo/scripted",
        system="助手",
        client_tools=[TOOL],
        server_tools=None,
        settings=RunSettings(temperature=0.5, tool_choice=ToolChoice("required")),
    )
    stored = StoredThread(thread_id="t1", owner="alice")
    stored.set_thread_config(config)
    assert stored.settings == {"temperature": 0.5, "tool_choice": "required"}
    again = StoredThread.from_dict(stored.to_dict())
    assert again.thread_config() == config
