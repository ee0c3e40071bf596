"""設定から MCP のツールの一式を組み立てる入口 (サーバーの起動時に 1 回)。"""

from __future__ import annotations

from typing import Any

from llm_router.mcp.client import McpServer
from llm_router.mcp.config import load_specs
from llm_router.mcp.tools import CombinedToolRegistry, McpToolSet


def build_tool_set(settings: Any) -> McpToolSet | None:
    """``mcp`` の設定から :class:`McpToolSet` を作る (サーバーが 1 つも無ければ ``None``)。

    Raises:
        ConfigurationError: 設定の誤り (サーバー名とキーを挙げる)。
    """
    config = settings.config.mcp
    specs = load_specs(config, settings.secrets)
    if not specs:
        return None
    return McpToolSet([McpServer(spec, config) for spec in specs], config.retry_listing_after_s)


def with_mcp_tools(base: Any, settings: Any) -> tuple[Any, McpToolSet | None]:
    """組み込みの登録簿 ``base`` に MCP のツールを合わせた登録簿と、MCP の一式 (無ければ ``base`` と ``None``)。"""
    tool_set = build_tool_set(settings)
    if tool_set is None:
        return base, None
    return CombinedToolRegistry(base, tool_set), tool_set
