"""デモ・プロバイダのテスト: 規則ごとの応答、チャンクの形、推論、キャンセル、埋め込み。"""

import threading

import numpy as np
import pytest

from llm_router.config.schema import ProviderConfig
from llm_router.core.cancel import CancelToken
from llm_router.core.clients.demo_client import DemoClient, find_arithmetic, split_pieces
from llm_router.core.schemas.common import (
    ChatRequest,
    EmbeddingRequest,
    Message,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningStart,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolDefinition,
)
from llm_router.core.schemas.errors import RequestCancelled

CALCULATOR = ToolDefinition(
    "calculator",
    "計算",
    {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
)
CURRENT_TIME = ToolDefinition(
    "current_time", "時刻", {"type": "object", "properties": {"timezone": {"type": "string"}}}
)
SEARCH = ToolDefinition(
    "search_documents",
    "検索",
    {
        "type": "object",
        "properties": {"query": {"type": "string"}, "top_k": {"type": "integer"}},
        "required": ["query"],
    },
)
LOCALE = ToolDefinition("get_locale", "ブラウザのロケールを返す", {"type": "object", "properties": {}})
CONFIRM = ToolDefinition(
    "confirm_action",
    "ユーザーに確認する",
    {
        "type": "object",
        "properties": {"message": {"type": "string"}, "level": {"type": "string", "enum": ["info", "warn"]}},
        "required": ["message"],
    },
)


def _client(delay: float = 0.0) -> DemoClient:
    """待ち時間を指定したデモ・クライアント。"""
    return DemoClient(ProviderConfig(base_url="inproc://demo", chat_model="scripted", stream_delay_s=delay))


def _request(text: str, tools=(), **kwargs) -> ChatRequest:
    """ユーザーメッセージ 1 つのリクエスト。"""
    return ChatRequest(model="scripted", messages=[Message.user(text)], tools=list(tools), **kwargs)


def _end(chunks) -> StreamEnd:
    """最後のチャンク (StreamEnd)。"""
    assert isinstance(chunks[-1], StreamEnd)
    return chunks[-1]


def test_plain_message_streams_a_long_japanese_help_text_piece_by_piece():
    """規則に当たらないメッセージには、デモであることを告げる説明が断片で流れる。"""
    chunks = list(_client().chat_stream(_request("hello")))
    deltas = [c.text for c in chunks if isinstance(c, TextDelta)]
    end = _end(chunks)
    assert len(deltas) > 50
    assert "".join(deltas) == end.message.content
    assert "デモ" in end.message.content and "calculator" in end.message.content
    assert end.finish_reason == "stop" and end.provider == "demo"
    assert end.usage.input_tokens > 0 and end.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12 * (3 + 4) を計算して", "12 * (3 + 4)"),
        ("2+3", "2+3"),
        ("１０×５は?", "10*5"),
        ("2^10", "2**10"),
        ("こんにちは 42", None),
    ],
)
def test_find_arithmetic(text, expected):
    """算術式の取り出し (全角や × も)。"""
    assert find_arithmetic(text) == expected


def test_split_pieces_round_trips():
    """断片を連結すると元のテキストに戻る。"""
    text = "Hello world、これは テストです。 2 + 3\n次の行"
    assert "".join(split_pieces(text)) == text
    assert len(split_pieces(text)) > 5


def test_arithmetic_calls_the_calculator_with_start_delta_end():
    """算術式があれば calculator を呼ぶ。呼び出しは start / 1 つ以上の delta / end の形。"""
    chunks = list(_client().chat_stream(_request("12 * (3 + 4) を計算して", [CALCULATOR])))
    kinds = [type(c) for c in chunks if isinstance(c, ToolCallStart | ToolCallDelta | ToolCallEnd)]
    assert kinds[0] is ToolCallStart and kinds[-1] is ToolCallEnd and ToolCallDelta in kinds
    end = _end(chunks)
    assert end.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in end.message.tool_calls] == [("calculator", {"expression": "12 * (3 + 4)"})]


def test_calculator_is_not_called_when_not_offered():
    """calculator が渡されていなければ呼ばない。"""
    end = _end(list(_client().chat_stream(_request("2+3"))))
    assert end.message.tool_calls == [] and "デモ" in end.message.content


def test_time_question_calls_current_time():
    """時刻の質問には current_time (日本語なら Asia/Tokyo)。"""
    end = _end(list(_client().chat_stream(_request("今何時ですか", [CALCULATOR, CURRENT_TIME]))))
    assert [(c.name, c.arguments) for c in end.message.tool_calls] == [("current_time", {"timezone": "Asia/Tokyo"})]
    end = _end(list(_client().chat_stream(_request("what time is it?", [CURRENT_TIME]))))
    assert end.message.tool_calls[0].arguments == {"timezone": "UTC"}


