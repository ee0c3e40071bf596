"""OllamaClient のストリーミングのテスト: テキスト、thinking、丸ごと届くツール呼び出し、往復、破損、キャンセル。"""

import json
import random
import threading

import pytest

from llm_router.config.schema import ModelOptions, ProviderConfig, RetryConfig
from llm_router.core.cancel import CancelToken
from llm_router.core.clients.ollama_client import OllamaClient
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
)
from llm_router.core.schemas.errors import ProviderStreamBrokenError, RequestCancelled
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.server import StreamResponse, ndjson_frame

MODEL = "llama3.2"
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


def make_client(fake: OllamaFake, **config) -> OllamaClient:
    """偽サーバーに向けたクライアント (思考モデルの設定つき)。"""
    retry = RetryConfig(max_retries=1, initial_backoff_s=0.01, max_backoff_s=0.02)
    models = {"qwen3*": ModelOptions(reasoning=True), "gpt-oss*": ModelOptions(reasoning=True, reasoning_style="level")}
    cfg = ProviderConfig(
        base_url=fake.base_url,
        chat_model=MODEL,
        retry=retry,
        read_timeout_s=10,
        reasoning_levels={"low": True, "medium": True, "high": True},
        models=models,
        **config,
    )
    return OllamaClient(cfg, None, rng=random.Random(0))


def request(*messages: Message, model: str = MODEL, **kwargs) -> ChatRequest:
    """リクエストを作る。"""
    return ChatRequest(model=model, messages=list(messages) or [Message.user("こんにちは")], **kwargs)


@pytest.fixture(scope="module")
def server():
    """モジュールで共有する偽の Ollama。"""
    with OllamaFake() as f:
        yield f


@pytest.fixture
def fake(server):
    """テストごとに台本と記録を空にした偽の Ollama。"""
    server.reset()
    yield server


def test_text_streams_and_ends_with_usage_from_eval_counts(fake):
    """NDJSON のテキスト断片が順に届き、最後の行の prompt_eval_count / eval_count が使用量になる。"""
    fake.add_text_turn("こんにちは、世界", chunk_size=3, usage=(26, 259))
    chunks = list(make_client(fake).chat_stream(request()))
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["こんに", "ちは、", "世界"]
    end = chunks[-1]
    assert isinstance(end, StreamEnd) and end.message.content == "こんにちは、世界"
    assert end.finish_reason == "stop" and end.provider == "ollama"
    assert (end.usage.input_tokens, end.usage.output_tokens) == (26, 259)
    recorded = fake.requests[0]
    assert recorded.path == "/api/chat" and "authorization" not in recorded.headers


def test_request_body_has_stream_and_options(fake):
    """本文: ``stream: true``、``options.num_predict`` と ``options.temperature``。"""
    fake.add_text_turn("ok")
    list(make_client(fake).chat_stream(request(temperature=0.4, max_tokens=99)))
    body = fake.chat_requests()[0]
    assert body["stream"] is True and body["model"] == MODEL
    assert body["options"] == {"num_predict": 99, "temperature": 0.4}
    assert "think" not in body and "tools" not in body


def test_length_done_reason(fake):
    """``done_reason: length`` は length。"""
    fake.add_text_turn("途中", done_reason="length")
    assert list(make_client(fake).chat_stream(request()))[-1].finish_reason == "length"


def test_thinking_streams_as_reasoning_before_text(fake):
    """``message.thinking`` の断片は推論のチャンクになり、本文の前に閉じる。"""
    fake.add_text_turn("答えは 4", thinking="2+2 を計算する", chunk_size=4)
    chunks = list(make_client(fake).chat_stream(request(model="qwen3:8b", reasoning="high")))
    kinds = [type(c) for c in chunks]
    first_text = kinds.index(TextDelta)
    assert kinds[0] is ReasoningStart and ReasoningEnd in kinds[:first_text]
    assert "".join(c.text for c in chunks if isinstance(c, ReasoningDelta)) == "2+2 を計算する"
    end = chunks[-1]
    assert end.message.reasoning[0].text == "2+2 を計算する" and end.message.content == "答えは 4"
    assert fake.chat_requests()[0]["think"] is True


