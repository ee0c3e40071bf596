"""OpenAI Chat Completions のクライアント (``POST {base_url}/chat/completions``、SSE)。

参考: OpenAI API リファレンス "Chat Completions" / "Streaming" / "Embeddings"、openai-python の
``_streaming.py`` (``data: [DONE]`` で終わる、``error`` キーを持つフレームはエラー) と ``_base_client.py``
(再試行の規則は :mod:`base_client` に実装済み)。

流れ: 共通の :class:`ChatRequest` → 本文 (:meth:`OpenAIClient.build_body`) → SSE のチャンクを
1 つずつ :class:`StreamAccumulator` に流して共通のチャンクにする。ツール呼び出しの差分は
``index`` で組み立てる (並列の呼び出しは交互に届くことがある)。非ストリーミングの応答も同じ

"""

from __future__ import annotations

import json
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
    TextPart,
    ToolChoice,
    ToolDefinition,
    Usage,
)
from llm_router.core.schemas.errors import (
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderStreamBrokenError,
    ProviderUnavailableError,
)
from llm_router.core.tool_schemas import convert_schema

# OpenAI の finish_reason → 正規化した終了理由 (function_call は旧 API の名前)
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

# ストリーム内の error フレームの type/code → 共有のエラー型 (無ければストリーム破損)
_STREAM_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "rate_limit_exceeded": ProviderRateLimitedError,
    "rate_limit_error": ProviderRateLimitedError,
    "server_error": ProviderUnavailableError,
    "overloaded_error": ProviderUnavailableError,
    "invalid_request_error": ProviderBadRequestError,
}

# 再試行しても直らない 429 (課金枠の使い切り)。openai-python の文書どおり再試行しない。
_NOT_RETRYABLE_429 = {"insufficient_quota"}


@dataclass
class _StreamState:
    """1 回のストリームの読み取り状態。"""

    finish_reason: FinishReason | None = None
    done: bool = False


