"""Gemini クライアント: エラーの種類、再試行と RetryInfo、ストリーム内のエラー、破損、キャンセル、埋め込み、キーの扱い。"""

import logging
import threading

import numpy as np
import pytest

from llm_router.core.cancel import CancelToken
from llm_router.core.schemas.common import EmbeddingRequest, ReasoningDelta, TextDelta
from llm_router.core.schemas.errors import (
    ModelNotFoundError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderRateLimitedError,
    ProviderStreamBrokenError,
    ProviderUnavailableError,
    RequestCancelled,
)
from tests.clients.gemini_helpers import KEY, client, request
from tests.fakes.gemini_fake import (
    GeminiFake,
    api_key_invalid_body,
    error_body,
    rate_limited_body,
    text_part,
    thought_part,
)
from tests.fakes.server import StreamResponse, sse_frame


@pytest.fixture
def fake():
    """台本モードの偽サーバー。"""
    with GeminiFake() as f:
        yield f


def test_api_key_invalid_400_is_an_auth_error(fake):
    """キーが正しくない 400 (details[].reason: API_KEY_INVALID) は bad request ではなく認証エラー。"""
    fake.raw(api_key_invalid_body(), 400)
    with pytest.raises(ProviderAuthError, match="API key not valid") as info:
        list(client(fake).chat_stream(request()))
    assert info.value.status == 400 and info.value.code == "provider_auth" and not info.value.retryable
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [(400, "INVALID_ARGUMENT", ProviderBadRequestError), (403, "PERMISSION_DENIED", ProviderAuthError)],
)
def test_non_retryable_errors_keep_the_provider_message(fake, code, status, cls):
    """400 / 403 は再試行せず、プロバイダの文言と status を持つ。"""
    fake.error(code, status, f"{status} の文言")
    with pytest.raises(cls, match=f"{status} の文言") as info:
        list(client(fake).chat_stream(request()))
    assert info.value.error_type == status and len(fake.requests) == 1


def test_retired_model_404_is_a_clear_model_not_found(fake):
    """404 (提供終了の gemini-1.5-*) はモデル名と注記つきの ModelNotFoundError。"""
    fake.error(404, "NOT_FOUND", "models/gemini-1.5-pro is not found for API version v1beta")
    with pytest.raises(ModelNotFoundError) as info:
        list(client(fake).chat_stream(request(model="gemini-1.5-pro")))
    assert "gemini/gemini-1.5-pro" in info.value.message and "retired" in info.value.message
    assert "v1beta で 404" in info.value.message


def test_rate_limit_retry_info_delay_is_honoured(fake):
    """429 RESOURCE_EXHAUSTED の RetryInfo.retryDelay ("0.05s") を待ち時間にして再試行する。"""
    fake.raw(rate_limited_body("0.05s"), 429)
    fake.text("ok")
    waits = []
    chunks = list(client(fake).chat_stream(request(), on_retry=lambda a, w, e: waits.append((a, w, type(e)))))
    assert chunks[-1].message.content == "ok"
    assert waits == [(1, 0.05, ProviderRateLimitedError)]


def test_retry_delay_longer_than_the_cap_falls_back_to_backoff(fake):
    """上限 (max_retry_after_s) を超える retryDelay ("34s") は使わず、短いバックオフで再試行する。"""
    fake.raw(rate_limited_body("34s"), 429)
    fake.text("ok")
    waits = []
    list(client(fake).chat_stream(request(), on_retry=lambda a, w, e: waits.append((w, e.retry_after_s))))
    assert waits[0][1] == 34.0 and waits[0][0] < 1


def test_overloaded_503_is_retried_until_the_limit(fake):
    """503 UNAVAILABLE は再試行可能: 上限まで試して provider_unavailable。"""
    for _ in range(3):
        fake.error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    with pytest.raises(ProviderUnavailableError, match="overloaded"):
        list(client(fake).chat_stream(request()))
    assert len(fake.requests) == 3


def test_error_chunk_mid_stream_is_raised_after_partial_output(fake):
    """HTTP 200 の後の {"error": ...} チャンクは共通の型で投げる (途中の出力の後でも)。"""
    fake.stream(
        [text_part("途中まで書いた文章")],
        pieces=3,
        error=error_body(500, "INTERNAL", "An internal error has occurred."),
        error_after=2,
    )
    seen = []
    with pytest.raises(ProviderUnavailableError, match="internal error") as info:
        for chunk in client(fake).chat_stream(request()):
            seen.append(chunk)
    assert info.value.retryable and any(isinstance(c, TextDelta) for c in seen)
    assert len(fake.requests) == 1


def test_broken_stream_is_stream_broken(fake):
    """終わりの印なしに切れた接続は provider_stream_broken。"""
    fake.text("長い文章が途中で切れる", pieces=5, break_after=2)
    with pytest.raises(ProviderStreamBrokenError):
        list(client(fake).chat_stream(request()))


def test_stream_ending_cleanly_without_finish_reason_counts_as_stop(fake):
    """候補が届いて接続がきれいに閉じたのに finishReason が無いものは STOP とみなす (寛容に)。"""
    chunks = fake.text("x")
    fake.server._queue.clear()
    del chunks[-1]["candidates"][0]["finishReason"]
    fake.server.enqueue(StreamResponse([sse_frame(c) for c in chunks]))
    end = list(client(fake).chat_stream(request()))[-1]
    assert end.finish_reason == "stop" and end.message.content == "x"


