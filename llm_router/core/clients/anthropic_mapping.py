"""Anthropic Messages API との対応付け: 共通の会話 → ``messages``、ストリームのイベント → 共通のチャンク。

参考: Anthropic "Messages" / "Streaming Messages" / "Extended thinking" / "Tool use" の各文書。
- ``messages`` は user と assistant が厳密に交互でなければならない: 同じ役割が続けば 1 つにまとめる。
- ツールの結果は、次の user メッセージの中に ``tool_result`` ブロックとして、テキストより前に置く。
- 思考 (thinking / redacted_thinking) のブロックは、受け取ったとおり (署名つき) に送り返す。
- ワイヤの形は :mod:`llm_router.core.schemas.anthropic_schemas` の TypedDict。
- ストリームのイベントは種類ごとに 1 つの小さなメソッドで扱う (未知の種類は文書の指示どおり無視する)。
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from llm_router.core.clients.accumulator import FinishReasons, StreamAccumulator
from llm_router.core.schemas.anthropic_schemas import (
    ContentBlock,
    ImageBlock,
    ImageSource,
    ToolResultBlock,
    WireError,
    WireMessage,
    WireToolChoice,
    WireUsage,
)
from llm_router.core.schemas.common import ImagePart, Message, ProviderState, StreamChunk, TextPart, ToolChoice, Usage
from llm_router.core.schemas.errors import ProviderError, ProviderStreamBrokenError

PROVIDER = "anthropic"

# stop_reason の正規化 (Anthropic "Handling stop reasons")
STOP_REASONS = FinishReasons(
    stop=("end_turn", "stop_sequence", "pause_turn"),
    tool_calls=("tool_use",),
    length=("max_tokens", "model_context_window_exceeded"),
    content_filter=("refusal",),
)

# エラー種別 → 相当する HTTP ステータス (Anthropic "Errors" の表)。ストリーム内の error イベントに使う。
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# ---------------------------------------------------------------- 会話 → messages


def _content_blocks(content: str | list[Any]) -> list[ContentBlock]:
    """user メッセージの内容をブロックの列にする (空のテキストは API が拒むので送らない)。"""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[ContentBlock] = []
    for part in content:
        if isinstance(part, TextPart) and part.text:
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part))
    return blocks


def _image_block(part: ImagePart) -> ImageBlock:
    """画像パーツを ``image`` ブロックにする (base64 か URL)。"""
    source: ImageSource
    if part.data is not None:
        source = {"type": "base64", "media_type": part.mime_type or "image/png", "data": part.data}
    else:
        source = {"type": "url", "url": part.url or ""}
    return {"type": "image", "source": source}


def _assistant_blocks(message: Message) -> list[ContentBlock]:
    """assistant メッセージのブロック。Anthropic から受け取ったものがあればそれを (署名ごと) そのまま使う。"""
    state = message.provider_state
    if state is not None and state.provider == PROVIDER and isinstance(state.data, list):
        # 空のテキストブロックだけは API が拒むので除く。それ以外は受け取ったとおり (順序も変えない)。
        return [block for block in state.data if not (block.get("type") == "text" and not block.get("text"))]
    blocks: list[ContentBlock] = []
    text = message.text()
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return blocks


def _tool_result_block(message: Message) -> list[ContentBlock]:
    """tool メッセージを ``tool_result`` ブロックにする。"""
    result = message.tool_result
    if result is None:
        return []
    block: ToolResultBlock = {"type": "tool_result", "tool_use_id": result.tool_call_id}
    text = result.as_text()
    if text:
        # content は省略できる (空の結果を空文字のテキストとして送らない)
        block["content"] = text
    if result.is_error:
        block["is_error"] = True
    return [block]


def _role_and_blocks(message: Message) -> tuple[Literal["user", "assistant"], list[ContentBlock]]:
    """1 メッセージを (Anthropic の役割, ブロック) にする。"""
    if message.role == "assistant":
        return "assistant", _assistant_blocks(message)
    if message.role == "tool":
        return "user", _tool_result_block(message)
    return "user", _content_blocks(message.content)


def to_anthropic_messages(messages: list[Message]) -> tuple[str | None, list[WireMessage]]:
    """共通の会話を (``system``, ``messages``) にする。

    同じ役割が続けば 1 つのメッセージにまとめ、user メッセージの中では ``tool_result`` をテキストより前に置く
    (Anthropic "Tool use": 結果はテキストより先でなければ 400)。
    """
    system_parts: list[str] = []
    out: list[WireMessage] = []
    for message in messages:
        if message.role == "system":
            if message.text():
                system_parts.append(message.text())
            continue
        role, blocks = _role_and_blocks(message)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for wire in out:
        if wire["role"] == "user":
            wire["content"].sort(key=lambda block: block.get("type") != "tool_result")
    return ("\n\n".join(system_parts) or None), out


def tool_choice_to_wire(choice: ToolChoice | None, parallel_tool_calls: bool | None) -> WireToolChoice | None:
    """共通のツール選択を ``tool_choice`` にする。並列呼び出しの禁止は ``disable_parallel_tool_use``。"""
    if choice is None and parallel_tool_calls is not False:
        return None
    mode = choice.mode if choice is not None else "auto"
    wire: WireToolChoice = {"type": {"auto": "auto", "none": "none", "required": "any", "tool": "tool"}[mode]}
    if mode == "tool" and choice is not None:
        wire["name"] = choice.name
    if parallel_tool_calls is False and mode != "none":
        wire["disable_parallel_tool_use"] = True
    return wire


# ---------------------------------------------------------------- 応答 → チャンク


def usage_from_wire(usage: WireUsage, previous: Usage | None = None) -> Usage:
    """Anthropic の使用量を共通の形にする。入力はキャッシュの作成・読み出しも含めた合計。"""
    previous = previous or Usage()
    if "input_tokens" in usage or "cache_read_input_tokens" in usage:
        input_tokens = sum(
            int(usage.get(key) or 0)
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
    else:
        input_tokens = previous.input_tokens
    output_tokens = int(usage["output_tokens"]) if usage.get("output_tokens") is not None else previous.output_tokens
    # 思考のトークンは output_tokens に含まれて課金されるが、内訳は API が返さない
    return Usage(input_tokens, output_tokens, 0)


def error_from_payload(error: WireError, redact: Callable[[str], str]) -> ProviderError:
    """``{"type", "message"}`` (ストリーム内の error イベント) を共通のエラー型にする。"""
    from llm_router.core.clients.base_client import error_for_status

    kind = str(error.get("type") or "api_error")
    message = redact(str(error.get("message") or kind))
    return error_for_status(ERROR_STATUS.get(kind, 500), message, provider=PROVIDER, error_type=kind)


class AnthropicStreamParser:
    """1 つのストリーム応答のイベントを共通のチャンクにする (イベントの種類ごとに 1 メソッド)。

    受け取ったブロックは ``index`` ごとに組み立て、最後に ``ProviderState("anthropic", blocks)`` として
    アシスタントメッセージに付ける (思考の署名を次の要求でそのまま送り返すため)。
    """

    def __init__(self, model: str, redact: Callable[[str], str]) -> None:
        """モデル名と、エラー文言からキーを伏せる関数を受け取る。"""
        self.acc = StreamAccumulator(PROVIDER, model)
        self._redact = redact
        self.blocks: dict[int, dict[str, Any]] = {}
        self._tool_index: dict[int, int] = {}
        self._json: dict[int, list[str]] = {}
        self.stop_reason: str | None = None
        self.stopped = False
        self._events: dict[str, Callable[[dict[str, Any]], list[StreamChunk]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "ping": self._ignore,
            "error": self._error,
        }
        self._starts: dict[str, Callable[[int, dict[str, Any]], list[StreamChunk]]] = {
            "text": self._start_text,
            "tool_use": self._start_tool_use,
            "thinking": self._start_thinking,
            "redacted_thinking": self._start_redacted,
        }
        self._deltas: dict[str, Callable[[int, dict[str, Any]], list[StreamChunk]]] = {
            "text_delta": self._text_delta,
            "input_json_delta": self._input_json_delta,
            "thinking_delta": self._thinking_delta,
            "signature_delta": self._signature_delta,
            "citations_delta": self._citations_delta,
        }
        self._stops: dict[str, Callable[[int], list[StreamChunk]]] = {
            "tool_use": self._stop_tool_use,
            "thinking": self._stop_thinking,
            "redacted_thinking": self._stop_redacted,
            "server_tool_use": self._stop_server_tool_use,
        }

    # ------------------------------------------------------------ 入口

    def feed(self, event: str | None, data: str) -> list[StreamChunk]:
        """SSE の 1 イベント (``event:`` 名と ``data``) を処理する。"""
        try:
            payload = json.loads(data) if data else {}
        except ValueError as exc:
            raise ProviderStreamBrokenError(f"invalid JSON in the stream: {exc}", provider=PROVIDER) from exc
        kind = event or payload.get("type") or ""
        handler = self._events.get(kind, self._ignore)
        return handler(payload)

    def finish(self) -> list[StreamChunk]:
        """ストリームの終わり。``message_stop`` も終了理由 (``message_delta``) も無ければストリーム破損とする。

        本物の API は必ず ``message_stop`` で終えるが、終了理由まで届いて接続がきれいに閉じたものは完了とみなす
        (途中で切れた接続は、それより前に urllib3 が chunked の不完全として検出する)。
        """
        if not self.stopped and self.stop_reason is None:
            raise ProviderStreamBrokenError("the stream ended before message_stop", provider=PROVIDER)
        blocks = [self.blocks[i] for i in sorted(self.blocks)]
        reason = STOP_REASONS.normalise(self.stop_reason)
        if reason == "tool_calls" and not self.acc.has_tool_calls:
            # tool_use で止まったのにこちらの呼び出しが無い (サーバー側ツールだけ) なら、ループを回さない
            reason = "stop"
        return self.acc.finish(reason, ProviderState(PROVIDER, blocks))

    # ------------------------------------------------------------ メッセージ単位のイベント

    def _ignore(self, payload: dict[str, Any]) -> list[StreamChunk]:
        """``ping`` と未知のイベントは読み飛ばす (Anthropic は新しい種類を足すことがあると明言している)。"""
        return []

    def _message_start(self, payload: dict[str, Any]) -> list[StreamChunk]:
        """``message_start``: 入力トークン数 (と最初の出力トークン数)。"""
        message = payload.get("message") or {}
        if message.get("model"):
            self.acc.model = message["model"]
        return self.acc.set_usage(usage_from_wire(message.get("usage") or {}))

    def _message_delta(self, payload: dict[str, Any]) -> list[StreamChunk]:
        """``message_delta``: 終了理由と、累計の ``output_tokens``。"""
        delta = payload.get("delta") or {}
        if delta.get("stop_reason"):
            self.stop_reason = delta["stop_reason"]
        usage = payload.get("usage")
        if not usage:
            return []
        return self.acc.set_usage(usage_from_wire(usage, self.acc.usage))

    def _message_stop(self, payload: dict[str, Any]) -> list[StreamChunk]:
        """``message_stop``: 正常な終わりの印。"""
        self.stopped = True
        return []

    def _error(self, payload: dict[str, Any]) -> list[StreamChunk]:
        """HTTP 200 の後に届いた ``error`` イベントを共通のエラー型で投げる。"""
        raise error_from_payload(payload.get("error") or {}, self._redact)

    # ------------------------------------------------------------ ブロック単位のイベント

    def _block_start(self, payload: dict[str, Any]) -> list[StreamChunk]:
        """``content_block_start``: ブロックを記録し、種類ごとの開始処理に渡す。"""
        index = int(payload.get("index", len(self.blocks)))
        # payload はこのイベントのために解析したばかりの dict なので、複製せずにそのまま組み立てに使う
        block = payload.get("content_block") or {}
        self.blocks[index] = block
        start = self._starts.get(block.get("type", ""))
        return start(index, block) if start else []

    def _block_delta(self, payload: dict[str, Any]) -> list[StreamChunk]:
        """``content_block_delta``: 差分の種類ごとの処理に渡す。"""
        index = int(payload.get("index", 0))
        delta = payload.get("delta") or {}
        handler = self._deltas.get(delta.get("type", ""))
        if handler is None or index not in self.blocks:
            return []
        return handler(index, delta)

    def _block_stop(self, payload: dict[str, Any]) -> list[StreamChunk]:
        """``content_block_stop``: ブロックの種類ごとの終了処理に渡す。"""
        index = int(payload.get("index", 0))
        block = self.blocks.get(index)
        if block is None:
            return []
        stop = self._stops.get(block.get("type", ""))
        return stop(index) if stop else []

    # -- 開始
    def _start_text(self, index: int, block: dict[str, Any]) -> list[StreamChunk]:
        """テキストブロックの開始 (通常は空文字)。"""
        return self.acc.text(block.get("text", ""))

    def _start_tool_use(self, index: int, block: dict[str, Any]) -> list[StreamChunk]:
        """ツール呼び出しの開始 (``input`` は空で、以後 ``input_json_delta`` で届く)。"""
        ordinal = len(self._tool_index)
        self._tool_index[index] = ordinal
        self._json[index] = []
        return self.acc.tool_start(ordinal, block.get("id"), block.get("name", ""))

    def _start_thinking(self, index: int, block: dict[str, Any]) -> list[StreamChunk]:
        """思考ブロックの開始。"""
        return self.acc.reasoning_start() + self.acc.reasoning_delta(block.get("thinking", ""))

    def _start_redacted(self, index: int, block: dict[str, Any]) -> list[StreamChunk]:
        """伏せられた思考の開始 (表示できる文は無いが、開始と終わりの対は出す)。"""
        return self.acc.reasoning_start()

    # -- 差分
    def _text_delta(self, index: int, delta: dict[str, Any]) -> list[StreamChunk]:
        """``text_delta``: テキストの断片。"""
        text = delta.get("text", "")
        block = self.blocks[index]
        block["text"] = block.get("text", "") + text
        return self.acc.text(text)

    def _input_json_delta(self, index: int, delta: dict[str, Any]) -> list[StreamChunk]:
        """``input_json_delta``: 部分 JSON をブロックごとにつなぐ (最初の断片は空文字のことが多い)。"""
        piece = delta.get("partial_json", "")
        self._json.setdefault(index, []).append(piece)
        if index not in self._tool_index:
            return []
        return self.acc.tool_args(self._tool_index[index], piece)

    def _thinking_delta(self, index: int, delta: dict[str, Any]) -> list[StreamChunk]:
        """``thinking_delta``: 思考の断片。"""
        text = delta.get("thinking", "")
        block = self.blocks[index]
        block["thinking"] = block.get("thinking", "") + text
        return self.acc.reasoning_delta(text) if text else []

    def _signature_delta(self, index: int, delta: dict[str, Any]) -> list[StreamChunk]:
        """``signature_delta``: 署名は送り返すために保持するだけで、チャンクにはしない。"""
        self.blocks[index]["signature"] = delta.get("signature", "")
        return []

    def _citations_delta(self, index: int, delta: dict[str, Any]) -> list[StreamChunk]:
        """``citations_delta``: 引用をブロックに足す (送り返すときのため)。"""
        self.blocks[index].setdefault("citations", []).append(delta.get("citation"))
        return []

    # -- 終わり
    def _stop_tool_use(self, index: int) -> list[StreamChunk]:
        """ツール呼び出しの完成: ここで初めて引数を解析する (空文字は ``{}``)。"""
        self.blocks[index]["input"] = self._parsed_input(index)
        return self.acc.tool_end(self._tool_index[index])

    def _parsed_input(self, index: int) -> dict[str, Any]:
        """ブロックの部分 JSON をつないで解析する (空文字は ``{}``、壊れていれば ``{}``: 誤りは組み立て器が報告する)。"""
        raw = "".join(self._json.get(index, []))
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            parsed = {}
        return parsed if isinstance(parsed, dict) else {}

    def _stop_server_tool_use(self, index: int) -> list[StreamChunk]:
        """サーバー側ツール (web 検索など) の呼び出し: 送り返すために input を組み立てるだけ (チャンクは出さない)。"""
        self.blocks[index]["input"] = self._parsed_input(index)
        return []

    def _stop_thinking(self, index: int) -> list[StreamChunk]:
        """思考ブロックの終わり (署名つきで保持)。"""
        return self.acc.reasoning_end(signature=self.blocks[index].get("signature"))

    def _stop_redacted(self, index: int) -> list[StreamChunk]:
        """伏せられた思考の終わり (暗号化されたデータを保持)。"""
        return self.acc.reasoning_end(redacted_data=self.blocks[index].get("data", ""))
