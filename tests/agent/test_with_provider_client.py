"""本物の OpenAI クライアント + ループバックの偽サーバーで、エージェントループの失敗とキャンセルの扱いを確かめる。

上流の接続が本当に閉じられること、ストリームの断線が step_reset になること、429 の再試行が retry になることを
ワイヤの上で見る (台本の偽モデルでは見えない部分)。
"""

import pytest

from llm_router.config.schema import ProviderConfig, RetryConfig
from llm_router.core.clients.openai_client import OpenAIClient
from tests.agent.scripted_model import FakeRouter, make_run, start
from tests.fakes.server import FakeServer, JSONResponse, StreamResponse, sse_frame

KEY = "sk-test-agent-0123456789"


def _chunk(delta=None, finish=None, usage=None):
    """Chat Completions のストリームの 1 チャンク。"""
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "gpt-test", "choices": []}
    if delta is not None or finish is not None:
        body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        body["usage"] = usage
    return sse_frame(body)


def _text_frames(*words):
    """テキストを流して正常に終わるフレームの並び。"""
    frames = [_chunk({"role": "assistant", "content": ""})]
    frames += [_chunk({"content": w}) for w in words]
    frames.append(_chunk({}, "stop"))
    frames.append(_chunk(usage={"prompt_tokens": 4, "completion_tokens": len(words), "total_tokens": 4 + len(words)}))
    frames.append(b"data: [DONE]\n\n")
    return frames


@pytest.fixture
def server():
    """偽サーバー。"""
    with FakeServer() as s:
        yield s


def _router(server):
    """偽サーバーに向けた OpenAI クライアントを持つルーター。"""
    config = ProviderConfig(
        base_url=server.base_url + "/v1",
        chat_model="gpt-test",
        read_timeout_s=10,
        retry=RetryConfig(max_retries=1, initial_backoff_s=0.01, max_backoff_s=0.02),
    )
    return FakeRouter({"openai": OpenAIClient(config, KEY)}, chain=["openai/gpt-test"])


def test_cancel_closes_the_upstream_connection(server):
    """止まったストリームの途中で cancel: run_cancelled がすぐ出て、偽サーバーは接続の切断を見る。"""
    server.enqueue(StreamResponse(_text_frames("途中", "まで", "続き"), stall_after=3))
    run, sink = make_run(None, router=_router(server))
    worker = start(run)
    assert sink.wait_for_type("text_delta", count=2)
    assert run.cancel("now")
    assert sink.types()[-1] == "run_cancelled"
    assert server.client_disconnected.wait(5)
    worker.join(5)
    assert not worker.is_alive()
    assert [t for t in sink.types() if t.startswith("run_")] == ["run_started", "run_cancelled"]
    assert run.thread.history[-1].text() == "途中まで" and run.thread.history[-1].interrupted


def test_broken_stream_resets_the_step_and_the_retry_succeeds(server):
    """出力の後で接続が切れたら step_reset、同じモデルでやり直して成功する。"""
    server.enqueue(StreamResponse(_text_frames("壊れる", "前"), break_after=2), StreamResponse(_text_frames("無事")))
    run, sink = make_run(None, router=_router(server))
    run.run()
    assert sink.of_type("step_reset") == [{"step": 1, "reason": "provider_stream_broken"}]
    assert sink.of_type("run_finished")[0]["text"] == "無事"
    assert [m.text() for m in run.thread.history] == ["こんにちは", "無事"]
    assert len(server.requests) == 2


def test_rate_limit_retry_shows_as_a_retry_event(server):
    """429 (retry-after 付き) の再試行は retry イベント (wait_ms は retry-after から) になる。"""
    error = {"error": {"message": "slow down", "type": "rate_limit_exceeded", "param": None, "code": None}}
    server.enqueue(
        JSONResponse(error, status=429, headers={"retry-after-ms": "20"}), StreamResponse(_text_frames("ok"))
    )
    run, sink = make_run(None, router=_router(server))
    run.run()
    assert sink.of_type("retry") == [
        {"step": 1, "attempt": 1, "wait_ms": 20, "reason": "provider_rate_limited", "model": "openai/gpt-test"}
    ]
    assert sink.types()[-1] == "run_finished"


def test_auth_error_is_run_error_without_the_key(server):
    """401 は run_error (provider_auth, before_output)。どのイベントにもキーは出ない。"""
    error = {
        "error": {
            "message": f"Incorrect API key provided: {KEY}",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    server.enqueue(JSONResponse(error, status=401))
    run, sink = make_run(None, router=_router(server))
    run.run()
    payload = sink.of_type("run_error")[0]["error"]
    assert (payload["code"], payload["phase"], payload["provider"]) == ("provider_auth", "before_output", "openai")
    assert KEY not in repr(sink.events)
