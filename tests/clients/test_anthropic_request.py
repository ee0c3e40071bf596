"""Anthropic クライアント: 要求本文 (system、交互の役割、ツール結果、tool_choice、思考) を偽サーバーが受け取った形で確かめる。"""

import json

import pytest

from llm_router.core.schemas.common import ImagePart, Message, TextPart, ToolCall, ToolChoice
from tests.clients.anthropic_helpers import CLOCK, KEY, MODEL, WEATHER, client, request
from tests.fakes.anthropic_fake import AnthropicFake, text_block, thinking_block, tool_use_block, validate_request
from tests.fakes.server import RawResponse


@pytest.fixture
def fake():
    """台本モードの偽サーバー。"""
    with AnthropicFake() as f:
        yield f


def _body(fake, req, **client_overrides):
    """1 回ストリーミングで送り、偽サーバーが受け取った本文を返す。"""
    fake.text("ok")
    list(client(fake, **client_overrides).chat_stream(req))
    return fake.bodies()[-1]


def test_headers_path_and_basic_body(fake):
    """x-api-key と設定の anthropic-version、/v1/messages、system は最上位、max_tokens は既定値、stream。"""
    body = _body(fake, request("やあ", temperature=0.3))
    sent = fake.requests[0]
    assert sent.path == "/v1/messages" and not sent.query
    assert sent.headers["x-api-key"] == KEY and sent.headers["anthropic-version"] == "2023-06-01"
    assert body == {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "やあ"}]}],
        "system": "あなたは助手です。",
        "temperature": 0.3,
        "stream": True,
    }
    assert validate_request(body) is None


def test_request_max_tokens_wins_over_the_default(fake):
    """リクエストの max_tokens が設定の既定値より優先する。"""
    assert _body(fake, request(max_tokens=77))["max_tokens"] == 77


def test_tools_are_sent_with_input_schema(fake):
    """ツールは name / description / input_schema。"""
    body = _body(fake, request(tools=[WEATHER]))
    assert body["tools"] == [
        {"name": "get_weather", "description": "都市の天気を調べる", "input_schema": WEATHER.parameters}
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("none"), None, {"type": "none"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("tool", "get_weather"), None, {"type": "tool", "name": "get_weather"}),
        (ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, True, None),
        (ToolChoice("none"), False, {"type": "none"}),
    ],
)
def test_tool_choice_table(fake, choice, parallel, expected):
    """tool_choice の対応表 (並列の禁止は disable_parallel_tool_use)。"""
    body = _body(fake, request(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel))
    assert body.get("tool_choice") == expected


def test_tool_round_trip_second_body_holds_results_in_one_user_turn(fake):
    """往復: 2 回目の本文は assistant の tool_use の後、1 つの user メッセージに tool_result (テキストより前) を持つ。"""
    fake.stream(
        [
            text_block("調べます。"),
            tool_use_block("get_weather", {"city": "東京"}, "toolu_1"),
            tool_use_block("current_time", {}, "toolu_2"),
        ]
    )
    c = client(fake)
    first = request("東京の天気と時刻は?", tools=[WEATHER, CLOCK])
    end = list(c.chat_stream(first))[-1]
    history = [
        *first.messages,
        end.message,
        Message.tool("toolu_1", "get_weather", {"weather": "晴れ", "temp": 20}),
        Message.tool("toolu_2", "current_time", "boom", is_error=True),
        Message.user("ありがとう。"),
    ]
    fake.text("どういたしまして")
    list(c.chat_stream(request(messages=history, tools=[WEATHER, CLOCK])))
    body = fake.bodies()[1]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assistant = body["messages"][1]["content"]
    assert assistant[0] == {"type": "text", "text": "調べます。"}
    assert assistant[1] == {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "東京"}}
    assert assistant[2] == {"type": "tool_use", "id": "toolu_2", "name": "current_time", "input": {}}
    results = body["messages"][2]["content"]
    assert results[0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": json.dumps({"weather": "晴れ", "temp": 20}, ensure_ascii=False),
    }
    assert results[1] == {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True}
    assert results[2] == {"type": "text", "text": "ありがとう。"}
    assert validate_request(body) is None


def test_empty_tool_result_omits_content(fake):
    """空の結果は content を省いた tool_result にする (空のテキストは送らない)。"""
    history = [
        Message.user("a"),
        Message.assistant("", [ToolCall("toolu_e", "current_time", {})]),
        Message.tool("toolu_e", "current_time", ""),
    ]
    body = _body(fake, request(messages=history, tools=[CLOCK]))
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_e"}]


def test_consecutive_same_role_turns_are_merged_and_empty_text_dropped(fake):
    """同じ役割の連続は 1 つにまとめ、空のテキスト (API が拒む) は送らない。系は全部 system に。"""
    messages = [
        Message.system("規則 1"),
        Message.user("一つ目"),
        Message.user([TextPart("二つ目"), TextPart(""), ImagePart(data="AAAA", mime_type="image/jpeg")]),
        Message.assistant(""),
        Message.assistant("答え"),
        Message.system("規則 2"),
        Message.user("次"),
    ]
    body = _body(fake, request(messages=messages))
    assert body["system"] == "規則 1\n\n規則 2"
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "一つ目"},
                {"type": "text", "text": "二つ目"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "答え"}]},
        {"role": "user", "content": [{"type": "text", "text": "次"}]},
    ]


