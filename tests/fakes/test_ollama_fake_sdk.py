"""偽の Ollama が本物の形を話すことを、公式 SDK (ollama-python) に解析させて確かめる。

SDK はテストの中だけで使う独立した本物のクライアント (製品コードは SDK を使わない)。
"""

import ollama
import pytest

from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import embedding_vector

MESSAGES = [{"role": "user", "content": "こんにちは"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "天気",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


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


@pytest.fixture
def sdk(fake):
    """偽サーバーに向けた公式 SDK。"""
    return ollama.Client(host=fake.base_url)


def test_sdk_parses_streamed_text_thinking_and_the_done_line(fake, sdk):
    """SDK が content と thinking の断片、最後の行の done_reason とトークン数を解析する。"""
    fake.add_text_turn("こんにちは、世界", chunk_size=3, thinking="挨拶を返す", usage=(26, 9))
    parts = list(sdk.chat(model="qwen3", messages=MESSAGES, stream=True, think=True))
    assert "".join(p.message.thinking or "" for p in parts) == "挨拶を返す"
    assert "".join(p.message.content or "" for p in parts) == "こんにちは、世界"
    last = parts[-1]
    assert last.done is True and last.done_reason == "stop"
    assert (last.prompt_eval_count, last.eval_count) == (26, 9)
    assert fake.requests[0].json()["think"] is True


def test_sdk_parses_whole_tool_calls_with_object_arguments(fake, sdk):
    """ツール呼び出しは 1 行に丸ごと入り、引数はオブジェクト。"""
    fake.add_tool_call_turn([("get_weather", {"city": "東京"}), ("get_weather", {"city": "大阪"})])
    parts = list(sdk.chat(model="llama3.2", messages=MESSAGES, tools=TOOLS, stream=True))
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert [c.function.arguments for c in calls] == [{"city": "東京"}, {"city": "大阪"}]


def test_sdk_parses_a_non_streaming_response(fake, sdk):
    """``stream: false`` の 1 つの応答。"""
    fake.add_text_turn("はい", thinking="短く")
    response = sdk.chat(model="qwen3", messages=MESSAGES, think=True)
    assert response.message.content == "はい" and response.message.thinking == "短く" and response.done


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (404, 'model "llama9" not found, try pulling it first'),
        (400, "registry.ollama.ai/library/gemma2:2b does not support tools"),
        (500, "llama runner process has terminated"),
    ],
)
def test_sdk_raises_response_error_with_status_and_message(fake, sdk, status, message):
    """``{"error": ...}`` のエラー応答を SDK が ResponseError (status と文言) にする。"""
    fake.add_error(status, message)
    with pytest.raises(ollama.ResponseError) as info:
        list(sdk.chat(model="x", messages=MESSAGES, stream=True))
    assert info.value.status_code == status and info.value.error == message


def test_sdk_raises_for_an_error_line_inside_the_stream(fake, sdk):
    """HTTP 200 の後の ``{"error": ...}`` 行を SDK が ResponseError にする。"""
    fake.add_stream_error("an error was encountered while running the model", after_text="途中")
    seen = []
    with pytest.raises(ollama.ResponseError, match="an error was encountered"):
        for part in sdk.chat(model="x", messages=MESSAGES, stream=True):
            seen.append(part.message.content)
    assert "".join(seen) == "途中"


def test_sdk_parses_embed(fake, sdk):
    """``/api/embed`` の応答を SDK が解析する。"""
    response = sdk.embed(model="nomic-embed-text", input=["一", "二"])
    assert len(response.embeddings) == 2
    assert list(response.embeddings[1]) == pytest.approx(embedding_vector("二", 8))


def test_sdk_against_rule_mode(fake, sdk):
    """規則モード: ツール名を含む発話は呼び出し、結果の後はそれを引用するテキスト。"""
    fake.rules = True
    try:
        first = sdk.chat(model="llama3.2", messages=[{"role": "user", "content": "get_weather を使って"}], tools=TOOLS)
        call = first.message.tool_calls[0]
        assert call.function.name == "get_weather" and call.function.arguments == {"city": "テスト"}
        follow = [
            {"role": "user", "content": "get_weather を使って"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "晴れ", "tool_name": "get_weather"},
        ]
        second = sdk.chat(model="llama3.2", messages=follow, tools=TOOLS)
        assert "晴れ" in second.message.content
        assert sdk.list().models[0].model == "llama3.2:latest"
    finally:
        fake.rules = False
