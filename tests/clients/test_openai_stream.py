"""OpenAIClient のストリーミングのテスト: テキスト、ツール呼び出し (並列・交互)、往復、非ストリーミング、破損、キャンセル。"""

import json
import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_router.config.schema import ProviderConfig, RetryConfig
from llm_router.core.cancel import CancelToken
from llm_router.core.clients.openai_client import OpenAIClient
from llm_router.core.schemas.common import (
    ChatRequest,
    Message,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningStart,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolDefinition,
    UsageUpdate,
)
from llm_router.core.schemas.errors import (
    ProviderStreamBrokenError,
    ProviderUnavailableError,
    RequestCancelled,
)
from tests.fakes.openai_fake import OpenAIFake, usage_body
from tests.fakes.server import StreamResponse, sse_frame

MODEL = "gpt-4.1-mini"
WEATHER = ToolDefinition(
    "get_weather",
    "天気を調べる",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ADD = ToolDefinition(
    "add",
    "足し算",
    {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]},
)


def make_client(fake: OpenAIFake, **config) -> OpenAIClient:
    """偽サーバーに向けたクライアント (再試行の待ちは短く)。"""
    retry = RetryConfig(max_retries=2, initial_backoff_s=0.01, max_backoff_s=0.02)
    cfg = ProviderConfig(base_url=fake.base_url, chat_model=MODEL, retry=retry, read_timeout_s=10, **config)
    return OpenAIClient(cfg, "sk-test-key-0123456789", rng=random.Random(0))


def request(*messages: Message, **kwargs) -> ChatRequest:
    """既定のモデルのリクエスト。"""
    return ChatRequest(model=MODEL, messages=list(messages) or [Message.user("こんにちは")], **kwargs)


@pytest.fixture(scope="module")
def server():
    """モジュールで共有する偽の OpenAI (起動と停止は 1 回)。"""
    with OpenAIFake() as f:
        yield f


@pytest.fixture
def fake(server):
    """テストごとに台本と記録を空にした偽の OpenAI。"""
    server.reset()
    yield server


def test_text_streams_in_order_and_ends_with_the_assembled_message(fake):
    """テキストが断片ごとに届き、最後に組み立て済みのメッセージと使用量が来る。"""
    fake.add_text_turn("こんにちは、世界", chunk_size=3)
    chunks = list(make_client(fake).chat_stream(request()))
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["こんに", "ちは、", "世界"]
    end = chunks[-1]
    assert isinstance(end, StreamEnd)
    assert end.message.content == "こんにちは、世界" and end.message.role == "assistant"
    assert end.finish_reason == "stop" and end.provider == "openai" and end.model == MODEL
    assert end.usage.input_tokens == 11 and end.usage.output_tokens == 3


def test_request_asks_for_usage_in_the_stream(fake):
    """ストリームでは ``stream_options.include_usage`` を求め、使用量のチャンクを UsageUpdate にする。"""
    fake.add_text_turn("ok")
    chunks = list(make_client(fake).chat_stream(request()))
    body = fake.chat_requests()[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert any(isinstance(c, UsageUpdate) for c in chunks)


def test_single_tool_call_streams_start_deltas_end(fake):
    """1 つの呼び出し: start (id, name) → 引数の断片 → end (解析済み)。"""
    fake.add_tool_call_turn([("get_weather", {"city": "東京"})], arg_chunk_size=4)
    chunks = list(make_client(fake).chat_stream(request(tools=[WEATHER])))
    start = next(c for c in chunks if isinstance(c, ToolCallStart))
    deltas = [c.delta for c in chunks if isinstance(c, ToolCallDelta)]
    end = next(c for c in chunks if isinstance(c, ToolCallEnd))
    assert start.name == "get_weather" and start.id.startswith("call_")
    assert len(deltas) > 1 and json.loads("".join(deltas)) == {"city": "東京"}
    assert end.call.id == start.id and end.call.arguments == {"city": "東京"}
    assert chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].message.tool_calls[0].arguments == {"city": "東京"}


