"""OllamaClient のエラー、再試行、埋め込み、リクエスト変換の細部のテスト (偽サーバー相手)。"""

import random

import numpy as np
import pytest

from llm_router.config.schema import ModelOptions, ProviderConfig, RetryConfig
from llm_router.config.settings import load_settings
from llm_router.core.clients.ollama_client import OllamaClient
from llm_router.core.schemas.common import (
    ChatRequest,
    EmbeddingRequest,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolDefinition,
)
from llm_router.core.schemas.errors import (
    ModelNotFoundError,
    ProviderBadRequestError,
    ProviderRateLimitedError,
    ProviderStreamBrokenError,
    ProviderUnavailableError,
)
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import embedding_vector
from tests.fakes.server import JSONResponse

A = ToolDefinition("tool_a", "A", {"type": "object", "properties": {}})
B = ToolDefinition("tool_b", "B", {"type": "object", "properties": {}})


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


def make_client(fake, **config) -> OllamaClient:
    """偽サーバーに向けたクライアント。"""
    retry = RetryConfig(max_retries=1, initial_backoff_s=0.01, max_backoff_s=0.02)
    cfg = ProviderConfig(base_url=fake.base_url, chat_model="llama3.2", retry=retry, read_timeout_s=10, **config)
    return OllamaClient(cfg, None, rng=random.Random(0))


def req(**kwargs) -> ChatRequest:
    """最小のリクエスト。"""
    return ChatRequest(
        model=kwargs.pop("model", "llama3.2"), messages=kwargs.pop("messages", [Message.user("hi")]), **kwargs
    )


def test_model_not_found_is_model_not_found_with_the_message(fake):
    """404 ``model "x" not found, try pulling it first`` は ModelNotFoundError で、文言が残る。"""
    fake.add_error(404, 'model "llama9" not found, try pulling it first')
    with pytest.raises(ModelNotFoundError, match='model "llama9" not found, try pulling it first') as info:
        list(make_client(fake).chat_stream(req(model="llama9")))
    assert info.value.status == 404 and len(fake.requests) == 1
    assert "ollama/llama9" in info.value.message


def test_model_not_found_carries_the_configured_retirement_note(fake):
    """設定 ``models`` が提供終了とするモデルの 404 には、その注記が付く。"""
    fake.add_error(404, 'model "llama2" not found, try pulling it first')
    models = {"llama2*": ModelOptions(retired=True, note="llama3.2 へ移行")}
    with pytest.raises(ModelNotFoundError, match=r"retired: llama3\.2 へ移行"):
        list(make_client(fake, models=models).chat_stream(req(model="llama2")))


def test_model_without_tool_support_keeps_the_message_verbatim(fake):
    """400 "... does not support tools" は ProviderBadRequestError で、文言はそのまま。"""
    message = "registry.ollama.ai/library/gemma2:2b does not support tools"
    fake.add_error(400, message)
    with pytest.raises(ProviderBadRequestError) as info:
        list(make_client(fake).chat_stream(req(model="gemma2:2b", tools=[A])))
    assert info.value.message == message and type(info.value) is ProviderBadRequestError


@pytest.mark.parametrize(
    ("status", "cls"),
    [(429, ProviderRateLimitedError), (500, ProviderUnavailableError), (502, ProviderUnavailableError)],
)
def test_retryable_statuses_are_retried_once_then_raised(fake, status, cls):
    """429 / 500 / 502 は再試行し、上限を越えたら共有のエラー型で投げる。"""
    fake.add_error(status, "server busy")
    fake.add_error(status, "server busy")
    with pytest.raises(cls, match="server busy"):
        list(make_client(fake).chat_stream(req()))
    assert len(fake.requests) == 2


def test_retry_then_success(fake):
    """503 の後に成功する。"""
    fake.add_error(503, "loading model", headers={"retry-after": "0.01"})
    fake.add_text_turn("ok")
    waits = []
    end = list(make_client(fake).chat_stream(req(), on_retry=lambda n, w, e: waits.append(w)))[-1]
    assert end.message.content == "ok" and waits == [0.01]


