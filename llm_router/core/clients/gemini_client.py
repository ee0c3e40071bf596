"""Gemini API (REST、requests) のクライアント: ``:streamGenerateContent?alt=sse``、``:generateContent``、
``:batchEmbedContents``。

キーは ``x-goog-api-key`` ヘッダでだけ送る (URL の ``?key=`` はログに残るので使わない)。
このモジュールは要求本文の組み立て、HTTP の呼び出し、エラーの解釈を持つ。会話の対応付けとストリームの解釈は
:mod:`gemini_mapping` にある。参考: https://ai.google.dev/api/generate-content 、
https://ai.google.dev/gemini-api/docs/troubleshooting (エラーコード)、https://ai.google.dev/api/embeddings 。
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_router.config.schema import ModelOptions, model_options_for
from llm_router.core.cancel import CancelToken
from llm_router.core.clients.base_client import (
    BaseClient,
    EmbedBatchResult,
    PostJson,
    error_for_status,
    parse_retry_after,
)
from llm_router.core.clients.gemini_mapping import (
    GeminiStreamDecoder,
    GeminiStreamParser,
    to_gemini_contents,
    tool_config_to_wire,
)
from llm_router.core.schemas.common import (
    ChatRequest,
    EmbeddingRequest,
    StreamChunk,
    ToolDefinition,
)
from llm_router.core.schemas.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderStreamBrokenError,
)
from llm_router.core.schemas.gemini_schemas import (
    BatchEmbedContentsRequest,
    BatchEmbedContentsResponse,
    EmbedContentRequest,
    FunctionDeclaration,
    GenerateContentRequest,
    GenerationConfig,
    ThinkingConfig,
)
from llm_router.core.tool_schemas import schema_for_provider

# 他のモデルの履歴の関数呼び出しに付けるダミーの署名 (Gemini API "Thought Signatures" の文書が示す値)
_FOREIGN_SIGNATURE = "skip_thought_signature_validator"

# EmbeddingRequest.task → taskType (https://ai.google.dev/api/embeddings#tasktype)
_TASK_TYPES = {"document": "RETRIEVAL_DOCUMENT", "query": "RETRIEVAL_QUERY"}


def _retry_delay(details: list[Any]) -> float | None:
    """``google.rpc.RetryInfo`` の ``retryDelay`` ("34s" や "1.5s") を秒にする。"""
    for detail in details:
        if not isinstance(detail, dict) or "retryDelay" not in detail:
            continue
        value = detail["retryDelay"]
        try:
            if isinstance(value, dict):
                return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
            return float(str(value).rstrip("s"))
        except ValueError:
            return None
    return None


class GeminiClient(BaseClient):
    """Google Gemini のクライアント。"""

    provider = "gemini"

    # ------------------------------------------------------------ BaseClient の上書き

    def _auth_headers(self) -> dict[str, str]:
        """キーは ``x-goog-api-key`` ヘッダで送る。"""
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    def _classify(self, status: int, message: str, error_type: str | None, body: Any, headers: Any) -> ProviderError:
        """Gemini のエラー本文の規則: ``API_KEY_INVALID`` の 400 は認証エラー、``RetryInfo`` は待ち時間。"""
        error = body.get("error") if isinstance(body, dict) else None
        details = (error.get("details") if isinstance(error, dict) else None) or []
        if any(isinstance(d, dict) and d.get("reason") == "API_KEY_INVALID" for d in details):
            return ProviderAuthError(message, provider=self.provider, status=status, error_type="API_KEY_INVALID")
        retry_after = parse_retry_after(headers) if headers is not None else None
        if retry_after is None:
            retry_after = _retry_delay(details)
        return error_for_status(
            status, message, provider=self.provider, retry_after_s=retry_after, error_type=error_type
        )

    def _payload_error(self, payload: dict[str, Any]) -> ProviderError:
        """ストリームの途中の ``{"error": {...}}`` チャンクを共通のエラーにする。"""
        error = payload.get("error")
        if not isinstance(error, dict):
            return ProviderStreamBrokenError(self.redact(str(error)), provider=self.provider)
        message = self.redact(str(error.get("message") or error.get("status") or "error"))
        try:
            status = int(error.get("code") or 500)
        except (TypeError, ValueError):
            status = 500
        return self._classify(status, message, error.get("status"), payload, None)

    # ------------------------------------------------------------ 要求本文

    def _path(self, model: str, method: str) -> str:
        """API の相対パス ``/{api_version}/models/{model}:{method}``。"""
        version = self.config.api_version
        return (f"/{version}" if version else "") + f"/models/{model}:{method}"

    def _schema_warnings(self, tool: ToolDefinition, model: str) -> list[str]:
        """Gemini へ送るときに落とす・書き換えるスキーマのキーワード (``schema_mode`` の形で)。"""
        return schema_for_provider(self._schema_profile()[0], tool)[1]

    def _schema_profile(self) -> tuple[str, str]:
        """設定 ``schema_mode`` による (スキーマ変換のプロファイル, 宣言のフィールド名)。"""
        if self.config.schema_mode == "openapi":
            return "gemini_openapi", "parameters"
        return "gemini_json_schema", "parametersJsonSchema"

    def _declaration(self, tool: ToolDefinition) -> FunctionDeclaration:
        """ツール定義を ``functionDeclarations`` の 1 要素にする (引数の無い関数はスキーマを省く)。"""
        profile, key = self._schema_profile()
        schema, _ = schema_for_provider(profile, tool)
        declaration: FunctionDeclaration = {"name": tool.name}
        if tool.description:
            declaration["description"] = tool.description
        if schema.get("properties"):
            declaration[key] = schema  # type: ignore[literal-required]
        return declaration

    def build_body(self, request: ChatRequest, *, stream: bool = True) -> GenerateContentRequest:
        """共通のリクエストから ``GenerateContentRequest`` を作る (モデル名は URL に入る。ストリームかどうかも URL)。"""
        options = model_options_for(self.config, request.model)
        # 段階型の思考 (reasoning_style: level) のモデル = Gemini 3 系は、関数呼び出しの署名を必ず検証する
        foreign = _FOREIGN_SIGNATURE if options.reasoning_style == "level" else None
        system, contents = to_gemini_contents(request.messages, foreign)
        body: GenerateContentRequest = {"contents": contents}
        if system:
            body["systemInstruction"] = system
        if request.tools:
            body["tools"] = [{"functionDeclarations": [self._declaration(t) for t in request.tools]}]
            tool_config = tool_config_to_wire(request.tool_choice)
            if tool_config:
                body["toolConfig"] = tool_config
        body["generationConfig"] = self._generation_config(request, options)
        body.update(request.extra)  # type: ignore[typeddict-item]
        return body

    def _generation_config(self, request: ChatRequest, options: ModelOptions) -> GenerationConfig:
        """``generationConfig``: temperature、maxOutputTokens、思考の設定。"""
        config: GenerationConfig = {"maxOutputTokens": self.max_tokens(request)}
        self.set_temperature(config, request, options)
        if request.reasoning != "off" and options.reasoning:
            config["thinkingConfig"] = self._thinking_config(request.reasoning, options)
        return config

    def _thinking_config(self, level: str, options: ModelOptions) -> ThinkingConfig:
        """思考の設定。3 系 (``reasoning_style: level``) は ``thinkingLevel``、それ以外は設定の予算。

        どちらも ``includeThoughts`` で思考の要約を受け取る (https://ai.google.dev/gemini-api/docs/thinking)。
        """
        if options.reasoning_style == "level":
            return {"thinkingLevel": level, "includeThoughts": True}
        return {"thinkingBudget": int(self.config.reasoning_levels[level]), "includeThoughts": True}

    # ------------------------------------------------------------ チャット

    def chat_path(self, model: str) -> str:
        """``:streamGenerateContent?alt=sse`` のパス。"""
        return self._path(model, "streamGenerateContent") + "?alt=sse"

    def read_stream(self, response: Any, model: str, cancel: CancelToken | None) -> Iterator[StreamChunk]:
        """``data:`` 行と生の JSON のチャンクを読む。最後は組み立て済みのメッセージを持つ ``StreamEnd``。"""
        parser = GeminiStreamParser(model, self._payload_error)
        decoder = GeminiStreamDecoder()
        for data in self.iter_bytes(response, cancel):
            for chunk in decoder.feed(data):
                yield from parser.feed(chunk)
        for chunk in decoder.flush():
            yield from parser.feed(chunk)
        yield from parser.finish()

    # ------------------------------------------------------------ 埋め込み

    def embed_batch(self, model: str, batch: list[str], request: EmbeddingRequest, send: PostJson) -> EmbedBatchResult:
        """1 バッチを ``:batchEmbedContents`` で送り、入力順のベクトルを返す (使用量は返らない)。"""
        body: BatchEmbedContentsRequest = {"requests": [self._embed_request(model, text, request) for text in batch]}
        data: BatchEmbedContentsResponse = send(self._path(model, "batchEmbedContents"), body)
        return [e.get("values") or [] for e in (data or {}).get("embeddings") or []], 0

    @staticmethod
    def _embed_request(model: str, text: str, request: EmbeddingRequest) -> EmbedContentRequest:
        """``requests`` の 1 要素 (``model`` を毎回 ``models/M`` で書く)。"""
        item: EmbedContentRequest = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if request.task in _TASK_TYPES:
            item["taskType"] = _TASK_TYPES[request.task]
        if request.dimensions:
            item["outputDimensionality"] = request.dimensions
        return item

    # ------------------------------------------------------------ 警告
