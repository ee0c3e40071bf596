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
    """ツールの結果 (user メッセージの中に、tool_use に対応して置く)。空の結果では ``content`` を省く。"""

    type: Literal["tool_result"]
    tool_use_id: str
    content: NotRequired[str]
    is_error: NotRequired[bool]


class ImageSource(TypedDict, total=False):
    """画像の出どころ: ``{"type": "base64", "media_type", "data"}`` か ``{"type": "url", "url"}``。"""

    type: Literal["base64", "url"]
    media_type: str
    data: str
    url: str


class ImageBlock(TypedDict):
    """画像のブロック (user メッセージの中)。"""

    type: Literal["image"]
    source: ImageSource


# 1 つのメッセージの中のブロック (受け取った思考のブロックは署名ごとそのまま送り返す)
ContentBlock = TextBlock | ImageBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock | ToolResultBlock


class WireMessage(TypedDict):
    """``messages`` の 1 要素。"""

    role: Literal["user", "assistant"]
    content: list[ContentBlock]


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


class ThinkingConfig(TypedDict, total=False):
    """``thinking``: 固定予算 ``{"type": "enabled", "budget_tokens"}`` か ``{"type": "adaptive"}``。"""

    type: Literal["enabled", "adaptive"]
    budget_tokens: int


class MessagesRequest(TypedDict, total=False):
    """``POST /v1/messages`` の本文。"""

    model: str
    max_tokens: int
    messages: list[WireMessage]
    system: str
    tools: list[WireTool]
    tool_choice: WireToolChoice
    thinking: ThinkingConfig
    output_config: dict[str, str]
    temperature: float
    stream: bool


class WireError(TypedDict, total=False):
    """エラー本文 ``{"type": "error", "error": {"type", "message"}}`` の中身。"""

    type: str
    message: str


class WireUsage(TypedDict, total=False):
    """使用量 (``message_start`` と ``message_delta`` と非ストリーミング応答)。"""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