@pytest.mark.parametrize(
    ("model", "level", "think"),
    [
        ("qwen3:8b", "low", True),
        ("qwen3:8b", "off", False),
        ("gpt-oss:20b", "medium", "medium"),
        ("gpt-oss:20b", "high", "high"),
        ("llama3.2", "high", None),
    ],
)
def test_think_parameter_table(fake, model, level, think):
    """``think`` の値: 思考モデルは true/false、レベルを取るモデルはレベル名、他のモデルには送らない。"""
    fake.add_text_turn("ok")
    client = make_client(fake)
    list(client.chat_stream(request(model=model, reasoning=level)))
    assert fake.chat_requests()[0].get("think") == think
    assert (client.reasoning_warning(model, level) is not None) is (think is None and level != "off")


def test_whole_tool_calls_become_start_delta_end(fake):
    """丸ごと届く並列の呼び出しも start / delta / end になり、サーバーの id を使う。"""
    fake.add_tool_call_turn([("get_weather", {"city": "東京"}), ("add", {"a": 1, "b": 2})])
    chunks = list(make_client(fake).chat_stream(request(tools=[WEATHER, ADD])))
    starts = [c for c in chunks if isinstance(c, ToolCallStart)]
    deltas = [c for c in chunks if isinstance(c, ToolCallDelta)]
    ends = [c for c in chunks if isinstance(c, ToolCallEnd)]
    assert [s.name for s in starts] == ["get_weather", "add"] and [s.index for s in starts] == [0, 1]
    assert all(s.id.startswith("call_") for s in starts)
    assert json.loads(deltas[0].delta) == {"city": "東京"}
    assert [e.call.arguments for e in ends] == [{"city": "東京"}, {"a": 1, "b": 2}]
    assert chunks[-1].finish_reason == "tool_calls"


