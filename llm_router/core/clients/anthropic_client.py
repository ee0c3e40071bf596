"""Anthropic Messages API のクライアント (``POST {base_url}/v1/messages``、SSE の ``event:`` 名つきストリーム)。

このモジュールは要求本文の組み立てと HTTP の呼び出しだけを持つ。会話の対応付けとストリームの解釈は
:mod:`anthropic_mapping` にある。参考: Anthropic API "Messages"、"Extended thinking"、"Errors"。
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_router.config.schema import ModelOptions, model_options_for
from llm_router.core.cancel import CancelToken
from llm_router.core.clients.anthropic_mapping import (
    AnthropicStreamParser,
    to_anthropic_messages,
    tool_choice_to_wire,
)
from llm_router.core.clients.base_client import BaseClient, RetryCallback
from llm_router.core.schemas.anthropic_schemas import MessagesRequest, WireTool
from llm_router.core.schemas.common import (
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    StreamChunk,
    ToolDefinition,
)
from llm_router.core.schemas.errors import ProviderBadRequestError
from llm_router.core.tool_schemas import schema_for_provider

_MESSAGES_PATH = "/v1/messages"


class AnthropicClient(BaseClient):
    """Anthropic (Claude) のクライアント。"""

    provider = "anthropic"

    # ------------------------------------------------------------ BaseClient の上書き

    def _auth_headers(self) -> dict[str, str]:
        """``x-api-key`` と、設定から読む ``anthropic-version``。"""
        headers = {"anthropic-version": self.config.api_version or ""}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    # ------------------------------------------------------------ 要求本文

    def build_body(self, request: ChatRequest, *, stream: bool) -> MessagesRequest:
        """共通のリクエストから Messages API の本文を作る。"""
        options = model_options_for(self.config, request.model)
        system, messages = to_anthropic_messages(request.messages)
        body: MessagesRequest = {"model": request.model, "max_tokens": self.max_tokens(request), "messages": messages}
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [self._tool(tool) for tool in request.tools]
        choice = tool_choice_to_wire(request.tool_choice, request.parallel_tool_calls)
        if choice is not None and request.tools:
            body["tool_choice"] = choice
        thinking = self._thinking_enabled(request, options)
        if thinking:
            self._add_thinking(body, request, options)
        self.set_temperature(body, request, options, thinking=thinking)
        if stream:
            body["stream"] = True
        body.update(request.extra)  # type: ignore[typeddict-item]
        return body

    @staticmethod
    def _tool(tool: ToolDefinition) -> WireTool:
        """ツール定義を ``{"name", "description", "input_schema"}`` にする。"""
        schema, _ = schema_for_provider("anthropic", tool)
        wire: WireTool = {"name": tool.name, "input_schema": schema}
        if tool.description:
            wire["description"] = tool.description
        return wire

    @staticmethod
    def _thinking_enabled(request: ChatRequest, options: ModelOptions) -> bool:
        """この要求で思考を有効にするか。

        ツールの使用を強制する ``tool_choice`` (any / tool) は思考と併用できない
        (Anthropic "Extended thinking" の "Tool use" の節: auto と none だけ)。その場合は強制を優先する。
        """
        if request.reasoning == "off" or not options.reasoning:
            return False
        if options.reasoning_style != "adaptive" and _tool_loop_began_without_thinking(request.messages):
            # ツールのループは 1 つのアシスタントターン。思考の設定はターンの途中で変えない
            # (Anthropic "Thinking in tool and multi-turn workflows": keep one thinking configuration per
            # assistant turn)。最初の呼び出しが強制の tool_choice で思考なしだったら、ループの間は思考なしのまま。
            return False
        return not (request.tools and request.tool_choice and request.tool_choice.mode in ("required", "tool"))

    def _add_thinking(self, body: MessagesRequest, request: ChatRequest, options: ModelOptions) -> None:
        """``thinking`` を本文に足す: モデルの設定により固定予算 (enabled) か adaptive。"""
        if options.reasoning_style == "adaptive":
            # adaptive はモデルが量を決め、深さは output_config.effort で伝える (Anthropic "Adaptive thinking")
            body["thinking"] = {"type": "adaptive"}
            body["output_config"] = {"effort": request.reasoning}
            return
        budget = int(self.config.reasoning_levels[request.reasoning])
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if body["max_tokens"] <= budget:
            # budget_tokens は max_tokens 未満でなければならない: 回答の分を残して max_tokens を広げる
            body["max_tokens"] = budget + body["max_tokens"]

    # ------------------------------------------------------------ チャット

    def chat_path(self, model: str) -> str:
        """Messages API のパス。"""
        return _MESSAGES_PATH

    def read_stream(self, response: Any, model: str, cancel: CancelToken | None) -> Iterator[StreamChunk]:
        """``event:`` 名つきの SSE を読む。最後は組み立て済みのメッセージを持つ ``StreamEnd``。"""
        parser = AnthropicStreamParser(model, self.redact)
        for event in self.iter_sse(response, cancel):
            yield from parser.feed(event.event, event.data)
        yield from parser.finish()

    def embed(
        self, request: EmbeddingRequest, *, cancel: CancelToken | None = None, on_retry: RetryCallback | None = None
    ) -> EmbeddingResponse:
        """Anthropic には埋め込み API が無い: 分かりやすいエラーを投げる。"""
        raise ProviderBadRequestError(
            "Anthropic has no embeddings API: configure rag.embedding_model with another provider "
            "(Anthropic には埋め込み API がありません。rag.embedding_model に別のプロバイダを設定してください)",
            provider=self.provider,
        )

    def _schema_warnings(self, tool: ToolDefinition, model: str) -> list[str]:
        """Anthropic へ送るときに落とす・書き換えるスキーマのキーワード。"""
        return schema_for_provider("anthropic", tool)[1]


def _tool_loop_began_without_thinking(messages: list[Message]) -> bool:
    """いまのターン (最後のユーザー発話の後) の最初のアシスタント発話が、思考なしでツールを呼んでいたら真。"""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    first = next((m for m in messages[last_user + 1 :] if m.role == "assistant"), None)
    return first is not None and bool(first.tool_calls) and not first.reasoning
