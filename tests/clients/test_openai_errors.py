"""OpenAIClient のエラー、再試行、埋め込み、API キーの扱いのテスト (偽サーバー相手)。"""

import logging
import random

import numpy as np
import pytest

from llm_router.config.schema import ModelOptions, ProviderConfig, RetryConfig
from llm_router.core.clients.openai_client import OpenAIClient
from llm_router.core.schemas.common import ChatRequest, EmbeddingRequest, Message, StreamEnd
from llm_router.core.schemas.errors import (
    ModelNotFoundError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from tests.fakes.openai_fake import OpenAIFake, embedding_vector

SECRET = "sk-proj-SECRET0123456789abcdef"


@pytest.fixture(scope="module")
def server():
    """モジュールで共有する偽の OpenAI。"""
    with OpenAIFake() as f:
        yield f


@pytest.fixture
def fake(server):
    """テストごとに台本と記録を空にした偽の OpenAI。"""
    server.reset()
    yield server


def make_client(fake, max_retries=2, **config) -> OpenAIClient:
    """偽サーバーに向けたクライアント。"""
    retry = RetryConfig(max_retries=max_retries, initial_backoff_s=0.01, max_backoff_s=0.02)
    cfg = ProviderConfig(base_url=fake.base_url, chat_model="gpt-4.1-mini", retry=retry, read_timeout_s=10, **config)
    return OpenAIClient(cfg, SECRET, rng=random.Random(0))


def req() -> ChatRequest:
    """最小のリクエスト。"""
    return ChatRequest(model="gpt-4.1-mini", messages=[Message.user("hi")])


@pytest.mark.parametrize(
    ("status", "kind", "code", "cls"),
    [
        (400, "invalid_request_error", None, ProviderBadRequestError),
        (401, "invalid_request_error", "invalid_api_key", ProviderAuthError),
        (403, "invalid_request_error", "unsupported_country_region_territory", ProviderAuthError),
        (404, "invalid_request_error", "model_not_found", ModelNotFoundError),
        (408, "timeout", None, ProviderTimeoutError),
        (500, "server_error", None, ProviderUnavailableError),
        (503, "server_error", None, ProviderUnavailableError),
    ],
)
def test_http_errors_map_to_shared_types_with_the_provider_message(fake, status, kind, code, cls):
    """HTTP エラーの対応表 (再試行の上限まで同じエラーを返す)。プロバイダの文言が残る。"""
    for _ in range(3):
        fake.add_error(status, f"provider says {status}", type=kind, code=code)
    with pytest.raises(cls, match=f"provider says {status}") as info:
        list(make_client(fake).chat_stream(req()))
    assert type(info.value) is cls
    assert info.value.status == status and info.value.provider == "openai"
    expected_attempts = 3 if info.value.retryable else 1
    assert len(fake.requests) == expected_attempts


def test_model_not_found_names_the_model_and_the_retirement(fake):
    """404 は、モデル名と設定の提供終了の注記を加えた ModelNotFoundError (プロバイダの文言も残る)。"""
    fake.add_error(404, "The model `gpt-4-32k` does not exist", type="invalid_request_error", code="model_not_found")
    models = {"gpt-4-32k*": ModelOptions(retired=True, note="2025-06-06 提供終了")}
    with pytest.raises(ModelNotFoundError) as info:
        list(
            make_client(fake, models=models).chat_stream(ChatRequest(model="gpt-4-32k", messages=[Message.user("hi")]))
        )
    message = info.value.message
    assert "openai/gpt-4-32k" in message and "retired: 2025-06-06 提供終了" in message
    assert "does not exist" in message and info.value.status == 404 and len(fake.requests) == 1


def test_embedding_model_not_found_names_the_model(fake):
    """埋め込みの 404 も、モデル名を含む ModelNotFoundError。"""
    fake.add_error(404, "no such model", type="invalid_request_error", code="model_not_found", endpoint="embeddings")
    with pytest.raises(ModelNotFoundError, match="openai/text-embedding-9"):
        make_client(fake).embed(EmbeddingRequest(inputs=["a"], model="text-embedding-9"))


def test_rate_limit_is_retried_after_retry_after_then_succeeds(fake):
    """429 + ``retry-after`` の後に成功する。待ち秒数は retry-after に従い、通知される。"""
    fake.add_error(
        429, "Rate limit reached for gpt-4.1-mini", code="rate_limit_exceeded", headers={"retry-after": "0.05"}
    )
    fake.add_text_turn("やっと")
    retries = []
    chunks = list(make_client(fake).chat_stream(req(), on_retry=lambda n, wait, err: retries.append((n, wait, err))))
    assert isinstance(chunks[-1], StreamEnd) and chunks[-1].message.content == "やっと"
    assert [(n, wait) for n, wait, _ in retries] == [(1, 0.05)]
    assert isinstance(retries[0][2], ProviderRateLimitedError)
    assert len(fake.requests) == 2


def test_retry_after_ms_wins_over_retry_after(fake):
    """``retry-after-ms`` が ``retry-after`` より優先される (openai-python と同じ)。"""
    fake.add_error(429, "slow down", headers={"retry-after-ms": "20", "retry-after": "30"})
    fake.add_text_turn("ok")
    waits = []
    list(make_client(fake).chat_stream(req(), on_retry=lambda n, wait, err: waits.append(wait)))
    assert waits == [0.02]


def test_insufficient_quota_is_not_retried(fake):
    """課金枠切れの 429 (``insufficient_quota``) は再試行しない。"""
    fake.add_error(429, "You exceeded your current quota", type="insufficient_quota", code="insufficient_quota")
    fake.add_text_turn("should not be reached")
    with pytest.raises(ProviderRateLimitedError, match="exceeded your current quota") as info:
        list(make_client(fake).chat_stream(req()))
    assert info.value.retryable is False and info.value.error_type == "insufficient_quota"
    assert len(fake.requests) == 1


def test_x_should_retry_false_stops_retries(fake):
    """``x-should-retry: false`` なら 500 でも再試行しない。"""
    fake.add_error(500, "no retry please", headers={"x-should-retry": "false"})
    with pytest.raises(ProviderUnavailableError):
        list(make_client(fake).chat_stream(req()))
    assert len(fake.requests) == 1


def test_bad_request_error_body_keeps_the_provider_message(fake):
    """400 は ProviderBadRequestError になり、プロバイダの文言 (どの欄か) を残す。"""
    fake.add_error(400, "Invalid 'messages[0].content'", param="messages")
    with pytest.raises(ProviderBadRequestError, match="messages"):
        list(make_client(fake).chat_stream(req()))


def test_key_is_sent_as_bearer_header_only_and_never_leaks(fake, caplog):
    """キーは Authorization ヘッダでだけ送る。URL・例外・ログ・repr には出ない。"""
    caplog.set_level(logging.DEBUG)
    fake.add_error(401, f"Incorrect API key provided: {SECRET}.", code="invalid_api_key")
    with pytest.raises(ProviderAuthError) as info:
        list(make_client(fake).chat_stream(req()))
    recorded = fake.requests[0]
    assert recorded.headers["authorization"] == f"Bearer {SECRET}"
    assert recorded.path == "/v1/chat/completions" and not recorded.query
    assert SECRET not in recorded.body.decode()
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in caplog.text
    assert SECRET not in repr(make_client(fake))


def test_key_in_a_stream_error_message_is_redacted(fake):
    """ストリーム内のエラー文言にキーがあっても伏せる。"""
    fake.add_stream_error(f"bad key {SECRET}", type="invalid_request_error")
    with pytest.raises(ProviderBadRequestError) as info:
        list(make_client(fake).chat_stream(req()))
    assert SECRET not in str(info.value)


def test_embeddings_are_batched_sorted_by_index_and_float32(fake):
    """埋め込みはバッチに分けて送り、各バッチの data を index で並べ直し、入力順の float32 行列を返す。"""
    fake.add_embeddings(dimension=6, reverse=True)
    fake.add_embeddings(dimension=6, reverse=True)
    texts = ["りんご", "みかん", "ぶどう", "もも", "かき"]
    result = make_client(fake, embedding_batch_size=3).embed(
        EmbeddingRequest(model="text-embedding-3-small", inputs=texts)
    )
    bodies = [r.json() for r in fake.requests]
    assert [b["input"] for b in bodies] == [texts[:3], texts[3:]]
    assert all(b["encoding_format"] == "float" and b["model"] == "text-embedding-3-small" for b in bodies)
    assert fake.requests[0].path == "/v1/embeddings"
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (5, 6)
    expected = np.asarray([embedding_vector(t, 6) for t in texts], dtype=np.float32)
    np.testing.assert_allclose(result.vectors, expected, rtol=1e-6)
    assert result.usage.input_tokens > 0


def test_embeddings_dimensions_and_default_model(fake):
    """``dimensions`` を送り、モデル名が無ければ設定の埋め込みモデルを使う。"""
    result = make_client(fake, embedding_model="text-embedding-3-small").embed(
        EmbeddingRequest(model="", inputs=["a"], dimensions=4)
    )
    body = fake.requests[0].json()
    assert body["dimensions"] == 4 and body["model"] == "text-embedding-3-small"
    assert result.vectors.shape == (1, 4)


def test_embedding_error_is_mapped(fake):
    """埋め込みのエラーも共有のエラー型になる。"""
    fake.add_error(400, "This model's maximum context length is 8192 tokens", endpoint="embeddings")
    with pytest.raises(ProviderBadRequestError, match="maximum context length"):
        make_client(fake).embed(EmbeddingRequest(model="text-embedding-3-small", inputs=["x"]))
