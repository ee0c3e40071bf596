"""Gemini クライアント: ストリームの解釈 (テキスト、一度に届く関数呼び出し、思考、使用量、終了理由) を偽サーバー相手に。"""

import json

import pytest

from llm_router.core.schemas.common import (
    ProviderState,
    ReasoningDelta,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    UsageUpdate,
)
from llm_router.core.schemas.errors import ProviderBadRequestError
from tests.clients.gemini_helpers import CLOCK, WEATHER, client, request
from tests.fakes.gemini_fake import (
    GeminiFake,
    function_call_part,
    response_chunks,
    text_part,
    thought_part,
)
from tests.fakes.server import RawResponse, StreamResponse


@pytest.fixture
def fake():
    """台本モードの偽サーバー。"""
    with GeminiFake() as f:
        yield f


def _kinds(chunks):
    """チャンクの型名の列。"""
    return [type(c).__name__ for c in chunks]


def test_text_streams_as_deltas_and_ends_with_the_message(fake):
    """テキストはチャンクごとに TextDelta、最後の StreamEnd が全文・使用量・終了理由を持つ。"""
    chunks_sent = fake.text("東京は晴れです。", pieces=3, prompt_tokens=11)
    chunks = list(client(fake).chat_stream(request()))
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == "東京は晴れです。"
    end = chunks[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "stop" and end.provider == "gemini"
    assert end.message.content == "東京は晴れです。"
    last_usage = chunks_sent[-1]["usageMetadata"]
    assert (end.usage.input_tokens, end.usage.output_tokens) == (11, last_usage["candidatesTokenCount"])


def test_usage_metadata_is_a_running_total_not_a_sum(fake):
    """usageMetadata はチャンクごとの累計: 最後の値がそのまま最終値になる (足し合わせない)。"""
    sent = fake.text("一二三四五六", pieces=3)
    chunks = list(client(fake).chat_stream(request()))
    outputs = [c.usage.output_tokens for c in chunks if isinstance(c, UsageUpdate)]
    assert outputs == [c["usageMetadata"]["candidatesTokenCount"] for c in sent]
    assert chunks[-1].usage.output_tokens == outputs[-1]


def test_function_call_comes_whole_but_yields_start_delta_end(fake):
    """一度に届く関数呼び出しも start / 1 つの delta / end になる。ID の無い呼び出しには ID を作る。"""
    fake.stream([function_call_part("get_weather", {"city": "東京"})])
    chunks = list(client(fake).chat_stream(request(tools=[WEATHER])))
    assert _kinds(chunks)[:3] == ["ToolCallStart", "ToolCallDelta", "ToolCallEnd"]
    start, delta, end = chunks[:3]
    assert start.name == "get_weather" and start.id.startswith("call_")
    assert json.loads(delta.delta) == {"city": "東京"} and delta.id == start.id
    assert end.call.arguments == {"city": "東京"}
    assert chunks[-1].finish_reason == "tool_calls"  # Gemini は STOP: 関数呼び出しの有無で判断する


def test_parallel_function_calls_keep_provider_ids_and_order(fake):
    """並列の呼び出し: Gemini の ID があればそれを使い、順に番号 0, 1 を振る。"""
    fake.stream(
        [
            text_part("調べます。"),
            function_call_part("get_weather", {"city": "東京"}, "fc_a"),
            function_call_part("current_time", {}, "fc_b"),
        ],
        pieces=1,
    )
    chunks = list(client(fake).chat_stream(request(tools=[WEATHER, CLOCK])))
    assert [(c.index, c.id, c.name) for c in chunks if isinstance(c, ToolCallStart)] == [
        (0, "fc_a", "get_weather"),
        (1, "fc_b", "current_time"),
    ]
    assert [c.call.arguments for c in chunks if isinstance(c, ToolCallEnd)] == [{"city": "東京"}, {}]
    assert len([c for c in chunks if isinstance(c, ToolCallDelta)]) == 2
    assert chunks[-1].message.content == "調べます。"


def test_thought_parts_stream_as_reasoning_and_all_parts_are_kept_in_order(fake):
    """thought: true のパーツは推論のチャンク。受け取ったパーツは署名ごと、順に ProviderState に残る。"""
    parts = [
        thought_part("まず天気を調べる。"),
        function_call_part("get_weather", {"city": "東京"}, signature="c2lnbmF0dXJlLTE="),
    ]
    sent = fake.stream(parts, pieces=2)
    chunks = list(client(fake).chat_stream(request(tools=[WEATHER], reasoning="low")))
    kinds = _kinds(chunks)
    assert kinds.index("ReasoningStart") < kinds.index("ReasoningEnd") < kinds.index("ToolCallStart")
    assert "".join(c.text for c in chunks if isinstance(c, ReasoningDelta)) == "まず天気を調べる。"
    received = [c["candidates"][0]["content"]["parts"][0] for c in sent]
    end = chunks[-1]
    assert end.message.provider_state == ProviderState("gemini", received)
    assert end.message.reasoning[0].text == "まず天気を調べる。"
    assert end.usage.reasoning_tokens == sent[-1]["usageMetadata"]["thoughtsTokenCount"]
    assert end.usage.output_tokens == (
        sent[-1]["usageMetadata"]["candidatesTokenCount"] + sent[-1]["usageMetadata"]["thoughtsTokenCount"]
    )


def test_signature_only_part_is_kept_without_output(fake):
    """空のテキストに署名だけのパーツ (Gemini がストリームの最後に出すことがある) は何も出さず、保持だけする。"""
    fake.stream([text_part("答え"), {"text": "", "thoughtSignature": "c2ln"}], pieces=1)
    chunks = list(client(fake).chat_stream(request()))
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["答え"]
    assert chunks[-1].message.provider_state.data[-1] == {"text": "", "thoughtSignature": "c2ln"}


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "error"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reason_is_normalised(fake, reason, expected):
    """finishReason の正規化の表。"""
    fake.stream([text_part("x")], finish_reason=reason)
    assert list(client(fake).chat_stream(request()))[-1].finish_reason == expected


def test_blocked_prompt_is_a_clear_error(fake):
    """プロンプトが止められた応答 (promptFeedback.blockReason、候補なし) は理由つきの分かりやすいエラー。"""
    fake.stream([])
    fake.server._queue.clear()
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}
    fake.server.enqueue(StreamResponse([f"data: {json.dumps(blocked)}\r\n\r\n".encode()]))
    with pytest.raises(ProviderBadRequestError, match="blockReason: SAFETY") as info:
        list(client(fake).chat_stream(request()))
    assert info.value.error_type == "prompt_blocked"


