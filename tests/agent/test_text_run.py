"""テキストだけの実行: イベントの順番とフィールド、推論、履歴、実行設定。"""

from llm_router.agent import ThreadState
from llm_router.core.schemas.common import Message
from tests.agent.scripted_model import Reason, ScriptedModel, Text, Turn, Use, make_run


def test_every_event_of_a_text_run_in_order():
    """run_started から run_finished まで、プロトコルの名前とフィールドのとおりに並ぶ。"""
    model = ScriptedModel(Turn([Use(10, 0), Text("Hello there world"), Use(10, 3)]))
    run, sink = make_run(model)
    run.run()
    model.assert_done()
    assert sink.types() == [
        "run_started",
        "step_started",
        "text_started",
        "text_delta",
        "text_delta",
        "text_delta",
        "text_finished",
        "step_finished",
        "run_finished",
    ]
    fields = [e[2] for e in sink.events]
    assert all(e[1] == "run-1" for e in sink.events)
    assert fields[0] == {"model": "scripted/m1", "max_steps": 8}
    assert fields[1] == {"step": 1, "model": "scripted/m1"}
    message_id = fields[2]["message_id"]
    assert [f["delta"] for f in fields[3:6]] == ["Hello ", "there ", "world"]
    assert all(f["message_id"] == message_id for f in fields[2:7])
    assert fields[6] == {"message_id": message_id, "text": "Hello there world"}
    usage = {"input_tokens": 10, "output_tokens": 3, "reasoning_tokens": 0}
    assert fields[7] == {"step": 1, "finish_reason": "stop", "usage": usage}
    assert fields[8] == {"finish_reason": "stop", "usage": usage, "text": "Hello there world"}
    assert run.done


def test_history_gets_the_user_message_and_the_answer_and_is_reused():
    """履歴にユーザーメッセージと答えが入り、次の実行はその履歴とシステムプロンプトで呼ぶ。"""
    thread = ThreadState(thread_id="t1", system="あなたは助手です")

    def expect_second(request):
        """2 回目の実行は前の会話を含む。"""
        roles = [m.role for m in request.messages]
        if roles != ["system", "user", "assistant", "user"]:
            return f"roles {roles}"
        return None

    model = ScriptedModel(Turn([Text("一つ目")]), Turn([Text("二つ目")], expect=expect_second))
    first, _ = make_run(model, thread=thread, content="質問1")
    first.run()
    second, sink = make_run(model, thread=thread, content="質問2", router=first.ctx.router, run_id="run-2")
    second.run()
    model.assert_done()
    assert [(m.role, m.text()) for m in thread.history] == [
        ("user", "質問1"),
        ("assistant", "一つ目"),
        ("user", "質問2"),
        ("assistant", "二つ目"),
    ]
    assert model.requests[0].messages[0] == Message.system("あなたは助手です")
    assert sink.of_type("run_finished")[0]["text"] == "二つ目"


def test_reasoning_events_come_before_the_text_and_never_carry_the_signature():
    """推論は reasoning_started/delta/finished で、テキストより先。署名はどのイベントにも無いが履歴には残る。"""
    model = ScriptedModel(Turn([Reason("まず 考える"), Text("答え"), Use(5, 7, 4)]))
    thread = ThreadState(thread_id="t1", settings={"reasoning": "high"})
    run, sink = make_run(model, thread=thread)
    run.run()
    model.assert_done()
    assert model.requests[0].reasoning == "high"
    types = sink.types()
    assert types[2:6] == ["reasoning_started", "reasoning_delta", "reasoning_delta", "reasoning_finished"]
    assert types.index("reasoning_finished") < types.index("text_started")
    assert sink.of_type("reasoning_finished")[0]["text"] == "まず 考える "
    rid = sink.of_type("reasoning_started")[0]["message_id"]
    assert rid != sink.of_type("text_started")[0]["message_id"]
    assert "SECRET" not in repr(sink.events)
    assert sink.of_type("run_finished")[0]["usage"]["reasoning_tokens"] == 4
    assert thread.history[-1].reasoning[0].signature == "sig-SECRET-signature"


def test_run_settings_reach_the_request():
    """温度、最大トークン、tool_choice は実行設定から、無ければ agent 設定から。"""
    model = ScriptedModel(Turn([Text("ok")]))
    thread = ThreadState(thread_id="t1", settings={"temperature": 0.2, "max_tokens": 99})
    run, _ = make_run(model, thread=thread, temperature=0.9, max_tokens=500)
    run.run()
    request = model.requests[0]
    assert (request.temperature, request.max_tokens, request.model) == (0.2, 99, "m1")
    assert request.tools == [] and request.tool_choice is None


def test_length_finish_reason_ends_the_run_with_length():
    """モデルがトークン上限で止まったら run_finished.finish_reason は length。"""
    model = ScriptedModel(Turn([Text("途中まで")], finish="length"))
    run, sink = make_run(model)
    run.run()
    assert sink.of_type("step_finished")[0]["finish_reason"] == "length"
    assert sink.of_type("run_finished")[0]["finish_reason"] == "length"