def test_parallel_tool_calls_interleaved_by_index_are_assembled_per_index(fake):
    """交互に届く 2 つの呼び出しの差分を index ごとに組み立てる (id ではなく index)。"""
    fake.add_tool_call_turn([("get_weather", {"city": "大阪"}), ("add", {"a": 1, "b": 2})], arg_chunk_size=3)
    chunks = list(make_client(fake).chat_stream(request(tools=[WEATHER, ADD])))
    order = [c.index for c in chunks if isinstance(c, ToolCallDelta)]
    assert order[:4] == [0, 1, 0, 1]  # 本当に交互に届いている
    ends = {c.index: c.call for c in chunks if isinstance(c, ToolCallEnd)}
    assert ends[0].name == "get_weather" and ends[0].arguments == {"city": "大阪"}
    assert ends[1].name == "add" and ends[1].arguments == {"a": 1, "b": 2}
    per_index = {i: "".join(c.delta for c in chunks if isinstance(c, ToolCallDelta) and c.index == i) for i in (0, 1)}
    assert json.loads(per_index[1]) == {"a": 1, "b": 2}
    assert [c.name for c in chunks[-1].message.tool_calls] == ["get_weather", "add"]


def test_every_tool_call_ends_before_the_stream_end(fake):
    """すべての ToolCallEnd は StreamEnd より前に来る。"""
    fake.add_tool_call_turn([("get_weather", {"city": "a"}), ("add", {"a": 1, "b": 1})], interleave=False)
    chunks = list(make_client(fake).chat_stream(request(tools=[WEATHER, ADD])))
    ends = [i for i, c in enumerate(chunks) if isinstance(c, ToolCallEnd)]
    assert len(ends) == 2 and max(ends) < len(chunks) - 1


def test_text_before_tool_calls_is_kept(fake):
    """呼び出しの前のテキストもメッセージに残る。"""
    fake.add_tool_call_turn([("get_weather", {"city": "札幌"})], text="調べます")
    end = list(make_client(fake).chat_stream(request(tools=[WEATHER])))[-1]
    assert end.message.content == "調べます" and len(end.message.tool_calls) == 1


def test_full_tool_round_trip_sends_results_in_openai_form(fake):
    """往復: 2 回目の本文にアシスタントの tool_calls (JSON 文字列) と role: tool の結果が並ぶ。"""
    fake.add_tool_call_turn([("get_weather", {"city": "東京"}), ("add", {"a": 1, "b": 2})])
    fake.add_text_turn("東京は晴れ、合計は 3 です")
    client = make_client(fake)
    history = [Message.system("あなたは助手です"), Message.user("東京の天気と 1+2")]
    first = list(client.chat_stream(request(*history, tools=[WEATHER, ADD])))[-1]
    calls = first.message.tool_calls
    history.append(first.message)
    history.append(Message.tool(calls[0].id, "get_weather", {"weather": "晴れ"}))
    history.append(Message.tool(calls[1].id, "add", 3))
    second = list(client.chat_stream(request(*history, tools=[WEATHER, ADD])))[-1]
    assert second.message.content == "東京は晴れ、合計は 3 です"

    messages = fake.chat_requests()[1]["messages"]
    assert messages[0] == {"role": "system", "content": "あなたは助手です"}
    assert messages[1] == {"role": "user", "content": "東京の天気と 1+2"}
    assistant = messages[2]
    assert assistant["role"] == "assistant" and assistant["content"] is None
    assert [c["id"] for c in assistant["tool_calls"]] == [calls[0].id, calls[1].id]
    assert assistant["tool_calls"][0]["type"] == "function"
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert isinstance(assistant["tool_calls"][0]["function"]["arguments"], str)
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "東京"}
    assert json.loads(assistant["tool_calls"][1]["function"]["arguments"]) == {"a": 1, "b": 2}
    assert messages[3] == {"role": "tool", "tool_call_id": calls[0].id, "content": '{"weather": "晴れ"}'}
    assert messages[4] == {"role": "tool", "tool_call_id": calls[1].id, "content": "3"}
    assert len(messages) == 5


