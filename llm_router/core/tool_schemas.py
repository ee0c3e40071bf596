"""ツール定義の正規化とプロバイダごとのスキーマ変換 (暫定版: 変換なしで通す。完全版で置き換える)。"""

from __future__ import annotations

import copy
from typing import Any

from llm_router.core.schemas.common import ToolDefinition


def schema_for_provider(profile: str, tool: ToolDefinition) -> tuple[dict[str, Any], list[str]]:
    """``profile`` 向けに ``tool.parameters`` を変換し、(スキーマ, 警告) を返す。

    profile: ``openai`` / ``openai_strict`` / ``anthropic`` / ``gemini_json_schema`` / ``gemini_openapi`` / ``ollama``。
    """
    return copy.deepcopy(tool.parameters), []
