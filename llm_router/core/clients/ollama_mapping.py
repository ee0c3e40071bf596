"""Ollama ``/api/chat`` との対応付け: 共通の会話 → ``messages``、NDJSON の行 → 共通のチャンク。

参考: Ollama の API 文書 ``docs/api.md`` ("Generate a chat completion")。ワイヤの形は :mod:`ollama_schemas`。
- 画像は base64 の ``images`` (URL は取らない)。アシスタントのツール呼び出しの引数はオブジェクトのまま、
  推論テキストは ``thinking``。ツールの結果は ``{"role": "tool", "content", "tool_name", "tool_call_id"}``。
- ストリームは 1 行 1 JSON。ツール呼び出しは断片ではなく丸ごと届くので、共通の start / delta / end にそろえる
  ため :meth:`StreamAccumulator.tool_whole` を通す (v0.12.10 より前のサーバーは ``id`` を出さないので作る)。
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llm_router.core.clients.accumulator import FinishReasons, StreamAccumulator
from llm_router.core.clients.openai_mapping import convert_by_role
from llm_router.core.schemas.common import FinishReason, ImagePart, Message, StreamChunk, Usage
from llm_router.core.schemas.errors import ProviderError, ProviderStreamBrokenError
from llm_router.core.schemas.ollama_schemas import ChatLine, WireMessage, WireToolCall

PROVIDER = "ollama"

# Ollama の done_reason → 正規化した終了理由 (load / unload はモデルの読み込みだけの応答)
FINISH_REASONS = FinishReasons(stop=("stop", "load", "unload"), length=("length",))


# ---------------------------------------------------------------- 会話 → messages


def to_ollama_messages(messages: list[Message]) -> list[WireMessage]:
    """共通のメッセージ列を Ollama の ``messages`` にする (役割ごとに小さな関数)。"""
    return convert_by_role(
        messages,
        {"system": _plain_message, "user": _plain_message, "assistant": _assistant_message, "tool": _tool_message},
    )


def _plain_message(message: Message) -> WireMessage:
    """システム・ユーザーの発話。画像は base64 の ``images`` に入れる (Ollama は URL を取らない)。"""
    out: WireMessage = {"role": message.role, "content": message.text()}
    if not isinstance(message.content, str):
        images = [p.data for p in message.content if isinstance(p, ImagePart) and p.data]
        if images:
            out["images"] = images
    return out


def _assistant_message(message: Message) -> WireMessage | None:
    """アシスタントの発話。ツール呼び出しの引数はオブジェクトのまま送る。推論テキストは ``thinking`` に。

    キャンセルで中断された発話は、そのテキストだけを送る。
    """
    text = message.text()
    calls = [] if message.interrupted else message.tool_calls
    thinking = "".join(part.text for part in message.reasoning)
    if not text and not calls:
        return None
    out: WireMessage = {"role": "assistant", "content": text}
    if thinking and not message.interrupted:
        out["thinking"] = thinking
    if calls:
        out["tool_calls"] = [
            {"id": call.id, "function": {"name": call.name, "arguments": call.arguments}} for call in calls
        ]
    return out


def _tool_message(message: Message) -> WireMessage | None:
    """ツールの結果: ``{"role": "tool", "content", "tool_name", "tool_call_id"}``。"""
    result = message.tool_result
    if result is None:
        return None
    text = result.as_text()
    return {
        "role": "tool",
        "content": f"Error: {text}" if result.is_error else text,
        "tool_name": result.name,
        "tool_call_id": result.tool_call_id,
    }


# ---------------------------------------------------------------- NDJSON の行 → 共通のチャンク


class OllamaStreamParser:
    """1 つのストリーム応答の行を共通のチャンクにする。"""

    def __init__(self, model: str, error_from_payload: Callable[[Any], ProviderError]) -> None:
        """モデル名と、行の ``error`` を共有のエラー型にする関数を受け取る。"""
        self.acc = StreamAccumulator(PROVIDER, model)
        self.done = False
        self.finish_reason: FinishReason = "stop"
        self._error = error_from_payload

    def feed(self, line: ChatLine) -> list[StreamChunk]:
        """NDJSON の 1 行を共通のチャンクにする。"""
        if not isinstance(line, dict):
            raise ProviderStreamBrokenError("a stream line is not a JSON object", provider=PROVIDER)
        if line.get("error"):
            raise self._error(line["error"])
        message = line.get("message") or {}
        out = self.acc.reasoning_delta(message.get("thinking"))
        out += self.acc.text(message.get("content"))
        out += self._tool_calls(message.get("tool_calls"))
        if line.get("done"):
            out += self._done(line)
        return out

    def finish(self) -> list[StreamChunk]:
        """最後の ``StreamEnd`` まで。"""
        return self.acc.finish(self.finish_reason)

    def _tool_calls(self, calls: list[WireToolCall] | None) -> list[StreamChunk]:
        """丸ごと届くツール呼び出しを start / delta / end にする (ID が無ければ作る)。"""
        out: list[StreamChunk] = []
        for call in calls or []:
            function = call.get("function") or {}
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                # 古い互換サーバーは文字列で返すことがある: そのまま組み立て器に渡して解析させる
                arguments = arguments or "{}"
            out += self.acc.reasoning_end()
            out += self.acc.tool_whole(call.get("id"), function.get("name") or "", arguments or {})
        return out

    def _done(self, line: ChatLine) -> list[StreamChunk]:
        """最後の行: 終了理由と使用量 (``prompt_eval_count`` / ``eval_count``)。"""
        self.done = True
        self.finish_reason = FINISH_REASONS.normalise(line.get("done_reason"))
        usage = Usage(int(line.get("prompt_eval_count") or 0), int(line.get("eval_count") or 0))
        return self.acc.reasoning_end() + self.acc.set_usage(usage)
