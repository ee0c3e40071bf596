"""Anthropic クライアント: ストリームの解釈 (テキスト、ツール呼び出し、思考、使用量、終了理由) を偽サーバー相手に。"""

import json

import pytest

from llm_router.core.schemas.common import (
    ProviderState,
    ReasoningDelta,
    ReasoningEnd,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    UsageUpdate,
)
from tests.clients.anthropic_helpers import CLOCK, WEATHER, client, request
from tests.fakes.anthropic_fake import (
    AnthropicFake,
    redacted_block,
    text_block,
    thinking_block,
    tool_use_block,
)
from tests.fakes.server import StreamResponse, sse_frame


@pytest.fixture
def fake():
    """台本モードの偽サーバー。"""
    with AnthropicFake() as f:
        yield f


def _kinds(chunks):
    """チャンクの型名の列。"""
    return [type(c).__name__ for c in chunks]


def test_text_streams_as_deltas_and_ends_with_the_message(fake):
    """テキストは届いた断片ごとに TextDelta になり、最後の StreamEnd が全文と使用量と終了理由を持つ。"""
    fake.text("東京は晴れです。", pieces=4, input_tokens=12, output_tokens=9)
    chunks = list(client(fake).chat_stream(request()))
    texts = [c.text for c in chunks if isinstance(c, TextDelta)]
    assert "".join(texts) == "東京は晴れです。" and len(texts) == 4
    end = chunks[-1]
    assert isinstance(end, StreamEnd)
    assert end.message.content == "東京は晴れです。" and end.finish_reason == "stop"
    assert (end.usage.input_tokens, end.usage.output_tokens) == (12, 9)
    assert end.provider == "anthropic"


def test_usage_is_updated_from_message_start_then_cumulative_message_delta(fake):
    """入力は message_start から、出力は message_delta の累計値 (足し算しない)。"""
    fake.text("やあ", input_tokens=30, output_tokens=5)
    chunks = list(client(fake).chat_stream(request()))
    usages = [(c.usage.input_tokens, c.usage.output_tokens) for c in chunks if isinstance(c, UsageUpdate)]
    assert usages == [(30, 1), (30, 5)]


def test_single_tool_call_streams_start_deltas_end(fake):
    """tool_use は start / 引数の断片 (空の最初の断片は出さない) / end (content_block_stop で解析)。"""
    fake.stream([tool_use_block("get_weather", {"city": "東京"}, "toolu_1")], pieces=3)
    chunks = list(client(fake).chat_stream(request(tools=[WEATHER])))
    assert isinstance(chunks[1], ToolCallStart) and (chunks[1].id, chunks[1].name) == ("toolu_1", "get_weather")
    deltas = [c.delta for c in chunks if isinstance(c, ToolCallDelta)]
    assert len(deltas) == 3 and json.loads("".join(deltas)) == {"city": "東京"}
    end = next(c for c in chunks if isinstance(c, ToolCallEnd))
    assert end.call.arguments == {"city": "東京"} and end.call.parse_error is None
    assert chunks[-1].finish_reason == "tool_calls"
    assert [c.id for c in chunks[-1].message.tool_calls] == ["toolu_1"]


def test_parallel_tool_calls_get_their_own_indices_after_text(fake):
    """テキストの後の 2 つの tool_use は、応答の中での順番 0, 1 で並ぶ。"""
    fake.stream(
        [
            text_block("調べます。"),
            tool_use_block("get_weather", {"city": "東京"}, "toolu_a"),
            tool_use_block("current_time", {}, "toolu_b"),
        ]
    )
    chunks = list(client(fake).chat_stream(request(tools=[WEATHER, CLOCK])))
    starts = [(c.index, c.id) for c in chunks if isinstance(c, ToolCallStart)]
    ends = [(c.index, c.call.arguments) for c in chunks if isinstance(c, ToolCallEnd)]
    assert starts == [(0, "toolu_a"), (1, "toolu_b")]
    assert ends == [(0, {"city": "東京"}), (1, {})]
    message = chunks[-1].message
    assert message.content == "調べます。" and [c.name for c in message.tool_calls] == ["get_weather", "current_time"]