def test_search_words_call_search_documents():
    """検索・資料の依頼には search_documents。"""
    end = _end(list(_client().chat_stream(_request("資料を検索して: 返品", [SEARCH]))))
    assert end.message.tool_calls[0].name == "search_documents"
    assert end.message.tool_calls[0].arguments["query"] == "資料を検索して: 返品"


def test_client_tools_are_called_by_concept_words_with_arguments_from_the_schema():
    """ロケール → get_locale、確認 → confirm_action (必須の引数はスキーマから作る)。両方なら並列に。"""
    end = _end(list(_client().chat_stream(_request("ロケールを確認して", [LOCALE, CONFIRM]))))
    calls = {c.name: c.arguments for c in end.message.tool_calls}
    assert calls == {"get_locale": {}, "confirm_action": {"message": "ロケールを確認して", "level": "info"}}
    single = _end(
        list(_client().chat_stream(_request("ロケールを確認して", [LOCALE, CONFIRM], parallel_tool_calls=False)))
    )
    assert len(single.message.tool_calls) == 1


def test_tool_choice_none_disables_tools_and_a_named_choice_forces_one():
    """tool_choice none ならツールを呼ばない。名前の指定なら、そのツールを呼ぶ。"""
    none = _end(list(_client().chat_stream(_request("2+3", [CALCULATOR], tool_choice=ToolChoice("none")))))
    assert none.message.tool_calls == []
    forced = _end(
        list(_client().chat_stream(_request("hello", [LOCALE], tool_choice=ToolChoice("tool", "get_locale"))))
    )
    assert forced.message.tool_calls[0].name == "get_locale"


def test_after_tool_results_it_answers_with_them():
    """最後がツール結果なら、それを使った文章で答える (エラーの結果も伝える)。"""
    messages = [
        Message.user("2+3 と時刻"),
        Message.assistant("", [ToolCall("a", "calculator", {}), ToolCall("b", "current_time", {})]),
        Message.tool("a", "calculator", 5),
        Message.tool("b", "current_time", "bad zone", is_error=True),
    ]
    end = _end(list(_client().chat_stream(ChatRequest("scripted", messages, tools=[CALCULATOR, CURRENT_TIME]))))
    assert end.message.tool_calls == []
    assert "計算結果は 5 です" in end.message.content and "エラー" in end.message.content


def test_reasoning_streams_first_when_asked():
    """reasoning が off 以外なら、テキストの前に推論 (start / delta / end) を流す。"""
    chunks = list(_client().chat_stream(_request("hello", reasoning="low")))
    kinds = [type(c) for c in chunks]
    assert (
        kinds.index(ReasoningStart) < kinds.index(ReasoningDelta) < kinds.index(ReasoningEnd) < kinds.index(TextDelta)
    )
    end = _end(chunks)
    assert end.message.reasoning[0].text and end.message.reasoning[0].signature is None
    assert end.usage.reasoning_tokens > 0
    assert ReasoningStart not in [type(c) for c in _client().chat_stream(_request("hello"))]


def test_cancel_stops_the_stream_at_once():
    """断片の間の待ちはトークンで待つので、キャンセルで即座に RequestCancelled。"""
    client = _client(delay=30.0)
    token = CancelToken()
    seen: list[object] = []
    failure: list[BaseException] = []

    def consume():
        """ストリームを読む。"""
        try:
            for chunk in client.chat_stream(_request("hello"), cancel=token):
                seen.append(chunk)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    token.cancel()
    worker.join(5)
    assert not worker.is_alive()
    assert isinstance(failure[0], RequestCancelled)
    assert not any(isinstance(c, StreamEnd) for c in seen)


def test_stream_end_carries_the_calculator_call():
    """算術式への応答の StreamEnd は、calculator の呼び出しと終了理由 tool_calls を持つ。"""
    response = list(_client().chat_stream(_request("2+3", [CALCULATOR])))[-1]
    assert response.finish_reason == "tool_calls" and response.message.tool_calls[0].name == "calculator"


def test_embed_uses_the_hashing_embedder():
    """埋め込みは入力順の float32・L2 正規化の行列。同じテキストは同じベクトル。"""
    response = _client().embed(EmbeddingRequest("hashing", ["返品の規則", "返品の規則", "weather"], dimensions=64))
    vectors = response.vectors
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[1])
    assert response.usage.input_tokens > 0


def test_interface_helpers():
    """警告は無く、repr にキーは出ない。"""
    client = _client()
    assert client.tool_warnings([CALCULATOR], "scripted") == []
    assert client.reasoning_warning("scripted", "high") is None
    assert client.provider == "demo" and repr(client) == "DemoClient()"
    client.close()
