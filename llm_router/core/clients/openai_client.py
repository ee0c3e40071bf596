"""OpenAI Chat Completions のクライアント (``POST {base_url}/chat/completions``、SSE)。

参考: OpenAI API リファレンス "Chat Completions" / "Streaming" / "Embeddings"、openai-python の
``_streaming.py`` (``data: [DONE]`` で終わる、``error`` キーを持つフレームはエラー) と ``_base_client.py``
(再試行の規則は :mod:`base_client` に実装済み)。

流れ: 共通の :class:`ChatRequest` → 本文 (:meth:`OpenAIClient.build_body`、会話の変換は :mod:`openai_mapping`)
→ SSE のチャンクを 1 つずつ :class:`OpenAIStreamParser` に流して共通のチャンクにする。ワイヤの形は
:mod:`llm_router.core.schemas.openai_schemas` の TypedDict。
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from llm_router.config.schema import ModelOptions, model_options_for
from llm_router.core.cancel import CancelToken
from llm_router.core.clients.base_client import BaseClient, EmbedBatchResult, PostJson
from llm_router.core.clients.openai_mapping import (
    OpenAIStreamParser,
    function_tool,
    to_openai_messages,
    tool_choice_to_wire,
)
from llm_router.core.schemas.common import (
    ChatRequest,
    EmbeddingRequest,
    ReasoningLevel,
    StreamChunk,
    ToolDefinition,
)
from llm_router.core.schemas.errors import (
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderStreamBrokenError,
    ProviderUnavailableError,
)
from llm_router.core.schemas.openai_schemas import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
    FunctionTool,
)
from llm_router.core.tool_schemas import convert_schema

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

    def build_body(self, request: ChatRequest, *, stream: bool) -> ChatCompletionRequest:
        """共通のリクエストから Chat Completions の本文を作る。"""
        options = model_options_for(self.config, request.model)
        body: ChatCompletionRequest = {"model": request.model, "messages": to_openai_messages(request.messages)}
        self._add_sampling(body, request, options)
        self._add_tools(body, request)
        self._add_reasoning(body, request, options)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(request.extra)  # type: ignore[typeddict-item]
        return body

    def _add_sampling(self, body: ChatCompletionRequest, request: ChatRequest, options: ModelOptions) -> None:
        """温度と最大トークン数。パラメータ名と温度の可否はモデルごとの設定に従う。"""
        # max_tokens は非推奨で、推論モデルは max_completion_tokens しか受け付けない (設定で切り替える)
        body[options.max_tokens_param or "max_tokens"] = self.max_tokens(request)  # type: ignore[literal-required]
        self.set_temperature(body, request, options)

    def _add_tools(self, body: ChatCompletionRequest, request: ChatRequest) -> None:
        """ツール定義、``tool_choice``、``parallel_tool_calls`` (ツールがあるときだけ送る)。"""
        if not request.tools:
            return
        body["tools"] = [self._tool(tool)[0] for tool in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = tool_choice_to_wire(request.tool_choice)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls

    def _schema_warnings(self, tool: ToolDefinition, model: str) -> list[str]:
        """スキーマ変換で落とした・書き換えたキーワード。"""
        return self._tool(tool)[1]

    def _tool(self, tool: ToolDefinition) -> tuple[FunctionTool, list[str]]:
        """1 つのツールを ``{"type": "function", "function": {...}}`` にする。

        strict にするかは、ツール自身の ``strict`` (正規形に残した元の指定) があればそれ、無ければ設定
        ``strict_tools``。strict に合わせられないスキーマでは strict を外す (変換器がそう判断し、警告を返す)。
        """
        strict = self.config.strict_tools if tool.strict is None else tool.strict
        converted = convert_schema("openai_strict" if strict else "openai", tool)
        return function_tool(tool, converted.schema, strict=bool(converted.strict)), converted.warnings

    def _add_reasoning(self, body: ChatCompletionRequest, request: ChatRequest, options: ModelOptions) -> None:
        """推論モデルにだけ ``reasoning_effort`` を送る (値は ``reasoning_levels`` の設定)。"""
        if request.reasoning == "off" or not options.reasoning:
            return
        effort = self.config.reasoning_levels.get(request.reasoning)
        if effort is not None:
            body["reasoning_effort"] = effort

    # ------------------------------------------------------------ チャット

    def chat_path(self, model: str) -> str:
        """チャットのパス ``/chat/completions``。"""
        return "/chat/completions"

    def read_stream(self, response: Any, model: str, cancel: CancelToken | None) -> Iterator[StreamChunk]:
        """SSE を ``data: [DONE]`` まで読む。[DONE] も終了理由も無く終われば破損。"""
        parser = OpenAIStreamParser(model, self._stream_error)
        done = False
        for event in self.iter_sse(response, cancel):
            if event.data.startswith("[DONE]"):
                done = True
                break
            yield from parser.feed(self._decode(event.data))
        if not done and parser.finish_reason is None:
            raise ProviderStreamBrokenError("the stream ended before [DONE]", provider=self.provider)
        yield from parser.finish()

    def _decode(self, data: str) -> ChatCompletionChunk:
        """SSE の ``data`` を JSON にする。解析できなければストリーム破損。"""
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise ProviderStreamBrokenError(f"invalid JSON in the stream: {exc}", provider=self.provider) from exc
        if not isinstance(chunk, dict):
            raise ProviderStreamBrokenError("a stream frame is not a JSON object", provider=self.provider)
        return chunk  # type: ignore[return-value]

    # ------------------------------------------------------------ 埋め込み

    def embed_batch(self, model: str, batch: list[str], request: EmbeddingRequest, send: PostJson) -> EmbedBatchResult:
        """1 バッチを ``/embeddings`` に送り、``index`` 順のベクトルと入力トークン数を返す。

        ``encoding_format: "float"`` を明示する (公式 SDK の既定は base64)。
        """
        body: EmbeddingsRequest = {"model": model, "input": batch, "encoding_format": "float"}
        if request.dimensions:
            body["dimensions"] = request.dimensions
        data: EmbeddingsResponse = send("/embeddings", body)
        items = sorted(data.get("data") or [], key=lambda item: item.get("index", 0))
        return [item["embedding"] for item in items], int((data.get("usage") or {}).get("prompt_tokens") or 0)

    # ------------------------------------------------------------ 警告

    def reasoning_warning(self, model: str, level: ReasoningLevel) -> str | None:
        """共通の警告に加え、推論レベルが設定に無いときも警告する。"""
        warning = super().reasoning_warning(model, level)
        if warning is not None or level == "off":
            return warning
        if self.config.reasoning_levels.get(level) is None:
            return f"reasoning level '{level}' is not configured for openai (openai に推論レベル '{level}' の設定がありません)"
        return None
