"""Anthropic クライアント: エラーの種類、再試行と retry-after、ストリーム内のエラー、破損、キャンセル、キーの扱い。"""

import logging
import threading

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
from tests.clients.anthropic_helpers import KEY, client, request
from tests.fakes.anthropic_fake import AnthropicFake, text_block, thinking_block
from tests.fakes.server import StreamResponse


@pytest.fixture
def fake():
    """台本モードの偽サーバー。"""
    with AnthropicFake() as f:
        yield f


@pytest.mark.parametrize(
    ("status", "error_type", "cls", "retryable"),
    [
        (400, "invalid_request_error", ProviderBadRequestError, False),
        (401, "authentication_error", ProviderAuthError, False),
        (403, "permission_error", ProviderAuthError, False),
        (404, "not_found_error", ModelNotFoundError, False),
        (413, "request_too_large", ProviderBadRequestError, False),
    ],
)
def test_non_retryable_errors_keep_the_provider_message(fake, status, error_type, cls, retryable):
    """再試行しないエラー: 1 回だけ送り、共通の型とプロバイダの文言と種別を持つ。"""
    fake.error(status, error_type, f"{error_type} からの文言")
    with pytest.raises(cls) as info:
        list(client(fake).chat_stream(request()))
    assert f"{error_type} からの文言" in info.value.message
    assert info.value.error_type == error_type and info.value.retryable is retryable
    assert info.value.status == status and info.value.provider == "anthropic"
    assert len(fake.requests) == 1


def test_overloaded_529_is_retried_then_succeeds(fake):
    """529 overloaded_error は再試行可能: 通知の後に成功する。"""
    fake.error(529, "overloaded_error", "Overloaded")
    fake.text("やっと")
    retries = []
    chunks = list(client(fake).chat_stream(request(), on_retry=lambda a, w, e: retries.append((a, type(e)))))
    assert chunks[-1].message.content == "やっと"
    assert retries == [(1, ProviderUnavailableError)]
    assert len(fake.requests) == 2


@pytest.mark.parametrize(("status", "error_type"), [(500, "api_error"), (529, "overloaded_error")])
def test_server_errors_give_up_after_max_retries(fake, status, error_type):
    """5xx / 529 が続けば、再試行の上限の後に provider_unavailable。"""
    for _ in range(3):
        fake.error(status, error_type, "down")
    with pytest.raises(ProviderUnavailableError, match="down"):
        list(client(fake).chat_stream(request()))
    assert len(fake.requests) == 3


def test_rate_limit_honours_retry_after(fake):
    """429 rate_limit_error の retry-after (秒) を待ち時間にする。"""
    fake.error(429, "rate_limit_error", "slow down", {"retry-after": "0.05"})
    fake.text("ok")
    waits = []
    list(client(fake).chat_stream(request(), on_retry=lambda a, w, e: waits.append((w, type(e)))))
    assert waits == [(0.05, ProviderRateLimitedError)]


def test_model_not_found_names_the_model_and_the_retirement(fake):
    """404 はモデル名と提供終了の注記つきの ModelNotFoundError。"""
    fake.error(404, "not_found_error", "model: claude-3-opus-20240229")
    with pytest.raises(ModelNotFoundError) as info:
        list(client(fake).chat_stream(request(model="claude-3-opus-20240229")))
    message = info.value.message
    assert "anthropic/claude-3-opus-20240229" in message and "retired" in message and "2026-01-05" in message
    assert info.value.code == "provider_bad_request"


def test_error_event_after_http_200_is_raised_with_its_type(fake):
    """HTTP 200 の後の error イベント (overloaded) は、途中の出力の後でも共通の型で投げる。"""
    fake.stream([text_block("途中まで書いた文")], error=("overloaded_error", "Overloaded"), error_after=4)
    seen = []
    with pytest.raises(ProviderUnavailableError, match="Overloaded") as info:
        for chunk in client(fake).chat_stream(request()):
            seen.append(chunk)
    assert info.value.retryable and info.value.error_type == "overloaded_error"
    assert any(isinstance(c, TextDelta) for c in seen)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("error_type", "cls"),
    [("invalid_request_error", ProviderBadRequestError), ("rate_limit_error", ProviderRateLimitedError)],
)
def test_error_event_types_map_like_statuses(fake, error_type, cls):
    """ストリーム内の error イベントの種別は、対応する HTTP ステータスと同じ型になる。"""
    fake.stream([text_block("x")], error=(error_type, "msg"), error_after=1)
    with pytest.raises(cls):
        list(client(fake).chat_stream(request()))


