"""失敗の扱い: 再試行の通知、次のモデルへの切り替え、ステップのやり直し、run_error の code と phase。"""

from llm_router.agent import ThreadState
from llm_router.core.schemas.errors import (
    ProviderAuthError,
    ProviderRateLimitedError,
    ProviderStreamBrokenError,
    ProviderUnavailableError,
)
from tests.agent.scripted_model import (
    Call,
    Fail,
    FakeRouter,
    Reason,
    RetryNotice,
    ScriptedModel,
    Text,
    Turn,
    Use,
    assert_valid_history,
    client_tool,
    make_run,
)


def _broken():
    """ストリームの途中の断線。"""
    return ProviderStreamBrokenError("connection reset", provider="scripted")


def test_client_retries_show_as_retry_events():
    """クライアントの再試行 (on_retry) は retry イベント (step, attempt, wait_ms, reason, model) になる。"""
    error = ProviderRateLimitedError("slow down", provider="scripted", status=429)
    model = ScriptedModel(Turn([RetryNotice(0.25, error), RetryNotice(0.5, error), Text("ok")]))
    run, sink = make_run(model)
    run.run()
    assert sink.of_type("retry") == [
        {"step": 1, "attempt": 1, "wait_ms": 250, "reason": "provider_rate_limited", "model": "scripted/m1"},
        {"step": 1, "attempt": 2, "wait_ms": 500, "reason": "provider_rate_limited", "model": "scripted/m1"},
    ]
    assert sink.types()[-1] == "run_finished"


def test_retryable_failure_before_output_falls_back_to_the_next_model():
    """出力前の再試行可能な失敗: retry イベント (新しい model) で次のモデルへ。以後のステップもそのモデル。"""
    primary = ScriptedModel(
        Turn([Fail(ProviderUnavailableError("overloaded", provider="primary", status=529))]), provider="primary"
    )
    backup = ScriptedModel(Turn([Text("予備です")]), provider="backup")
    router = FakeRouter({"primary": primary, "backup": backup}, chain=["primary/big", "backup/small"])
    run, sink = make_run(primary, router=router)
    run.run()
    primary.assert_done()
    backup.assert_done()
    assert sink.of_type("retry") == [
        {"step": 1, "attempt": 1, "wait_ms": 0, "reason": "provider_unavailable", "model": "backup/small"}
    ]
    assert backup.requests[0].model == "small"
    assert sink.of_type("run_finished")[0]["text"] == "予備です"
    assert sink.types().count("step_started") == 1


def test_non_retryable_failure_before_output_is_run_error_before_output():
    """認証の失敗は切り替えずに run_error (phase before_output)。"""
    primary = ScriptedModel(
        Turn([Fail(ProviderAuthError("invalid x-api-key", provider="primary", status=401))]), provider="primary"
    )
    backup = ScriptedModel(provider="backup")
    router = FakeRouter({"primary": primary, "backup": backup}, chain=["primary/big", "backup/small"])
    run, sink = make_run(primary, router=router)
    run.run()
    backup.assert_done()
    error = sink.of_type("run_error")[0]["error"]
    assert error == {
        "code": "provider_auth",
        "message": "primary 401: invalid x-api-key",
        "provider": "primary",
        "retryable": False,
        "phase": "before_output",
    }
    assert run.thread.history == [], "a run that failed before any step completed is rolled back"
    assert sink.of_type("run_error")[0]["rolled_back"] is True


def test_failure_after_output_resets_the_step_and_succeeds():
    """出力後の失敗: step_reset、その試行の出力 (テキスト、推論、ツール呼び出し) は捨てて、やり直しが成功。"""
    model = ScriptedModel(
        Turn([Use(3, 1), Reason("考え"), Text("壊れる 前"), Call("k1", "get_locale"), Fail(_broken())]),
        Turn([Text("やり直し"), Use(3, 2)], expect=lambda r: None if len(r.messages) == 1 else "history leaked"),
    )
    thread = ThreadState(thread_id="t1", client_tools=[client_tool()])
    run, sink = make_run(model, thread=thread)
    run.run()
    model.assert_done()
    types = sink.types()
    reset_at = types.index("step_reset")
    assert sink.of_type("step_reset") == [{"step": 1, "reason": "provider_stream_broken"}]
    assert types[reset_at + 1] == "text_started"
    assert types.count("step_started") == 1
    assert [(m.role, m.text()) for m in thread.history] == [("user", "こんにちは"), ("assistant", "やり直し")]
    assert thread.history[-1].reasoning == []
    assert run.submit_tool_result("k1", "ja", False) == "not_awaiting"
    # 捨てた試行の消費も数える
    assert sink.of_type("run_finished")[0]["usage"] == {"input_tokens": 6, "output_tokens": 3, "reasoning_tokens": 0}
    assert sink.of_type("run_finished")[0]["text"] == "やり直し"


def test_second_failure_after_output_is_run_error_mid_stream():
    """やり直しも出力後に失敗したら run_error (phase mid_stream)。失敗したステップは履歴に残らない。"""
    model = ScriptedModel(Turn([Text("一回目"), Fail(_broken())]), Turn([Text("二回目"), Fail(_broken())]))
    run, sink = make_run(model)
    run.run()
    model.assert_done()
    assert sink.types().count("step_reset") == 1
    error = sink.of_type("run_error")[0]["error"]
    assert (error["code"], error["phase"], error["retryable"]) == ("provider_stream_broken", "mid_stream", True)
    assert run.thread.history == [] and sink.of_type("run_error")[0]["rolled_back"] is True
    assert_valid_history(run.thread.history)


