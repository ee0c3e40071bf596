"""ツールの段階: サーバー側・クライアント側・並列・タイムアウト・不正な引数・遅い答え・max_steps。"""

from llm_router.agent import ThreadState
from tests.agent.scripted_model import (
    Call,
    FakeRegistry,
    ScriptedModel,
    Text,
    Turn,
    assert_valid_history,
    calculator_tool,
    client_tool,
    make_run,
    start,
)


def _tool_result_of(request, tool_call_id):
    """リクエストの履歴から、その呼び出しのツール結果を探す。"""
    for message in request.messages:
        if message.role == "tool" and message.tool_result.tool_call_id == tool_call_id:
            return message.tool_result
    return None


def test_server_tool_runs_and_its_result_goes_back_to_the_model():
    """calculator の呼び出し → 実行 → 結果がモデルへ → 答え。イベントは started/delta/ready/result の順。"""

    def expect_result(request):
        """2 回目の呼び出しには計算結果が入っている。"""
        result = _tool_result_of(request, "c1")
        return None if result is not None and result.result == 5 else f"no result in {request.messages}"

    model = ScriptedModel(
        Turn([Call("c1", "calculator", {"expression": "2+3"})]),
        Turn([Text("答えは 5")], expect=expect_result),
    )
    registry = FakeRegistry(calculator_tool())
    run, sink = make_run(model, registry=registry)
    run.run()
    model.assert_done()
    types = sink.types()
    assert types[:7] == [
        "run_started",
        "step_started",
        "tool_call_started",
        "tool_call_delta",
        "tool_call_delta",
        "tool_call_ready",
        "step_finished",
    ]
    assert types[7] == "tool_result"
    assert types[8:10] == ["step_started", "text_started"]
    assert sink.of_type("tool_call_started")[0] == {"tool_call_id": "c1", "name": "calculator", "executor": "server"}
    assert "".join(d["delta"] for d in sink.of_type("tool_call_delta")) == '{"expression": "2+3"}'
    assert sink.of_type("tool_call_ready")[0] == {
        "tool_call_id": "c1",
        "name": "calculator",
        "arguments": {"expression": "2+3"},
        "executor": "server",
    }
    result = sink.of_type("tool_result")[0]
    assert {k: result[k] for k in ("tool_call_id", "name", "result", "is_error", "executor")} == {
        "tool_call_id": "c1",
        "name": "calculator",
        "result": 5,
        "is_error": False,
        "executor": "server",
    }
    assert isinstance(result["duration_ms"], int)
    assert sink.of_type("step_finished")[0]["finish_reason"] == "tool_calls"
    assert sink.of_type("run_finished")[0]["finish_reason"] == "stop"
    assert [m.role for m in run.thread.history] == ["user", "assistant", "tool", "assistant"]
    assert [t.name for t in model.requests[0].tools] == ["calculator"]


def test_client_tool_is_announced_and_its_answer_goes_back():
    """クライアント側ツールは tool_call_ready(executor=client) で告知され、submit_tool_result の答えがモデルへ。"""
    model = ScriptedModel(
        Turn([Call("k1", "get_locale")]),
        Turn([Text("ja-JP ですね")], expect=lambda r: None if _tool_result_of(r, "k1").result == "ja-JP" else "wrong"),
    )
    thread = ThreadState(thread_id="t1", client_tools=[client_tool()])
    run, sink = make_run(model, thread=thread)
    worker = start(run)
    assert sink.wait_for_type("tool_call_ready")
    assert sink.of_type("tool_call_ready")[0]["executor"] == "client"
    assert run.pending_client_calls == ["k1"]
    assert run.submit_tool_result("k1", "ja-JP", False) is None
    worker.join(5)
    model.assert_done()
    result = sink.of_type("tool_result")[0]
    assert (result["result"], result["is_error"], result["executor"]) == ("ja-JP", False, "client")
    assert sink.types()[-1] == "run_finished"


