"""共有の語彙 (全パッケージが使う唯一のデータ型)。

プロバイダ固有の形はここに置かない (それは各クライアントのモジュールの中だけにある)。
ただし、プロバイダへそのまま送り返す必要のある生データ (Anthropic の署名付き thinking ブロック、
Gemini の ``thoughtSignature`` 付きパーツ) は :class:`ProviderState` に不透明なまま保持する。
これはサーバー内の履歴にだけ置かれ、クライアント (ブラウザ) へのイベントには決して出ない。
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from llm_router.errors import *  # noqa: F403 (共有の語彙としてエラー型も再輸出する)
from llm_router.errors import __all__ as _error_names

if TYPE_CHECKING:
    import numpy as np

Role = Literal["system", "user", "assistant", "tool"]
# 正規化した終了理由: stop / tool_calls / length / content_filter / error
FinishReason = Literal["stop", "tool_calls", "length", "content_filter", "error"]
ReasoningLevel = Literal["off", "low", "medium", "high"]
# 推論の段階の唯一の定義 (プロトコルの ``settings.reasoning`` と ``GET /api/info`` の ``reasoning_levels``)
REASONING_LEVELS: tuple[ReasoningLevel, ...] = get_args(ReasoningLevel)
EmbeddingTask = Literal["document", "query"]


# ---------------------------------------------------------------- 使用量


@dataclass
class Usage:
    """トークン使用量 (各プロバイダから正規化したもの)。"""

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        """2 つの使用量の和。"""
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        """プロトコルの ``usage`` オブジェクト。"""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }


# ---------------------------------------------------------------- メッセージ


@dataclass
class TextPart:
    """テキストのコンテンツパーツ。"""

    text: str
    type: Literal["text"] = "text"


@dataclass
class ImagePart:
    """画像のコンテンツパーツ (URL か base64 データ)。"""

    url: str | None = None
    data: str | None = None
    mime_type: str | None = None
    type: Literal["image"] = "image"


ContentPart = TextPart | ImagePart


@dataclass
class ReasoningPart:
    """モデルの推論 (thinking)。

    ``signature`` と ``redacted_data`` はプロバイダへ送り返すためだけに保持する。
    クライアントへのイベントには ``text`` 以外を決して出さない。
    """

    text: str = ""
    signature: str | None = None
    redacted_data: str | None = None


@dataclass
class ToolCall:
    """モデルが要求したツール呼び出し。

    Attributes:
        id: 呼び出し ID (プロバイダが出さない場合はクライアントが作る)。
        name: ツール名。
        arguments: 解析済みの引数 (JSON オブジェクト)。解析に失敗したら空の dict。
        raw_arguments: ストリームで受け取った引数の JSON 文字列そのもの。
        parse_error: 引数が JSON オブジェクトとして解析できなかったときの理由。
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw_arguments: str | None = None
    parse_error: str | None = None


@dataclass
class ToolResult:
    """ツールの実行結果。``result`` は任意の JSON 値。"""

    tool_call_id: str
    name: str
    result: Any
    is_error: bool = False

    def as_text(self) -> str:
        """モデルへ文字列で渡すときの表現 (文字列はそのまま、それ以外は JSON)。"""
        if isinstance(self.result, str):
            return self.result
        return json.dumps(self.result, ensure_ascii=False)


@dataclass
class ProviderState:
    """プロバイダ固有の生データ。同じプロバイダへ履歴を送り返すときだけ使う (不透明)。"""

    provider: str
    data: Any


@dataclass
class Message:
    """会話の 1 メッセージ。

    - ``system`` / ``user``: ``content`` に文字列かコンテンツパーツのリスト。
    - ``assistant``: ``content`` (テキスト)、``tool_calls``、``reasoning``、``provider_state``。
      ``interrupted`` はキャンセルで途中まで生成されたことを示す。
    - ``tool``: ``tool_result`` にツールの結果。
    """

    role: Role
    content: str | list[ContentPart] = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_result: ToolResult | None = None
    reasoning: list[ReasoningPart] = field(default_factory=list)
    provider_state: ProviderState | None = None
    interrupted: bool = False

    def text(self) -> str:
        """テキスト部分を連結した文字列。"""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @classmethod
    def system(cls, text: str) -> Message:
        """システムメッセージを作る。"""
        return cls(role="system", content=text)

    @classmethod
    def user(cls, content: str | list[ContentPart]) -> Message:
        """ユーザーメッセージを作る。"""
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, text: str = "", tool_calls: list[ToolCall] | None = None) -> Message:
        """アシスタントメッセージを作る。"""
        return cls(role="assistant", content=text, tool_calls=list(tool_calls or []))

    @classmethod
    def tool(cls, tool_call_id: str, name: str, result: Any, is_error: bool = False) -> Message:
        """ツール結果のメッセージを作る。"""
        return cls(role="tool", tool_result=ToolResult(tool_call_id, name, result, is_error))


