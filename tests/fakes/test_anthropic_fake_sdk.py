"""Anthropic の偽サーバーが本物のプロトコルを話すことを、公式 SDK (anthropic) を向けて確かめる。

SDK は製品コードでは使わない (テストの中の独立した本物のクライアントとしてだけ使う)。
"""

import anthropic
import pytest

from tests.fakes.anthropic_fake import (
    AnthropicFake,
    redacted_block,
    text_block,
    thinking_block,
    tool_use_block,
)

KEY = "sk-ant-test-key"
WEATHER = {
    "name": "get_weather",
    "description": "天気を調べる",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def fake():
    """台本モードの偽サーバー。"""
    with AnthropicFake() as f:
        yield f


@pytest.fixture
def rules():
    """規則モードの偽サーバー。"""
    with AnthropicFake(rule_based=True, api_key=KEY) as f:
        yield f


def _sdk(fake, key=KEY):
    """偽サーバーに向けた公式 SDK (再試行なし)。"""
    return anthropic.Anthropic(api_key=key, base_url=fake.base_url, max_retries=0)


def _ask(client, **kwargs):
    """最小の要求。"""
    params = {"model": "claude-test-1", "max_tokens": 256, "messages": [{"role": "user", "content": "こんにちは"}]}
    params.update(kwargs)
    return params


def test_sdk_streams_text_and_usage(fake):
    """SDK の messages.stream がテキストの差分と使用量を読む。"""
    fake.text("東京は晴れです。", pieces=4, input_tokens=11, output_tokens=7)
    client = _sdk(fake)
    with client.messages.stream(**_ask(client)) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "東京は晴れです。" and len(pieces) > 1
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 11 and final.usage.output_tokens == 7
    request = fake.requests[0]
    # 公式 SDK 2.x はキーを Bearer で送る (偽サーバーは x-api-key と両方を受け付ける)
    assert request.path == "/v1/messages" and request.headers["authorization"] == f"Bearer {KEY}"


def test_sdk_assembles_parallel_tool_use_from_partial_json(fake):
    """部分 JSON (最初は空文字) から SDK が 2 つのツール呼び出しの input を組み立てる。"""
    fake.stream(
        [
            text_block("調べます。"),
            tool_use_block("get_weather", {"city": "東京"}, "toolu_a"),
            tool_use_block("get_weather", {"city": "大阪", "days": [1, 2]}, "toolu_b"),
        ]
    )
    client = _sdk(fake)
    with client.messages.stream(**_ask(client, tools=[WEATHER])) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(u.id, u.input) for u in uses] == [
        ("toolu_a", {"city": "東京"}),
        ("toolu_b", {"city": "大阪", "days": [1, 2]}),
    ]
    assert final.stop_reason == "tool_use"


def test_sdk_reads_thinking_with_signature_and_redacted_thinking(fake):
    """thinking_delta と signature_delta、redacted_thinking を SDK が本物どおりに組み立てる。"""
    fake.stream([thinking_block("まず考える。"), redacted_block("opaque=="), text_block("答え")])
    client = _sdk(fake)
    with client.messages.stream(
        **_ask(client, thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048)
    ) as s:
        kinds = [event.type for event in s]
        final = s.get_final_message()
    assert "thinking" in kinds and "signature" in kinds
    thinking, redacted, text = final.content
    assert thinking.type == "thinking" and thinking.thinking == "まず考える。"
    assert thinking.signature == thinking_block("まず考える。")["signature"]
    assert redacted.type == "redacted_thinking" and redacted.data == "opaque=="
    assert text.text == "答え"


def test_sdk_parses_non_streaming_message(fake):
    """非ストリーミングの応答本文を SDK が解析する。"""
    fake.message([text_block("はい"), tool_use_block("get_weather", {"city": "京都"}, "toolu_c")])
    message = _sdk(fake).messages.create(**_ask(None, tools=[WEATHER]))
    assert message.content[0].text == "はい"
    assert message.content[1].input == {"city": "京都"}
    assert message.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("status", "error_type", "sdk_error"),
    [
        (400, "invalid_request_error", anthropic.BadRequestError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (404, "not_found_error", anthropic.NotFoundError),
        (429, "rate_limit_error", anthropic.RateLimitError),
        (500, "api_error", anthropic.InternalServerError),
        (529, "overloaded_error", anthropic.APIStatusError),
    ],
)
def test_sdk_maps_error_bodies(fake, status, error_type, sdk_error):
    """エラーの本文とステータスを SDK が対応する例外にする。"""
    fake.error(status, error_type, "問題が起きました", {"retry-after": "1"} if status == 429 else None)
    with pytest.raises(sdk_error) as info:
        _sdk(fake).messages.create(**_ask(None))
    assert info.value.status_code == status
    assert info.value.body["error"]["type"] == error_type


def test_sdk_raises_on_error_event_after_http_200(fake):
    """HTTP 200 の後の error イベントで SDK が例外を投げる。"""
    fake.stream([text_block("途中まで")], error=("overloaded_error", "Overloaded"), error_after=4)
    client = _sdk(fake)
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with client.messages.stream(**_ask(client)) as stream:
            list(stream)


def test_rules_tool_round_trip_with_thinking_through_the_sdk(rules):
    """規則モード: ツール名を書けば呼ばれ、署名つきの思考ごと結果を返せば、結果を引用して答える。"""
    client = _sdk(rules)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    first_messages = [{"role": "user", "content": "get_weather で東京を調べて"}]
    first = client.messages.create(
        **_ask(None, tools=[WEATHER], thinking=thinking, max_tokens=2048, messages=first_messages)
    )
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    use = first.content[1]
    assert use.input == {"city": "東京"}
    history = [
        *first_messages,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "晴れ 20℃"}]},
    ]
    second = client.messages.create(**_ask(None, tools=[WEATHER], thinking=thinking, max_tokens=2048, messages=history))
    assert second.content[-1].text == "ツールの結果: 晴れ 20℃"


def test_rules_refuse_what_the_real_api_refuses(rules):
    """規則モードは本物の API が 400 / 401 にする要求を拒む (改変された署名、思考なしの tool_use、交互でない役割)。"""
    client = _sdk(rules)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    use = {"type": "tool_use", "id": "toolu_x", "name": "get_weather", "input": {"city": "東京"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_x", "content": "晴れ"}
    forged = {"type": "thinking", "thinking": "改変", "signature": "sig_forged"}
    cases = [
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [forged, use]},
            {"role": "user", "content": [result]},
        ],
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [use]},
            {"role": "user", "content": [result]},
        ],
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    ]
    for messages in cases:
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(**_ask(None, tools=[WEATHER], thinking=thinking, max_tokens=2048, messages=messages))
    with pytest.raises(anthropic.AuthenticationError):
        _sdk(rules, key="wrong").messages.create(**_ask(None))


def test_rules_honour_forced_tool_choice(rules):
    """規則モード: tool_choice が tool / any なら、文に名前が無くてもツールを呼ぶ。"""
    client = _sdk(rules)
    clock = {"name": "current_time", "description": "時刻", "input_schema": {"type": "object", "properties": {}}}
    forced = client.messages.create(
        **_ask(None, tools=[WEATHER, clock], tool_choice={"type": "tool", "name": "current_time"})
    )
    assert [b.name for b in forced.content if b.type == "tool_use"] == ["current_time"]
    anything = client.messages.create(**_ask(None, tools=[WEATHER, clock], tool_choice={"type": "any"}))
    assert [b.name for b in anything.content if b.type == "tool_use"] == ["get_weather"]