def test_failed_tool_result_is_marked_in_the_content(fake):
    """失敗したツールの結果は本文に Error: を付けて送る (OpenAI には is_error の欄が無い)。"""
    fake.add_text_turn("ok")
    history = [
        Message.user("x"),
        Message.assistant("", []),
        Message.tool("call_1", "get_weather", "city not found", is_error=True),
    ]
    list(make_client(fake).chat_stream(request(*history)))
    tool = fake.chat_requests()[0]["messages"][-1]
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "Error: city not found"}


def test_stream_end_carries_the_assembled_message(fake):
    """StreamEnd は、テキストとツール呼び出しを組み立てたメッセージ、終了理由、使用量を持つ。"""
    fake.add_tool_call_turn([("add", {"a": 2, "b": 5})], text="計算します")
    response = list(make_client(fake).chat_stream(request(tools=[ADD])))[-1]
    assert fake.chat_requests()[0]["stream"] is True
    assert response.message.content == "計算します"
    assert response.message.tool_calls[0].name == "add"
    assert response.message.tool_calls[0].arguments == {"a": 2, "b": 5}
    assert response.finish_reason == "tool_calls" and response.usage.input_tokens == 23


def test_stream_end_of_a_text_answer(fake):
    """テキストだけの応答の StreamEnd。"""
    fake.add_text_turn("はい")
    response = list(make_client(fake).chat_stream(request()))[-1]
    assert response.message.content == "はい" and response.finish_reason == "stop"


def test_reasoning_tokens_are_read_from_usage(fake):
    """``completion_tokens_details.reasoning_tokens`` が usage.reasoning_tokens になる。"""
    fake.add_text_turn("答え", usage=usage_body(20, 150, 128))
    end = list(make_client(fake).chat_stream(request()))[-1]
    assert (end.usage.input_tokens, end.usage.output_tokens, end.usage.reasoning_tokens) == (20, 150, 128)