def test_stream_without_any_candidate_is_broken(fake):
    """候補が一度も届かずに終わったストリームは破損。"""
    fake.server.enqueue(StreamResponse([sse_frame({"usageMetadata": {"promptTokenCount": 3}})]))
    with pytest.raises(ProviderStreamBrokenError, match="without any candidate"):
        list(client(fake).chat_stream(request()))


def test_invalid_json_in_the_stream_is_broken(fake):
    """解析できない data はストリーム破損。"""
    fake.server.enqueue(StreamResponse([b"data: {not json\n\n"]))
    with pytest.raises(ProviderStreamBrokenError, match="invalid JSON"):
        list(client(fake).chat_stream(request()))


def _cancel_after_first(fake, req, first_type):
    """最初の ``first_type`` のチャンクでキャンセルし、(結果, 偽サーバーが切断を見たか) を返す。"""
    token = CancelToken()
    got = threading.Event()
    outcome = {}

    def reader():
        """別スレッドで読み続ける。"""
        try:
            for chunk in client(fake).chat_stream(req, cancel=token):
                if isinstance(chunk, first_type):
                    got.set()
        except RequestCancelled:
            outcome["cancelled"] = True

    thread = threading.Thread(target=reader)
    thread.start()
    assert got.wait(5)
    token.cancel()
    thread.join(5)
    return outcome, fake.server.client_disconnected.wait(5)


def test_cancel_mid_text_closes_the_connection(fake):
    """テキストの途中のキャンセル: RequestCancelled、偽サーバーは接続の切断を見る。"""
    fake.text("いちにさんしご", pieces=5, stall_after=2)
    outcome, disconnected = _cancel_after_first(fake, request(), TextDelta)
    assert outcome == {"cancelled": True} and disconnected


def test_cancel_while_thinking_closes_the_connection(fake):
    """思考の途中のキャンセルも同じ。"""
    fake.stream([thought_part("とても長い思考の流れです"), text_part("答え")], pieces=5, stall_after=2)
    outcome, disconnected = _cancel_after_first(fake, request(reasoning="low"), ReasoningDelta)
    assert outcome == {"cancelled": True} and disconnected


def test_embeddings_are_batched_in_order_with_task_type(fake):
    """埋め込み: embedding_batch_size (3) ごとに batchEmbedContents、model は毎回 models/M、入力順の float32。"""
    texts = [f"文書{i}" for i in range(7)]
    for start in range(0, 7, 3):
        fake.embeddings([[float(i), float(i) + 0.5] for i in range(start, min(start + 3, 7))])
    result = client(fake).embed(EmbeddingRequest("gemini-embedding-001", texts, task="document"))
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (7, 2)
    assert result.vectors[:, 0].tolist() == [float(i) for i in range(7)]
    assert [len(b["requests"]) for b in fake.bodies()] == [3, 3, 1]
    first = fake.bodies()[0]["requests"][0]
    assert first == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "文書0"}]},
        "taskType": "RETRIEVAL_DOCUMENT",
    }
    assert fake.requests[0].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"


def test_query_embeddings_use_retrieval_query_and_dimensions(fake):
    """検索クエリは RETRIEVAL_QUERY、dimensions は outputDimensionality。モデル未指定は設定の既定。"""
    fake.embeddings([[1.0, 0.0, 0.0]])
    result = client(fake).embed(EmbeddingRequest("", ["質問"], task="query", dimensions=3))
    item = fake.bodies()[0]["requests"][0]
    assert item["taskType"] == "RETRIEVAL_QUERY" and item["outputDimensionality"] == 3
    assert item["model"] == "models/gemini-embedding-001" and result.vectors.shape == (1, 3)


def test_embedding_count_mismatch_is_an_error(fake):
    """入力と数の合わない応答はエラー (順序を取り違えないため)。"""
    fake.embeddings([[1.0]])
    with pytest.raises(ProviderStreamBrokenError, match="expected 2"):
        client(fake).embed(EmbeddingRequest("gemini-embedding-001", ["a", "b"]))


def test_key_never_in_url_logs_errors_or_repr(fake, caplog):
    """キーはヘッダにだけ: URL、例外 (プロバイダの文言がキーを含んでも)、ログ、repr に出ない。"""
    caplog.set_level(logging.DEBUG)
    fake.error(400, "INVALID_ARGUMENT", f"bad key {KEY}")
    c = client(fake)
    with pytest.raises(ProviderBadRequestError) as info:
        list(c.chat_stream(request()))
    fake.stream([text_part("x")], error=error_body(500, "INTERNAL", f"echo {KEY}"), error_after=0)
    with pytest.raises(ProviderUnavailableError) as info2:
        list(c.chat_stream(request()))
    for text in (str(info.value), info.value.message, str(info2.value), caplog.text, repr(c)):
        assert KEY not in text
    for sent in fake.requests:
        assert KEY not in sent.path and "key" not in sent.query and KEY not in sent.body.decode()
        assert sent.headers["x-goog-api-key"] == KEY
