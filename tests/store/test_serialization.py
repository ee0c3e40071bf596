"""共有の語彙の保存形 (serialization.py と thread_record.py) の往復と、壊れた入力の誤りの名指し。"""

from __future__ import annotations

import json

import pytest

from llm_router.core.schemas.common import (
    ImagePart,
    Message,
    ProviderState,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolDefinition,
    ToolResult,
)
from llm_router.core.schemas.serialization import (
    SerializationError,
    decode_value,
    encode_value,
    message_from_dict,
    message_to_dict,
    tool_definition_from_dict,
    tool_definition_to_dict,
)
from llm_router.core.schemas.thread_record import HistoryEntry, StoredThread


def roundtrip(message: Message) -> Message:
    """JSON の文字列を通して往復させる (JSON にできることも同時に確かめる)。"""
    return message_from_dict(json.loads(json.dumps(message_to_dict(message))))


def test_assistant_with_tool_calls_reasoning_signatures_and_provider_state_roundtrips():
    """ツール呼び出し・署名つき推論・redacted・プロバイダの生データ (bytes を含む) が同じに戻る。"""
    message = Message(
        role="assistant",
        content="答えは 42 です",
        tool_calls=[
            ToolCall(
                "call_1", "calc", {"expr": "6*7", "nested": {"a": [1, 2.5, None, True]}}, raw_arguments='{"expr":"6*7"}'
            ),
            ToolCall("call_2", "broken", {}, raw_arguments="{not json", parse_error="Expecting property name"),
        ],
        reasoning=[
            ReasoningPart("考える…", signature="sig-EqQBCkYIARgCIkB"),
            ReasoningPart("", redacted_data="EmwKAhgBEgy3va3pzix"),
        ],
        provider_state=ProviderState(
            "gemini", {"parts": [{"thoughtSignature": b"\x00\xffbin"}], "$weird": {"$bytes": "not-bytes"}}
        ),
    )
    back = roundtrip(message)
    assert back == message
    assert back.provider_state.data["parts"][0]["thoughtSignature"] == b"\x00\xffbin"
    assert back.provider_state.data["$weird"] == {"$bytes": "not-bytes"}


def test_interrupted_text_images_and_tool_results_roundtrip():
    """中断されたテキスト、画像 (URL と base64)、ツール結果 (エラーを含む) が同じに戻る。"""
    messages = [
        Message(role="assistant", content="途中まで", interrupted=True),
        Message.user([TextPart("これは何?"), ImagePart(data="iVBORw0KGgo=", mime_type="image/png")]),
        Message.user([ImagePart(url="https://example.com/cat.jpg")]),
        Message.tool("call_1", "calc", {"value": 42, "steps": ["6*7"]}),
        Message.tool("call_2", "search", "timeout", is_error=True),
        Message.system("あなたは簡潔です"),
    ]
    for message in messages:
        assert roundtrip(message) == message


def test_defaults_are_omitted_and_output_is_plain_json():
    """既定値の欄は出さない (保存の大きさ)。出力は bytes を含まない JSON。"""
    data = message_to_dict(Message.user("hi"))
    assert data == {"role": "user", "content": "hi"}
    encoded = encode_value({"raw": b"abc", "t": (1, 2)})
    assert json.loads(json.dumps(encoded)) == {"raw": {"$bytes": "YWJj"}, "t": [1, 2]}
    assert decode_value(encoded) == {"raw": b"abc", "t": [1, 2]}


def test_tool_definition_roundtrips():
    """ツール定義 (JSON Schema を含む) が同じに戻る。"""
    tool = ToolDefinition("get_weather", "天気", {"type": "object", "properties": {"city": {"type": "string"}}})
    assert tool_definition_from_dict(json.loads(json.dumps(tool_definition_to_dict(tool)))) == tool


def test_values_that_json_cannot_hold_are_refused():
    """JSON にできない値は保存の前に型の名前つきで断る。"""
    with pytest.raises(TypeError, match="set"):
        message_to_dict(Message.tool("c", "t", {1, 2}))


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"role": "robot"}, "message.role"),
        ({"role": "user", "content": 5}, "message.content"),
        ({"role": "user", "content": [{"type": "video"}]}, "message.content[0].type"),
        ({"role": "assistant", "tool_calls": [{"id": "c1", "name": ""}]}, "message.tool_calls[0].name"),
        ({"role": "assistant", "reasoning": [{"text": "x", "signature": 7}]}, "message.reasoning[0].signature"),
        ({"role": "tool", "tool_result": {"name": "x"}}, "message.tool_result.tool_call_id"),
        ({"role": "assistant", "interrupted": "yes"}, "message.interrupted"),
    ],
)
def test_malformed_messages_name_the_field(data, path):
    """壊れた保存形は、どの欄が悪いかを名指しした誤りになる。"""
    with pytest.raises(SerializationError) as info:
        message_from_dict(data)
    assert info.value.path == path
    assert path in str(info.value)


