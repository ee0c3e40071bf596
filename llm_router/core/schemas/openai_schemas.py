"""OpenAI Chat Completions / Embeddings のワイヤ上の形 (TypedDict)。型は OpenAI (と同じ形の Ollama) の外に出さない。

参考: OpenAI API リファレンス "Chat Completions" (``messages``、``tools``、``tool_choice``)、"Streaming"
(``chat.completion.chunk``)、"Embeddings"。読み取る側はサーバーが欄を省くことがあるので ``total=False``。
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class ContentPart(TypedDict, total=False):
    """ユーザー発話のパーツ: ``{"type": "text", "text"}`` か ``{"type": "image_url", "image_url": {"url"}}``。"""

    type: Literal["text", "image_url"]
    text: str
    image_url: dict[str, str]


class WireToolCall(TypedDict):
    """アシスタントのツール呼び出し (``function.arguments`` は JSON 文字列)。"""

    id: str
    type: Literal["function"]
    function: dict[str, str]


class WireMessage(TypedDict):
    """``messages`` の 1 要素。"""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None
    tool_calls: NotRequired[list[WireToolCall]]
    tool_call_id: NotRequired[str]


class FunctionSpec(TypedDict):
    """``tools[].function``。``strict`` は strict モードで送るときだけ。"""

    name: str
    parameters: dict[str, Any]
    description: NotRequired[str]
    strict: NotRequired[bool]


class FunctionTool(TypedDict):
    """``tools`` の 1 要素 (Ollama も同じ形)。"""

    type: Literal["function"]
    function: FunctionSpec


class NamedToolChoice(TypedDict):
    """名指しの ``tool_choice``。"""

    type: Literal["function"]
    function: dict[str, str]


WireToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class ChatCompletionRequest(TypedDict, total=False):
    """``POST /chat/completions`` の本文 (最大トークン数の欄名はモデルの設定 ``max_tokens_param`` で変わる)。"""

    model: str
    messages: list[WireMessage]
    tools: list[FunctionTool]
    tool_choice: WireToolChoice
    parallel_tool_calls: bool
    temperature: float
    reasoning_effort: str
    stream: bool
    stream_options: dict[str, bool]


class ToolCallDelta(TypedDict, total=False):
    """ストリームのツール呼び出しの差分 (``id`` と ``function.name`` は最初の差分だけ)。"""

    index: int
    id: str
    function: dict[str, str]


class Delta(TypedDict, total=False):
    """``choices[].delta``。``reasoning_content`` / ``reasoning`` は互換サーバーの推論テキスト。"""

    content: str | None
    refusal: str | None
    reasoning_content: str | None
    reasoning: str | None
    tool_calls: list[ToolCallDelta]


class ChunkChoice(TypedDict, total=False):
    """``choices`` の 1 要素。"""

    index: int
    delta: Delta
    finish_reason: str | None


class WireUsage(TypedDict, total=False):
    """使用量 (``stream_options.include_usage`` で最後のチャンクに来る)。"""

    prompt_tokens: int
    completion_tokens: int
    completion_tokens_details: dict[str, int]


class ChatCompletionChunk(TypedDict, total=False):
    """``chat.completion.chunk`` (``error`` キーを持つフレームはストリーム内のエラー)。"""

    choices: list[ChunkChoice]
    usage: WireUsage | None
    error: Any


class EmbeddingsRequest(TypedDict):
    """``POST /embeddings`` の本文 (``encoding_format: "float"`` を明示する。公式 SDK の既定は base64)。"""

    model: str
    input: list[str]
    encoding_format: Literal["float"]
    dimensions: NotRequired[int]


class EmbeddingItem(TypedDict):
    """``data`` の 1 要素 (``index`` で並べ直す)。"""

    index: int
    embedding: list[float]


class EmbeddingsResponse(TypedDict, total=False):
    """``/embeddings`` の応答。"""

    data: list[EmbeddingItem]
    usage: dict[str, int]
