"""敵対的なツール呼び出しへの備え: 検証は 1 回、タイムアウトはツールの開始から、長い結果はモデル向けに縮める、
ツールの関数はハブの外の OS スレッドで動く。"""

import threading

import llm_router.agent.toolbox as toolbox_module
from llm_router.agent import ThreadState
from llm_router.agent.tool_execution import shorten_for_model
from tests.agent.scripted_model import (
    Call,
    FakeRegistry,
    FakeTool,
    ScriptedModel,
    Text,
    Turn,
    blocking_tool,
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


def test_arguments_of_one_call_are_validated_once(monkeypatch):
    """1 つの呼び出しの引数は 1 回だけ検証される (完成時の判定をツールの段階でも使う。レジストリは再検証しない)。"""
    seen = []
    real = toolbox_module.validate_arguments

    def counting(schema, arguments):
        """本物の検証器を呼び、呼ばれた引数を記録する。"""
        seen.append(arguments)
        return real(schema, arguments)

    monkeypatch.setattr(toolbox_module, "validate_arguments", counting)
    registry = FakeRegistry(calculator_tool())
    model = ScriptedModel(Turn([Call("s1", "calculator", {"expression": "6*7"})]), Turn([Text("42")]))
    thread = ThreadState(thread_id="t1", client_tools=[client_tool("confirm", required=("text",))])
    run, _sink = make_run(model, registry=registry, thread=thread)
    run.run()
    model.assert_done()
    assert seen == [{"expression": "6*7"}]
    assert _tool_result_of(model.requests[1], "s1").result == 42


def test_a_retried_call_with_other_arguments_is_validated_again():
    """同じ ID でも引数が違えば (やり直しの応答) 判定を使い回さない。"""
    from llm_router.agent.toolbox import Toolbox
    from llm_router.core.schemas.common import ToolCall, ToolDefinition

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    thread = ThreadState(thread_id="t1", client_tools=[ToolDefinition("count", "数える", schema)])
    box = Toolbox(None, [], thread)
    assert box.problem(ToolCall("c1", "count", {"n": 1}, '{"n": 1}')) is None
    problem = box.problem(ToolCall("c1", "count", {"n": "x"}, '{"n": "x"}'))
    assert problem is not None and "arguments.n" in problem


def test_server_tool_timeout_is_kept_while_a_client_tool_is_still_awaited():
    """サーバー側ツールの期限は、同じステップのクライアント側ツールを待っている間も守られる。

    修正前は、クライアントの答え (最大 client_tool_timeout_s) を待ち終えるまでサーバー側の "timed out" が
    記録されなかった。
    """
    started, release, seen_cancel = threading.Event(), threading.Event(), threading.Event()
    registry = FakeRegistry(blocking_tool(started, release, seen_cancel))
    model = ScriptedModel(Turn([Call("k1", "get_locale"), Call("s1", "slow")]), Turn([Text("done")]))
    thread = ThreadState(thread_id="t1", client_tools=[client_tool()])
    run, sink = make_run(model, registry=registry, thread=thread, client_tool_timeout_s=30, server_tool_timeout_s=0.2)
    worker = start(run)
    try:
        assert sink.wait_for(
            lambda evs: any(e[0] == "tool_result" and e[2]["tool_call_id"] == "s1" for e in evs), timeout=10
        ), "the server tool's timeout waited for the client tool"
        result = next(r for r in sink.of_type("tool_result") if r["tool_call_id"] == "s1")
        assert (result["result"], result["is_error"]) == ("timed out", True)
        assert seen_cancel.wait(5)
        assert run.pending_client_calls == ["k1"]
    finally:
        run.submit_tool_result("k1", "ja", False)
        worker.join(10)
    model.assert_done()
    assert _tool_result_of(model.requests[1], "k1").result == "ja"


def test_long_results_are_shortened_for_the_model_but_sent_whole_to_the_client():
    """max_tool_result_chars を超える結果: モデルには頭と尻尾と省いた文字数、tool_result イベントには全文。"""
    body = "A" * 500 + "M" * 9000 + "Z" * 500
    tool = FakeTool("dump", "大きな結果", {"type": "object", "properties": {}}, lambda cancel: body)
    model = ScriptedModel(Turn([Call("s1", "dump")]), Turn([Text("ok")]))
    run, sink = make_run(model, registry=FakeRegistry(tool), max_tool_result_chars=1000)
    run.run()
    model.assert_done()
    assert sink.of_type("tool_result")[0]["result"] == body
    seen = _tool_result_of(model.requests[1], "s1").result
    assert seen.startswith("A" * 500) and seen.endswith("Z" * 500)
    assert "[... 9000 characters omitted ...]" in seen
    stored = [m.tool_result.result for m in run.thread.history if m.role == "tool"]
    assert stored == [seen]


def test_shorten_for_model_keeps_small_values_and_serialises_large_structures():
    """収まる値はそのまま (型も)。大きな構造は JSON の文字列にしてから縮める。"""
    assert shorten_for_model({"a": 1}, 100) == {"a": 1}
    assert shorten_for_model(12345, 2) == 12345
    big = {"rows": ["x" * 50] * 100}
    out = shorten_for_model(big, 200)
    assert isinstance(out, str) and out.startswith('{"rows": ["') and out.endswith('"]}')
    assert "characters omitted" in out


def test_server_tools_run_on_a_pool_thread_not_the_run_thread():
    """ツールの関数は実行のスレッドではなく、有界プールの OS スレッドで動く (agent.tool_executor)。"""
    names = []

    def where(cancel):
        """呼ばれたスレッドの名前を返す。"""
        names.append(threading.current_thread().name)
        return "ok"

    tool = FakeTool("where", "どこで動くか", {"type": "object", "properties": {}}, where)
    model = ScriptedModel(Turn([Call("s1", "where")]), Turn([Text("ok")]))
    run, _sink = make_run(model, registry=FakeRegistry(tool), tool_threads=2)
    run.run()
    model.assert_done()
    assert names and names[0].startswith("llm-router-tool")


SECRET = "sk-test-SECRET-0123456789"


class _Secrets:
    """設定の ``secrets`` の代わり (本物と同じ ``all_values()`` を持つ)。"""

    def all_values(self):
        """伏せる値の一覧。"""
        return [SECRET]


def test_every_string_sent_to_the_client_is_redacted_like_run_error():
    """ツールのエラー、再試行の理由、run_error のどれにも秘密の値は出ない (同じ伏せ字の関数を通る)。"""
    from types import SimpleNamespace

    from llm_router.core.schemas.errors import ProviderRateLimitedError
    from tests.agent.scripted_model import FakeRouter, RetryNotice

    def leaky(cancel):
        """秘密の値を含む例外を投げるツール。"""
        raise ValueError(f"upstream said: bad key {SECRET}")

    tool = FakeTool("leaky", "漏らすツール", {"type": "object", "properties": {}}, leaky)
    error = ProviderRateLimitedError(f"slow down {SECRET}", provider="scripted", status=429, retryable=True)
    model = ScriptedModel(
        Turn([RetryNotice(0.0, error), Call("s1", "leaky")]),
        Turn([Text(f"I saw {SECRET} in the tool")]),
    )
    router = FakeRouter({model.provider: model})
    router.settings = SimpleNamespace(secrets=_Secrets())
    run, sink = make_run(model, registry=FakeRegistry(tool), router=router)
    run.run()
    model.assert_done()
    sent = repr(sink.events)
    assert SECRET not in sent
    result = sink.of_type("tool_result")[0]
    assert result["is_error"] and "bad key ***" in result["result"]
    assert sink.of_type("retry")  # 再試行も送られている (理由はコードだけだが、同じ経路を通る)