def test_tool_input_that_is_not_json_is_reported_not_raised(fake):
    """壊れた部分 JSON は parse_error として残す (実行するかどうかはエージェントループが決める)。"""
    frames = [
        sse_frame(
            {"type": "message_start", "message": {"usage": {"input_tokens": 1, "output_tokens": 1}}}, "message_start"
        ),
        sse_frame(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            },
            "content_block_start",
        ),
        sse_frame(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"a": '},
            },
            "content_block_delta",
        ),
        sse_frame({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse_frame(
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
            "message_delta",
        ),
        sse_frame({"type": "message_stop"}, "message_stop"),
    ]
    fake.server.enqueue(StreamResponse(frames))
    end = next(c for c in client(fake).chat_stream(request()) if isinstance(c, ToolCallEnd))
    assert end.call.arguments == {} and "not valid JSON" in end.call.parse_error


def test_tool_call_without_input_still_yields_one_delta(fake):
    """引数の無い tool_use (partial_json が空文字だけ) でも ToolCallDelta "{}" を 1 つ出す (docs/protocol.md 4 章の約束)。"""
    frames = [
        sse_frame(
            {"type": "message_start", "message": {"usage": {"input_tokens": 1, "output_tokens": 1}}}, "message_start"
        ),
        sse_frame(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_n", "name": "current_time", "input": {}},
            },
            "content_block_start",
        ),
        sse_frame(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}},
            "content_block_delta",
        ),
        sse_frame({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse_frame(
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
            "message_delta",
        ),
        sse_frame({"type": "message_stop"}, "message_stop"),
    ]
    fake.server.enqueue(StreamResponse(frames))
    chunks = list(client(fake).chat_stream(request(tools=[CLOCK])))
    assert [k for k in _kinds(chunks) if k.startswith("ToolCall")] == ["ToolCallStart", "ToolCallDelta", "ToolCallEnd"]
    assert [c.delta for c in chunks if isinstance(c, ToolCallDelta)] == ["{}"]
    end = next(c for c in chunks if isinstance(c, ToolCallEnd))
    assert end.call.arguments == {} and end.call.parse_error is None
    assert chunks[-1].message.tool_calls[0].arguments == {}


def test_ping_and_unknown_events_are_ignored(fake):
    """ping と未知のイベント種別は読み飛ばす (Anthropic は種類を足すことがあると明言している)。"""
    frames = fake.stream([text_block("はい")])
    fake.server._queue.clear()
    frames.insert(2, sse_frame({"type": "brand_new_event", "x": 1}, "brand_new_event"))
    frames.insert(2, sse_frame({"type": "ping"}, "ping"))
    fake.server.enqueue(StreamResponse(frames))
    chunks = list(client(fake).chat_stream(request()))
    assert chunks[-1].message.content == "はい"


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reason_is_normalised(fake, stop_reason, expected):
    """stop_reason の正規化の表。"""
    fake.stream([text_block("x")], stop_reason=stop_reason)
    assert list(client(fake).chat_stream(request()))[-1].finish_reason == expected


def test_thinking_streams_as_reasoning_before_text_and_keeps_the_signature(fake):
    """thinking_delta は推論のチャンク、signature_delta はチャンクにせず保持し、ブロックは受け取ったとおり残す。"""
    blocks = [thinking_block("まず天気を調べる必要がある。"), text_block("晴れです。")]
    fake.stream(blocks, pieces=3)
    chunks = list(client(fake).chat_stream(request(reasoning="low")))
    kinds = _kinds(chunks)
    assert kinds.index("ReasoningStart") < kinds.index("ReasoningEnd") < kinds.index("TextDelta")
    text = "".join(c.text for c in chunks if isinstance(c, ReasoningDelta))
    assert text == "まず天気を調べる必要がある。"
    part = next(c for c in chunks if isinstance(c, ReasoningEnd)).part
    assert part.signature == blocks[0]["signature"] and part.text == text
    end = chunks[-1]
    assert end.message.reasoning == [part]
    assert end.message.provider_state == ProviderState("anthropic", blocks)


def test_redacted_thinking_is_kept_with_no_text(fake):
    """redacted_thinking は表示する文が無いが、開始と終わりの対を出し、暗号化データを保持する。"""
    blocks = [redacted_block("ENCRYPTED=="), text_block("答え")]
    fake.stream(blocks)
    chunks = list(client(fake).chat_stream(request(reasoning="low")))
    assert _kinds(chunks)[:3] == ["UsageUpdate", "ReasoningStart", "ReasoningEnd"]
    assert not [c for c in chunks if isinstance(c, ReasoningDelta)]
    part = next(c for c in chunks if isinstance(c, ReasoningEnd)).part
    assert (part.text, part.redacted_data) == ("", "ENCRYPTED==")
    assert chunks[-1].message.provider_state.data == blocks


def test_stream_end_carries_thinking_text_and_call(fake):
    """StreamEnd のメッセージは思考 (署名つき)、テキスト、ツール呼び出し、受け取ったブロックを持つ。"""
    blocks = [
        thinking_block("考え中"),
        text_block("調べます"),
        tool_use_block("get_weather", {"city": "札幌"}, "toolu_z"),
    ]
    fake.stream(blocks, input_tokens=7, output_tokens=21)
    response = list(client(fake).chat_stream(request(tools=[WEATHER], reasoning="low")))[-1]
    assert response.message.content == "調べます"
    assert [(c.id, c.arguments) for c in response.message.tool_calls] == [("toolu_z", {"city": "札幌"})]
    assert response.message.reasoning[0].signature == blocks[0]["signature"]
    assert response.message.provider_state == ProviderState("anthropic", blocks)
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 21)
    assert fake.bodies()[0]["stream"] is True