def test_history_from_another_provider_becomes_plain_blocks(fake):
    """他のプロバイダの assistant (provider_state なし) はテキストと tool_use ブロックで送る。"""
    other = Message.assistant("", [ToolCall("call_abc", "get_weather", {"city": "那覇"})])
    history = [Message.user("天気"), other, Message.tool("call_abc", "get_weather", "曇り")]
    body = _body(fake, request(messages=history, tools=[WEATHER]))
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "那覇"}}
    ]
    assert body["messages"][2]["content"][0]["tool_use_id"] == "call_abc"


def test_thinking_budget_style_leaves_temperature_out_and_raises_max_tokens(fake):
    """固定予算の思考: budget_tokens は設定から、temperature は送らず、max_tokens は予算より大きく。"""
    body = _body(fake, request(reasoning="medium", temperature=0.2, max_tokens=1000))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert "temperature" not in body
    assert body["max_tokens"] > 4096
    assert validate_request(body) is None


def test_thinking_adaptive_style_sends_effort(fake):
    """adaptive のモデル: thinking は adaptive、深さは output_config.effort。"""
    body = _body(fake, request(model="claude-adaptive-9", reasoning="high"))
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "high"}


def test_thinking_is_not_sent_when_off_or_unsupported(fake):
    """reasoning=off、または推論できないモデルでは thinking を送らない。警告は推論できないモデルにだけ。"""
    assert "thinking" not in _body(fake, request(reasoning="off"))
    assert "thinking" not in _body(fake, request(model="claude-plain", reasoning="high"))
    c = client(fake)
    assert c.reasoning_warning(MODEL, "high") is None
    assert c.reasoning_warning("claude-plain", "off") is None
    warning = c.reasoning_warning("claude-plain", "high")
    assert "claude-plain" in warning and "reasoning" in warning


def test_forced_tool_choice_disables_thinking(fake):
    """ツールの強制 (any / tool) は思考と併用できないので、強制を優先して思考を送らない。"""
    body = _body(fake, request(tools=[WEATHER], tool_choice=ToolChoice("required"), reasoning="low"))
    assert "thinking" not in body and body["tool_choice"] == {"type": "any"}


def test_tool_loop_that_began_without_thinking_keeps_thinking_off(fake):
    """強制の tool_choice で思考なしに始まったツールのループは、次の auto の呼び出しでも思考なし (ターンの途中で変えない)。"""
    call = ToolCall("toolu_1", "get_weather", {"city": "東京"})
    loop = [Message.user("天気は?"), Message.assistant("", [call]), Message.tool("toolu_1", "get_weather", "晴れ")]
    body = _body(fake, request(messages=loop, tools=[WEATHER], tool_choice=ToolChoice("auto"), reasoning="low"))
    assert "thinking" not in body
    # 新しいユーザー発話で始まる次のターンでは、また思考できる
    next_turn = [*loop, Message.assistant("晴れです"), Message.user("大阪は?")]
    body = _body(fake, request(messages=next_turn, tools=[WEATHER], tool_choice=ToolChoice("auto"), reasoning="low"))
    assert body["thinking"]["type"] == "enabled"


def test_thinking_round_trip_sends_signed_blocks_back_byte_for_byte(fake):
    """思考つきの tool_use の往復: 2 回目の assistant の番は、受け取ったブロック (署名つき) と JSON として同一。"""
    received = [
        thinking_block("東京の天気を調べるべきだ。"),
        tool_use_block("get_weather", {"city": "東京", "unit": "℃"}, "toolu_t"),
    ]
    fake.stream(received, pieces=4)
    c = client(fake)
    first = request("東京は?", tools=[WEATHER], reasoning="low")
    end = list(c.chat_stream(first))[-1]
    history = [*first.messages, end.message, Message.tool("toolu_t", "get_weather", "晴れ")]
    fake.text("晴れです")
    list(c.chat_stream(request(messages=history, tools=[WEATHER], reasoning="low")))
    raw = fake.requests[1].body.decode()
    sent = json.loads(raw)["messages"][1]["content"]
    assert json.dumps(sent, sort_keys=True, ensure_ascii=False) == json.dumps(
        received, sort_keys=True, ensure_ascii=False
    )
    assert received[0]["signature"] in raw
    assert validate_request(json.loads(raw)) is None


def test_extra_fields_are_added_to_the_body(fake):
    """ChatRequest.extra は本文にそのまま加わる。"""
    assert _body(fake, request(extra={"metadata": {"user_id": "u1"}}))["metadata"] == {"user_id": "u1"}


def test_rule_fake_accepts_a_full_client_round_trip_with_thinking():
    """規則モードの偽サーバー (本物の API と同じ検証) を相手に、思考つきのツールの往復が通る。"""
    with AnthropicFake(rule_based=True, api_key=KEY) as rules:
        c = client(rules)
        first = request("get_weather で東京", tools=[WEATHER], reasoning="low")
        end = list(c.chat_stream(first))[-1]
        assert end.finish_reason == "tool_calls"
        call = end.message.tool_calls[0]
        history = [*first.messages, end.message, Message.tool(call.id, call.name, {"天気": "晴れ"})]
        answer = list(c.chat_stream(request(messages=history, tools=[WEATHER], reasoning="low")))[-1]
        assert answer.message.content == 'ツールの結果: {"天気": "晴れ"}'


def test_non_json_error_body_keeps_the_text(fake):
    """JSON でないエラー本文 (プロキシの 502 など) もその文言を残す。"""
    fake.server.enqueue(*[RawResponse(b"Bad Gateway", status=502)] * 3)
    with pytest.raises(Exception, match="Bad Gateway"):
        list(client(fake).chat_stream(request()))
