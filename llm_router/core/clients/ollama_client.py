"""Ollama のクライアント (``POST {base_url}/api/chat``、NDJSON)。

参考: Ollama の API 文書 ``docs/api.md`` ("Generate a chat completion"、"Generate Embeddings")、
ollama-python の ``_client.py`` (ストリームの各行に ``error`` があればエラー)。

- 会話の変換と NDJSON の行の解釈は :mod:`ollama_mapping`、ワイヤの形は :mod:`llm_router.core.schemas.ollama_schemas`。
- エラーは ``{"error": "<文言>"}`` (404 の "model ... not found" は :class:`ModelNotFoundError`)。
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_router.config.schema import ModelOptions, model_options_for
from llm_router.core.cancel import CancelToken
from llm_router.core.clients.base_client import BaseClient, EmbedBatchResult, PostJson
from llm_router.core.clients.ollama_mapping import OllamaStreamParser, to_ollama_messages
from llm_router.core.clients.openai_mapping import function_tool
from llm_router.core.schemas.common import (
    ChatRequest,
    EmbeddingRequest,
    ReasoningLevel,
    StreamChunk,
    ToolDefinition,
)
from llm_router.core.schemas.errors import ProviderError, ProviderStreamBrokenError
from llm_router.core.schemas.ollama_schemas import ChatOptions, EmbedRequest, EmbedResponse
from llm_router.core.schemas.ollama_schemas import ChatRequest as WireChatRequest
from llm_router.core.schemas.openai_schemas import FunctionTool
from llm_router.core.tool_schemas import schema_for_provider


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

    def build_body(self, request: ChatRequest, *, stream: bool) -> WireChatRequest:
        """共通のリクエストから ``/api/chat`` の本文を作る。"""
        options = model_options_for(self.config, request.model)
        body: WireChatRequest = {
            "model": request.model,
            "messages": to_ollama_messages(request.messages),
            "stream": stream,
            "options": self._options(request, options),
        }
        tools = self._tools(request)
        if tools:
            body["tools"] = tools
        think = self._think(request.reasoning, options)
        if think is not None:
            body["think"] = think
        body.update(request.extra)  # type: ignore[typeddict-item]
        return body

    def _options(self, request: ChatRequest, options: ModelOptions) -> ChatOptions:
        """``options``: ``num_predict`` (最大トークン数) と ``temperature``。"""
        out: ChatOptions = {"num_predict": self.max_tokens(request)}
        self.set_temperature(out, request, options)
        return out

    def _tools(self, request: ChatRequest) -> list[FunctionTool]:
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
    def _tool(tool: ToolDefinition) -> tuple[FunctionTool, list[str]]:
        """1 つのツール。サーバーはスキーマの多くのキーワードを黙って落とすので、変換器で簡単にしておく。"""
        schema, warnings = schema_for_provider("ollama", tool)
        return function_tool(tool, schema), warnings

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

    # ------------------------------------------------------------ チャット

    def chat_path(self, model: str) -> str:
        """チャットのパス ``/api/chat``。"""
        return "/api/chat"

    def read_stream(self, response: Any, model: str, cancel: CancelToken | None) -> Iterator[StreamChunk]:
        """NDJSON を ``done: true`` の行まで読む。その前に終われば破損。"""
        parser = OllamaStreamParser(model, self._stream_error)
        for line in self.iter_ndjson(response, cancel):
            yield from parser.feed(line)
            if parser.done:
                break
        if not parser.done:
            raise ProviderStreamBrokenError("the stream ended before done: true", provider=self.provider)
        yield from parser.finish()

    # ------------------------------------------------------------ 埋め込み

    def embed_batch(self, model: str, batch: list[str], request: EmbeddingRequest, send: PostJson) -> EmbedBatchResult:
        """1 バッチを ``/api/embed`` に送り、入力順のベクトルと入力トークン数を返す。"""
        body: EmbedRequest = {"model": model, "input": batch}
        if request.dimensions:
            body["dimensions"] = request.dimensions
        data: EmbedResponse = send("/api/embed", body)
        embeddings = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(embeddings, list):
            return [], 0
        return embeddings, int(data.get("prompt_eval_count") or 0)

    # ------------------------------------------------------------ 警告