def test_parallel_client_and_server_tools_in_one_step():
    """1 ステップにサーバー 2 つとクライアント 2 つ: クライアントの呼び出しは待つ前にすべて告知され、結果は呼び出し順。"""
    registry = FakeRegistry(calculator_tool())
    model = ScriptedModel(
        Turn(
            [
                Call("s1", "calculator", {"expression": "1+1"}),
                Call("k1", "get_locale"),
                Call("s2", "calculator", {"expression": "2*3"}),
                Call("k2", "confirm"),
            ]
        ),
        Turn([Text("done")]),
    )
    thread = ThreadState(thread_id="t1", client_tools=[client_tool(), client_tool("confirm")])
    run, sink = make_run(model, registry=registry, thread=thread)
    worker = start(run)
    assert sink.wait_for(lambda evs: sum(1 for e in evs if e[0] == "tool_result") == 2)
    # サーバー側の 2 つは、クライアントが答える前に終わっている (同時に動く)
    assert {r["tool_call_id"] for r in sink.of_type("tool_result")} == {"s1", "s2"}
    ready = [r["tool_call_id"] for r in sink.of_type("tool_call_ready")]
    assert ready == ["s1", "k1", "s2", "k2"]
    assert sorted(run.pending_client_calls) == ["k1", "k2"]
    assert run.submit_tool_result("k2", "yes", False) is None
    assert run.submit_tool_result("k1", "ja", False) is None
    worker.join(5)
    model.assert_done()
    second = model.requests[1].messages
    assert [m.tool_result.tool_call_id for m in second if m.role == "tool"] == ["s1", "k1", "s2", "k2"]
    assert [m.tool_result.result for m in second if m.role == "tool"] == [2, "ja", 6, "yes"]


def test_client_tool_timeout_answers_with_an_error():
    """答えが来なければ client_tool_timeout_s で "timed out" のエラー結果になり、モデルへ返る。"""
    model = ScriptedModel(
        Turn([Call("k1", "get_locale")]),
        Turn([Text("時間切れでした")], expect=lambda r: None if _tool_result_of(r, "k1").is_error else "not an error"),
    )
    thread = ThreadState(thread_id="t1", client_tools=[client_tool()])
    run, sink = make_run(model, thread=thread, client_tool_timeout_s=0.05)
    run.run()
    model.assert_done()
    result = sink.of_type("tool_result")[0]
    assert (result["result"], result["is_error"], result["executor"]) == ("timed out", True, "client")
    assert run.submit_tool_result("k1", "late", False) == "not_awaiting"


def test_invalid_arguments_are_not_executed():
    """壊れた JSON、スキーマ違反、未知のツールは実行しない。クライアントには error 付きで告知し、待たない。"""
    registry = FakeRegistry(calculator_tool())
    model = ScriptedModel(
        Turn(
            [
                Call("bad_json", "calculator", '{"expression": '),
                Call("bad_schema", "calculator", {"expression": 12}),
                Call("bad_client", "get_locale", {}),
                Call("nobody", "no_such_tool", {}),
            ]
        ),
        Turn([Text("直します")]),
    )
    thread = ThreadState(thread_id="t1", client_tools=[client_tool(required=("region",))])
    run, sink = make_run(model, registry=registry, thread=thread, client_tool_timeout_s=30)
    run.run()
    model.assert_done()
    assert registry.calls == []
    ready = {r["tool_call_id"]: r for r in sink.of_type("tool_call_ready")}
    # 不正な引数のクライアント側ツールは実行を頼まれない: executor は server で、理由が error に付く
    assert ready["bad_client"]["executor"] == "server" and "region" in ready["bad_client"]["error"]
    results = {r["tool_call_id"]: r for r in sink.of_type("tool_result")}
    assert set(results) == {"bad_json", "bad_schema", "bad_client", "nobody"}
    assert all(r["is_error"] for r in results.values())
    assert "not valid JSON" in results["bad_json"]["result"]
    assert "string" in results["bad_schema"]["result"]
    assert "unknown tool" in results["nobody"]["result"]
    assert run.submit_tool_result("bad_client", "x", False) == "not_awaiting"
    assert_valid_history(run.thread.history)


def test_late_duplicate_and_unknown_tool_results_change_nothing():
    """2 度目の答えは not_awaiting、未知の ID は unknown_tool_call。履歴は最初の答えだけ。"""
    model = ScriptedModel(Turn([Call("k1", "get_locale")]), Turn([Text("ok")]))
    thread = ThreadState(thread_id="t1", client_tools=[client_tool()])
    run, sink = make_run(model, thread=thread)
    worker = start(run)
    assert sink.wait_for_type("tool_call_ready")
    assert run.submit_tool_result("zzz", "?", False) == "unknown_tool_call"
    assert run.submit_tool_result("k1", "first", False) is None
    assert run.submit_tool_result("k1", "second", True) == "not_awaiting"
    worker.join(5)
    assert run.submit_tool_result("k1", "third", False) == "not_awaiting"
    assert run.submit_tool_result("zzz", "?", False) == "unknown_tool_call"
    assert [r["result"] for r in sink.of_type("tool_result")] == ["first"]
    assert [m.tool_result.result for m in thread.history if m.role == "tool"] == ["first"]


