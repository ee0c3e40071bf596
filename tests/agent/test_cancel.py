"""キャンセル: ストリーム中、クライアント側ツールの待ち、サーバー側ツールの実行中、2 回、after_step、履歴。"""

import threading

from llm_router.agent import ThreadState
from llm_router.core.schemas.events import RUN_END_EVENTS
from tests.agent.scripted_model import (
    Block,
    Call,
    FakeRegistry,
    ScriptedModel,
    Text,
    Turn,
    Use,
    assert_valid_history,
    blocking_tool,
    calculator_tool,
    client_tool,
    make_run,
    start,
)


def _terminal(sink):
    """終わりのイベントの一覧。"""
    return [t for t in sink.types() if t in RUN_END_EVENTS]


def test_cancel_while_streaming_emits_run_cancelled_at_once_and_keeps_partial_text():
    """ストリームが止まっている間の cancel: 呼んだ側で run_cancelled が出て、上流は閉じられ、部分テキストは interrupted。"""
    block = Block()
    model = ScriptedModel(Turn([Use(7, 2), Text("途中 まで"), block, Text("続き")]))
    run, sink = make_run(model)
    worker = start(run)
    assert block.reached.wait(5)
    assert run.cancel("now") is True
    # 実行スレッドを待たずに、cancel() が戻った時点で run_cancelled は出ている
    assert sink.types()[-1] == "run_cancelled"
    assert sink.of_type("run_cancelled")[0] == {
        "reason": "client",
        "usage": {"input_tokens": 7, "output_tokens": 2, "reasoning_tokens": 0},
    }
    worker.join(5)
    assert not worker.is_alive()
    assert model.cancelled_streams == 1
    assert _terminal(sink) == ["run_cancelled"]
    assert sink.types()[-1] == "run_cancelled"
    last = run.thread.history[-1]
    assert (last.role, last.text(), last.interrupted) == ("assistant", "途中 まで", True)
    assert run.done


def test_cancel_twice_gives_one_run_cancelled():
    """2 回目の cancel は偽を返し、何も送らない。"""
    block = Block()
    model = ScriptedModel(Turn([block]))
    run, sink = make_run(model)
    worker = start(run)
    assert block.reached.wait(5)
    assert run.cancel("now") is True
    assert run.cancel("now") is False
    assert run.cancel("after_step") is False
    worker.join(5)
    assert _terminal(sink) == ["run_cancelled"]
    # 部分テキストが無ければ、アシスタントのメッセージは残さない
    assert [m.role for m in run.thread.history] == ["user"]


def test_cancel_while_awaiting_a_client_tool():
    """クライアントの答えを待っている間の cancel: 待ちは打ち切られ、答えの無い呼び出しは "cancelled" で履歴に入る。"""
    model = ScriptedModel(Turn([Text("確認します"), Call("k1", "confirm")]))
    thread = ThreadState(thread_id="t1", client_tools=[client_tool("confirm")])
    run, sink = make_run(model, thread=thread, client_tool_timeout_s=30)
    worker = start(run)
    assert sink.wait_for_type("tool_call_ready")
    assert sink.wait_for_type("step_finished")
    assert run.cancel("now")
    worker.join(5)
    assert not worker.is_alive()
    assert _terminal(sink) == ["run_cancelled"]
    assert run.submit_tool_result("k1", "yes", False) == "not_awaiting"
    assert run.pending_client_calls == []
    history = run.thread.history
    assert_valid_history(history)
    assert history[-1].tool_result.result == "cancelled" and history[-1].tool_result.is_error
    assert "tool_result" not in sink.types()


def test_cancel_while_a_server_tool_runs_signals_the_tool():
    """サーバー側ツールの実行中の cancel: ツールは取り消しトークンを受け取り、run_cancelled は 1 回。"""
    started, release, seen = threading.Event(), threading.Event(), threading.Event()
    registry = FakeRegistry(blocking_tool(started, release, seen))
    model = ScriptedModel(Turn([Call("s1", "slow")]))
    run, sink = make_run(model, registry=registry)
    worker = start(run)
    assert started.wait(5)
    assert run.cancel("now")
    assert seen.wait(5)
    worker.join(5)
    assert not worker.is_alive()
    assert _terminal(sink) == ["run_cancelled"]
    assert sink.types()[-1] == "run_cancelled"
    assert_valid_history(run.thread.history)


