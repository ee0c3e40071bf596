"""Ollama ``/api/chat`` と ``/api/embed`` のワイヤ上の形 (TypedDict)。型は Ollama クライアントの外に出さない。

参考: Ollama の API 文書 ``docs/api.md``。ツール定義は OpenAI と同じ function 形式
(:class:`llm_router.core.schemas.openai_schemas.FunctionTool`)。読み取る側は欄が省かれうるので ``total=False``。
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from llm_router.core.schemas.openai_schemas import FunctionTool


class WireFunctionCall(TypedDict, total=False):
    """ツール呼び出しの中身 (``arguments`` はオブジェクト。古い互換サーバーは JSON 文字列)。"""

    name: str
    arguments: dict[str, Any] | str


class WireToolCall(TypedDict, total=False):
    """アシスタントのツール呼び出し (``id`` は v0.12.10 以降のサーバーだけが付ける)。"""

    id: str
    function: WireFunctionCall


class WireMessage(TypedDict):
    """``messages`` の 1 要素。"""

    role: str
    content: str
    images: NotRequired[list[str]]
    thinking: NotRequired[str]
    tool_calls: NotRequired[list[WireToolCall]]
    tool_name: NotRequired[str]
    tool_call_id: NotRequired[str]


class ChatOptions(TypedDict, total=False):
    """``options``: ``num_predict`` (最大トークン数) と ``temperature``。"""

    num_predict: int
    temperature: float


class ChatRequest(TypedDict, total=False):
    """``POST /api/chat`` の本文。``think`` は真偽値か、段階型のモデルではレベル名。"""

    model: str
    messages: list[WireMessage]
    stream: bool
    options: ChatOptions
    tools: list[FunctionTool]
    think: bool | str


class LineMessage(TypedDict, total=False):
    """ストリームの 1 行の ``message`` (``content`` と ``thinking`` は断片)。"""

    content: str
    thinking: str
    tool_calls: list[WireToolCall]


class ChatLine(TypedDict, total=False):
    """NDJSON の 1 行。最後の行は ``done: true`` で終了理由と使用量を持つ。``error`` はストリーム内のエラー。"""

    message: LineMessage
    done: bool
    done_reason: str
    prompt_eval_count: int
    eval_count: int
    error: Any


class EmbedRequest(TypedDict):
    """``POST /api/embed`` の本文。"""

    model: str
    input: list[str]
    dimensions: NotRequired[int]


class EmbedResponse(TypedDict, total=False):
    """``/api/embed`` の応答 (入力順の ``embeddings``)。"""

    embeddings: list[list[float]]
    prompt_eval_count: int