def test_all_chunks_are_reasoning_then_text_then_tools_in_order(fake):
    """思考 → テキスト → ツールの順に、種類ごとの開始・終わりが対になる。"""
    fake.stream([thinking_block("a"), text_block("b"), tool_use_block("get_weather", {"city": "c"})], pieces=1)
    kinds = _kinds(list(client(fake).chat_stream(request(tools=[WEATHER], reasoning="low"))))
    assert kinds == [
        "UsageUpdate",
        "ReasoningStart",
        "ReasoningDelta",
        "ReasoningEnd",
        "TextDelta",
        "ToolCallStart",
        "ToolCallDelta",
        "ToolCallEnd",
        "UsageUpdate",
        "StreamEnd",
    ]


def test_server_tool_blocks_are_kept_for_the_round_trip_but_yield_no_tool_calls(fake):
    """サーバー側ツール (web 検索) のブロックは、こちらのツール呼び出しにはせず、input を組み立てて保持する。"""
    start = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    result = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}
    frames = [
        sse_frame(
            {"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}, "message_start"
        ),
        sse_frame({"type": "content_block_start", "index": 0, "content_block": start}, "content_block_start"),
        sse_frame(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"query": "天気"}'},
            },
            "content_block_delta",
        ),
        sse_frame({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse_frame({"type": "content_block_start", "index": 1, "content_block": result}, "content_block_start"),
        sse_frame({"type": "content_block_stop", "index": 1}, "content_block_stop"),
        sse_frame(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
            "message_delta",
        ),
        sse_frame({"type": "message_stop"}, "message_stop"),
    ]
    fake.server.enqueue(StreamResponse(frames))
    chunks = list(client(fake).chat_stream(request()))
    assert not [c for c in chunks if isinstance(c, ToolCallStart)]
    blocks = chunks[-1].message.provider_state.data
    assert blocks[0] == {**start, "input": {"query": "天気"}} and blocks[1] == result
    assert chunks[-1].finish_reason == "stop"
