"""1 回の実行のイベントを送る口: プロトコル (PROTOCOL.md の表) のイベント名とフィールドはここにだけ書く。

- イベントごとに 1 つのメソッド (名前とフィールドを型で固定し、打ち間違いを防ぐ)。
- 終わりのイベント (``run_finished`` / ``run_error`` / ``run_cancelled``) は 1 回だけ。その後の
  イベントは黙って捨てる。キャンセル側のスレッドが ``run_cancelled`` を出した後に、まだほどけて
  いる途中のモデルのスレッドが何かを送ることはない (同じロックの下で判定して送るため)。
- ロックはこの実行の中だけで共有され、競合するのはキャンセルとツール結果の受け付けのときだけ。
- 推論の署名 (``ReasoningPart.signature``) や ``ProviderState`` はここを通らない: 推論は ``text`` だけを送る。
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from llm_router.agent.sink import EventSink
from llm_router.core.redaction import redact_value, secret_list
from llm_router.core.schemas.common import Usage

TERMINAL_EVENTS = ("run_finished", "run_error", "run_cancelled")


def run_error_fields(error: dict[str, Any], usage: Usage, rolled_back: bool = False) -> dict[str, Any]:
    """``run_error`` のフィールド (封筒を除く)。このイベントの形を書く唯一の場所 (起動時の回復もこれを使う)。"""
    return {"error": error, "usage": usage.to_dict(), "rolled_back": rolled_back}


class RunEvents:
    """1 回の実行のイベント送出 (終わりのイベントの後は何も送らない)。"""

    def __init__(self, sink: EventSink, run_id: str, secrets: Iterable[str] = ()) -> None:
        """送り先のシンク、実行 ID、伏せる秘密の値を受け取る。

        送るすべてのイベントの文字列 (ツールのエラー、再試行の理由、``step_reset`` の理由、``run_error``) は
        ``run_error`` と同じ :func:`llm_router.core.redaction.redact_value` を通る。
        """
        self._sink = sink
        self._secrets = secret_list(secrets)
        self.run_id = run_id
        self.lock = threading.RLock()
        self.closed = False

    def emit(self, event_type: str, fields: dict[str, Any]) -> bool:
        """イベントを送る。実行が既に終わっていれば送らずに偽を返す。"""
        with self.lock:
            if self.closed:
                return False
            self._sink.emit(event_type, self.run_id, redact_value(fields, self._secrets))
            return True

    def finish(self, event_type: str, fields: dict[str, Any]) -> bool:
        """終わりのイベントを 1 回だけ送る (履歴の確定は呼び手が同じロックの下で先に行う)。

        ``closed`` にするのは送出が成功した後だけ。送出が例外を投げたら閉じずにその例外を上げるので、
        呼び手は別の終わりのイベント (``run_error``) を送り直せる (終わりのイベントの無いランを残さない)。
        """
        with self.lock:
            if self.closed:
                return False
            self._sink.emit(event_type, self.run_id, redact_value(fields, self._secrets))
            self.closed = True
            return True

    def sync_history(self) -> None:
        """履歴が変わった (ステップが完了した) ことをシンクに伝える。

        シンクが ``sync_history(run_id)`` を持てば呼ぶ (リアルタイム層はここで履歴をストアへ書く)。
        持たなければ何もしない (次のイベントと一緒に書かれる)。
        """
        with self.lock:
            hook = getattr(self._sink, "sync_history", None)
            if hook is not None and not self.closed:
                hook(self.run_id)

    # ------------------------------------------------------------ 実行とステップ

    def run_started(self, model: str, max_steps: int) -> bool:
        """``run_started`` を送る。"""
        return self.emit("run_started", {"model": model, "max_steps": max_steps})

    def context_trimmed(self, step: int, dropped_messages: int, estimated_tokens: int) -> bool:
        """``context_trimmed`` を送る (このステップのリクエストから古いターンを外した)。"""
        return self.emit(
            "context_trimmed",
            {"step": step, "dropped_messages": dropped_messages, "estimated_tokens": estimated_tokens},
        )

    def step_started(self, step: int, model: str) -> bool:
        """``step_started`` を送る (step は 1 始まり)。"""
        return self.emit("step_started", {"step": step, "model": model})

    def step_finished(self, step: int, finish_reason: str, usage: Usage) -> bool:
        """``step_finished`` を送る。"""
        return self.emit("step_finished", {"step": step, "finish_reason": finish_reason, "usage": usage.to_dict()})

    def retry(self, step: int, attempt: int, wait_ms: int, reason: str, model: str) -> bool:
        """``retry`` を送る (クライアントの再試行、または次のモデルへの切り替え)。"""
        return self.emit(
            "retry", {"step": step, "attempt": attempt, "wait_ms": wait_ms, "reason": reason, "model": model}
        )

    def step_reset(self, step: int, reason: str) -> bool:
        """``step_reset`` を送る (このステップの途中の出力は無効)。"""
        return self.emit("step_reset", {"step": step, "reason": reason})

    # ------------------------------------------------------------ テキストと推論

    def text_started(self, message_id: str) -> bool:
        """``text_started`` を送る。"""
        return self.emit("text_started", {"message_id": message_id})

    def text_delta(self, message_id: str, delta: str) -> bool:
        """``text_delta`` を送る。"""
        return self.emit("text_delta", {"message_id": message_id, "delta": delta})

    def text_finished(self, message_id: str, text: str) -> bool:
        """``text_finished`` を送る (そのメッセージの全文)。"""
        return self.emit("text_finished", {"message_id": message_id, "text": text})

    def reasoning_started(self, message_id: str) -> bool:
        """``reasoning_started`` を送る。"""
        return self.emit("reasoning_started", {"message_id": message_id})

    def reasoning_delta(self, message_id: str, delta: str) -> bool:
        """``reasoning_delta`` を送る。"""
        return self.emit("reasoning_delta", {"message_id": message_id, "delta": delta})

    def reasoning_finished(self, message_id: str, text: str) -> bool:
        """``reasoning_finished`` を送る (推論の全文。署名は決して含めない)。"""
        return self.emit("reasoning_finished", {"message_id": message_id, "text": text})

    # ------------------------------------------------------------ ツール

    def tool_call_started(self, tool_call_id: str, name: str, executor: str) -> bool:
        """``tool_call_started`` を送る。"""
        return self.emit("tool_call_started", {"tool_call_id": tool_call_id, "name": name, "executor": executor})

    def tool_call_delta(self, tool_call_id: str, delta: str) -> bool:
        """``tool_call_delta`` を送る (引数の JSON 文字列の断片)。"""
        return self.emit("tool_call_delta", {"tool_call_id": tool_call_id, "delta": delta})

    def tool_call_ready(
        self, tool_call_id: str, name: str, arguments: dict[str, Any], executor: str, error: str | None = None
    ) -> bool:
        """``tool_call_ready``。引数が不正なら ``error`` を付ける (クライアントは実行しない)。"""
        fields: dict[str, Any] = {
            "tool_call_id": tool_call_id,
            "name": name,
            "arguments": arguments,
            "executor": executor,
        }
        if error is not None:
            fields["error"] = error
        return self.emit("tool_call_ready", fields)

    def tool_result(
        self, tool_call_id: str, name: str, result: Any, is_error: bool, executor: str, duration_ms: int
    ) -> bool:
        """``tool_result`` を送る。"""
        return self.emit(
            "tool_result",
            {
                "tool_call_id": tool_call_id,
                "name": name,
                "result": result,
                "is_error": is_error,
                "executor": executor,
                "duration_ms": duration_ms,
            },
        )

    # ------------------------------------------------------------ 終わり (どれか 1 つだけ)

    def run_finished(self, finish_reason: str, usage: Usage, text: str) -> bool:
        """``run_finished`` を送る (finish_reason は stop / max_steps / length)。"""
        return self.finish("run_finished", {"finish_reason": finish_reason, "usage": usage.to_dict(), "text": text})

    def run_error(self, error: dict[str, Any], usage: Usage, rolled_back: bool = False) -> bool:
        """``run_error`` を送る (error は code / message / provider / retryable / phase)。

        ``rolled_back`` は、完了したステップが 1 つも無かったのでユーザーメッセージを履歴から外したこと。
        """
        return self.finish("run_error", run_error_fields(error, usage, rolled_back))

    def run_cancelled(self, reason: str, usage: Usage) -> bool:
        """``run_cancelled`` を送る (usage はそこまでに消費した分)。"""
        return self.finish("run_cancelled", {"reason": reason, "usage": usage.to_dict()})
