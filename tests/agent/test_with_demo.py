"""本物のルーター・ツールのレジストリ・デモ・プロバイダで、エージェントループを最後まで通す (キー無しの既定)。"""

import pytest

from llm_router.agent import AgentRun, CollectingSink, ThreadState
from llm_router.config.settings import load_settings
from llm_router.core.router import ModelRouter
from tests.agent.scripted_model import assert_valid_history, client_tool, start
from tools.registry import default_registry


@pytest.fixture
def stack():
    """キーの無い設定 (既定は demo/scripted)、ルーター、レジストリ (calculator と current_time)。"""
    settings = load_settings(
        ["agent.server_tools=[calculator,current_time]", "providers.demo.stream_delay_s=0"], env_file=None, environ={}
    )
    router = ModelRouter(settings)
    yield settings, router, default_registry(settings)
    router.close()


def _run(stack, thread, content, run_id="run-1"):
    """実行を組み立てる。"""
    settings, router, registry = stack
    sink = CollectingSink()
    return AgentRun(run_id, thread, content, router, registry, sink, settings.config.agent), sink


def test_demo_run_calls_the_real_calculator_and_answers_with_its_result(stack):
    """「2+3*4 を計算して」→ demo が calculator を呼び → 本物のツールが 14 → demo がその結果で答える。"""
    thread = ThreadState(thread_id="t1")
    run, sink = _run(stack, thread, "2+3*4 を計算して")
    run.run()
    assert sink.of_type("run_started")[0]["model"] == "demo/scripted"
    result = sink.of_type("tool_result")[0]
    assert (result["name"], result["result"], result["is_error"], result["executor"]) == (
        "calculator",
        14,
        False,
        "server",
    )
    finished = sink.of_type("run_finished")[0]
    assert finished["finish_reason"] == "stop" and "14" in finished["text"]
    assert finished["usage"]["input_tokens"] > 0
    assert [m.role for m in thread.history] == ["user", "assistant", "tool", "assistant"]


def test_demo_run_with_a_client_tool_round_trip(stack):
    """クライアント側ツール (get_locale) を demo が呼び、答えを受けて文章で返す。"""
    thread = ThreadState(thread_id="t1", client_tools=[client_tool()])
    run, sink = _run(stack, thread, "ロケールを教えて")
    worker = start(run)
    assert sink.wait_for_type("tool_call_ready")
    ready = sink.of_type("tool_call_ready")[0]
    assert (ready["name"], ready["executor"]) == ("get_locale", "client")
    assert run.submit_tool_result(ready["tool_call_id"], "ja-JP", False) is None
    worker.join(5)
    assert "ja-JP" in sink.of_type("run_finished")[0]["text"]
    assert_valid_history(thread.history)


def test_demo_stream_can_be_cancelled_mid_text(stack):
    """長い説明文の途中で cancel: run_cancelled は 1 回、部分テキストは interrupted で残る。"""
    router = stack[1]
    router.client("demo").config.stream_delay_s = 0.01
    thread = ThreadState(thread_id="t1")
    run, sink = _run(stack, thread, "hello")
    worker = start(run)
    assert sink.wait_for_type("text_delta", count=3)
    assert run.cancel("now")
    worker.join(5)
    assert not worker.is_alive()
    assert [t for t in sink.types() if t.startswith("run_")] == ["run_started", "run_cancelled"]
    assert thread.history[-1].interrupted and thread.history[-1].text()