def test_broken_stream_is_stream_broken(fake):
    """終わりの印なしに切れた接続は provider_stream_broken (出力済みの分は届いている)。"""
    fake.stream([text_block("長い文章の途中で切れる")], pieces=5, break_after=4)
    seen = []
    with pytest.raises(ProviderStreamBrokenError):
        for chunk in client(fake).chat_stream(request()):
            seen.append(chunk)
    assert any(isinstance(c, TextDelta) for c in seen)


def test_stream_without_any_stop_is_broken(fake):
    """接続がきれいに終わっても、message_stop も終了理由 (message_delta) も無ければストリーム破損。"""
    frames = fake.stream([text_block("x")])
    fake.server._queue.clear()
    fake.server.enqueue(StreamResponse(frames[:-2]))
    with pytest.raises(ProviderStreamBrokenError, match="message_stop"):
        list(client(fake).chat_stream(request()))


def test_stream_with_stop_reason_but_no_message_stop_is_complete(fake):
    """終了理由まで届いて接続がきれいに閉じたものは完了とみなす (寛容に)。"""
    frames = fake.stream([text_block("x")])
    fake.server._queue.clear()
    fake.server.enqueue(StreamResponse(frames[:-1]))
    end = list(client(fake).chat_stream(request()))[-1]
    assert end.finish_reason == "stop" and end.message.content == "x"


def _cancel_after_first(fake, req, first_type):
    """最初の ``first_type`` のチャンクを受け取ったらキャンセルし、結果と偽サーバーの切断の観測を返す。"""
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
    """テキストの途中で止まったストリームをキャンセルすると RequestCancelled、偽サーバーは切断を見る。"""
    fake.stream([text_block("いちにさんしご")], pieces=5, stall_after=4)
    outcome, disconnected = _cancel_after_first(fake, request(), TextDelta)
    assert outcome == {"cancelled": True} and disconnected


def test_cancel_while_thinking_closes_the_connection(fake):
    """思考の途中でのキャンセルも同じく止まり、接続が閉じる。"""
    fake.stream([thinking_block("とても長い思考の流れ"), text_block("答え")], pieces=5, stall_after=4)
    outcome, disconnected = _cancel_after_first(fake, request(reasoning="high"), ReasoningDelta)
    assert outcome == {"cancelled": True} and disconnected


def test_embeddings_are_refused_with_a_clear_message(fake):
    """Anthropic には埋め込み API が無い: 要求を送らずに分かりやすいエラー。"""
    with pytest.raises(ProviderBadRequestError, match="no embeddings API"):
        client(fake).embed(EmbeddingRequest("any", ["a"]))
    assert fake.requests == []


def test_key_never_in_url_logs_errors_or_repr(fake, caplog):
    """キーはヘッダにだけ: URL にも、プロバイダの文言がキーを含むときの例外にも、ログにも、repr にも出ない。"""
    caplog.set_level(logging.DEBUG)
    fake.error(401, "authentication_error", f"invalid x-api-key: {KEY}")
    c = client(fake)
    with pytest.raises(ProviderAuthError) as info:
        list(c.chat_stream(request()))
    fake.stream([text_block("x")], error=("api_error", f"echo {KEY}"), error_after=1)
    with pytest.raises(ProviderUnavailableError) as info2:
        list(c.chat_stream(request()))
    for text in (str(info.value), info.value.message, str(info2.value), caplog.text, repr(c)):
        assert KEY not in text
    for sent in fake.requests:
        assert KEY not in sent.path and not sent.query and KEY not in sent.body.decode()
