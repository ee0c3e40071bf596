"""Anthropic Messages API のワイヤ上の形 (TypedDict)。このモジュールの型は Anthropic クライアントの外に出さない。

参考: Anthropic API リファレンス "Messages" と "Streaming Messages"
(https://docs.anthropic.com/en/api/messages, https://docs.anthropic.com/en/api/messages-streaming)。
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class TextBlock(TypedDict):
    """テキストのブロック。"""

    type: Literal["text"]
    text: str


class ToolUseBlock(TypedDict):
    """モデルのツール呼び出し (``input`` は解析済みのオブジェクト)。"""

    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ThinkingBlock(TypedDict):
    """拡張思考のブロック。``signature`` はそのまま送り返す。"""

    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(TypedDict):
    """安全上の理由で暗号化された思考 (表示できる文は無いが送り返す)。"""

    type: Literal["redacted_thinking"]
    data: str


class ToolResultBlock(TypedDict):
    """ツールの結果 (user メッセージの中に、tool_use に対応して置く)。"""

    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[dict[str, Any]]
    is_error: NotRequired[bool]


class WireMessage(TypedDict):
    """``messages`` の 1 要素。"""

    role: Literal["user", "assistant"]
    content: list[dict[str, Any]]


class WireTool(TypedDict):
    """``tools`` の 1 要素。"""

    name: str
    description: NotRequired[str]
    input_schema: dict[str, Any]


class WireToolChoice(TypedDict):
    """ツール選択 ``tool_choice``。"""

    type: Literal["auto", "any", "tool", "none"]
    name: NotRequired[str]
    disable_parallel_tool_use: NotRequired[bool]


class WireError(TypedDict):
    """エラー本文 ``{"type": "error", "error": {"type", "message"}}`` の中身。"""

    type: str
    message: str


class WireUsage(TypedDict, total=False):
    """使用量 (``message_start`` と ``message_delta`` と非ストリーミング応答)。"""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