def test_reasoning_content_of_compatible_servers_becomes_reasoning_chunks(fake):
    """互換サーバーの ``delta.reasoning_content`` は推論のチャンクになり、本文の前に閉じる。"""
    frames = [
        sse_frame({"choices": [{"index": 0, "delta": {"reasoning_content": "考え"}, "finish_reason": None}]}),
        sse_frame({"choices": [{"index": 0, "delta": {"reasoning_content": "中"}, "finish_reason": None}]}),
        sse_frame({"choices": [{"index": 0, "delta": {"content": "答え"}, "finish_reason": None}]}),
        sse_frame({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        sse_frame("[DONE]"),
    ]
    fake.server.enqueue(StreamResponse(frames))
    chunks = list(make_client(fake).chat_stream(request()))
    kinds = [type(c) for c in chunks]
    assert kinds[:4] == [ReasoningStart, ReasoningDelta, ReasoningDelta, ReasoningEnd]
    assert kinds[4] is TextDelta
    assert chunks[-1].message.reasoning[0].text == "考え中"


@pytest.mark.parametrize(
    ("wire", "normalised"),
    [("stop", "stop"), ("length", "length"), ("content_filter", "content_filter"), ("tool_calls", "tool_calls")],
)
def test_finish_reasons_are_normalised(fake, wire, normalised):
    """finish_reason の正規化の表。"""
    fake.add_text_turn("x", finish_reason=wire)
    assert list(make_client(fake).chat_stream(request()))[-1].finish_reason == normalised


def test_error_frame_inside_the_stream_raises_with_the_provider_message(fake):
    """HTTP 200 の後の ``data: {"error": ...}`` は共有のエラー型になり、プロバイダの文言が残る。"""
    fake.add_stream_error("The server had an error while processing your request.", after_text="途中まで")
    seen = []
    with pytest.raises(ProviderUnavailableError, match="The server had an error") as info:
        for chunk in make_client(fake).chat_stream(request()):
            seen.append(chunk)
    assert "".join(c.text for c in seen if isinstance(c, TextDelta)) == "途中まで"
    assert info.value.error_type == "server_error"


def test_stream_error_of_unknown_type_is_stream_broken(fake):
    """未知の type の error フレームは provider_stream_broken。"""
    fake.add_stream_error("something odd", type="weird_error")
    with pytest.raises(ProviderStreamBrokenError, match="something odd"):
        list(make_client(fake).chat_stream(request()))


def test_stream_broken_mid_way(fake):
    """[DONE] も finish_reason も無いまま接続が切れたら provider_stream_broken。部分は届いている。"""
    fake.add_text_turn("とても長い応答のテキストです", chunk_size=2, break_after=3)
    seen = []
    with pytest.raises(ProviderStreamBrokenError):
        for chunk in make_client(fake).chat_stream(request()):
            seen.append(chunk)
    assert [c.text for c in seen if isinstance(c, TextDelta)] == ["とて", "も長"]


def test_stream_ending_cleanly_without_done_is_broken(fake):
    """正常に閉じても finish_reason と [DONE] が無ければ破損とする。"""
    frames = [sse_frame({"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]})]
    fake.server.enqueue(StreamResponse(frames))
    with pytest.raises(ProviderStreamBrokenError):
        list(make_client(fake).chat_stream(request()))


def test_invalid_json_frame_is_stream_broken(fake):
    """JSON でないフレームは provider_stream_broken。"""
    fake.server.enqueue(StreamResponse([b"data: {not json\n\n"]))
    with pytest.raises(ProviderStreamBrokenError):
        list(make_client(fake).chat_stream(request()))


def test_cancel_mid_stream_closes_the_connection(fake):
    """ストリームが止まっている間のキャンセルで RequestCancelled になり、偽サーバーが切断を見る。"""
    fake.add_text_turn("止まる応答のテキスト", chunk_size=2, stall_after=3)
    token = CancelToken()
    got_text = threading.Event()
    outcome = {}

    def reader():
        """別スレッドで読み続ける。"""
        try:
            for chunk in make_client(fake).chat_stream(request(), cancel=token):
                if isinstance(chunk, TextDelta):
                    got_text.set()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=reader)
    thread.start()
    assert got_text.wait(5)
    token.cancel()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), RequestCancelled)
    assert fake.server.client_disconnected.wait(5)


def test_closing_the_iterator_early_closes_the_response(fake):
    """呼び手が途中で読むのをやめても、応答は閉じられる (偽サーバーが切断を見る)。"""
    fake.add_text_turn("止まる応答のテキスト", chunk_size=2, stall_after=2)
    stream = make_client(fake).chat_stream(request())
    assert isinstance(next(stream), TextDelta)
    stream.close()
    assert fake.server.client_disconnected.wait(5)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    args=st.lists(st.dictionaries(st.text(min_size=1, max_size=6), _json_values, max_size=4), min_size=1, max_size=3),
    size=st.integers(1, 12),
    interleave=st.booleans(),
)
def test_tool_call_arguments_survive_any_split_and_interleaving(server, args, size, interleave):
    """引数がどう分割・交互に届いても、index ごとに元の引数が組み立てられる (性質テスト)。"""
    server.reset()
    calls = [(f"tool_{i}", a) for i, a in enumerate(args)]
    server.add_tool_call_turn(calls, arg_chunk_size=size, interleave=interleave)
    end = list(make_client(server).chat_stream(request()))[-1]
    assert [(c.name, c.arguments) for c in end.message.tool_calls] == calls
