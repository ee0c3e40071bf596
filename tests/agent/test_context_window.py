"""文脈の大きさ: 入らないリクエストからは古いターンを丸ごと外し (ツール呼び出しと結果は離さず、システムプロンプトは
必ず残す)、そのステップのイベントは ``context_trimmed`` で始まり、保存した履歴は変えない。トークンの概算は 1 つ。"""

from types import SimpleNamespace

from llm_router.agent import ThreadState
from llm_router.agent.context import fit_history
from llm_router.config.schema import ModelOptions, ProviderConfig
from llm_router.core.schemas.common import Message, ToolCall
from llm_router.core.tokens import MESSAGE_OVERHEAD_TOKENS, estimate_message_tokens, estimate_tokens
from tests.agent.scripted_model import FakeRouter, ScriptedModel, Text, Turn, make_run


def _router(model: ScriptedModel, context_tokens: int, per_model: dict | None = None) -> FakeRouter:
    """``settings.config.providers.<p>`` に文脈の大きさを持つルーター。"""
    router = FakeRouter({model.provider: model})
    provider = ProviderConfig(base_url="x", chat_model="m1", context_tokens=context_tokens, models=per_model or {})
    router.settings = SimpleNamespace(
        config=SimpleNamespace(providers=SimpleNamespace(**{model.provider: provider})),
        secrets=SimpleNamespace(all_values=lambda: []),
    )
    return router


def _old_history() -> list[Message]:
    """3 ターンの履歴 (2 つ目はツール呼び出しと結果を含む)。各ターンはおよそ 1000 トークン。"""
    filler = "あ" * 1000
    return [
        Message.user("一つ目 " + filler),
        Message.assistant("答え一"),
        Message.user("二つ目 " + filler),
        Message.assistant("", [ToolCall("c1", "calc", {"e": "1+1"})]),
        Message.tool("c1", "calc", 2),
        Message.assistant("答え二"),
        Message.user("三つ目 " + filler),
        Message.assistant("答え三"),
    ]


def test_japanese_is_estimated_at_least_one_token_per_character_and_ascii_by_four():
    """日本語 1 文字 ≥ 1 トークン、ASCII は 4 文字で 1 (切り上げ)、メッセージごとに枠の分。"""
    assert estimate_tokens("東京の天気") == 5
    assert estimate_tokens("abcdefgh") == 2 and estimate_tokens("abcdefghi") == 3
    assert estimate_tokens("") == 0
    assert estimate_message_tokens(Message.user("日本語")) == 3 + MESSAGE_OVERHEAD_TOKENS


def test_old_turns_are_left_out_and_the_step_begins_with_context_trimmed():
    """2 ターンしか入らない: 最古のターン (2 メッセージ) を外す。system は残り、保存した履歴は変わらない。"""
    history = _old_history()
    thread = ThreadState(thread_id="t1", history=list(history), system="あなたは助手です")
    model = ScriptedModel(Turn([Text("四つ目の答え")]))
    # 各ターン ~1010 トークン、新しいターン ~10、max_tokens 100: 2300 なら古いターンは 2 つまで
    run, sink = make_run(model, thread=thread, router=_router(model, 2300), max_tokens=100, content="四つ目")
    run.run()
    model.assert_done()
    sent = model.requests[0].messages
    assert sent[0].role == "system" and sent[0].text() == "あなたは助手です"
    assert [m.text()[:3] for m in sent[1:] if m.role == "user"] == ["二つ目", "三つ目", "四つ目"]
    assert sink.types()[:3] == ["run_started", "context_trimmed", "step_started"]
    trimmed = sink.of_type("context_trimmed")[0]
    assert trimmed["step"] == 1 and trimmed["dropped_messages"] == 2
    assert 0 < trimmed["estimated_tokens"] <= 2300 - 100
    assert thread.history[: len(history)] == history, "the stored history is unchanged"
    assert len(thread.history) == len(history) + 2


def test_a_tool_call_is_never_sent_without_its_result():
    """外すのはターン単位: ツール呼び出しのあるターンを外すなら結果も外し、残すなら両方残す。"""
    history = _old_history()
    for budget in range(0, 4000, 50):
        kept, _ = fit_history(history, budget)
        ids_called = {c.id for m in kept for c in m.tool_calls}
        ids_answered = {m.tool_result.tool_call_id for m in kept if m.tool_result}
        assert ids_called == ids_answered, budget
        assert kept and kept[0].role == "user", budget
        assert kept[-2:] == history[-2:], "the newest turn always stays"


def test_nothing_is_trimmed_when_it_fits_and_no_event_is_sent():
    """入るなら何も外さず、context_trimmed も送らない。"""
    thread = ThreadState(thread_id="t1", history=_old_history())
    model = ScriptedModel(Turn([Text("ok")]))
    run, sink = make_run(model, thread=thread, router=_router(model, 200_000))
    run.run()
    assert "context_trimmed" not in sink.types()
    assert len(model.requests[0].messages) == len(_old_history()) + 1


def test_the_newest_turn_alone_is_sent_even_if_it_does_not_fit():
    """最新のターンだけでも入らなければ、それだけを送る (プロバイダが断れば run_error になり巻き戻る)。"""
    thread = ThreadState(thread_id="t1", history=_old_history())
    model = ScriptedModel(Turn([Text("ok")]))
    run, sink = make_run(model, thread=thread, router=_router(model, 500), content="い" * 2000)
    run.run()
    assert [m.text() for m in model.requests[0].messages] == ["い" * 2000]
    assert sink.of_type("context_trimmed")[0]["dropped_messages"] == len(_old_history())


def test_per_model_context_tokens_override_the_provider_default():
    """``models.<パターン>.context_tokens`` が先、無ければプロバイダの ``context_tokens``。"""
    model = ScriptedModel()
    router = _router(model, 8000, {"big-*": ModelOptions(context_tokens=1_000_000), "plain-*": ModelOptions()})
    assert router.context_tokens("scripted", "big-1") == 1_000_000
    assert router.context_tokens("scripted", "plain-1") == 8000
    assert router.context_tokens("scripted", "other") == 8000
    assert router.context_tokens("missing", "other") is None