# ---------------------------------------------------------------- ツール


@dataclass
class ToolDefinition:
    """正規形のツール定義: ``name``, ``description``, ``parameters`` (JSON Schema の object)。

    ``strict`` は OpenAI 形式の定義が持っていた ``strict`` の指定 (無ければ ``None``)。OpenAI へ送るときは
    設定 ``providers.openai.strict_tools`` より優先する (``docs/providers.md``)。他のプロバイダは使わない。
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """正規形の dict。"""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass
class ToolChoice:
    """ツール選択: ``auto`` / ``none`` / ``required`` / ``tool`` (``name`` の 1 つを強制)。"""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None


# ---------------------------------------------------------------- リクエストと応答


@dataclass
class ChatRequest:
    """チャットのリクエスト (プロバイダに依存しない形)。

    Attributes:
        model: プロバイダ内のモデル名 (``provider/`` の接頭辞は付けない)。
        extra: プロバイダのリクエスト本文にそのまま加えるフィールド。
    """

    model: str
    messages: list[Message]
    tools: list[ToolDefinition] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningLevel = "off"
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- ストリームのチャンク


@dataclass
class TextDelta:
    """アシスタントのテキストの断片。"""

    text: str


@dataclass
class ReasoningStart:
    """推論 (thinking) の開始。"""


@dataclass
class ReasoningDelta:
    """推論テキストの断片。"""

    text: str


@dataclass
class ReasoningEnd:
    """推論の終わり。``part`` は全文と (あれば) 署名を持つ。署名はクライアントへ出さない。"""

    part: ReasoningPart


@dataclass
class ToolCallStart:
    """ツール呼び出しの開始 (``index`` はこの応答の中での順番)。"""

    index: int
    id: str
    name: str


@dataclass
class ToolCallDelta:
    """ツール呼び出しの引数 (JSON 文字列) の断片。"""

    index: int
    id: str
    delta: str


@dataclass
class ToolCallEnd:
    """ツール呼び出しの完成。``call.arguments`` は解析済み。"""

    index: int
    call: ToolCall


@dataclass
class UsageUpdate:
    """この応答のここまでの使用量 (累計。最後のものが最終値)。"""

    usage: Usage


@dataclass
class StreamEnd:
    """ストリームの終わり。組み立て済みのアシスタントメッセージ、終了理由、使用量を持つ。"""

    message: Message
    finish_reason: FinishReason
    usage: Usage
    model: str = ""
    provider: str = ""


StreamChunk = (
    TextDelta
    | ReasoningStart
    | ReasoningDelta
    | ReasoningEnd
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | UsageUpdate
    | StreamEnd
)


# ---------------------------------------------------------------- 埋め込み


@dataclass
class EmbeddingRequest:
    """埋め込みのリクエスト。``task`` は検索用途 (Gemini の taskType に対応)。"""

    model: str
    inputs: list[str]
    task: EmbeddingTask | None = None
    dimensions: int | None = None


@dataclass
class EmbeddingResponse:
    """埋め込みの応答。``vectors`` は入力順の float32 行列 (n, d)。"""

    vectors: np.ndarray
    model: str = ""
    usage: Usage = field(default_factory=Usage)


__all__ = [
    "REASONING_LEVELS",
    "ChatRequest",
    "ContentPart",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EmbeddingTask",
    "FinishReason",
    "ImagePart",
    "Message",
    "ProviderState",
    "ReasoningDelta",
    "ReasoningEnd",
    "ReasoningLevel",
    "ReasoningPart",
    "ReasoningStart",
    "Role",
    "StreamChunk",
    "StreamEnd",
    "TextDelta",
    "TextPart",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolChoice",
    "ToolDefinition",
    "ToolResult",
    "Usage",
    "UsageUpdate",
    *_error_names,
]