class OpenAIClient(BaseClient):
    """OpenAI Chat Completions と Embeddings のクライアント。"""

    provider = "openai"

    # ------------------------------------------------------------ 認証とエラー

    def _auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer KEY`` (キーはヘッダでだけ送る)。"""
        return {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _classify(self, status: int, message: str, error_type: str | None, body: Any, headers: Any) -> ProviderError:
        """基底の対応表に加え、``insufficient_quota`` の 429 を再試行しないものにする。"""
        error = super()._classify(status, message, error_type, body, headers)
        detail = body.get("error") if isinstance(body, dict) else None
        code = detail.get("code") if isinstance(detail, dict) else None
        if status == 429 and ({error_type, code} & _NOT_RETRYABLE_429):
            error.retryable = False
            error.error_type = "insufficient_quota"
        return error

    def _stream_error(self, detail: Any) -> ProviderError:
        """ストリーム内の ``{"error": {...}}`` フレームを共有のエラー型にする (プロバイダの文言を残す)。"""
        if not isinstance(detail, dict):
            detail = {"message": str(detail)}
        kind = detail.get("type") or detail.get("code")
        message = self.redact(str(detail.get("message") or "An error occurred during streaming"))
        cls = _STREAM_ERROR_TYPES.get(str(kind), ProviderStreamBrokenError)
        return cls(message, provider=self.provider, error_type=str(kind) if kind else None)

    # ------------------------------------------------------------ リクエスト本文

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """共通のリクエストから Chat Completions の本文を作る。"""
        options = model_options_for(self.config, request.model)
        body: dict[str, Any] = {"model": request.model, "messages": self._messages(request.messages)}
        self._add_sampling(body, request, options)
        self._add_tools(body, request)
        self._add_reasoning(body, request, options)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(request.extra)
        return body

    def _add_sampling(self, body: dict[str, Any], request: ChatRequest, options: ModelOptions) -> None:
        """温度と最大トークン数。パラメータ名と温度の可否はモデルごとの設定に従う。"""
        # max_tokens は非推奨で、推論モデルは max_completion_tokens しか受け付けない (設定で切り替える)
        body[options.max_tokens_param or "max_tokens"] = self.max_tokens(request)
        temperature = self.temperature(request, options)
        if temperature is not None:
            body["temperature"] = temperature

    def _add_tools(self, body: dict[str, Any], request: ChatRequest) -> None:
        """ツール定義、``tool_choice``、``parallel_tool_calls`` (ツールがあるときだけ送る)。"""
        if not request.tools:
            return
        body["tools"] = [self._tool(tool)[0] for tool in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = self._tool_choice(request.tool_choice)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls

    def _schema_warnings(self, tool: ToolDefinition, model: str) -> list[str]:
        """スキーマ変換で落とした・書き換えたキーワード。"""
        return self._tool(tool)[1]

    def _tool(self, tool: ToolDefinition) -> tuple[dict[str, Any], list[str]]:
        """1 つのツールを ``{"type": "function", "function": {...}}`` にする。

        ``strict_tools`` の設定なら strict 向けに変換し、strict に合わせられないスキーマでは strict を外す
        (変換器がそう判断し、警告を返す)。
        """
        converted = convert_schema("openai_strict" if self.config.strict_tools else "openai", tool)
        function: dict[str, Any] = {"name": tool.name, "parameters": converted.schema}
        if tool.description:
            function["description"] = tool.description
        if converted.strict:
            function["strict"] = True
        return {"type": "function", "function": function}, converted.warnings

    @staticmethod
    def _tool_choice(choice: ToolChoice) -> Any:
        """``auto`` / ``none`` / ``required`` はそのまま、名指しは ``{"type": "function", ...}``。"""
        if choice.mode == "tool" and choice.name:
            return {"type": "function", "function": {"name": choice.name}}
        return choice.mode if choice.mode != "tool" else "required"

    def _add_reasoning(self, body: dict[str, Any], request: ChatRequest, options: ModelOptions) -> None:
        """推論モデルにだけ ``reasoning_effort`` を送る (値は ``reasoning_levels`` の設定)。"""
        if request.reasoning == "off" or not options.reasoning:
            return
        effort = self.config.reasoning_levels.get(request.reasoning)
        if effort is not None:
            body["reasoning_effort"] = effort

    # ------------------------------------------------------------ 会話の変換

    def _messages(self, messages: list[Message]) -> list[dict[str, Any]]:
        """共通のメッセージ列を OpenAI の ``messages`` にする (役割ごとに小さな関数)。"""
        converters = {
            "system": self._system_message,
            "user": self._user_message,
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
    def _system_message(message: Message) -> dict[str, Any]:
        """システムプロンプト。"""
        return {"role": "system", "content": message.text()}

    def _user_message(self, message: Message) -> dict[str, Any]:
        """ユーザー発話 (文字列、またはテキストと画像のパーツ)。"""
        if isinstance(message.content, str):
            return {"role": "user", "content": message.content}
        return {"role": "user", "content": [self._content_part(p) for p in message.content]}

    @staticmethod
    def _content_part(part: TextPart | ImagePart) -> dict[str, Any]:
        """コンテンツパーツ: ``text`` か ``image_url`` (base64 は data URL にする)。"""
        if isinstance(part, TextPart):
            return {"type": "text", "text": part.text}
        url = part.url or f"data:{part.mime_type or 'image/png'};base64,{part.data}"
        return {"type": "image_url", "image_url": {"url": url}}

    @staticmethod
    def _assistant_message(message: Message) -> dict[str, Any] | None:
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
        return {"role": "assistant", "content": text or None, "tool_calls": calls}

    @staticmethod
    def _tool_message(message: Message) -> dict[str, Any] | None:
        """ツールの結果: ``{"role": "tool", "tool_call_id", "content": 文字列}``。"""
        result = message.tool_result
        if result is None:
            return None
        text = result.as_text()
        # Chat Completions には is_error の欄が無いので、失敗は本文で伝える
        content = f"Error: {text}" if result.is_error else text
        return {"role": "tool", "tool_call_id": result.tool_call_id, "content": content}

    # ------------------------------------------------------------ チャット

    def chat_stream(
        self, request: ChatRequest, *, cancel: CancelToken | None = None, on_retry: RetryCallback | None = None
    ) -> Iterator[StreamChunk]:
        """ストリーミングのチャット。最後のチャンクは :class:`StreamEnd`。"""
        body = self.build_body(request, stream=True)
        response = self.request(
            "POST", "/chat/completions", body, stream=True, cancel=cancel, on_retry=on_retry, model=request.model
        )
        acc = StreamAccumulator(self.provider, request.model)
        state = _StreamState()
        for event in self.iter_sse(response, cancel):
            if event.data.startswith("[DONE]"):
                state.done = True
                break
            yield from self._on_chunk(acc, state, self._decode(event.data))
        if not state.done and state.finish_reason is None:
            raise ProviderStreamBrokenError("the stream ended before [DONE]", provider=self.provider)
        yield from acc.finish(state.finish_reason or "stop")

    def _decode(self, data: str) -> dict[str, Any]:
        """SSE の ``data`` を JSON にする。解析できなければストリーム破損。"""
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise ProviderStreamBrokenError(f"invalid JSON in the stream: {exc}", provider=self.provider) from exc
        if not isinstance(chunk, dict):
            raise ProviderStreamBrokenError("a stream frame is not a JSON object", provider=self.provider)
        return chunk

    def _on_chunk(self, acc: StreamAccumulator, state: _StreamState, chunk: dict[str, Any]) -> list[StreamChunk]:
        """1 つの ``chat.completion.chunk`` を共通のチャンクにする。"""
        if chunk.get("error"):
            raise self._stream_error(chunk["error"])
        out: list[StreamChunk] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            # 推論テキストは公式 API には無いが、互換サーバー (vLLM、DeepSeek など) が出す欄を読む
            out += acc.reasoning_delta(delta.get("reasoning_content") or delta.get("reasoning"))
            out += acc.text(delta.get("content"))
            out += acc.text(delta.get("refusal"))
            out += self._on_tool_calls(acc, delta.get("tool_calls"))
            out += self._on_finish(acc, state, choice.get("finish_reason"))
        if chunk.get("usage"):
            out += acc.set_usage(self._usage(chunk["usage"]))
        return out

    @staticmethod
    def _on_tool_calls(acc: StreamAccumulator, deltas: list[dict[str, Any]] | None) -> list[StreamChunk]:
        """ツール呼び出しの差分を ``index`` ごとに組み立てる (id ではなく index で: API リファレンス)。"""
        out: list[StreamChunk] = []
        for position, delta in enumerate(deltas or []):
            index = delta.get("index", position)
            function = delta.get("function") or {}
            if function.get("name") or delta.get("id"):
                out += acc.reasoning_end()
                out += acc.tool_start(index, delta.get("id"), function.get("name") or "")
            out += acc.tool_args(index, function.get("arguments") or "")
        return out

    def _on_finish(self, acc: StreamAccumulator, state: _StreamState, reason: str | None) -> list[StreamChunk]:
        """``finish_reason`` が来たら開いている呼び出しを閉じる (使用量のチャンクはこの後に来る)。"""
        if not reason:
            return []
        state.finish_reason = self._finish_reason(reason)
        return acc.reasoning_end() + acc.end_open_tools()

    @staticmethod
    def _finish_reason(reason: str | None) -> FinishReason:
        """OpenAI の終了理由を正規化する (未知のものは stop)。"""
        return _FINISH_REASONS.get(reason or "stop", "stop")

    @staticmethod
    def _usage(usage: dict[str, Any]) -> Usage:
        """使用量を正規化する (``prompt_tokens`` / ``completion_tokens`` / ``completion_tokens_details.reasoning_tokens``)。"""
        details = usage.get("completion_tokens_details") or {}
        return Usage(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            reasoning_tokens=int(details.get("reasoning_tokens") or 0),
        )

    # ------------------------------------------------------------ 埋め込み

    def embed(
        self, request: EmbeddingRequest, *, cancel: CancelToken | None = None, on_retry: RetryCallback | None = None
    ) -> EmbeddingResponse:
        """``/embeddings`` をバッチに分けて呼び、入力順の float32 行列を返す。

        ``encoding_format: "float"`` を明示する (公式 SDK の既定は base64)。各バッチの ``data`` は
        ``index`` で並べ直す。
        """

        def fetch(model: str, batch: list[str]) -> tuple[list[list[float]], int]:
            """1 バッチを送り、``index`` 順のベクトルと入力トークン数を返す。"""
            body: dict[str, Any] = {"model": model, "input": batch, "encoding_format": "float"}
            if request.dimensions:
                body["dimensions"] = request.dimensions
            data = self.post_json("/embeddings", body, cancel=cancel, on_retry=on_retry, model=model)
            items = sorted(data.get("data") or [], key=lambda item: item.get("index", 0))
            return [item["embedding"] for item in items], int((data.get("usage") or {}).get("prompt_tokens") or 0)

        return self.embed_in_batches(request, fetch)

    # ------------------------------------------------------------ 警告

    def reasoning_warning(self, model: str, level: ReasoningLevel) -> str | None:
        """共通の警告に加え、推論レベルが設定に無いときも警告する。"""
        warning = super().reasoning_warning(model, level)
        if warning is not None or level == "off":
            return warning
        if self.config.reasoning_levels.get(level) is None:
            return f"reasoning level '{level}' is not configured for openai (openai に推論レベル '{level}' の設定がありません)"
        return None
