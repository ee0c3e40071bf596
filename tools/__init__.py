"""サーバー側ツールのパッケージ (calculator、current_time、RAG の search_documents) と登録簿。"""

from tools.registry import ServerTool, ToolExecutionError, ToolRegistry, default_registry

__all__ = ["ServerTool", "ToolExecutionError", "ToolRegistry", "default_registry"]
