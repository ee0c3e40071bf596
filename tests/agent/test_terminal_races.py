"""終わりのイベントの競合 (コードを読んで見つけたもの)。時間に頼らず、差し込んだ処理で窓を確実に開けて試す。

- 終わりのイベントの送出が例外を投げても、ランは終わりのイベント無しにはならない (``run_error`` を送り直す)。
- ``cancel`` が真を返したなら、そのランの終わりのイベントは ``run_cancelled`` (直前の ``run_finished`` ではない)。
"""

import threading

from llm_router.agent import CollectingSink
from llm_router.agent.steps import Finished
from llm_router.core.schemas.events import RUN_END_EVENTS
from tests.agent.scripted_model import Block, ScriptedModel, Text, Turn, make_run, start

TERMINALS = RUN_END_EVENTS


class FlakySink(CollectingSink):
    """最初の ``run_finished`` の送出だけ例外で失敗するシンク (Socket.IO の送信の失敗の代わり)。"""

    def __init__(self) -> None:
        """1 回だけ失敗するように作る。"""
        super().__init__()
        self.failed = 0

    def emit(self, event_type, run_id, fields):
        """``run_finished`` の 1 回目は送らずに例外。"""
        if event_type == "run_finished" and not self.failed:
            self.failed += 1
            raise OSError("transport refused the frame")
        super().emit(event_type, run_id, fields)


def test_a_terminal_emit_that_raises_still_ends_the_run_with_a_terminal_event():
    """``run_finished`` の送出が失敗したら、``run_error`` (internal) で必ず閉じる。"""
    model = ScriptedModel(Turn([Text("こんにちは")]))
    run, _ = make_run(model)
    sink = FlakySink()
    run.ctx.events._sink = sink
    run.run()
    assert sink.failed == 1
    terminals = [t for t in sink.types() if t in TERMINALS]
    assert terminals == ["run_error"], sink.types()
    assert sink.of_type("run_error")[0]["error"]["code"] == "internal"
    assert run.done


def test_cancel_that_returns_true_is_followed_by_run_cancelled_not_run_finished():
    """cancel の判定と送出の間にランが終わろうとしても、ack が真なら終わりのイベントは run_cancelled。

    取り消しのコールバック (cancel の中で呼ばれる) で、実行スレッドが正常終了にたどり着いた場合と同じ処理を
    同期で走らせる: 旧い実装では判定がロックの外にあったので、ここで run_finished が先に出ていた。
    """
    block = Block()
    model = ScriptedModel(Turn([Text("途中"), block]))
    run, sink = make_run(model)
    worker = start(run)
    assert block.reached.wait(5)
    finishing = threading.Event()

    def finish_now() -> None:
        """実行スレッドがちょうど正常終了にたどり着いたときと同じ終わり方をする。"""
        finishing.set()
        run._end(Finished("stop", "途中"))

    run.ctx.token.add_callback(finish_now)
    acked = run.cancel()
    worker.join(5)
    assert finishing.is_set()
    terminals = [t for t in sink.types() if t in TERMINALS]
    assert len(terminals) == 1, terminals
    assert acked is True and terminals == ["run_cancelled"], (acked, terminals)


def test_cancel_after_the_run_finished_says_false():
    """終わったランへの cancel は偽 (何も送らない)。"""
    model = ScriptedModel(Turn([Text("完了")]))
    run, sink = make_run(model)
    run.run()
    assert run.cancel() is False
    assert [t for t in sink.types() if t in TERMINALS] == ["run_finished"]
