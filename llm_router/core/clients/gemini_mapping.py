"""Gemini API との対応付け: 共通の会話 → ``contents``、応答のチャンク → 共通のチャンク。

参考: https://ai.google.dev/gemini-api/docs/function-calling 、
https://ai.google.dev/gemini-api/docs/thinking (thought summaries, thought signatures)。
- model の番は、Gemini から受け取ったパーツ (``thoughtSignature`` つき) を順序も含めてそのまま送り返す。
- 関数の結果は ``user`` の番の ``functionResponse`` パーツ。モデルが ``id`` を付けた呼び出しには同じ ``id`` を、
  付けなかった呼び出しには付けず、呼び出しの順 (位置) と名前で対応させる。
- ワイヤの形は :mod:`llm_router.core.schemas.gemini_schemas` の TypedDict。
- 関数呼び出しは常に一度に届く: 組み立て器の ``tool_whole`` で start / delta / end にする。
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from llm_router.core.clients.accumulator import FinishReasons, StreamAccumulator
from llm_router.core.schemas.common import ImagePart, Message, ProviderState, StreamChunk, TextPart, ToolChoice, Usage
from llm_router.core.schemas.errors import ProviderBadRequestError, ProviderError, ProviderStreamBrokenError
from llm_router.core.schemas.gemini_schemas import (
    Candidate,
    Content,
    FunctionCallingConfig,
    FunctionResponse,
    GenerateContentResponse,
    Part,
    SystemInstruction,
    ToolConfig,
    UsageMetadata,
)

PROVIDER = "gemini"

# finishReason の正規化 (https://ai.google.dev/api/generate-content#FinishReason)
FINISH_REASONS = FinishReasons(
    stop=("STOP", "OTHER"),
    length=("MAX_TOKENS",),
    content_filter=(
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
    ),
    error=("MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"),
)

_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}


# ---------------------------------------------------------------- 会話 → contents


def _user_parts(content: str | list[Any]) -> list[Part]:
    """user メッセージの内容をパーツの列にする。"""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[Part] = []
    for part in content:
        if isinstance(part, TextPart) and part.text:
            parts.append({"text": part.text})
        elif isinstance(part, ImagePart):
            parts.append(_image_part(part))
    return parts


def _image_part(part: ImagePart) -> Part:
    """画像パーツを ``inlineData`` (base64) か ``fileData`` (URI) にする。"""
    mime = part.mime_type or "image/png"
    if part.data is not None:
        return {"inlineData": {"mimeType": mime, "data": part.data}}
    return {"fileData": {"mimeType": mime, "fileUri": part.url or ""}}


def _gemini_parts_of(message: Message) -> list[Part] | None:
    """Gemini から受け取ったままのパーツ (あれば)。"""
    state = message.provider_state
    if state is not None and state.provider == PROVIDER and isinstance(state.data, list):
        return state.data
    return None


_LAST = 1 << 30


class _CallBook:
    """呼び出しの対応表: 共通の ID → (Gemini の ID か None, 呼び出しの位置)。"""

    def __init__(self, foreign_signature: str | None = None) -> None:
        """空で作る。``foreign_signature`` は Gemini 以外が作った関数呼び出しに付ける署名 (無ければ付けない)。"""
        self.calls: dict[str, tuple[str | None, int]] = {}
        self._foreign_signature = foreign_signature

    def model_parts(self, message: Message) -> list[tuple[int, Part]]:
        """assistant メッセージを model の番のパーツにし、呼び出しを記録する。"""
        received = _gemini_parts_of(message)
        if received is not None:
            provider_ids = [p["functionCall"].get("id") for p in received if "functionCall" in p]
            parts = list(received)
        else:
            # 他のプロバイダの履歴: こちらの ID は Gemini のものではないので送らず、位置と名前で対応させる
            provider_ids = []
            parts: list[Part] = [{"text": message.text()}] if message.text() else []
            calls: list[Part] = [{"functionCall": {"name": c.name, "args": c.arguments}} for c in message.tool_calls]
            if calls and self._foreign_signature:
                # 署名を検証するモデル (Gemini 3) は、署名の無い関数呼び出しを 400 にする。他のモデルの履歴には
                # 文書が示すダミーの署名を最初の呼び出しに付ける (https://ai.google.dev/gemini-api/docs/thought-signatures)
                calls[0]["thoughtSignature"] = self._foreign_signature
            parts += calls
        for position, call in enumerate(message.tool_calls):
            provider_id = provider_ids[position] if position < len(provider_ids) else None
            self.calls[call.id] = (provider_id, position)
        return [(_LAST, part) for part in parts]

    def response_part(self, message: Message) -> list[tuple[int, Part]]:
        """tool メッセージを ``functionResponse`` パーツにする (成功は ``output``、失敗は ``error``)。

        並びの鍵は呼び出しの位置: 結果は呼び出しと同じ順で、テキストより前に置く。
        """
        result = message.tool_result
        if result is None:
            return []
        payload = {"error": result.as_text()} if result.is_error else {"output": result.result}
        response: FunctionResponse = {"name": result.name, "response": payload}
        provider_id, position = self.calls.get(result.tool_call_id, (None, _LAST - 1))
        if provider_id:
            response["id"] = provider_id
        return [(position, {"functionResponse": response})]


def to_gemini_contents(
    messages: list[Message], foreign_signature: str | None = None
) -> tuple[SystemInstruction | None, list[Content]]:
    """共通の会話を (``systemInstruction``, ``contents``) にする。同じ役割の連続は 1 つの番にまとめる。

    ``foreign_signature`` を与えると、Gemini 以外が作った関数呼び出しの最初のパーツにその署名を付ける。
    """
    system_parts: list[Part] = []
    turns: list[tuple[Literal["user", "model"], list[tuple[int, Part]]]] = []
    book = _CallBook(foreign_signature)
    for message in messages:
        if message.role == "system":
            if message.text():
                system_parts.append({"text": message.text()})
            continue
        if message.role == "assistant":
            role, parts = "model", book.model_parts(message)
        elif message.role == "tool":
            role, parts = "user", book.response_part(message)
        else:
            role, parts = "user", [(_LAST, p) for p in _user_parts(message.content)]
        if not parts:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(parts)
        else:
            turns.append((role, parts))
    contents = []
    for role, keyed in turns:
        if role == "user":
            keyed.sort(key=lambda item: item[0])
        contents.append({"role": role, "parts": [part for _, part in keyed]})
    return ({"parts": system_parts} if system_parts else None), contents


def tool_config_to_wire(choice: ToolChoice | None) -> ToolConfig | None:
    """共通のツール選択を ``toolConfig`` にする (名前の強制は ANY + ``allowedFunctionNames``)。"""
    if choice is None:
        return None
    config: FunctionCallingConfig = {"mode": _CHOICE_MODES[choice.mode]}
    if choice.mode == "tool" and choice.name:
        config["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": config}


# ---------------------------------------------------------------- 応答 → チャンク


def usage_from_wire(metadata: UsageMetadata) -> Usage:
    """``usageMetadata`` (累計) を共通の形に: 出力は候補 + 思考、``reasoning_tokens`` は思考の分。"""
    thoughts = int(metadata.get("thoughtsTokenCount") or 0)
    prompt = int(metadata.get("promptTokenCount") or 0) + int(metadata.get("toolUsePromptTokenCount") or 0)
    return Usage(prompt, int(metadata.get("candidatesTokenCount") or 0) + thoughts, thoughts)


class GeminiStreamParser:
    """``GenerateContentResponse`` のチャンクを共通のチャンクにする (パーツの種類ごとに 1 メソッド)。

    受け取った model のパーツはすべて、順に ``ProviderState("gemini", parts)`` として残す。
    """

    def __init__(self, model: str, error_from_payload: Callable[[dict[str, Any]], ProviderError]) -> None:
        """モデル名と、``{"error": ...}`` を共通のエラーにする関数を受け取る。"""
        self.acc = StreamAccumulator(PROVIDER, model)
        self._error_from_payload = error_from_payload
        self.parts: list[Part] = []
        self.finish_reason: str | None = None
        self._thinking = False
        self._seen_candidate = False
        self._part_handlers: list[tuple[str, Callable[[dict[str, Any]], list[StreamChunk]]]] = [
            ("functionCall", self._function_call),
            ("thought", self._thought),
            ("text", self._text),
        ]

    def feed(self, chunk: GenerateContentResponse) -> list[StreamChunk]:
        """1 チャンク (応答オブジェクト) を処理する。"""
        if "error" in chunk:
            raise self._error_from_payload(chunk)  # type: ignore[arg-type]
        out: list[StreamChunk] = []
        candidates = chunk.get("candidates") or []
        if not candidates:
            self._check_blocked(chunk)
        if candidates:
            out += self._candidate(candidates[0])
        if chunk.get("usageMetadata"):
            out += self.acc.set_usage(usage_from_wire(chunk["usageMetadata"]))
        return out

    def finish(self) -> list[StreamChunk]:
        """応答の終わり。候補が一度も届かずに終わったものはストリーム破損とする。

        本物の API は最後のチャンクに ``finishReason`` を付けるが、候補が届いて接続がきれいに閉じたものは
        ``STOP`` とみなす (途中で切れた接続は urllib3 が chunked の不完全として検出する)。
        """
        if self.finish_reason is None and not self._seen_candidate:
            raise ProviderStreamBrokenError("the stream ended without any candidate", provider=PROVIDER)
        reason = FINISH_REASONS.normalise(self.finish_reason)
        return self.acc.finish(reason, ProviderState(PROVIDER, self.parts))

    def _check_blocked(self, chunk: GenerateContentResponse) -> None:
        """候補の無い応答で ``promptFeedback.blockReason`` があれば、止められた理由をはっきり伝える。"""
        reason = (chunk.get("promptFeedback") or {}).get("blockReason")
        if reason:
            raise ProviderBadRequestError(
                f"Gemini blocked the prompt (blockReason: {reason}) "
                f"(Gemini がプロンプトを拒否しました。理由: {reason})",
                provider=PROVIDER,
                error_type="prompt_blocked",
            )

    def _candidate(self, candidate: Candidate) -> list[StreamChunk]:
        """候補のパーツを順に処理し、終了理由を記録する。"""
        out: list[StreamChunk] = []
        self._seen_candidate = True
        for part in (candidate.get("content") or {}).get("parts") or []:
            # 解析したばかりのチャンクのパーツなので、複製せずにそのまま (受け取ったとおりに) 保持する
            self.parts.append(part)
            handler = next((h for key, h in self._part_handlers if part.get(key)), None)
            if handler is not None:
                out += handler(part)
        if candidate.get("finishReason"):
            self.finish_reason = candidate["finishReason"]
        return out

    def _end_thinking(self) -> list[StreamChunk]:
        """思考の後に別のパーツが来たら、思考を閉じる。"""
        if not self._thinking:
            return []
        self._thinking = False
        return self.acc.reasoning_end()

    def _thought(self, part: dict[str, Any]) -> list[StreamChunk]:
        """``thought: true`` のパーツ (思考の要約) は推論のチャンク。"""
        self._thinking = True
        return self.acc.reasoning_delta(part.get("text", ""))

    def _text(self, part: dict[str, Any]) -> list[StreamChunk]:
        """テキストのパーツ。"""
        return self._end_thinking() + self.acc.text(part["text"])

    def _function_call(self, part: dict[str, Any]) -> list[StreamChunk]:
        """関数呼び出しは一度に届く: start / delta / end をまとめて出す (ID が無ければ作る)。"""
        call = part["functionCall"]
        args = call.get("args") or {}
        return self._end_thinking() + self.acc.tool_whole(call.get("id"), call.get("name", ""), args)


def decode_stream_payload(text: str) -> dict[str, Any]:
    """SSE の ``data`` (または生の JSON 行) を解析する。壊れていればストリーム破損。"""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ProviderStreamBrokenError(f"invalid JSON in the stream: {exc}", provider=PROVIDER) from exc
    if not isinstance(value, dict):
        raise ProviderStreamBrokenError("stream chunk is not a JSON object", provider=PROVIDER)
    return value


class GeminiStreamDecoder:
    """Gemini のストリームの I/O を持たないデコーダ: SSE の ``data:`` 行と、SSE でない生の JSON の両方を読む。

    ``alt=sse`` のチャンクは ``data: {...}`` で届くが、エラーは整形された JSON が行ごとに届くことがある
    (google-genai の ``_api_client.py`` も ``data:`` の無い行を括弧が閉じるまで貯めて読む)。
    """

    def __init__(self) -> None:
        """空の状態で作る。"""
        self._buffer = b""
        self._data: list[str] = []
        self._raw: list[str] = []

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """バイト列を与え、完成したチャンク (JSON オブジェクト) を返す。"""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        out: list[dict[str, Any]] = []
        for raw in lines:
            out += self._line(raw.rstrip(b"\r").decode("utf-8", errors="replace"))
        return out

    def flush(self) -> list[dict[str, Any]]:
        """ストリームの終わり: 残りを処理する。閉じていない生の JSON はストリーム破損。"""
        rest, self._buffer = self._buffer, b""
        out = self._line(rest.rstrip(b"\r").decode("utf-8", errors="replace")) if rest else []
        out += self._line("")
        if self._raw:
            raise ProviderStreamBrokenError("the stream ended inside a JSON object", provider=PROVIDER)
        return out

    def _line(self, line: str) -> list[dict[str, Any]]:
        """1 行を処理する。"""
        if not line:
            if not self._data:
                return []
            text, self._data = "\n".join(self._data), []
            return [decode_stream_payload(text)]
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
            return []
        if line.startswith((":", "event:", "id:", "retry:")):
            return []
        self._raw.append(line)
        try:
            value = json.loads("\n".join(self._raw))
        except ValueError:
            return []
        self._raw = []
        return [value] if isinstance(value, dict) else []
