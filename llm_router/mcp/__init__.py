"""自前の MCP (Model Context Protocol) クライアント: stdio と streamable HTTP の MCP サーバーをツールの供給元にする。

公式の ``mcp`` パッケージは asyncio / anyio 専用で、eventlet のグリーンスレッドとは合わないため使わない
(テストでだけ、独立した本物のサーバーとして使う)。流れの図は README.md、使い方は docs/mcp.md。
"""

from llm_router.mcp.errors import McpError, McpToolError, McpUnavailable

__all__ = ["McpError", "McpToolError", "McpUnavailable"]