def test_crlf_framing_and_split_bytes_are_read(fake):
    """CRLF の区切りでも、多バイト文字の途中で割れたチャンクでも読める。"""
    data = b"".join(
        f"data: {json.dumps(c, ensure_ascii=False)}\r\n\r\n".encode()
        for c in response_chunks([text_part("日本語の文")])
    )
    frames = [data[i : i + 7] for i in range(0, len(data), 7)]
    fake.server.enqueue(StreamResponse(frames))
    assert list(client(fake).chat_stream(request()))[-1].message.content == "日本語の文"


def test_stream_end_carries_thought_text_and_call(fake):
    """StreamEnd のメッセージは、思考・テキスト・関数呼び出しと受け取ったパーツ (provider_state) を持つ。"""
    parts = [thought_part("考え"), text_part("はい"), function_call_part("get_weather", {"city": "札幌"}, "fc_z")]
    fake.stream(parts, pieces=1)
    response = list(client(fake).chat_stream(request(tools=[WEATHER], reasoning="low")))[-1]
    assert fake.requests[0].path.endswith(":streamGenerateContent")
    assert response.message.content == "はい" and response.message.reasoning[0].text == "考え"
    assert [(c.id, c.arguments) for c in response.message.tool_calls] == [("fc_z", {"city": "札幌"})]
    assert response.message.provider_state.data == parts
    assert response.finish_reason == "tool_calls"


def test_raw_json_error_lines_in_the_stream_are_read(fake):
    """SSE でない、整形された生の JSON エラー (行ごとに届く) もエラーとして読む。"""
    body = json.dumps(
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}, indent=2
    )
    fake.server.enqueue(RawResponse(body.encode(), content_type="text/event-stream"))
    from llm_router.core.schemas.errors import ProviderUnavailableError

    with pytest.raises(ProviderUnavailableError, match="overloaded"):
        list(client(fake).chat_stream(request()))