def test_unexpected_exception_is_internal_without_a_stack_trace():
    """予期しない例外は internal。メッセージに例外の中身もトレースも出さない。"""
    model = ScriptedModel(Turn([Fail(RuntimeError("secret detail sk-123"))]))
    run, sink = make_run(model)
    run.run()
    error = sink.of_type("run_error")[0]["error"]
    assert error["code"] == "internal" and error["phase"] == "before_output"
    assert "sk-123" not in error["message"] and "Traceback" not in error["message"]
    assert "RuntimeError" in error["message"]


def test_missing_credential_is_provider_auth_naming_the_variable():
    """キーの無いプロバイダは provider_auth で、設定すべき .env の変数名を伝える。"""
    model = ScriptedModel()
    router = FakeRouter({}, chain=["openai/gpt"])
    run, sink = make_run(model, router=router)
    run.run()
    error = sink.of_type("run_error")[0]["error"]
    assert error["code"] == "provider_auth" and "OPENAI_API_KEY" in error["message"]
    assert sink.types() == ["run_started", "step_started", "run_error"]


def test_scripted_model_reports_an_unexpected_call():
    """台本に無い呼び出しは偽モデルが記録する (テストの道具自体の確認)。"""
    model = ScriptedModel()
    run, sink = make_run(model)
    run.run()
    assert model.failures == ["unexpected call #1"]
    assert sink.of_type("run_error")[0]["error"]["code"] == "internal"


def test_fallback_without_a_key_is_skipped_to_the_next_one():
    """フォールバック先にキーが無ければ、その次のモデルへ進む。"""
    primary = ScriptedModel(
        Turn([Fail(ProviderUnavailableError("down", provider="primary", status=503))]), provider="primary"
    )
    third = ScriptedModel(Turn([Text("三番目")]), provider="third")
    router = FakeRouter({"primary": primary, "third": third}, chain=["primary/a", "nokey/b", "third/c"])
    run, sink = make_run(primary, router=router)
    run.run()
    third.assert_done()
    assert [(r["model"], r["reason"]) for r in sink.of_type("retry")] == [
        ("nokey/b", "provider_unavailable"),
        ("third/c", "provider_auth"),
    ]
    assert sink.of_type("run_finished")[0]["text"] == "三番目"


def test_error_messages_never_carry_a_configured_secret():
    """プロバイダの文言に秘密の値が紛れ込んでも、run_error.message では伏せる。"""

    class Secrets:
        """秘密の値を持つ設定の代わり。"""

        def all_values(self):
            """秘密の値。"""
            return ["sk-live-SECRET"]

    model = ScriptedModel(Turn([Fail(ProviderAuthError("bad key sk-live-SECRET", provider="scripted", status=401))]))
    router = FakeRouter({"scripted": model})
    router.settings = type("S", (), {"secrets": Secrets()})()
    run, sink = make_run(model, router=router)
    run.run()
    message = sink.of_type("run_error")[0]["error"]["message"]
    assert "sk-live-SECRET" not in message and "***" in message


def test_a_reset_step_may_repeat_the_same_client_tool_call_id():
    """やり直しの試行が同じ ID のクライアント呼び出しを出しても、改めて待ち受けて答えを受け取る。"""
    from tests.agent.scripted_model import start

    model = ScriptedModel(
        Turn([Call("k1", "get_locale"), Fail(_broken())]),
        Turn([Call("k1", "get_locale")]),
        Turn([Text("ok")]),
    )
    thread = ThreadState(thread_id="t1", client_tools=[client_tool()])
    run, sink = make_run(model, thread=thread)
    worker = start(run)
    assert sink.wait_for_type("tool_call_ready", count=2)
    assert run.submit_tool_result("k1", "ja", False) is None
    worker.join(5)
    model.assert_done()
    assert [r["result"] for r in sink.of_type("tool_result")] == ["ja"]
    assert_valid_history(thread.history)


def test_in_stream_failure_before_output_is_retried_on_the_same_model():
    """HTTP 200 の後、出力前にストリームで届いた再試行可能なエラー (切り替え先なし) は同じモデルで 1 回やり直す。"""
    overloaded = ProviderUnavailableError("Overloaded", provider="scripted", retry_after_s=0.0)
    model = ScriptedModel(Turn([Use(4, 0), Fail(overloaded)]), Turn([Text("再開しました")]))
    run, sink = make_run(model)
    run.run()
    model.assert_done()
    assert sink.of_type("retry") == [
        {"step": 1, "attempt": 1, "wait_ms": 0, "reason": "provider_unavailable", "model": "scripted/m1"}
    ]
    assert "step_reset" not in sink.types()
    assert sink.of_type("run_finished")[0]["text"] == "再開しました"


def test_failure_the_client_already_retried_is_not_retried_again():
    """クライアントが再試行し尽くした出力前の失敗は、ループで重ねて再試行せず run_error (before_output)。"""
    error = ProviderUnavailableError("overloaded", provider="scripted", status=503)
    model = ScriptedModel(Turn([RetryNotice(0.0, error), Fail(error)]))
    run, sink = make_run(model)
    run.run()
    model.assert_done()
    assert len(sink.of_type("retry")) == 1
    failure = sink.of_type("run_error")[0]["error"]
    assert (failure["code"], failure["phase"], failure["retryable"]) == ("provider_unavailable", "before_output", True)
