"""MCP クライアントの例外。文はそのままツールのエラー結果になるので、秘密情報やトレースを含めない。"""

from __future__ import annotations

from llm_router.core.schemas.errors import LLMRouterError


class McpError(LLMRouterError, code="mcp_error"):
    """MCP サーバーとのやりとりの失敗 (JSON-RPC のエラー応答、形の誤った応答)。"""


class McpUnavailable(McpError, code="mcp_unavailable"):
    """MCP サーバーに届かない・起動できない・途中で落ちた・時間切れ。次に使うときに起動し直す。"""


class McpToolError(McpError, code="mcp_tool_error"):
    """ツールが ``isError: true`` を返した。文はツールが返した内容 (モデルへのエラー結果)。"""
