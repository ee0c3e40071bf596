"""base_client のテスト: 再試行と Retry-After、エラー変換、キャンセル、キーの伏せ字 (偽サーバー相手)。"""

import logging
import random
import socket
import threading
import time

import pytest

from llm_router.config.schema import ProviderConfig, RetryConfig
from llm_router.core.cancel import CancelToken
from llm_router.core.clients.base_client import BaseClient, error_for_status, parse_retry_after
from llm_router.core.schemas.errors import (
    ModelNotFoundError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderRateLimitedError,
    ProviderStreamBrokenError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RequestCancelled,
)
from tests.fakes.server import FakeServer, JSONResponse, StreamResponse, sse_frame

SECRET = "sk-secret-0123456789abcdef"


class _Client(BaseClient):
    """テスト用の最小のクライアント (Bearer 認証)。"""

    provider = "test"

    def _auth_headers(self):
        """Bearer ヘッダ。"""
        return {"authorization": f"Bearer {self._api_key}"}


def _client(server, **retry):
    """偽サーバーに向けたクライアント (待ち時間は短く)。"""
    policy = RetryConfig(**{"max_retries": 2, "initial_backoff_s": 0.01, "max_backoff_s": 0.05, **retry})
    cfg = ProviderConfig(base_url=server.base_url, chat_model="m", retry=policy, read_timeout_s=5)
    return _Client(cfg, SECRET, rng=random.Random(0))


@pytest.fixture
def server():
    """偽サーバー。"""
    with FakeServer() as s:
        yield s


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "200", "retry-after": "9"}, 0.2),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after_table(headers, expected):
    """Retry-After の読み方の表。"""
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date():
    """HTTP 日付の Retry-After。"""
    import email.utils

    value = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after({"retry-after": value}) <= 30


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, ProviderBadRequestError, False),
        (401, ProviderAuthError, False),
        (403, ProviderAuthError, False),
        (404, ModelNotFoundError, False),
        (408, ProviderTimeoutError, True),
        (409, ProviderUnavailableError, True),
        (422, ProviderBadRequestError, False),
        (429, ProviderRateLimitedError, True),
        (500, ProviderUnavailableError, True),
        (503, ProviderUnavailableError, True),
        (529, ProviderUnavailableError, True),
    ],
)
def test_error_for_status_table(status, cls, retryable):
    """ステータスからエラー型への対応表。"""
    err = error_for_status(status, "msg", provider="p")
    assert type(err) is cls
    assert err.retryable is retryable


def test_retry_honours_retry_after_then_succeeds(server):
    """429 + retry-after の後に成功する。待ち時間は retry-after に従い、通知される。"""
    server.enqueue(
        JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, 429, {"retry-after-ms": "50"}),
        JSONResponse({"ok": True}),
    )
    retries = []
    started = time.monotonic()
    body = _client(server).post_json("/x", {"a": 1}, on_retry=lambda a, w, e: retries.append((a, w, type(e))))
    assert body == {"ok": True}
    assert retries == [(1, 0.05, ProviderRateLimitedError)]
    assert time.monotonic() - started >= 0.05
    assert len(server.requests) == 2


def test_retry_gives_up_after_max_retries(server):
    """再試行の上限を越えたら最後のエラーを投げる。"""
    for _ in range(3):
        server.enqueue(JSONResponse({"error": {"message": "down"}}, 503))
    with pytest.raises(ProviderUnavailableError, match="down"):
        _client(server).post_json("/x", {})
    assert len(server.requests) == 3


def test_non_retryable_error_is_not_retried(server):
    """400 は再試行しない。プロバイダの文言を残す。"""
    server.enqueue(JSONResponse({"error": {"message": "bad field 'x'", "type": "invalid_request_error"}}, 400))
    with pytest.raises(ProviderBadRequestError, match="bad field 'x'") as info:
        _client(server).post_json("/x", {})
    assert info.value.error_type == "invalid_request_error"
    assert len(server.requests) == 1


def test_x_should_retry_false_wins(server):
    """``x-should-retry: false`` なら 503 でも再試行しない。"""
    server.enqueue(JSONResponse({"error": {"message": "no"}}, 503, {"x-should-retry": "false"}))
    with pytest.raises(ProviderUnavailableError):
        _client(server).post_json("/x", {})
    assert len(server.requests) == 1


def test_connection_refused_is_unavailable():
    """接続できないときは provider_unavailable。"""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cfg = ProviderConfig(base_url=f"http://127.0.0.1:{port}", chat_model="m", retry=RetryConfig(max_retries=0))
    with pytest.raises(ProviderUnavailableError):
        _Client(cfg, SECRET).post_json("/x", {})


def test_key_is_sent_in_header_only_and_redacted_from_errors(server, caplog):
    """キーはヘッダで送り、プロバイダの文言がキーを含んでも例外とログから伏せる。"""
    server.enqueue(JSONResponse({"error": {"message": f"Incorrect API key provided: {SECRET}"}}, 401))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderAuthError) as info:
        _client(server).post_json("/x", {})
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text
    request = server.requests[0]
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in request.path and not request.query
    assert SECRET not in repr(_client(server))


def test_sse_stream_is_read_incrementally(server):
    """SSE のイベントは届いた順に、届いた時点で読める。"""
    frames = [sse_frame({"i": i}) for i in range(3)]
    server.enqueue(StreamResponse(frames, delay_s=0.05))
    client = _client(server)
    response = client.request("POST", "/s", {}, stream=True)
    seen = [e.json()["i"] for e in client.iter_sse(response)]
    assert seen == [0, 1, 2]


