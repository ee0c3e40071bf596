"""OpenAIClient のリクエスト本文のテスト: メッセージの変換、画像、ツールと tool_choice、モデルごとの癖、推論。"""

import pytest

from llm_router.config.schema import ModelOptions, ProviderConfig
from llm_router.config.settings import load_settings
from llm_router.core.clients.openai_client import OpenAIClient
from llm_router.core.schemas.common import (
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolDefinition,
)
from llm_router.core.tool_schemas import normalize_tools

TOOL = ToolDefinition(
    "lookup",
    "辞書を引く",
    {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
)


def client(**config) -> OpenAIClient:
    """本文を作るだけのクライアント (通信しない)。"""
    return OpenAIClient(ProviderConfig(base_url="http://127.0.0.1:9/v1", chat_model="m", **config), "sk-x")


def body(req: ChatRequest, **config) -> dict:
    """ストリーミングの本文。"""
    return client(**config).build_body(req, stream=True)


def test_user_message_with_text_and_image_parts():
    """画像のパーツは image_url (base64 は data URL) になる。"""
    parts = [
        TextPart("これは何?"),
        ImagePart(url="https://example.com/cat.png"),
        ImagePart(data="iVBORw0KGgo=", mime_type="image/png"),
    ]
    out = body(ChatRequest(model="m", messages=[Message.user(parts)]))
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "これは何?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]


def test_interrupted_assistant_message_is_sent_as_its_text():
    """キャンセルで中断された発話はテキストだけを送り、未完成の呼び出しは送らない。"""
    partial = Message.assistant("途中まで", [ToolCall("call_1", "lookup", {})])
    partial.interrupted = True
    out = body(ChatRequest(model="m", messages=[Message.user("a"), partial, Message.user("続けて")]))
    assert out["messages"][1] == {"role": "assistant", "content": "途中まで"}
    assert len(out["messages"]) == 3


def test_empty_assistant_message_is_skipped():
    """テキストも呼び出しも無い発話は送らない。"""
    out = body(ChatRequest(model="m", messages=[Message.user("a"), Message.assistant(""), Message.user("b")]))
    assert [m["role"] for m in out["messages"]] == ["user", "user"]


def test_tools_are_function_tools_without_strict_by_default():
    """ツールは ``{"type": "function", "function": {...}}``、strict は既定で付けない。"""
    out = body(ChatRequest(model="m", messages=[Message.user("a")], tools=[TOOL]))
    assert out["tools"] == [
        {
            "type": "function",
            "function": {"name": "lookup", "description": "辞書を引く", "parameters": TOOL.parameters},
        }
    ]
    assert "tool_choice" not in out and "parallel_tool_calls" not in out


def test_strict_tools_from_config():
    """``strict_tools`` の設定で ``strict: true`` を付ける。"""
    out = body(ChatRequest(model="m", messages=[Message.user("a")], tools=[TOOL]), strict_tools=True)
    assert out["tools"][0]["function"]["strict"] is True


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (ToolChoice("auto"), "auto"),
        (ToolChoice("none"), "none"),
        (ToolChoice("required"), "required"),
        (ToolChoice("tool", "lookup"), {"type": "function", "function": {"name": "lookup"}}),
    ],
)
def test_tool_choice_table(choice, wire):
    """tool_choice の対応表。"""
    out = body(ChatRequest(model="m", messages=[Message.user("a")], tools=[TOOL], tool_choice=choice))
    assert out["tool_choice"] == wire


def test_parallel_tool_calls_is_sent_with_tools_only():
    """``parallel_tool_calls`` はツールがあるときだけ送る。"""
    with_tools = body(ChatRequest(model="m", messages=[Message.user("a")], tools=[TOOL], parallel_tool_calls=False))
    without = body(ChatRequest(model="m", messages=[Message.user("a")], parallel_tool_calls=False))
    assert with_tools["parallel_tool_calls"] is False
    assert "parallel_tool_calls" not in without


@pytest.fixture(scope="module")
def shipped():
    """同梱の設定 (hydra_conf) の OpenAI の設定。"""
    return load_settings(env_file=None, environ={}).provider("openai")


