"""Ollama のクライアント (``POST {base_url}/api/chat``、NDJSON)。

参考: Ollama の API 文書 ``docs/api.md`` ("Generate a chat completion"、"Generate Embeddings")、
ollama-python の ``_client.py`` (ストリームの各行に ``error`` があればエラー)。

- ストリームは 1 行 1 JSON。``message.content`` と ``message.thinking`` が断片で届き、最後の行が
  ``done: true`` で ``done_reason``・``prompt_eval_count``・``eval_count`` を持つ。
- ツール呼び出しは断片ではなく丸ごと届く (引数は JSON 文字列ではなくオブジェクト)。共通の
  start / delta / end にそろえるため :meth:`StreamAccumulator.tool_whole` を通す。v0.12.10 より前の
  サーバーは ``id`` を出さないので、そのときは ID を作る。
- ツールの結果は ``{"role": "tool", "content", "tool_name", "tool_call_id"}`` で返す。
- エラーは ``{"error": "<文言>"}`` (404 の "model ... not found" は :class:`ModelNotFoundError`)。
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from llm_router.config.schema import ModelOptions, model_options_for
from llm_router.core.cancel import CancelToken
from llm_router.core.clients.accumulator import StreamAccumulator
from llm_router.core.clients.base_client import BaseClient, RetryCallback
from llm_router.core.schemas.common import (
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishReason,
    ImagePart,
    Message,
    ReasoningLevel,
    StreamChunk,
    ToolDefinition,
    Usage,
)
from llm_router.core.schemas.errors import ProviderError, ProviderStreamBrokenError
from llm_router.core.tool_schemas import schema_for_provider

# Ollama の done_reason → 正規化した終了理由 (load / unload はモデルの読み込みだけの応答)
_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}


@dataclass
class _StreamState:
    """1 回のストリームの読み取り状態。"""

    done: bool = False
    finish_reason: FinishReason = "stop"


class OllamaClient(BaseClient):
    """Ollama の ``/api/chat`` と ``/api/embed`` のクライアント (認証なし)。"""

    provider = "ollama"

    def _auth_headers(self) -> dict[str, str]:
        """Ollama は認証しない。リバースプロキシ越しでキーがあれば Bearer で送る。"""
        return {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _stream_error(self, detail: Any) -> ProviderError:
        """ストリーム内の ``{"error": ...}`` 行を共有のエラー型にする (文言はそのまま)。"""
        message = detail.get("message") if isinstance(detail, dict) else detail
        return ProviderStreamBrokenError(self.redact(str(message)), provider=self.provider)

    # ------------------------------------------------------------ リクエスト本文

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """共通のリクエストから ``/api/chat`` の本文を作る。"""
        options = model_options_for(self.config, request.model)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": self._messages(request.messages),
            "stream": stream,
            "options": self._options(request, options),
        }
        tools = self._tools(request)
        if tools:
            body["tools"] = tools
        think = self._think(request.reasoning, options)
        if think is not None:
            body["think"] = think
        body.update(request.extra)
        return body

    def _options(self, request: ChatRequest, options: ModelOptions) -> dict[str, Any]:
        """``options``: ``num_predict`` (最大トークン数) と ``temperature``。"""
        out: dict[str, Any] = {"num_predict": self.max_tokens(request)}
        temperature = self.temperature(request, options)
        if temperature is not None:
            out["temperature"] = temperature
        return out

    def _tools(self, request: ChatRequest) -> list[dict[str, Any]]:
        """ツール定義 (OpenAI と同じ function 形式)。

        Ollama には ``tool_choice`` が無い: ``none`` ならツールを送らず、名指しならそのツールだけを送る。
        """
        choice = request.tool_choice
        if choice is not None and choice.mode == "none":
            return []
        tools = request.tools
        if choice is not None and choice.mode == "tool" and choice.name:
            tools = [t for t in tools if t.name == choice.name] or tools
        return [self._tool(tool)[0] for tool in tools]

    def _schema_warnings(self, tool: ToolDefinition, model: str) -> list[str]:
        """スキーマ変換で落とした・書き換えたキーワード。"""
        return self._tool(tool)[1]

    @staticmethod
    def _tool(tool: ToolDefinition) -> tuple[dict[str, Any], list[str]]:
        """1 つのツール。サーバーはスキーマの多くのキーワードを黙って落とすので、変換器で簡単にしておく。"""
        schema, warnings = schema_for_provider("ollama", tool)
        function: dict[str, Any] = {"name": tool.name, "parameters": schema}
        if tool.description:
            function["description"] = tool.description
        return {"type": "function", "function": function}, warnings

    def _think(self, level: ReasoningLevel, options: ModelOptions) -> Any:
        """``think`` の値。推論に対応するモデルだけに送る (対応しないモデルは 400 になる)。

        gpt-oss のように ``"low" | "medium" | "high"`` を取るモデルは ``reasoning_style: level`` の設定で
        レベル名をそのまま送り、ほかは ``reasoning_levels`` の値 (既定 ``true``) を送る。off なら ``false``。
        """
        if not options.reasoning:
            return None
        if level == "off":
            return False
        if options.reasoning_style == "level":
            return level
        return self.config.reasoning_levels.get(level, True)

    # ------------------------------------------------------------ 会話の変換

    def _messages(self, messages: list[Message]) -> list[dict[str, Any]]:
        """共通のメッセージ列を Ollama の ``messages`` にする (役割ごとに小さな関数)。"""
        converters = {
            "system": self._plain_message,
            "user": self._plain_message,
            "assistant": self._assistant_message,
            "tool": self._tool_message,
        }
        out: list[dict[str, Any]] = []
        for message in messages:
            converted = converters[message.role](message)
            if converted is not None:
                out.append(converted)
        return out

    @staticmethod
    def _plain_message(message: Message) -> dict[str, Any]:
        """システム・ユーザーの発話。画像は base64 の ``images`` に入れる (Ollama は URL を取らない)。"""
        out: dict[str, Any] = {"role": message.role, "content": message.text()}
        if not isinstance(message.content, str):
            images = [p.data for p in message.content if isinstance(p, ImagePart) and p.data]
            if images:
                out["images"] = images
        return out

    @staticmethod
    def _assistant_message(message: Message) -> dict[str, Any] | None:
        """アシスタントの発話。ツール呼び出しの引数はオブジェクトのまま送る。推論テキストは ``thinking`` に。

        キャンセルで中断された発話は、そのテキストだけを送る。
        """
        text = message.text()
        calls = [] if message.interrupted else message.tool_calls
        thinking = "".join(part.text for part in message.reasoning)
        if not text and not calls:
            return None
        out: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking and not message.interrupted:
            out["thinking"] = thinking
        if calls:
            out["tool_calls"] = [
                {"id": call.id, "function": {"name": call.name, "arguments": call.arguments}} for call in calls
            ]
        return out

    @staticmethod
    def _tool_message(message: Message) -> dict[str, Any] | None:
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

    # ------------------------------------------------------------ チャット

    def chat_stream(
        self, request: ChatRequest, *, cancel: CancelToken | None = None, on_retry: RetryCallback | None = None
    ) -> Iterator[StreamChunk]:
        """ストリーミングのチャット。最後のチャンクは :class:`StreamEnd`。"""
        body = self.build_body(request, stream=True)
        response = self.request(
            "POST", "/api/chat", body, stream=True, cancel=cancel, on_retry=on_retry, model=request.model
        )
        acc = StreamAccumulator(self.provider, request.model)
        state = _StreamState()
        for line in self.iter_ndjson(response, cancel):
            yield from self._on_line(acc, state, line)
            if state.done:
                break
        if not state.done:
            raise ProviderStreamBrokenError("the stream ended before done: true", provider=self.provider)
        yield from acc.finish(state.finish_reason)

    def _on_line(self, acc: StreamAccumulator, state: _StreamState, line: Any) -> list[StreamChunk]:
        """NDJSON の 1 行を共通のチャンクにする。"""
        if not isinstance(line, dict):
            raise ProviderStreamBrokenError("a stream line is not a JSON object", provider=self.provider)
        if line.get("error"):
            raise self._stream_error(line["error"])
        message = line.get("message") or {}
        out = acc.reasoning_delta(message.get("thinking"))
        out += acc.text(message.get("content"))
        out += self._on_tool_calls(acc, message.get("tool_calls"))
        if line.get("done"):
            out += self._on_done(acc, state, line)
        return out

    @staticmethod
    def _on_tool_calls(acc: StreamAccumulator, calls: list[dict[str, Any]] | None) -> list[StreamChunk]:
        """丸ごと届くツール呼び出しを start / delta / end にする (ID が無ければ作る)。"""
        out: list[StreamChunk] = []
        for call in calls or []:
            function = call.get("function") or {}
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                # 古い互換サーバーは文字列で返すことがある: そのまま組み立て器に渡して解析させる
                arguments = arguments or "{}"
            out += acc.reasoning_end()
            out += acc.tool_whole(call.get("id"), function.get("name") or "", arguments or {})
        return out

    @staticmethod
    def _on_done(acc: StreamAccumulator, state: _StreamState, line: dict[str, Any]) -> list[StreamChunk]:
        """最後の行: 終了理由と使用量 (``prompt_eval_count`` / ``eval_count``)。"""
        state.done = True
        state.finish_reason = _FINISH_REASONS.get(line.get("done_reason") or "stop", "stop")
        usage = Usage(int(line.get("prompt_eval_count") or 0), int(line.get("eval_count") or 0))
        return acc.reasoning_end() + acc.set_usage(usage)

    # ------------------------------------------------------------ 埋め込み

    def embed(
        self, request: EmbeddingRequest, *, cancel: CancelToken | None = None, on_retry: RetryCallback | None = None
    ) -> EmbeddingResponse:
        """``/api/embed`` をバッチに分けて呼び、入力順の float32 行列を返す。"""

        def fetch(model: str, batch: list[str]) -> tuple[list[list[float]], int]:
            """1 バッチを送り、入力順のベクトルと入力トークン数を返す。"""
            body: dict[str, Any] = {"model": model, "input": batch}
            if request.dimensions:
                body["dimensions"] = request.dimensions
            data = self.post_json("/api/embed", body, cancel=cancel, on_retry=on_retry, model=model)
            embeddings = data.get("embeddings") if isinstance(data, dict) else None
            if not isinstance(embeddings, list):
                return [], 0
            return embeddings, int(data.get("prompt_eval_count") or 0)

        return self.embed_in_batches(request, fetch)

    # ------------------------------------------------------------ 警告