def full_thread() -> StoredThread:
    """設定と履歴のそろったスレッドの見本。"""
    thread = StoredThread(
        "thr_a",
        "alice",
        model="anthropic/claude-sonnet-4-6",
        system="日本語で答える",
        client_tools=[ToolDefinition("pick_color", "色を選ぶ", {"type": "object", "properties": {}})],
        server_tools=["calculator"],
        settings={"temperature": 0.2, "tool_choice": {"type": "tool", "name": "pick_color"}, "reasoning": "high"},
        provider_state={"anthropic": {"thinking_off_until_user": True}},
        title="最初の質問",
        created_at=1_800_000_000.5,
        updated_at=1_800_000_100.25,
    )
    thread.history = [
        HistoryEntry(Message.user("6*7 は?"), "msg_1", "run_1", 1_800_000_001.0),
        HistoryEntry(
            Message(
                role="assistant",
                content="",
                tool_calls=[ToolCall("call_1", "calculator", {"expr": "6*7"})],
                reasoning=[ReasoningPart("計算する", signature="sig")],
            ),
            "msg_2",
            "run_1",
            1_800_000_002.0,
        ),
        HistoryEntry(Message.tool("call_1", "calculator", 42), "msg_3", "run_1", 1_800_000_003.0),
        HistoryEntry(Message(role="assistant", content="42 で", interrupted=True), "msg_4", "run_1", 1_800_000_004.0),
    ]
    return thread


def test_thread_record_roundtrips_through_json():
    """スレッド全体 (設定・履歴・題名・所有者・時刻) が JSON を通して同じに戻る。"""
    thread = full_thread()
    back = StoredThread.from_dict(json.loads(json.dumps(thread.to_dict())))
    assert back == thread
    assert [m.role for m in back.messages()] == ["user", "assistant", "tool", "assistant"]


def test_thread_record_defaults_updated_at_and_server_tools_none():
    """``updated_at`` の既定は ``created_at``、``server_tools`` の ``None`` (設定の既定) は保たれる。"""
    thread = StoredThread("t", "o", created_at=5.0)
    assert thread.updated_at == 5.0
    assert StoredThread.from_dict(thread.to_dict()).server_tools is None


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d.update(owner=""), "thread.owner"),
        (lambda d: d.update(created_at="yesterday"), "thread.created_at"),
        (
            lambda d: d["history"][1]["message"]["tool_calls"][0].update(id=3),
            "thread.history[1].message.tool_calls[0].id",
        ),
        (lambda d: d["history"][0].update(message_id=None), "thread.history[0].message_id"),
        (lambda d: d.update(server_tools="calculator"), "thread.server_tools"),
        (lambda d: d.update(version=99), "thread.version"),
        (lambda d: d["client_tools"][0].update(parameters=[]), "thread.client_tools[0].parameters"),
    ],
)
def test_malformed_thread_records_name_the_field(mutate, path):
    """壊れたスレッドの保存形は欄を名指しして断る。"""
    data = full_thread().to_dict()
    mutate(data)
    with pytest.raises(SerializationError) as info:
        StoredThread.from_dict(data)
    assert info.value.path == path


def test_apply_config_is_all_or_nothing():
    """設定の一部が壊れていれば、何も写さない。"""
    thread = full_thread()
    bad = thread.config_dict()
    bad["model"] = "openai/other"
    bad["settings"] = "hot"
    with pytest.raises(SerializationError):
        thread.apply_config_dict(bad)
    assert thread.model == "anthropic/claude-sonnet-4-6"
    assert thread.settings["temperature"] == 0.2
    assert ToolResult("c", "n", 1).as_text() == "1"


def test_a_tool_definitions_own_strict_flag_survives_the_round_trip():
    """ツール自身の ``strict`` (OpenAI 形式の定義が持っていた指定) は保存と読み込みで失われない。"""
    from llm_router.core.schemas.common import ToolDefinition
    from llm_router.core.schemas.serialization import tool_definition_from_dict, tool_definition_to_dict

    for strict in (True, False, None):
        tool = ToolDefinition("lookup", "引く", {"type": "object", "properties": {}}, strict=strict)
        data = tool_definition_to_dict(tool)
        assert ("strict" in data) is (strict is not None)
        assert tool_definition_from_dict(data).strict is strict
    with pytest.raises(SerializationError, match=r"tool\.strict"):
        tool_definition_from_dict({"name": "lookup", "strict": "yes"})