def test_max_steps_ends_the_run_while_tools_are_still_called():
    """max_steps に達してもまだツールを呼んでいれば finish_reason は max_steps。"""
    registry = FakeRegistry(calculator_tool())
    model = ScriptedModel(
        Turn([Call("a", "calculator", {"expression": "1+1"})]),
        Turn([Call("b", "calculator", {"expression": "2+2"})]),
    )
    thread = ThreadState(thread_id="t1", settings={"max_steps": 2})
    run, sink = make_run(model, registry=registry, thread=thread)
    run.run()
    model.assert_done()
    assert sink.of_type("run_started")[0]["max_steps"] == 2
    finished = sink.of_type("run_finished")[0]
    assert finished["finish_reason"] == "max_steps"
    assert [s["step"] for s in sink.of_type("step_started")] == [1, 2]
    assert_valid_history(thread.history)


def test_server_tool_failure_goes_back_to_the_model_as_an_error_result():
    """ツールが例外を投げても実行は続き、is_error の結果がモデルへ返る。"""
    registry = FakeRegistry(calculator_tool())
    model = ScriptedModel(Turn([Call("c1", "calculator", {"expression": "import os"})]), Turn([Text("失敗しました")]))
    run, sink = make_run(model, registry=registry)
    run.run()
    result = sink.of_type("tool_result")[0]
    assert result["is_error"] and "not arithmetic" in result["result"]
    assert sink.types()[-1] == "run_finished"


def test_server_tools_outside_the_thread_selection_are_not_offered():
    """スレッドが選んだサーバー側ツールだけをモデルに渡す。"""
    registry = FakeRegistry(calculator_tool())
    model = ScriptedModel(Turn([Text("ok")], expect=lambda r: None if r.tools == [] else "tools offered"))
    thread = ThreadState(thread_id="t1", server_tools=[])
    run, _ = make_run(model, registry=registry, thread=thread)
    run.run()
    model.assert_done()


def test_server_tool_timeout_answers_timed_out_and_signals_the_tool():
    """server_tool_timeout_s を過ぎたツールは "timed out" のエラー結果になり、取り消しを受け取る。"""
    import threading

    from tests.agent.scripted_model import blocking_tool

    started, release, seen = threading.Event(), threading.Event(), threading.Event()
    registry = FakeRegistry(blocking_tool(started, release, seen))
    model = ScriptedModel(Turn([Call("s1", "slow")]), Turn([Text("遅すぎました")]))
    run, sink = make_run(model, registry=registry, server_tool_timeout_s=0.05)
    run.run()
    model.assert_done()
    result = sink.of_type("tool_result")[0]
    assert (result["result"], result["is_error"], result["executor"]) == ("timed out", True, "server")
    assert seen.wait(5)
    assert len(sink.of_type("tool_result")) == 1


def test_text_before_a_tool_call_is_finished_before_the_call_starts():
    """同じステップのテキストは、ツール呼び出しが始まる前に text_finished で閉じる。"""
    registry = FakeRegistry(calculator_tool())
    model = ScriptedModel(
        Turn([Text("計算します"), Call("c1", "calculator", {"expression": "1+2"})]), Turn([Text("3")])
    )
    run, sink = make_run(model, registry=registry)
    run.run()
    types = sink.types()
    assert types.index("text_finished") < types.index("tool_call_started")
    assert run.thread.history[1].text() == "計算します" and run.thread.history[1].tool_calls[0].id == "c1"


def test_forced_tool_choice_applies_to_the_first_step_only():
    """required や特定ツールの強制は最初のステップだけ。ツールの後は auto に戻し、モデルが答えを書ける。"""
    for forced in ("required", {"type": "tool", "name": "calculator"}):
        model = ScriptedModel(Turn([Call("c1", "calculator", {"expression": "1+1"})]), Turn([Text("2 です")]))
        thread = ThreadState(thread_id="t1", settings={"tool_choice": forced})
        run, sink = make_run(model, registry=FakeRegistry(calculator_tool()), thread=thread)
        run.run()
        model.assert_done()
        first, second = (request.tool_choice for request in model.requests)
        assert first.mode in ("required", "tool") and second.mode == "auto"
        assert sink.of_type("run_finished")[0]["finish_reason"] == "stop"
