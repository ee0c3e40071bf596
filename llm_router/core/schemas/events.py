"""サーバー → クライアントのイベントの語彙: プロトコル (docs/protocol.md 4 章の表) のイベント 1 つにつき 1 つのデータクラス。

- イベント名とフィールドはここにだけ書く。エージェント (``agent/events.py``) はこの値を作って送り、
  リアルタイム層の ``SERVER_EVENTS`` / ``RUN_END_EVENTS`` はここから作る。docs/protocol.md の表は
  テスト (``tests/core/test_events.py``) がこの語彙と突き合わせる。
- 値をペイロード (封筒を除いたフィールドの dict) にするのは :meth:`ServerEvent.fields` の 1 か所だけ。
  :class:`~llm_router.core.schemas.common.Usage` は ``usage`` オブジェクトに、省略できるフィールド
  (既定値が ``None`` のもの) は ``None`` なら出さない。
- テキストと推論の 3 つずつのイベントは同じ形なので、形 (:class:`MessageOpened` / :class:`MessageDelta` /
  :class:`MessageClosed`) を共有し、名前だけが違う。
- 何のイベントかを名指すフィールドは共通の基底に 1 度だけ書く: ステップの ``step`` (:class:`StepEvent`)、
  ツール呼び出しの ``tool_call_id`` と ``name`` (:class:`ToolCallEvent` / :class:`NamedToolCallEvent`)、
  テキストと推論の区切りの ``message_id`` (:class:`MessageEvent`)。基底のフィールドが先に並ぶ (表の順と同じ)。
- 封筒 (``type`` / ``thread_id`` / ``run_id`` / ``seq`` / ``ts``) はここでは扱わない (送る側が付ける)。
  ``thread_rewound`` の巻き戻したランは封筒の ``run_id`` が名指す。
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, dataclass_transform

from llm_router.core.schemas.common import ContentPart, Usage
from llm_router.core.schemas.serialization import part_to_dict


@dataclass_transform(frozen_default=True)
@dataclass(frozen=True)
class ServerEvent:
    """サーバーイベントの共通の形。派生クラスはクラスの定義で ``event=`` (イベント名) を名乗り、フィールドを持つ。

    派生クラスはどれも、定義したときにここで凍結したデータクラスになる (``@dataclass`` は書かない。
    ``dataclass_transform`` が型検査器にもそう伝える)。``terminal=True`` はランの終わりのイベント
    (ランは必ずこのどれか 1 つで終わる)。既定値が ``None`` のフィールドは省略できるフィールドで、``None`` の
    ときは送らない。
    """

    TYPE: ClassVar[str] = ""
    TERMINAL: ClassVar[bool] = False

    def __init_subclass__(cls, event: str = "", terminal: bool = False, **kwargs: Any) -> None:
        """派生クラスの定義で、イベント名と終わりのイベントかどうかを受け取り、凍結したデータクラスにする。"""
        super().__init_subclass__(**kwargs)
        if event:
            cls.TYPE, cls.TERMINAL = event, terminal
        dataclass(frozen=True)(cls)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """いつも送るフィールドの名前 (表の順)。"""
        return tuple(f.name for f in dataclasses.fields(cls) if f.default is not None)

    @classmethod
    def optional_names(cls) -> tuple[str, ...]:
        """あるときだけ送るフィールドの名前 (既定値が ``None`` のもの)。"""
        return tuple(f.name for f in dataclasses.fields(cls) if f.default is None)

    def fields(self) -> dict[str, Any]:
        """封筒を除いたペイロードの dict (イベントをペイロードにする唯一の場所)。"""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            out[f.name] = value.to_dict() if isinstance(value, Usage | StartedMessage) else value
        return out


@dataclass(frozen=True)
class StartedMessage:
    """``run_started`` の ``message``: ランを始めたユーザーメッセージ (1.1)。"""

    message_id: str
    content: str | list[ContentPart]

    def to_dict(self) -> dict[str, Any]:
        """``{"message_id", "content"}`` (パーツは ``{"type": "text" | "image", ...}`` の形)。"""
        content = self.content if isinstance(self.content, str) else [part_to_dict(p) for p in self.content]
        return {"message_id": self.message_id, "content": content}


# ---------------------------------------------------------------- 実行とステップ (表の順は下の EVENT_CLASSES)


class StepEvent(ServerEvent):
    """あるステップ (モデル呼び出し 1 回。``step`` は 1 始まり) についてのイベントの共通の形。"""

    step: int


class RunStarted(ServerEvent, event="run_started"):
    """ランの開始 (RUN_STARTED)。``message`` は 1.1 で加わる、ランを始めたユーザーメッセージ。"""

    model: str
    max_steps: int
    message: StartedMessage | None = None


class ContextTrimmed(StepEvent, event="context_trimmed"):
    """このステップのリクエストから古いターンを外した (``step_started`` の前に届く)。"""

    dropped_messages: int
    estimated_tokens: int


class StepStarted(StepEvent, event="step_started"):
    """モデル呼び出し 1 回の開始 (STEP_STARTED)。"""

    model: str


class StepFinished(StepEvent, event="step_finished"):
    """モデル呼び出しの終わり (STEP_FINISHED)。"""

    finish_reason: str
    usage: Usage


class Retry(StepEvent, event="retry"):
    """プロバイダのエラーを再試行する、または別のモデルに切り替える。"""

    attempt: int
    wait_ms: int
    reason: str
    model: str


class StepReset(StepEvent, event="step_reset"):
    """そのステップの ``step_started`` 以降の出力は無効 (やり直す)。"""

    reason: str


# ---------------------------------------------------------------- テキストと推論 (同じ形の 2 つの流れ)


class MessageEvent(ServerEvent):
    """テキストか推論の区切り 1 つについてのイベントの共通の形 (``message_id`` が開始と断片と終わりを結び付ける)。"""

    message_id: str


class MessageOpened(MessageEvent):
    """テキストか推論の区切りの開始。"""


class MessageDelta(MessageEvent):
    """テキストか推論の断片。"""

    delta: str


class MessageClosed(MessageEvent):
    """テキストか推論の区切りの終わり (``text`` は全文)。"""

    text: str


class TextStarted(MessageOpened, event="text_started"):
    """アシスタントのテキストの開始 (TEXT_MESSAGE_START)。"""


class TextDelta(MessageDelta, event="text_delta"):
    """テキストの断片 (TEXT_MESSAGE_CONTENT)。"""


class TextFinished(MessageClosed, event="text_finished"):
    """そのメッセージの全文 (TEXT_MESSAGE_END)。"""


class ReasoningStarted(MessageOpened, event="reasoning_started"):
    """モデルの推論の開始。"""


class ReasoningDelta(MessageDelta, event="reasoning_delta"):
    """推論テキストの断片。"""


class ReasoningFinished(MessageClosed, event="reasoning_finished"):
    """推論の全文 (署名は決して含めない)。"""


# ---------------------------------------------------------------- ツール


class ToolCallEvent(ServerEvent):
    """ツール呼び出し 1 つについてのイベントの共通の形。"""

    tool_call_id: str


class NamedToolCallEvent(ToolCallEvent):
    """ツール名も添えるツール呼び出しのイベントの共通の形。"""

    name: str


class ToolCallStarted(NamedToolCallEvent, event="tool_call_started"):
    """ツール呼び出しの開始 (TOOL_CALL_START)。"""

    executor: str


class ToolCallDelta(ToolCallEvent, event="tool_call_delta"):
    """引数の JSON 文字列の断片 (TOOL_CALL_ARGS)。"""

    delta: str


class ToolCallReady(NamedToolCallEvent, event="tool_call_ready"):
    """呼び出しの完成 (TOOL_CALL_END)。``error`` があれば実行しない (クライアントにも頼まない)。"""

    arguments: dict[str, Any]
    executor: str
    error: str | None = None


class ToolResult(NamedToolCallEvent, event="tool_result"):
    """ツールの結果 (TOOL_CALL_RESULT)。"""

    result: Any
    is_error: bool
    executor: str
    duration_ms: int


# ---------------------------------------------------------------- 終わり (ランごとにどれか 1 つだけ)


class RunFinished(ServerEvent, event="run_finished", terminal=True):
    """正常終了 (RUN_FINISHED。``finish_reason`` は stop / max_steps / length)。"""

    finish_reason: str
    usage: Usage
    text: str


class RunError(ServerEvent, event="run_error", terminal=True):
    """失敗 (RUN_ERROR)。``error`` は code / message / provider / retryable / phase。

    ``rolled_back`` は、完了したステップが 1 つも無かったのでユーザーメッセージを履歴から外したこと。
    """

    error: dict[str, Any]
    usage: Usage
    rolled_back: bool = False


class RunCancelled(ServerEvent, event="run_cancelled", terminal=True):
    """キャンセル (``usage`` はそこまでの消費)。"""

    reason: str
    usage: Usage


# ---------------------------------------------------------------- スレッド (1.1)


class ThreadRewound(ServerEvent, event="thread_rewound"):
    """``rewind`` でランを履歴から外した (封筒の ``run_id`` が名指したランと、それより後のすべて)。"""

    removed_runs: list[str]


class ThreadDeleted(ServerEvent, event="thread_deleted"):
    """スレッドが無くなった (``reason``: ``deleted`` = 消された / ``store_reset`` = Redis が中身なしで再起動した)。

    ログに記録されない知らせ: 封筒は ``type`` / ``thread_id`` / ``ts`` だけで、``seq`` と ``run_id`` は無い。
    """

    reason: str


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
    ThreadDeleted,
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
    "MessageClosed",
    "MessageDelta",
    "MessageEvent",
    "MessageOpened",
    "NamedToolCallEvent",
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
    "StepEvent",
    "StepFinished",
    "StepReset",
    "StepStarted",
    "TextDelta",
    "TextFinished",
    "TextStarted",
    "ThreadDeleted",
    "ThreadRewound",
    "ToolCallDelta",
    "ToolCallEvent",
    "ToolCallReady",
    "ToolCallStarted",
    "ToolResult",
]