def test_stream_broken_mid_way_is_reported(server):
    """終わりの印なしに切れたストリームは provider_stream_broken。"""
    frames = [sse_frame({"i": i}) for i in range(5)]
    server.enqueue(StreamResponse(frames, break_after=2))
    client = _client(server)
    response = client.request("POST", "/s", {}, stream=True)
    seen = []
    with pytest.raises(ProviderStreamBrokenError):
        for event in client.iter_sse(response):
            seen.append(event.json()["i"])
    assert seen == [0, 1]


def test_cancel_stops_a_stalled_stream_at_once_and_closes_the_connection(server):
    """停止したストリームを読んでいる最中のキャンセルで即座に止まり、偽サーバーが接続の切断を見る。"""
    server.enqueue(StreamResponse([sse_frame({"i": 0})], stall_after=1))
    client = _client(server)
    token = CancelToken()
    response = client.request("POST", "/s", {}, stream=True, cancel=token)
    got_first = threading.Event()
    outcome = {}

    def reader():
        """別スレッドで読み続ける。"""
        try:
            for _ in client.iter_sse(response, token):
                got_first.set()
        except RequestCancelled:
            outcome["cancelled_at"] = time.monotonic()

    thread = threading.Thread(target=reader)
    thread.start()
    assert got_first.wait(5)
    cancelled_at = time.monotonic()
    token.cancel()
    thread.join(5)
    assert "cancelled_at" in outcome
    assert server.client_disconnected.wait(5)
    # 読み手が止まったこと自体は即座 (数百ミリ秒以内) であることだけ確かめる (性能は benchmarks/ で測る)
    assert outcome["cancelled_at"] - cancelled_at < 2.0


def test_cancel_during_backoff_stops_retrying(server):
    """再試行の待ち時間中のキャンセルで、次の試行をしない。"""
    server.enqueue(JSONResponse({"error": {"message": "busy"}}, 503, {"retry-after": "30"}))
    token = CancelToken()
    client = _client(server, max_retry_after_s=60)
    timer = threading.Timer(0.1, token.cancel)
    timer.start()
    with pytest.raises(RequestCancelled):
        client.post_json("/x", {}, cancel=token)
    assert len(server.requests) == 1


def test_cancel_while_waiting_for_response_headers_closes_the_connection(server):
    """最初のバイトが来ない上流: ヘッダを待っている間のキャンセルで即座に止まり、偽サーバーが切断を見る。"""
    server.enqueue(StreamResponse([], stall_before_headers=True))
    client = _client(server)
    token = CancelToken()
    outcome = {}

    def sender():
        """別スレッドで送り、ヘッダを待つ。"""
        try:
            client.request("POST", "/s", {}, stream=True, cancel=token)
        except RequestCancelled:
            outcome["cancelled"] = True
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=sender)
    thread.start()
    assert server.stream_started.wait(5)
    token.cancel()
    thread.join(5)
    assert not thread.is_alive()
    assert outcome == {"cancelled": True}
    assert server.client_disconnected.wait(5)
    assert len(server.requests) == 1  # キャンセルの後に再試行しない


def _syn_sent_to(port: int) -> int:
    """``/proc/net/tcp`` で、ループバックの ``port`` へ接続中 (SYN_SENT) のソケットの数を数える。"""
    count = 0
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[2].endswith(f":{port:04X}") and fields[3] == "02":
                count += 1
    return count


def _poll(condition, timeout_s: float = 10.0) -> bool:
    """条件が真になるまで短い間隔で確かめる (真になったら真、期限を過ぎたら偽)。"""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while time.monotonic() < deadline:
        if condition():
            return True
        pause.wait(0.01)
    return condition()


def test_cancel_during_tcp_connect_aborts_the_connect():
    """上流が接続を受け付けない (backlog が満杯で SYN が落とされる) 間のキャンセルで、connect が即座に止まる。

    接続中はまだ接続の ``sock`` が無いので、connect の前にソケットを記録していないと、キャンセルしても
    接続タイムアウト (ここでは 60 秒) まで待たされる。
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    token = CancelToken()
    outcome = {}

    def sender():
        """別スレッドで送り、接続を待つ。"""
        try:
            client.request("POST", "/x", {}, cancel=token)
        except RequestCancelled:
            outcome["cancelled"] = True
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=sender)
    try:
        # accept しない上流の受け付け待ちの列を埋め、次の接続が SYN_SENT のまま止まるようにする
        while _syn_sent_to(port) == 0 and len(fillers) < 64:
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        baseline = _syn_sent_to(port)
        assert baseline > 0
        policy = RetryConfig(max_retries=2, initial_backoff_s=0.01, max_backoff_s=0.05)
        cfg = ProviderConfig(
            base_url=f"http://127.0.0.1:{port}", chat_model="m", retry=policy, connect_timeout_s=60, read_timeout_s=60
        )
        client = _Client(cfg, SECRET, rng=random.Random(0))
        thread.start()
        assert _poll(lambda: _syn_sent_to(port) > baseline)  # 送り手が connect の中で待っている
        token.cancel()
        thread.join(10)
        assert not thread.is_alive()
        assert outcome == {"cancelled": True}
    finally:
        listener.close()  # 残った接続の試みは RST で終わる
        for filler in fillers:
            filler.close()
        if thread.ident is not None:
            thread.join(30)
