"""OpenAI Chat Completions との対応付け: 共通の会話 → ``messages``、ストリームのチャンク → 共通のチャンク。

参考: OpenAI API リファレンス "Chat Completions" / "Streaming"。ワイヤの形は :mod:`openai_schemas`。
- アシスタントのツール呼び出しの引数は JSON 文字列で送る。呼び出しだけの発話の ``content`` は null でよい。
- ツールの結果は ``{"role": "tool", "tool_call_id", "content": 文字列}`` (``is_error`` の欄は無いので本文で伝える)。
- ストリームのツール呼び出しの差分は ``index`` で組み立てる (id は最初の差分にしか無く、並列の呼び出しは
  交互に届きうる)。``finish_reason`` の後に、choices が空で usage だけのチャンクが来る。

役割ごとの変換の振り分け (:func:`convert_by_role`) と function 形式のツール (:func:`function_tool`) は、
同じ形を使う Ollama の対応付けも使う。
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from llm_router.core.clients.accumulator import FinishReasons, StreamAccumulator
from llm_router.core.schemas.common import (
    FinishReason,
    ImagePart,
    Message,
    Role,
    StreamChunk,
    TextPart,
    ToolChoice,
    ToolDefinition,
    Usage,
)
from llm_router.core.schemas.errors import ProviderError
from llm_router.core.schemas.openai_schemas import (
    ChatCompletionChunk,
    ChunkChoice,
    ContentPart,
    FunctionTool,
    ToolCallDelta,
    WireMessage,
    WireToolChoice,
    WireUsage,
)

PROVIDER = "openai"

# OpenAI の finish_reason → 正規化した終了理由 (function_call は旧 API の名前)
FINISH_REASONS = FinishReasons(
    stop=("stop",),
    tool_calls=("tool_calls", "function_call"),
    length=("length",),
    content_filter=("content_filter",),
)

WireT = TypeVar("WireT")


def convert_by_role(messages: list[Message], converters: dict[Role, Callable[[Message], WireT | None]]) -> list[WireT]:
    """メッセージを役割ごとの変換関数に振り分ける (``None`` を返したメッセージは送らない)。"""
    out: list[WireT] = []
    for message in messages:
        converted = converters[message.role](message)
        if converted is not None:
            out.append(converted)
    return out


def function_tool(tool: ToolDefinition, schema: dict[str, Any], *, strict: bool = False) -> FunctionTool:
    """1 つのツールを ``{"type": "function", "function": {name, description, parameters[, strict]}}`` にする。"""
    function: dict[str, Any] = {"name": tool.name, "parameters": schema}
    if tool.description:
        function["description"] = tool.description
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}  # type: ignore[typeddict-item]


# ---------------------------------------------------------------- 会話 → messages


def to_openai_messages(messages: list[Message]) -> list[WireMessage]:
    """共通のメッセージ列を OpenAI の ``messages`` にする (役割ごとに小さな関数)。"""
    return convert_by_role(
        messages,
        {"system": _system_message, "user": _user_message, "assistant": _assistant_message, "tool": _tool_message},
    )


def _system_message(message: Message) -> WireMessage:
    """システムプロンプト。"""
    return {"role": "system", "content": message.text()}


def _user_message(message: Message) -> WireMessage:
    """ユーザー発話 (文字列、またはテキストと画像のパーツ)。"""
    if isinstance(message.content, str):
        return {"role": "user", "content": message.content}
    return {"role": "user", "content": [_content_part(p) for p in message.content]}


def _content_part(part: TextPart | ImagePart) -> ContentPart:
    """コンテンツパーツ: ``text`` か ``image_url`` (base64 は data URL にする)。"""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    url = part.url or f"data:{part.mime_type or 'image/png'};base64,{part.data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _assistant_message(message: Message) -> WireMessage | None:
    """アシスタントの発話。ツール呼び出しは引数を JSON 文字列にして ``tool_calls`` に入れる。

    キャンセルで中断された発話は、そのテキストだけを送る (未完成の呼び出しには結果が無いため)。
    """
    text = message.text()
    if message.interrupted or not message.tool_calls:
        return {"role": "assistant", "content": text} if text else None
    calls = [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
        }
        for call in message.tool_calls
    ]
    # 呼び出しだけの発話では content は null でよい (API リファレンス)
    return {"role": "assistant", "content": text or None, "tool_calls": calls}  # type: ignore[typeddict-item]


def _tool_message(message: Message) -> WireMessage | None:
    """ツールの結果: ``{"role": "tool", "tool_call_id", "content": 文字列}``。"""
    result = message.tool_result
    if result is None:
        return None
    text = result.as_text()
    # Chat Completions には is_error の欄が無いので、失敗は本文で伝える
    content = f"Error: {text}" if result.is_error else text
    return {"role": "tool", "tool_call_id": result.tool_call_id, "content": content}


def tool_choice_to_wire(choice: ToolChoice) -> WireToolChoice:
    """``auto`` / ``none`` / ``required`` はそのまま、名指しは ``{"type": "function", ...}``。"""
    if choice.mode == "tool" and choice.name:
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode if choice.mode != "tool" else "required"


def usage_from_wire(usage: WireUsage) -> Usage:
    """使用量を正規化する (``prompt_tokens`` / ``completion_tokens`` / ``completion_tokens_details.reasoning_tokens``)。"""
    details = usage.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        reasoning_tokens=int(details.get("reasoning_tokens") or 0),
    )


# ---------------------------------------------------------------- ストリーム → 共通のチャンク


class OpenAIStreamParser:
    """1 つのストリーム応答の ``chat.completion.chunk`` を共通のチャンクにする。"""

    def __init__(self, model: str, error_from_payload: Callable[[Any], ProviderError]) -> None:
        """モデル名と、ストリーム内の ``error`` を共有のエラー型にする関数を受け取る。"""
        self.acc = StreamAccumulator(PROVIDER, model)
        self.finish_reason: FinishReason | None = None
        self._error = error_from_payload

    def feed(self, chunk: ChatCompletionChunk) -> list[StreamChunk]:
        """1 つのチャンクを共通のチャンクにする (``error`` キーがあれば共有のエラー型で投げる)。"""
        if chunk.get("error"):
            raise self._error(chunk["error"])
        out: list[StreamChunk] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) == 0:
                out += self._choice(choice)
        if chunk.get("usage"):
            out += self.acc.set_usage(usage_from_wire(chunk["usage"]))
        return out

    def finish(self) -> list[StreamChunk]:
        """最後の ``StreamEnd`` まで (終了理由が来なかったら stop)。"""
        return self.acc.finish(self.finish_reason or "stop")

    def _choice(self, choice: ChunkChoice) -> list[StreamChunk]:
        """1 つの候補の差分: 推論、テキスト、拒否の文、ツール呼び出し、終了理由。"""
        acc = self.acc
        delta = choice.get("delta") or {}
        # 推論テキストは公式 API には無いが、互換サーバー (vLLM、DeepSeek など) が出す欄を読む
        out = acc.reasoning_delta(delta.get("reasoning_content") or delta.get("reasoning"))
        out += acc.text(delta.get("content"))
        out += acc.text(delta.get("refusal"))
        out += self._tool_calls(delta.get("tool_calls"))
        reason = choice.get("finish_reason")
        if reason:
            # 開いている呼び出しを閉じる (使用量のチャンクはこの後に来る)
            self.finish_reason = FINISH_REASONS.normalise(reason)
            out += acc.reasoning_end() + acc.end_open_tools()
        return out

    def _tool_calls(self, deltas: list[ToolCallDelta] | None) -> list[StreamChunk]:
        """ツール呼び出しの差分を ``index`` ごとに組み立てる (id ではなく index で: API リファレンス)。"""
        out: list[StreamChunk] = []
        for position, delta in enumerate(deltas or []):
            index = delta.get("index", position)
            function = delta.get("function") or {}
            if function.get("name") or delta.get("id"):
                out += self.acc.reasoning_end()
                out += self.acc.tool_start(index, delta.get("id"), function.get("name") or "")
            out += self.acc.tool_args(index, function.get("arguments") or "")
        return out