def test_after_step_lets_the_step_and_its_tools_finish_then_ends():
    """after_step: いまのモデル呼び出しとツールは最後まで、次のステップは始めずに run_cancelled。"""
    block = Block()
    registry = FakeRegistry(calculator_tool())
    model = ScriptedModel(Turn([Text("計算"), block, Call("c1", "calculator", {"expression": "6*7"})]))
    run, sink = make_run(model, registry=registry)
    worker = start(run)
    assert block.reached.wait(5)
    assert run.cancel("after_step") is True
    block.release.set()
    worker.join(5)
    model.assert_done()
    types = sink.types()
    assert types.count("step_started") == 1
    assert sink.of_type("tool_result")[0]["result"] == 42
    assert _terminal(sink) == ["run_cancelled"] and types[-1] == "run_cancelled"
    assert sink.of_type("run_cancelled")[0]["reason"] == "client"
    history = run.thread.history
    assert [m.role for m in history] == ["user", "assistant", "tool"]
    assert not history[1].interrupted
    assert_valid_history(history)


def test_next_run_after_a_cancel_sends_a_valid_history():
    """キャンセルの後の次の実行: モデルに渡る履歴は途中のテキスト (interrupted) を含み、答えの無い呼び出しは無い。"""
    block = Block()
    model = ScriptedModel(Turn([Text("長い 説明"), block]), Turn([Text("続けます")]))
    thread = ThreadState(thread_id="t1")
    run, _ = make_run(model, thread=thread)
    worker = start(run)
    assert block.reached.wait(5)
    run.cancel("now")
    worker.join(5)
    second, sink = make_run(model, thread=thread, router=run.ctx.router, run_id="run-2", content="続けて")
    second.run()
    model.assert_done()
    roles = [(m.role, m.interrupted) for m in model.requests[1].messages]
    assert roles == [("user", False), ("assistant", True), ("user", False)]
    assert_valid_history(thread.history)
    assert sink.types()[-1] == "run_finished"


def test_cancel_before_the_run_starts():
    """run() の前の cancel: run_started と run_cancelled が出て、run() は何もしない。"""
    model = ScriptedModel()
    run, sink = make_run(model)
    assert run.cancel("now")
    run.run()
    assert sink.types() == ["run_started", "run_cancelled"]
    model.assert_done()
    assert [m.role for m in run.thread.history] == ["user"]


def test_no_event_after_run_cancelled_even_when_the_model_keeps_streaming():
    """取り消しを無視して流し続けるモデルでも、run_cancelled の後にイベントは出ない。"""
    block = Block()
    model = ScriptedModel(Turn([block, Text("まだ 出る")]))

    class Deaf:
        """キャンセルトークンを無視するクライアント。"""

        provider = "scripted"

        def chat_stream(self, request, *, cancel=None, on_retry=None):
            """トークンを渡さずに流す。"""
            return model.chat_stream(request, cancel=None, on_retry=on_retry)

    from tests.agent.scripted_model import FakeRouter

    run, sink = make_run(model, router=FakeRouter({"scripted": Deaf()}))
    worker = start(run)
    assert block.reached.wait(5)
    run.cancel("now")
    block.release.set()
    worker.join(5)
    assert sink.types()[-1] == "run_cancelled"
    assert _terminal(sink) == ["run_cancelled"]


def test_cancel_while_the_model_is_thinking():
    """推論の途中の cancel: run_cancelled は 1 回。署名の無い途中の推論は履歴に残さない。"""
    from tests.agent.scripted_model import Reason

    block = Block()
    model = ScriptedModel(Turn([Reason("考え 中", signature=None), block]))
    thread = ThreadState(thread_id="t1", settings={"reasoning": "medium"})
    run, sink = make_run(model, thread=thread)
    worker = start(run)
    assert block.reached.wait(5)
    assert run.cancel("now")
    worker.join(5)
    assert "reasoning_started" in sink.types()
    assert _terminal(sink) == ["run_cancelled"]
    assert [m.role for m in thread.history] == ["user"]