@pytest.mark.parametrize(
    ("model", "max_param", "temperature_sent"),
    [
        ("gpt-4.1-mini", "max_tokens", True),
        ("gpt-5-mini", "max_completion_tokens", False),
        ("o3-mini", "max_completion_tokens", False),
    ],
)
def test_per_model_parameter_quirks_from_shipped_config(shipped, model, max_param, temperature_sent):
    """モデルごとの癖は設定から: 推論モデルは max_completion_tokens、温度は送らない。"""
    c = OpenAIClient(shipped, "sk-x")
    out = c.build_body(
        ChatRequest(model=model, messages=[Message.user("a")], temperature=0.3, max_tokens=77), stream=False
    )
    assert out[max_param] == 77
    other = ({"max_tokens", "max_completion_tokens"} - {max_param}).pop()
    assert other not in out
    assert ("temperature" in out) is temperature_sent


def test_fixed_temperature_is_sent_instead_of_the_requested_one():
    """``fixed_temperature`` のモデルはその値を送る。"""
    models = {"fixed*": ModelOptions(supports_temperature=False, fixed_temperature=1.0)}
    out = body(ChatRequest(model="fixed-1", messages=[Message.user("a")], temperature=0.2), models=models)
    assert out["temperature"] == 1.0


def test_default_max_tokens_comes_from_config():
    """max_tokens が無ければ設定の ``default_max_tokens``。"""
    out = body(ChatRequest(model="m", messages=[Message.user("a")]), default_max_tokens=321)
    assert out["max_tokens"] == 321


@pytest.mark.parametrize(("level", "effort"), [("low", "low"), ("medium", "medium"), ("high", "high")])
def test_reasoning_effort_for_reasoning_models(shipped, level, effort):
    """推論モデルには ``reasoning_effort`` を設定の値で送る。"""
    c = OpenAIClient(shipped, "sk-x")
    out = c.build_body(ChatRequest(model="gpt-5-mini", messages=[Message.user("a")], reasoning=level), stream=True)
    assert out["reasoning_effort"] == effort
    assert c.reasoning_warning("gpt-5-mini", level) is None


def test_reasoning_is_not_sent_to_other_models_and_a_warning_says_so(shipped):
    """推論モデルでないモデルには送らず、警告文を返す。"""
    c = OpenAIClient(shipped, "sk-x")
    out = c.build_body(ChatRequest(model="gpt-4.1-mini", messages=[Message.user("a")], reasoning="high"), stream=True)
    assert "reasoning_effort" not in out
    warning = c.reasoning_warning("gpt-4.1-mini", "high")
    assert warning and "gpt-4.1-mini" in warning
    assert c.reasoning_warning("gpt-4.1-mini", "off") is None


def test_reasoning_off_sends_nothing(shipped):
    """reasoning が off なら推論モデルにも何も送らない。"""
    c = OpenAIClient(shipped, "sk-x")
    out = c.build_body(ChatRequest(model="gpt-5-mini", messages=[Message.user("a")]), stream=True)
    assert "reasoning_effort" not in out


def test_extra_fields_are_merged_into_the_body():
    """``extra`` は本文にそのまま加わる。"""
    out = body(ChatRequest(model="m", messages=[Message.user("a")], extra={"seed": 7}))
    assert out["seed"] == 7


@pytest.mark.parametrize(("tool_strict", "config_strict", "sent"), [(True, False, True), (False, True, None)])
def test_a_tool_s_own_strict_overrides_the_strict_tools_setting(tool_strict, config_strict, sent):
    """OpenAI 形式の定義が持つ ``strict`` は、設定 ``strict_tools`` より優先する。"""
    tools = normalize_tools([{"type": "function", "function": {**TOOL.to_dict(), "strict": tool_strict}}])
    out = body(ChatRequest(model="m", messages=[Message.user("a")], tools=tools), strict_tools=config_strict)
    function = out["tools"][0]["function"]
    assert function.get("strict") is sent
    if sent:
        assert function["parameters"]["additionalProperties"] is False


def test_strict_is_left_off_when_the_schema_cannot_be_strict_and_a_warning_names_the_tool():
    """strict に合わせられないスキーマ (allOf) では strict を付けず、警告がツール名を含む。"""
    loose = ToolDefinition("merge", "", {"type": "object", "allOf": [{"properties": {"a": {"type": "string"}}}]})
    c = client(strict_tools=True)
    out = c.build_body(ChatRequest(model="m", messages=[Message.user("a")], tools=[loose]), stream=True)
    assert "strict" not in out["tools"][0]["function"]
    warnings = c.tool_warnings([loose], "m")
    assert warnings and all("merge" in w for w in warnings)


def test_strict_schema_closes_objects():
    """strict のときは変換器が additionalProperties: false を付けたスキーマを送る。"""
    out = body(ChatRequest(model="m", messages=[Message.user("a")], tools=[TOOL]), strict_tools=True)
    assert out["tools"][0]["function"]["parameters"]["additionalProperties"] is False
