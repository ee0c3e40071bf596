"""エージェントのイベント (docs/protocol.md の語彙) を AG-UI のイベント (camelCase の dict) に写すシンク。

写し方 (docs/agui.md の表):

- ``run_started`` → ``RUN_STARTED`` (``protocolVersion`` つき)、``step_started`` / ``step_finished`` →
  ``STEP_STARTED`` / ``STEP_FINISHED`` (``stepName`` は ``step-<n>``)。
- ``text_*`` → ``TEXT_MESSAGE_START`` / ``_CONTENT`` / ``_END`` (``role: "assistant"``)。
- ``reasoning_*`` → ``REASONING_START`` + ``REASONING_MESSAGE_START`` / ``REASONING_MESSAGE_CONTENT`` /
  ``REASONING_MESSAGE_END`` + ``REASONING_END`` (テキストだけ。署名は決して出さない)。
- ``tool_call_started`` / ``_delta`` / ``_ready`` → ``TOOL_CALL_START`` / ``_ARGS`` / ``_END``
  (``parentMessageId`` はそのステップのアシスタントメッセージ)。``tool_result`` → ``TOOL_CALL_RESULT``。
- ``run_finished`` → ``RUN_FINISHED`` (答えを待つフロントエンドツールがあれば ``outcome.pendingToolCallIds``)、
  ``run_error`` → ``RUN_ERROR``、``run_cancelled`` → ``RUN_FINISHED`` (``outcome: cancelled``)。
  ``usage`` はモデルごとの ``TokenUsage`` の配列。
- ``retry`` / ``step_reset`` と、モデルやツールの注意書き (Socket.IO の ``start`` の ``warnings``) は AG-UI に
  無いので ``CUSTOM`` (``name`` は ``llm_router.retry`` / ``llm_router.step_reset`` / ``llm_router.warnings``)。

AG-UI のクライアントは開いたメッセージ・推論・ツール呼び出しが閉じる前の ``RUN_FINISHED`` を拒むので、
``step_reset`` とラン終わりの前に、開いたままのものをここで閉じる。写したイベントは ``send`` へ渡す
(エージェントのイベントのロックの下で呼ばれるので、順序はそのまま保たれる)。
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

PROTOCOL_VERSION = "1.0"  # このサーバーが話す AG-UI のプロトコルの版 (ag-ui.com/spec/1.0)
CUSTOM_PREFIX = "llm_router."


def _new_id(prefix: str) -> str:
    """イベントの ID (メッセージやツール結果のメッセージ)。"""
    return prefix + uuid.uuid4().hex[:20]


def result_text(result: Any) -> str:
    """ツール結果の値を AG-UI の ``content`` (文字列) にする (文字列はそのまま、それ以外は JSON)。"""
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


class _OpenMessage:
    """テキストか推論の、開いている AG-UI のメッセージ (``<kind>_START`` / ``_CONTENT`` / ``_END``)。

    ``wrapper`` があれば、メッセージをその ``<wrapper>_START`` / ``<wrapper>_END`` で包む (推論)。
    開いていないときの断片と終わりは何も送らない。

    Args:
        out: AG-UI のイベントを 1 つ送る関数 (イベント名とフィールド)。
        kind: メッセージのイベント名の頭 (``TEXT_MESSAGE`` / ``REASONING_MESSAGE``)。
        role: ``_START`` の ``role``。
        wrapper: 包むイベント名の頭 (推論の ``REASONING``)。
    """

    def __init__(self, out: Callable[..., None], kind: str, role: str, wrapper: str | None = None) -> None:
        """送り先とイベント名を受け取る (開いているメッセージは無い)。"""
        self._out = out
        self._kind = kind
        self._role = role
        self._wrapper = wrapper
        self.message_id: str | None = None

    def open(self, message_id: str) -> None:
        """メッセージを開く。"""
        self.message_id = message_id
        if self._wrapper:
            self._out(f"{self._wrapper}_START", messageId=message_id)
        self._out(f"{self._kind}_START", messageId=message_id, role=self._role)

    def delta(self, fields: dict[str, Any]) -> None:
        """断片 (エージェントのイベントの ``delta``) を ``_CONTENT`` として送る。"""
        if self.message_id is not None:
            self._out(f"{self._kind}_CONTENT", messageId=self.message_id, delta=str(fields["delta"]))

    def finished(self, fields: dict[str, Any]) -> None:
        """エージェントの ``*_finished`` (全文は AG-UI には送らない): 閉じる。"""
        self.close()

    def close(self) -> None:
        """開いているメッセージを閉じる。"""
        if self.message_id is not None:
            self._out(f"{self._kind}_END", messageId=self.message_id)
            if self._wrapper:
                self._out(f"{self._wrapper}_END", messageId=self.message_id)
            self.message_id = None


class AguiEventMapper:
    """1 回のランのイベントを AG-UI のイベントに写すシンク (``EventSink`` の形)。

    Args:
        thread_id: AG-UI の ``threadId``。
        run_id: AG-UI の ``runId``。
        send: 写したイベント (dict) を受け取る関数。
    """

    def __init__(
        self, thread_id: str, run_id: str, send: Callable[[dict[str, Any]], None], warnings: list[str] | None = None
    ) -> None:
        """送り先と ID、``RUN_STARTED`` の直後に ``CUSTOM`` (``llm_router.warnings``) で送る注意書きを受け取る。"""
        self.thread_id = thread_id
        self._warnings = list(warnings or [])
        self.run_id = run_id
        self._send = send
        self._text = _OpenMessage(self._out, "TEXT_MESSAGE", "assistant")
        self._reasoning = _OpenMessage(self._out, "REASONING_MESSAGE", "reasoning", wrapper="REASONING")
        self._open_calls: dict[str, bool] = {}  # 開いている呼び出し ID → 引数の断片を送ったか
        self._step: int | None = None
        self._step_model = ""
        self._parent: str | None = None
        self._pending: list[str] = []
        self._usage: dict[str, dict[str, int]] = {}
        self.server_results: dict[str, tuple[str, Any, bool]] = {}
        self.ended = False
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "run_started": self._run_started,
            "step_started": self._step_started,
            "step_finished": self._step_finished,
            "text_started": self._text_started,
            "text_delta": self._text.delta,
            "text_finished": self._text.finished,
            "reasoning_started": self._reasoning_started,
            "reasoning_delta": self._reasoning.delta,
            "reasoning_finished": self._reasoning.finished,
            "tool_call_started": self._tool_started,
            "tool_call_delta": self._tool_delta,
            "tool_call_ready": self._tool_ready,
            "tool_result": self._tool_result,
            "retry": self._retry,
            "step_reset": self._step_reset,
            "run_finished": self._run_finished,
            "run_error": self._run_error,
            "run_cancelled": self._run_cancelled,
        }

    # ------------------------------------------------------------ シンク

    def emit(self, event_type: str, run_id: str | None, fields: dict[str, Any]) -> None:
        """エージェントのイベントを 1 つ受け取り、AG-UI のイベントにして送る (未知の種類は無視する)。"""
        handler = self._handlers.get(event_type)
        if handler is not None and not self.ended:
            handler(fields)

    def _out(self, event_type: str, **fields: Any) -> None:
        """AG-UI のイベントを 1 つ送る。"""
        self._send({"type": event_type, **fields})

    # ------------------------------------------------------------ ランとステップ

    def _run_started(self, fields: dict[str, Any]) -> None:
        """ランの始まりを ``RUN_STARTED`` として送る。"""
        self._out("RUN_STARTED", threadId=self.thread_id, runId=self.run_id, protocolVersion=PROTOCOL_VERSION)
        if self._warnings:
            self._out("CUSTOM", name=CUSTOM_PREFIX + "warnings", value=self._warnings)

    def _step_started(self, fields: dict[str, Any]) -> None:
        """``STEP_STARTED`` (ステップごとにアシスタントメッセージの ID を新しくする)。"""
        self._step = int(fields["step"])
        self._step_model = str(fields.get("model") or "")
        self._parent = None
        self._pending = []
        self._out("STEP_STARTED", stepName=f"step-{self._step}")

    def _step_finished(self, fields: dict[str, Any]) -> None:
        """``STEP_FINISHED`` (モデル呼び出しの終わり。使用量をそのステップのモデルに足す)。"""
        self._add_usage(self._step_model, fields.get("usage") or {})
        self._close_open()
        self._finish_step()

    def _finish_step(self) -> None:
        """開いているステップを ``STEP_FINISHED`` で閉じる。"""
        if self._step is not None:
            self._out("STEP_FINISHED", stepName=f"step-{self._step}")
            self._step = None

    # ------------------------------------------------------------ テキストと推論

    def _text_started(self, fields: dict[str, Any]) -> None:
        """``TEXT_MESSAGE_START`` (ステップの最初のテキストが、そのステップのツール呼び出しの親になる)。"""
        message_id = str(fields["message_id"])
        if self._parent is None:
            self._parent = message_id
        self._text.open(message_id)

    def _reasoning_started(self, fields: dict[str, Any]) -> None:
        """``REASONING_START`` と ``REASONING_MESSAGE_START`` (同じ ID。開いたままの推論は先に閉じる)。"""
        self._reasoning.close()
        self._reasoning.open(str(fields["message_id"]))

    # ------------------------------------------------------------ ツール

    def _parent_id(self) -> str:
        """このステップのアシスタントメッセージの ID (テキストが無ければ作る)。"""
        if self._parent is None:
            self._parent = _new_id("msg_")
        return self._parent

    def _tool_started(self, fields: dict[str, Any]) -> None:
        """ツール呼び出しの始まりを ``TOOL_CALL_START`` として送る (同じ ID は 1 回だけ)。"""
        call_id = str(fields["tool_call_id"])
        if call_id in self._open_calls:
            return
        self._open_calls[call_id] = False
        self._out(
            "TOOL_CALL_START", toolCallId=call_id, toolCallName=str(fields["name"]), parentMessageId=self._parent_id()
        )

    def _tool_delta(self, fields: dict[str, Any]) -> None:
        """引数の断片を ``TOOL_CALL_ARGS`` として送る。"""
        call_id = str(fields["tool_call_id"])
        if call_id in self._open_calls:
            self._open_calls[call_id] = True
            self._out("TOOL_CALL_ARGS", toolCallId=call_id, delta=str(fields["delta"]))

    def _tool_ready(self, fields: dict[str, Any]) -> None:
        """``TOOL_CALL_END``。開始が流れていなければ、開始と引数の全体を先に送る。"""
        call_id = str(fields["tool_call_id"])
        if call_id not in self._open_calls:
            self._tool_started(fields)
        if not self._open_calls[call_id]:
            arguments = json.dumps(fields.get("arguments") or {}, ensure_ascii=False)
            self._out("TOOL_CALL_ARGS", toolCallId=call_id, delta=arguments)
        del self._open_calls[call_id]
        self._out("TOOL_CALL_END", toolCallId=call_id)
        if fields.get("executor") == "client" and fields.get("error") is None:
            self._pending.append(call_id)

    def _tool_result(self, fields: dict[str, Any]) -> None:
        """``TOOL_CALL_RESULT`` (サーバーが答えた呼び出し。次のランのために値も覚える)。"""
        call_id = str(fields["tool_call_id"])
        if fields.get("executor") == "server":
            self.server_results[call_id] = (str(fields["name"]), fields["result"], bool(fields["is_error"]))
        if call_id in self._pending:
            self._pending.remove(call_id)
        self._out(
            "TOOL_CALL_RESULT",
            messageId=_new_id("tool_"),
            toolCallId=call_id,
            content=result_text(fields["result"]),
            role="tool",
        )

    # ------------------------------------------------------------ AG-UI に無いもの

    def _retry(self, fields: dict[str, Any]) -> None:
        """再試行を ``CUSTOM`` (``llm_router.retry``) として送る。"""
        if fields.get("model"):
            self._step_model = str(fields["model"])  # 次のモデルへの切り替え: 以後の使用量はそのモデルのもの
        value = {k: fields[k] for k in ("step", "attempt", "wait_ms", "reason", "model") if k in fields}
        self._out("CUSTOM", name=CUSTOM_PREFIX + "retry", value=value)

    def _step_reset(self, fields: dict[str, Any]) -> None:
        """``step_reset`` → 開いているものを閉じてから ``CUSTOM`` (``llm_router.step_reset``)。"""
        self._close_open()
        self._pending = []
        self._out(
            "CUSTOM",
            name=CUSTOM_PREFIX + "step_reset",
            value={"step": fields.get("step"), "reason": fields.get("reason")},
        )

    def _close_open(self) -> None:
        """開いたままのテキスト・推論・ツール呼び出しを閉じる (AG-UI の並びの規則を守るため)。"""
        self._text.close()
        self._reasoning.close()
        for call_id, has_args in list(self._open_calls.items()):
            if not has_args:
                self._out("TOOL_CALL_ARGS", toolCallId=call_id, delta="{}")
            self._out("TOOL_CALL_END", toolCallId=call_id)
        self._open_calls.clear()

    # ------------------------------------------------------------ 終わり

    def _add_usage(self, model: str, usage: dict[str, Any]) -> None:
        """モデルごとの使用量に足す。"""
        entry = self._usage.setdefault(model, {"input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0})
        for key in entry:
            entry[key] += int(usage.get(key) or 0)

    def _usage_list(self, total: dict[str, Any]) -> list[dict[str, Any]]:
        """AG-UI の ``usage`` (``TokenUsage`` の配列)。ステップに出なかった分は最後のモデルに数える。"""
        seen = {
            k: sum(e[k] for e in self._usage.values()) for k in ("input_tokens", "output_tokens", "reasoning_tokens")
        }
        rest = {k: max(0, int(total.get(k) or 0) - seen[k]) for k in seen}
        if any(rest.values()) or not self._usage:
            self._add_usage(self._step_model, rest)
        out = []
        for spec, entry in self._usage.items():
            provider, _, model = spec.partition("/")
            item: dict[str, Any] = {"provider": provider, "model": model or spec} if spec else {}
            item.update(
                inputTokens=entry["input_tokens"],
                outputTokens=entry["output_tokens"],
                totalTokens=entry["input_tokens"] + entry["output_tokens"],
                reasoningTokens=entry["reasoning_tokens"],
            )
            out.append(item)
        return out

    def _end(self) -> None:
        """終わりのイベントの前に、開いているものとステップを閉じる。"""
        self._close_open()
        self._finish_step()
        self.ended = True

    def _run_finished(self, fields: dict[str, Any]) -> None:
        """``RUN_FINISHED`` (フロントエンドツールの答え待ちなら ``pendingToolCallIds``)。"""
        self._end()
        outcome: dict[str, Any] = {"type": "success"}
        if fields.get("finish_reason") == "client_tools" and self._pending:
            outcome["pendingToolCallIds"] = list(self._pending)
        self._out(
            "RUN_FINISHED",
            threadId=self.thread_id,
            runId=self.run_id,
            outcome=outcome,
            usage=self._usage_list(fields.get("usage") or {}),
        )

    def _run_error(self, fields: dict[str, Any]) -> None:
        """``RUN_ERROR`` (``code`` は docs/protocol.md の run_error のコード)。"""
        self._end()
        error = fields.get("error") or {}
        self._out(
            "RUN_ERROR",
            message=str(error.get("message") or "the run failed"),
            code=str(error.get("code") or "internal"),
            usage=self._usage_list(fields.get("usage") or {}),
        )

    def _run_cancelled(self, fields: dict[str, Any]) -> None:
        """``RUN_FINISHED`` (``outcome: cancelled``。クライアントが閉じたときは誰にも届かない)。"""
        self._end()
        self._out(
            "RUN_FINISHED",
            threadId=self.thread_id,
            runId=self.run_id,
            outcome={"type": "cancelled"},
            usage=self._usage_list(fields.get("usage") or {}),
        )
