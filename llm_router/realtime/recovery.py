"""起動時の回復: 前のプロセスが終わりのイベントを書かずに去ったランを、ログの中で 1 回だけ閉じる。

ストアの ``active_runs()`` (終わりの記録の無いラン) のそれぞれに、``run_error`` (コード ``interrupted``、
``retryable: true``、``phase`` はログから分かる中断した場所) を ``run_ended`` つきで 1 つのトランザクションで書く。
完了したステップが 1 つも無ければ、そのランのユーザーメッセージも同じトランザクションで履歴から外す
(``rolled_back: true``。docs/protocol.md「失敗したランがスレッドを使えなくしない」)。``seq`` は続きから。
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from llm_router.agent.errors import interrupted_error
from llm_router.core.schemas.common import Usage
from llm_router.core.schemas.events import RunError
from llm_router.realtime.emitter import rollback_point, run_event
from llm_router.store.base import ActiveRun, HistoryChange, Store

logger = logging.getLogger(__name__)

# 中断した場所を決めるために読む、ログの最後のイベントの数
PHASE_SCAN_EVENTS = 5000
_STREAM_EVENTS = (
    "text_started",
    "text_delta",
    "reasoning_started",
    "reasoning_delta",
    "tool_call_started",
    "tool_call_delta",
)


def interrupted_phase(events: list[dict[str, Any]], run_id: str) -> str:
    """ランのイベントから中断した場所 (``before_output`` / ``mid_stream`` / ``tool``) を決める。"""
    phase = "before_output"
    for event in events:
        if event.get("run_id") != run_id:
            continue
        kind = event.get("type")
        if kind in ("step_started", "step_reset", "retry"):
            phase = "before_output"
        elif kind in _STREAM_EVENTS:
            phase = "mid_stream"
        elif kind in ("tool_call_ready", "tool_result") or (
            kind == "step_finished" and event.get("finish_reason") == "tool_calls"
        ):
            phase = "tool"
    return phase


def close_orphaned_runs(store: Store, should_close: Callable[[ActiveRun], bool] | None = None) -> list[str]:
    """終わりの記録の無いランを ``interrupted`` で閉じ、閉じたランの ID を返す。

    sqlite / memory は 1 プロセス用なので、起動したときに残っているランは全部前のプロセスのもの
    (``should_close`` なし)。redis では別のプロセスが動かしているランもあるので、``should_close(run)`` が
    真のもの (リースが切れていて、このプロセスがリースを取れたもの) だけを閉じる。
    """
    closed: list[str] = []
    for run in store.active_runs():
        if should_close is not None and not should_close(run):
            continue
        if close_run(store, run):
            closed.append(run.run_id)
    return closed


def close_run(store: Store, run: ActiveRun) -> bool:
    """1 つのランを ``run_error`` (``interrupted``) で閉じる (1 つのトランザクション)。スレッドが無ければ偽。"""
    bounds = store.bounds(run.thread_id)
    events = store.after(run.thread_id, max(0, bounds.last_seq - PHASE_SCAN_EVENTS))
    thread = store.load_thread(run.thread_id)
    if thread is None:
        return False
    rolled_back, first = rollback_point(thread.history, run.run_id)
    change = HistoryChange(truncate_to=first) if rolled_back and first is not None else None
    error = RunError(interrupted_error(interrupted_phase(events, run.run_id)), Usage(), rolled_back)
    event = run_event("run_error", run.thread_id, run.run_id, error.fields())
    store.commit(run.thread_id, [event], history=change, run_ended=run.run_id)
    logger.warning("run %s of thread %s lost its process: closed as interrupted", run.run_id, run.thread_id)
    return True
