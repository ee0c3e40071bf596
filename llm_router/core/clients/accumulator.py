"""差分の組み立て器: プロバイダの差分 (テキスト、推論、番号付きのツール呼び出し) を共通のチャンクにする。

ストリーミングと非ストリーミングの両方の経路で同じものを使う (非ストリーミングの応答も、
全体を 1 つの差分として流し込めば同じ :class:`StreamEnd` になる)。
参考: pydantic-ai の ``_parts_manager.py`` (プロバイダの番号をキーに start / delta を作る)。
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from llm_router.core.schemas.common import (
    FinishReason,
    Message,
    ProviderState,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningPart,
    ReasoningStart,
    StreamChunk,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageUpdate,
)


class FinishReasons:
    """プロバイダの終了理由の名前 → 正規化した終了理由の表。

    各プロバイダの対応付けは、正規化した理由ごとに、それに当たるプロバイダの名前を並べて作る。
    無い理由 (``None``) と表に無い名前は ``stop`` (プロバイダが名前を足しても会話は止まるだけ)。
    """

    def __init__(
        self,
        stop: tuple[str, ...] = (),
        tool_calls: tuple[str, ...] = (),
        length: tuple[str, ...] = (),
        content_filter: tuple[str, ...] = (),
        error: tuple[str, ...] = (),
    ) -> None:
        """正規化した理由ごとの、プロバイダの名前の組を受け取る。"""
        groups: dict[FinishReason, tuple[str, ...]] = {
            "stop": stop,
            "tool_calls": tool_calls,
            "length": length,
            "content_filter": content_filter,
            "error": error,
        }
        self._table = {name: reason for reason, names in groups.items() for name in names}

    def normalise(self, name: str | None) -> FinishReason:
        """プロバイダの終了理由の名前を正規化する。"""
        return self._table.get(name or "", "stop")


def new_tool_call_id(prefix: str = "call_") -> str:
    """プロバイダが ID を出さないときのツール呼び出し ID を作る。"""
    return prefix + uuid.uuid4().hex[:24]


def parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    """引数の JSON 文字列を解析する。空文字列は ``{}``。失敗したら ``({}, 理由)``。"""
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return {}, f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return {}, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, None


@dataclass
class _OpenCall:
    """組み立て中のツール呼び出し。"""

    id: str
    name: str
    parts: list[str] = field(default_factory=list)
    ended: bool = False


class StreamAccumulator:
    """1 回の応答の差分を組み立て、共通のチャンクを返す。"""

    def __init__(self, provider: str, model: str = "") -> None:
        """プロバイダ名とモデル名を受け取る。"""
        self.provider = provider
        self.model = model
        self._text: list[str] = []
        self._calls: dict[int, _OpenCall] = {}
        self._order: list[int] = []
        self._reasoning: list[ReasoningPart] = []
        self._reasoning_text: list[str] | None = None
        self.usage = Usage()

    # -- テキスト
    def text(self, delta: str | None) -> list[StreamChunk]:
        """テキストの断片 (推論が開いていれば先に閉じる: 推論は同じステップのテキストより前)。"""
        if not delta:
            return []
        out = self.reasoning_end() if self._reasoning_text is not None else []
        self._text.append(delta)
        out.append(TextDelta(delta))
        return out

    @property
    def text_so_far(self) -> str:
        """ここまでのテキスト。"""
        return "".join(self._text)

    # -- 推論
    def reasoning_start(self) -> list[StreamChunk]:
        """推論ブロックの開始 (既に開いていれば何も出さない)。"""
        if self._reasoning_text is not None:
            return []
        self._reasoning_text = []
        return [ReasoningStart()]

    def reasoning_delta(self, delta: str | None) -> list[StreamChunk]:
        """推論テキストの断片 (必要なら開始のチャンクを先に出す)。空の断片は何も出さない。"""
        if not delta:
            return []
        out = self.reasoning_start()
        self._reasoning_text.append(delta)  # type: ignore[union-attr]
        out.append(ReasoningDelta(delta))
        return out

    def reasoning_end(self, signature: str | None = None, redacted_data: str | None = None) -> list[StreamChunk]:
        """推論ブロックの終わり。署名や伏せられたデータは履歴用に保持する。"""
        if self._reasoning_text is None and redacted_data is None and signature is None:
            return []
        part = ReasoningPart("".join(self._reasoning_text or []), signature, redacted_data)
        self._reasoning_text = None
        self._reasoning.append(part)
        return [ReasoningEnd(part)]

    # -- ツール呼び出し
    def tool_start(self, index: int, call_id: str | None, name: str) -> list[StreamChunk]:
        """ツール呼び出しの開始。同じ番号の 2 度目の開始は無視する。"""
        if index in self._calls:
            return []
        out = self.reasoning_end() if self._reasoning_text is not None else []
        call = _OpenCall(call_id or new_tool_call_id(), name)
        self._calls[index] = call
        self._order.append(index)
        out.append(ToolCallStart(index, call.id, name))
        return out

    def tool_args(self, index: int, delta: str) -> list[StreamChunk]:
        """ツール引数の JSON 断片。"""
        call = self._calls.get(index)
        if call is None or call.ended or not delta:
            return []
        call.parts.append(delta)
        return [ToolCallDelta(index, call.id, delta)]

    def tool_end(self, index: int) -> list[StreamChunk]:
        """ツール呼び出しの完成 (引数を解析する)。"""
        call = self._calls.get(index)
        if call is None or call.ended:
            return []
        call.ended = True
        out: list[StreamChunk] = []
        if not call.parts:
            # 引数の無い呼び出し (Anthropic は空の partial_json "" だけを送る) でも、``docs/protocol.md`` 4 節の
            # 「どの呼び出しも tool_call_delta を 1 つ以上」を守るため、空の引数 "{}" を 1 つの断片として出す
            call.parts.append("{}")
            out.append(ToolCallDelta(index, call.id, "{}"))
        raw = "".join(call.parts)
        arguments, error = parse_arguments(raw)
        out.append(ToolCallEnd(index, ToolCall(call.id, call.name, arguments, raw, error)))
        return out

    def tool_whole(self, call_id: str | None, name: str, arguments: Any) -> list[StreamChunk]:
        """一度に届くツール呼び出し (Gemini, Ollama) も start / delta / end にする。"""
        index = len(self._order)
        while index in self._calls:
            index += 1
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments or {}, ensure_ascii=False)
        out = self.tool_start(index, call_id, name)
        self._calls[index].parts.append(raw)
        out.append(ToolCallDelta(index, self._calls[index].id, raw))
        out.extend(self.tool_end(index))
        return out

    def end_open_tools(self) -> list[StreamChunk]:
        """まだ終わっていないツール呼び出しをすべて終える (番号順)。"""
        out: list[StreamChunk] = []
        for index in self._order:
            out.extend(self.tool_end(index))
        return out

    @property
    def has_tool_calls(self) -> bool:
        """ツール呼び出しがあれば真。"""
        return bool(self._order)

    # -- 使用量と終わり
    def set_usage(self, usage: Usage) -> list[StreamChunk]:
        """この応答の累計使用量を更新する。"""
        self.usage = usage
        return [UsageUpdate(usage)]

    def finish(self, finish_reason: FinishReason, provider_state: ProviderState | None = None) -> list[StreamChunk]:
        """応答の終わり: 開いているものを閉じ、組み立てたメッセージを :class:`StreamEnd` で返す。"""
        out: list[StreamChunk] = []
        if self._reasoning_text is not None:
            out.extend(self.reasoning_end())
        out.extend(self.end_open_tools())
        calls = []
        for index in self._order:
            call = self._calls[index]
            arguments, error = parse_arguments("".join(call.parts))
            calls.append(ToolCall(call.id, call.name, arguments, "".join(call.parts), error))
        message = Message(
            role="assistant",
            content=self.text_so_far,
            tool_calls=calls,
            reasoning=list(self._reasoning),
            provider_state=provider_state,
        )
        if calls and finish_reason == "stop":
            finish_reason = "tool_calls"
        out.append(StreamEnd(message, finish_reason, self.usage, self.model, self.provider))
        return out