def test_ids_are_made_when_the_server_gives_none(fake):
    """id の無い古いサーバーでは ID を作り、呼び出しごとに別にする。"""
    fake.add_tool_call_turn([("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})], with_ids=False)
    end = list(make_client(fake).chat_stream(request(tools=[ADD])))[-1]
    ids = [c.id for c in end.message.tool_calls]
    assert all(ids) and len(set(ids)) == 2


def test_tools_are_sent_in_function_form(fake):
    """ツール定義は OpenAI と同じ function 形式。"""
    fake.add_text_turn("ok")
    list(make_client(fake).chat_stream(request(tools=[WEATHER])))
    tool = fake.chat_requests()[0]["tools"][0]
    assert tool["type"] == "function" and tool["function"]["name"] == "get_weather"
    assert tool["function"]["description"] == "天気を調べる"
    assert tool["function"]["parameters"]["properties"]["city"]["type"] == "string"


def test_full_tool_round_trip_sends_results_with_tool_name_and_id(fake):
    """往復: 2 回目の本文にアシスタントの tool_calls (引数はオブジェクト) と role: tool の結果が並ぶ。"""
    fake.add_tool_call_turn([("get_weather", {"city": "東京"}), ("add", {"a": 1, "b": 2})], thinking="調べる")
    fake.add_text_turn("晴れで、合計は 3 です")
    client = make_client(fake)
    history = [Message.system("あなたは助手です"), Message.user("東京の天気と 1+2")]
    first = list(client.chat_stream(request(*history, model="qwen3:8b", tools=[WEATHER, ADD], reasoning="low")))[-1]
    calls = first.message.tool_calls
    history += [
        first.message,
        Message.tool(calls[0].id, "get_weather", {"weather": "晴れ"}),
        Message.tool(calls[1].id, "add", 3),
    ]
    second = list(client.chat_stream(request(*history, model="qwen3:8b", tools=[WEATHER, ADD])))[-1]
    assert second.message.content == "晴れで、合計は 3 です"

    messages = fake.chat_requests()[1]["messages"]
    assert messages[0] == {"role": "system", "content": "あなたは助手です"}
    assert messages[1] == {"role": "user", "content": "東京の天気と 1+2"}
    assistant = messages[2]
    assert assistant["role"] == "assistant" and assistant["content"] == ""
    assert assistant["thinking"] == "調べる"
    assert assistant["tool_calls"] == [
        {"id": calls[0].id, "function": {"name": "get_weather", "arguments": {"city": "東京"}}},
        {"id": calls[1].id, "function": {"name": "add", "arguments": {"a": 1, "b": 2}}},
    ]
    assert messages[3] == {
        "role": "tool",
        "content": '{"weather": "晴れ"}',
        "tool_name": "get_weather",
        "tool_call_id": calls[0].id,
    }
    assert messages[4] == {"role": "tool", "content": "3", "tool_name": "add", "tool_call_id": calls[1].id}
    assert len(messages) == 5


def test_stream_end_carries_text_thinking_and_calls(fake):
    """StreamEnd のメッセージは、テキスト、推論、丸ごと届いたツール呼び出しを組み立てたもの。"""
    fake.add_tool_call_turn([("add", {"a": 2, "b": 5})], text="計算します", thinking="足す")
    response = list(make_client(fake).chat_stream(request(model="qwen3:8b", tools=[ADD], reasoning="medium")))[-1]
    assert fake.chat_requests()[0]["stream"] is True
    assert response.message.content == "計算します"
    assert response.message.reasoning[0].text == "足す"
    assert response.message.tool_calls[0].arguments == {"a": 2, "b": 5}
    assert response.finish_reason == "tool_calls" and response.usage.input_tokens == 31


def test_error_line_inside_the_stream_keeps_the_message(fake):
    """HTTP 200 の後の ``{"error": ...}`` 行はエラーになり、文言が残る。それまでのテキストは届いている。"""
    fake.add_stream_error("an error was encountered while running the model: unexpected EOF", after_text="途中まで")
    seen = []
    with pytest.raises(ProviderStreamBrokenError, match="unexpected EOF"):
        for chunk in make_client(fake).chat_stream(request()):
            seen.append(chunk)
    assert "".join(c.text for c in seen if isinstance(c, TextDelta)) == "途中まで"


def test_stream_broken_mid_way(fake):
    """``done: true`` の前に接続が切れたら provider_stream_broken。"""
    fake.add_text_turn("とても長い応答のテキストです", chunk_size=2, break_after=2)
    with pytest.raises(ProviderStreamBrokenError):
        list(make_client(fake).chat_stream(request()))


def test_stream_closed_cleanly_without_done_is_broken(fake):
    """正常に閉じても ``done: true`` の行が無ければ破損。"""
    line = {"model": MODEL, "message": {"role": "assistant", "content": "a"}, "done": False}
    fake.server.enqueue(StreamResponse([ndjson_frame(line)], content_type="application/x-ndjson"))
    with pytest.raises(ProviderStreamBrokenError):
        list(make_client(fake).chat_stream(request()))


def test_invalid_line_is_stream_broken(fake):
    """JSON でない行は provider_stream_broken。"""
    fake.server.enqueue(StreamResponse([b"{oops\n"], content_type="application/x-ndjson"))
    with pytest.raises(ProviderStreamBrokenError):
        list(make_client(fake).chat_stream(request()))


def test_cancel_while_thinking_closes_the_connection(fake):
    """思考を流している最中のキャンセルで RequestCancelled になり、偽サーバーが切断を見る。"""
    fake.add_text_turn("答え", thinking="長く長く考えている途中", chunk_size=2, stall_after=2)
    token = CancelToken()
    thinking = threading.Event()
    outcome = {}

    def reader():
        """別スレッドで読み続ける。"""
        try:
            for chunk in make_client(fake).chat_stream(request(model="qwen3:8b", reasoning="high"), cancel=token):
                if isinstance(chunk, ReasoningDelta):
                    thinking.set()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=reader)
    thread.start()
    assert thinking.wait(5)
    token.cancel()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), RequestCancelled)
    assert fake.server.client_disconnected.wait(5)
