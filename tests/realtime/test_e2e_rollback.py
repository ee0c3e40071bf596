"""エンドツーエンド: 失敗したランはスレッドを使えなくしない (4 つのプロバイダの偽サーバーそれぞれで)。

各プロバイダで、普通のターンの後に 400 (``provider_bad_request``) または 401 (``provider_auth``) で失敗する
ランを起こす。そのランはステップが 1 つも完了していないので ``run_error`` が ``rolled_back: true`` を運び、
同じスレッドの次の ``user_message`` は普通に答える。偽サーバーが受け取った次のリクエストの本文には、
失敗したメッセージの痕跡が一切無い (前に受け付けた履歴 + 新しいメッセージだけ)。
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.realtime.conftest import LiveServer, assert_no_secret
from tests.realtime.harness import ServerProcess
from tests.realtime.test_e2e_providers import CASES, KEYS, Fakes

CODES = {400: "provider_bad_request", 401: "provider_auth"}


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    """4 つの偽サーバー (モジュールで共有)。"""
    f = Fakes()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def multi_server(fakes: Fakes) -> Iterator[LiveServer]:
    """4 つのプロバイダを偽サーバーに向けたサーバー (eventlet)。終了時に秘密の漏れを確かめる。"""
    process = ServerProcess(overrides=fakes.overrides(), secrets=KEYS, async_mode="eventlet").start()
    live = LiveServer(process, None, "eventlet")
    try:
        yield live
    finally:
        live.disconnect_all()
        process.stop()
        try:
            for key in KEYS.values():
                assert_no_secret(process, live.clients, key)
        finally:
            process.close()


def enqueue_failure(fakes: Fakes, provider: str, status: int) -> None:
    """次のリクエストに、そのプロバイダの形の 400 / 401 を返すように積む。"""
    if provider == "openai":
        fakes.openai.add_error(status, "prompt is too long" if status == 400 else "Incorrect API key provided")
    elif provider == "anthropic":
        kind = "invalid_request_error" if status == 400 else "authentication_error"
        fakes.anthropic.error(status, kind, "prompt is too long" if status == 400 else "invalid x-api-key")
    elif provider == "gemini":
        kind = "INVALID_ARGUMENT" if status == 400 else "UNAUTHENTICATED"
        fakes.gemini.error(status, kind, "request is too large" if status == 400 else "invalid credentials")
    else:
        fakes.ollama.add_error(status, "context overflow" if status == 400 else "unauthorized")


@pytest.mark.parametrize("status", [400, 401])
@pytest.mark.parametrize("provider", list(CASES))
def test_after_a_failed_run_the_same_thread_answers_normally(multi_server, fakes, provider, status):
    """400 / 401 で失敗したランの後、同じスレッドの次のメッセージは普通に答え、上流に失敗したメッセージを送らない。"""
    model, _ = CASES[provider]
    fake = getattr(fakes, provider)
    client = multi_server.client()
    ack = client.start(model=model)
    assert ack["ok"], ack
    thread_id = ack["thread_id"]
    first = client.send_message(thread_id, "最初の質問です")["run_id"]
    assert client.wait_run_end(first)["type"] == "run_finished"

    marker = f"失敗する巨大なメッセージ-{provider}-{status}-ZQX"
    enqueue_failure(fakes, provider, status)
    failed = client.send_message(thread_id, marker)["run_id"]
    end = client.wait_run_end(failed)
    assert end["type"] == "run_error", end
    assert end["error"]["code"] == CODES[status], end
    assert end["rolled_back"] is True, end
    before = len(fake.requests)

    after = client.send_message(thread_id, "次の質問です")["run_id"]
    finished = client.wait_run_end(after)
    assert finished["type"] == "run_finished", finished
    assert finished["text"], finished
    sent = [r for r in fake.requests[before:] if r.method == "POST"]
    assert sent, "the next message did not reach the provider"
    body = json.dumps(sent[-1].json(), ensure_ascii=False)
    assert "ZQX" not in body, "the failed message reached the provider again"
    assert "最初の質問です" in body and "次の質問です" in body
