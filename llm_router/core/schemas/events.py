"""サーバー → クライアントのイベントの語彙: プロトコル (docs/protocol.md 4 章の表) のイベント 1 つにつき 1 つのデータクラス。

- イベント名とフィールドはここにだけ書く。エージェント (``agent/events.py``) はこの値を作って送り、
  リアルタイム層の ``SERVER_EVENTS`` / ``RUN_END_EVENTS`` はここから作る。docs/protocol.md の表は
  テスト (``tests/core/test_events.py``) がこの語彙と突き合わせる。
- 値をペイロード (封筒を除いたフィールドの dict) にするのは :meth:`ServerEvent.fields` の 1 か所だけ。
  :class:`~llm_router.core.schemas.common.Usage` は ``usage`` オブジェクトに、省略できるフィールド
  (:attr:`ServerEvent.OPTIONAL`) は ``None`` なら出さない。
- 封筒 (``type`` / ``thread_id`` / ``run_id`` / ``seq`` / ``ts``) はここでは扱わない (送る側が付ける)。
  ``thread_rewound`` の巻き戻したランは封筒の ``run_id`` が名指す。
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from llm_router.core.schemas.common import ContentPart, Usage
from llm_router.core.schemas.serialization import part_to_dict


@dataclass(frozen=True)
class ServerEvent:
    """サーバーイベントの共通の形。派生クラスは ``TYPE`` (イベント名) とフィールドを持つ。"""

    TYPE: ClassVar[str] = ""
    # ランの終わりのイベント (ランは必ずこのどれか 1 つで終わる)
    TERMINAL: ClassVar[bool] = False
    # ``None`` のとき送らないフィールド
    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """いつも送るフィールドの名前 (表の順)。"""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in cls.OPTIONAL)

    def fields(self) -> dict[str, Any]:
        """封筒を除いたペイロードの dict (イベントをペイロードにする唯一の場所)。"""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.OPTIONAL:
                continue
            out[f.name] = _payload_value(value)
        return out


def _payload_value(value: Any) -> Any:
    """フィールドの値をペイロードの形にする (使用量とユーザーメッセージは dict、ほかはそのまま)。"""
    if isinstance(value, Usage | StartedMessage):
        return value.to_dict()
    return value


@dataclass(frozen=True)
class StartedMessage:
    """``run_started`` の ``message``: ランを始めたユーザーメッセージ (1.1)。"""

    message_id: str
    content: str | list[ContentPart]

    def to_dict(self) -> dict[str, Any]:
        """``{"message_id", "content"}`` (パーツは ``{"type": "text" | "image", ...}`` の形)。"""
        content = self.content if isinstance(self.content, str) else [part_to_dict(p) for p in self.content]
        return {"message_id": self.message_id, "content": content}


# ---------------------------------------------------------------- 実行とステップ


@dataclass(frozen=True)
class RunStarted(ServerEvent):
    """ランの開始 (RUN_STARTED)。``message`` は 1.1 で加わる、ランを始めたユーザーメッセージ。"""

    TYPE: ClassVar[str] = "run_started"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("message",)
    model: str
    max_steps: int
    message: StartedMessage | None = None


@dataclass(frozen=True)
class ContextTrimmed(ServerEvent):
    """このステップのリクエストから古いターンを外した (``step_started`` の前に届く)。"""

    TYPE: ClassVar[str] = "context_trimmed"
    step: int
    dropped_messages: int
    estimated_tokens: int


@dataclass(frozen=True)
class StepStarted(ServerEvent):
    """モデル呼び出し 1 回の開始 (STEP_STARTED。``step`` は 1 始まり)。"""

    TYPE: ClassVar[str] = "step_started"
    step: int
    model: str


# ---------------------------------------------------------------- テキストと推論


@dataclass(frozen=True)
class TextStarted(ServerEvent):
    """アシスタントのテキストの開始 (TEXT_MESSAGE_START)。"""

    TYPE: ClassVar[str] = "text_started"
    message_id: str


@dataclass(frozen=True)
class TextDelta(ServerEvent):
    """テキストの断片 (TEXT_MESSAGE_CONTENT)。"""

    TYPE: ClassVar[str] = "text_delta"
    message_id: str
    delta: str


@dataclass(frozen=True)
class TextFinished(ServerEvent):
    """そのメッセージの全文 (TEXT_MESSAGE_END)。"""

    TYPE: ClassVar[str] = "text_finished"
    message_id: str
    text: str


@dataclass(frozen=True)
class ReasoningStarted(ServerEvent):
    """モデルの推論の開始。"""

    TYPE: ClassVar[str] = "reasoning_started"
    message_id: str


@dataclass(frozen=True)
class ReasoningDelta(ServerEvent):
    """推論テキストの断片。"""

    TYPE: ClassVar[str] = "reasoning_delta"
    message_id: str
    delta: str


@dataclass(frozen=True)
class ReasoningFinished(ServerEvent):
    """推論の全文 (署名は決して含めない)。"""

    TYPE: ClassVar[str] = "reasoning_finished"
    message_id: str
    text: str


# ---------------------------------------------------------------- ツール


@dataclass(frozen=True)
class ToolCallStarted(ServerEvent):
    """ツール呼び出しの開始 (TOOL_CALL_START)。"""

    TYPE: ClassVar[str] = "tool_call_started"
    tool_call_id: str
    name: str
    executor: str


@dataclass(frozen=True)
class ToolCallDelta(ServerEvent):
    """引数の JSON 文字列の断片 (TOOL_CALL_ARGS)。"""

    TYPE: ClassVar[str] = "tool_call_delta"
    tool_call_id: str
    delta: str


@dataclass(frozen=True)
class ToolCallReady(ServerEvent):
    """呼び出しの完成 (TOOL_CALL_END)。``error`` があれば実行しない (クライアントにも頼まない)。"""

    TYPE: ClassVar[str] = "tool_call_ready"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("error",)
    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    executor: str
    error: str | None = None


@dataclass(frozen=True)
class ToolResult(ServerEvent):
    """ツールの結果 (TOOL_CALL_RESULT)。"""

    TYPE: ClassVar[str] = "tool_result"
    tool_call_id: str
    name: str
    result: Any
    is_error: bool
    executor: str
    duration_ms: int


@dataclass(frozen=True)
class StepFinished(ServerEvent):
    """モデル呼び出しの終わり (STEP_FINISHED)。"""

    TYPE: ClassVar[str] = "step_finished"
    step: int
    finish_reason: str
    usage: Usage


@dataclass(frozen=True)
class Retry(ServerEvent):
    """プロバイダのエラーを再試行する、または別のモデルに切り替える。"""

    TYPE: ClassVar[str] = "retry"
    step: int
    attempt: int
    wait_ms: int
    reason: str
    model: str


@dataclass(frozen=True)
class StepReset(ServerEvent):
    """そのステップの ``step_started`` 以降の出力は無効 (やり直す)。"""

    TYPE: ClassVar[str] = "step_reset"
    step: int
    reason: str


# ---------------------------------------------------------------- 終わり (ランごとにどれか 1 つだけ)


@dataclass(frozen=True)
class RunFinished(ServerEvent):
    """正常終了 (RUN_FINISHED。``finish_reason`` は stop / max_steps / length)。"""

    TYPE: ClassVar[str] = "run_finished"
    TERMINAL: ClassVar[bool] = True
    finish_reason: str
    usage: Usage
    text: str


@dataclass(frozen=True)
class RunError(ServerEvent):
    """失敗 (RUN_ERROR)。``error`` は code / message / provider / retryable / phase。

    ``rolled_back`` は、完了したステップが 1 つも無かったのでユーザーメッセージを履歴から外したこと。
    """

    TYPE: ClassVar[str] = "run_error"
    TERMINAL: ClassVar[bool] = True
    error: dict[str, Any]
    usage: Usage
    rolled_back: bool = False


@dataclass(frozen=True)
class RunCancelled(ServerEvent):
    """キャンセル (``usage`` はそこまでの消費)。"""

    TYPE: ClassVar[str] = "run_cancelled"
    TERMINAL: ClassVar[bool] = True
    reason: str
    usage: Usage


# ---------------------------------------------------------------- スレッド (1.1)


@dataclass(frozen=True)
class ThreadRewound(ServerEvent):
    """``rewind`` でランを履歴から外した (封筒の ``run_id`` が名指したランと、それより後のすべて)。"""

    TYPE: ClassVar[str] = "thread_rewound"
    removed_runs: list[str]


# 表の順 (docs/protocol.md 4 章の表と同じ順)
EVENT_CLASSES: tuple[type[ServerEvent], ...] = (
    RunStarted,
    ContextTrimmed,
    StepStarted,
    TextStarted,
    TextDelta,
    TextFinished,
    ReasoningStarted,
    ReasoningDelta,
    ReasoningFinished,
    ToolCallStarted,
    ToolCallDelta,
    ToolCallReady,
    ToolResult,
    StepFinished,
    Retry,
    StepReset,
    RunFinished,
    RunError,
    RunCancelled,
    ThreadRewound,
)
# イベント名 → データクラス
EVENT_TYPES: dict[str, type[ServerEvent]] = {cls.TYPE: cls for cls in EVENT_CLASSES}
# ランの終わりのイベントの名前
RUN_END_EVENTS: tuple[str, ...] = tuple(cls.TYPE for cls in EVENT_CLASSES if cls.TERMINAL)


def internal_run_error(message: str, rolled_back: bool = False) -> RunError:
    """サーバーの内部の誤りで終わるランの ``run_error`` (使用量 0、出力前)。登録簿の後始末が使う。"""
    error = {"code": "internal", "message": message, "provider": None, "retryable": False, "phase": "before_output"}
    return RunError(error=error, usage=Usage(), rolled_back=rolled_back)


__all__ = [
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "RUN_END_EVENTS",
    "ContextTrimmed",
    "ReasoningDelta",
    "ReasoningFinished",
    "ReasoningStarted",
    "Retry",
    "RunCancelled",
    "RunError",
    "RunFinished",
    "RunStarted",
    "ServerEvent",
    "StartedMessage",
    "StepFinished",
    "StepReset",
    "StepStarted",
    "TextDelta",
    "TextFinished",
    "TextStarted",
    "ThreadRewound",
    "ToolCallDelta",
    "ToolCallReady",
    "ToolCallStarted",
    "ToolResult",
]