def test_embeddings_are_batched_in_input_order_as_float32(fake):
    """``/api/embed`` をバッチに分けて呼び、入力順の float32 行列を返す。"""
    texts = ["一", "二", "三", "四", "五"]
    result = make_client(fake, embedding_batch_size=2).embed(EmbeddingRequest(model="nomic-embed-text", inputs=texts))
    bodies = [r.json() for r in fake.requests]
    assert [r.path for r in fake.requests] == ["/api/embed"] * 3
    assert [b["input"] for b in bodies] == [texts[:2], texts[2:4], texts[4:]]
    assert all(b["model"] == "nomic-embed-text" for b in bodies)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (5, 8)
    np.testing.assert_allclose(result.vectors[3], np.asarray(embedding_vector("四", 8), dtype=np.float32), rtol=1e-6)


def test_embedding_error_and_wrong_count(fake):
    """埋め込みのエラー応答と、数の合わない応答。"""
    fake.add_error(404, 'model "nope" not found, try pulling it first', endpoint="embed")
    with pytest.raises(ModelNotFoundError):
        make_client(fake).embed(EmbeddingRequest(model="nope", inputs=["x"]))
    fake.add_turn(lambda r: JSONResponse({"embeddings": []}), "embed")
    with pytest.raises(ProviderStreamBrokenError):
        make_client(fake).embed(EmbeddingRequest(model="m", inputs=["x"]))


def body(request: ChatRequest) -> dict:
    """本文だけを作る (通信しない)。"""
    cfg = ProviderConfig(base_url="http://127.0.0.1:9", chat_model="llama3.2")
    return OllamaClient(cfg, None).build_body(request, stream=True)


def test_tool_choice_none_sends_no_tools_and_named_sends_only_that_tool():
    """Ollama には tool_choice が無い: none ならツールを送らず、名指しならそのツールだけを送る。"""
    assert "tools" not in body(req(tools=[A, B], tool_choice=ToolChoice("none")))
    named = body(req(tools=[A, B], tool_choice=ToolChoice("tool", "tool_b")))
    assert [t["function"]["name"] for t in named["tools"]] == ["tool_b"]
    assert len(body(req(tools=[A, B], tool_choice=ToolChoice("required")))["tools"]) == 2


def test_images_are_sent_as_base64_list():
    """画像は base64 の ``images`` に入る。"""
    out = body(req(messages=[Message.user([TextPart("何?"), ImagePart(data="aGVsbG8=", mime_type="image/png")])]))
    assert out["messages"][0] == {"role": "user", "content": "何?", "images": ["aGVsbG8="]}


def test_interrupted_assistant_message_is_sent_as_its_text():
    """中断された発話はテキストだけを送る。"""
    partial = Message.assistant("途中", [ToolCall("c1", "tool_a", {})])
    partial.interrupted = True
    out = body(req(messages=[Message.user("a"), partial]))
    assert out["messages"][1] == {"role": "assistant", "content": "途中"}


def test_failed_tool_result_is_marked():
    """失敗したツールの結果は本文に Error: を付ける。"""
    out = body(req(messages=[Message.tool("c1", "tool_a", "boom", is_error=True)]))
    assert out["messages"][0] == {"role": "tool", "content": "Error: boom", "tool_name": "tool_a", "tool_call_id": "c1"}


def test_shipped_config_thinking_models():
    """同梱の設定: qwen3 は think: true、gpt-oss はレベル名、llama3.2 は送らず警告。"""
    cfg = load_settings(env_file=None, environ={}).provider("ollama")
    client = OllamaClient(cfg, None)
    assert client.build_body(req(model="qwen3:4b", reasoning="low"), stream=True)["think"] is True
    assert client.build_body(req(model="gpt-oss:20b", reasoning="high"), stream=True)["think"] == "high"
    assert "think" not in client.build_body(req(model="llama3.2", reasoning="high"), stream=True)
    assert "llama3.2" in client.reasoning_warning("llama3.2", "high")
