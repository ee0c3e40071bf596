"""失敗したランはスレッドを使えなくしない: 完了したステップは残り、失敗したステップは何も残さず、
ステップが 1 つも完了しないまま失敗したランはユーザーメッセージごと巻き戻す (``rolled_back: true``)。"""

from llm_router.agent import ThreadState
from llm_router.core.schemas.errors import ProviderAuthError, ProviderBadRequestError
from tests.agent.scripted_model import (
    Call,
    Fail,
    FakeRegistry,
    FakeRouter,
    ScriptedModel,
    Text,
    Turn,
    assert_valid_history,
    calculator_tool,
    make_run,
)


def _bad_request():
    """プロバイダが要求を断った (400)。"""
    return ProviderBadRequestError("image too large", provider="scripted", status=400)


def _texts(request):
    """リクエストのメッセージのテキストの一覧。"""
    return [m.text() for m in request.messages]


def test_failure_before_any_step_rolls_back_and_the_next_run_sends_the_old_history():
    """400 で失敗したランの後、次のランのリクエストには失敗したメッセージが無い (前に受け付けられた履歴だけ)。"""
    thread = ThreadState(thread_id="t1")
    model = ScriptedModel(Turn([Text("はじめまして")]), Turn([Fail(_bad_request())]), Turn([Text("元気です")]))
    first, _ = make_run(model, thread=thread, content="こんにちは", run_id="r1")
    first.run()
    failed, sink = make_run(model, thread=thread, content="巨大な画像つきの失敗する文", run_id="r2")
    failed.run()
    end = sink.of_type("run_error")[0]
    assert end["rolled_back"] is True and end["error"]["code"] == "provider_bad_request"
    assert [m.text() for m in thread.history] == ["こんにちは", "はじめまして"]
    after, sink3 = make_run(model, thread=thread, content="元気?", run_id="r3")
    after.run()
    model.assert_done()
    assert sink3.types()[-1] == "run_finished"
    assert _texts(model.requests[2]) == ["こんにちは", "はじめまして", "元気?"]
    assert "巨大な画像つきの失敗する文" not in str(model.requests[2].messages)


def test_a_failed_later_step_keeps_the_completed_steps_and_leaves_nothing_of_itself():
    """ステップ 1 (ツール呼び出しとその結果) が完了した後にステップ 2 が失敗: ステップ 1 は残り、巻き戻さない。"""
    registry = FakeRegistry(calculator_tool())
    model = ScriptedModel(
        Turn([Call("c1", "calculator", {"expression": "1+2"})], finish="tool_calls"),
        Turn([Text("途中まで"), Fail(ProviderAuthError("revoked", provider="scripted", status=401))]),
    )
    run, sink = make_run(model, registry=registry, step_reset_retries=0)
    run.run()
    model.assert_done()
    end = sink.of_type("run_error")[0]
    assert end["rolled_back"] is False and end["error"]["code"] == "provider_auth"
    assert [m.role for m in run.thread.history] == ["user", "assistant", "tool"]
    assert "途中まで" not in [m.text() for m in run.thread.history]
    assert_valid_history(run.thread.history)


def test_a_run_that_fails_to_resolve_its_model_is_rolled_back():
    """経路の解決に失敗したラン (ステップなし) も巻き戻す。"""

    class NoRoute(FakeRouter):
        """経路を返せないルーター (ほかの口は偽のルーターのもの)。"""

        def chain(self, spec):
            """常に失敗する。"""
            raise ProviderBadRequestError("no such model", provider="scripted", status=400)

    model = ScriptedModel()
    run, sink = make_run(model, router=NoRoute({model.provider: model}))
    run.run()
    assert sink.types() == ["run_started", "run_error"]
    assert sink.of_type("run_error")[0]["rolled_back"] is True
    assert run.thread.history == []


def test_cancelled_runs_keep_the_version_1_rule():
    """キャンセルは巻き戻さない (部分テキストは interrupted で残る)。"""
    from tests.agent.scripted_model import Block, start

    block = Block()
    model = ScriptedModel(Turn([Text("途中"), block]))
    run, sink = make_run(model)
    worker = start(run)
    assert block.reached.wait(5)
    assert run.cancel() is True
    worker.join(5)
    assert sink.types()[-1] == "run_cancelled"
    assert [m.role for m in run.thread.history] == ["user", "assistant"]
    assert run.thread.history[-1].interrupted
