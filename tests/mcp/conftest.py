"""MCP のテストの fixture: 記録ファイルと、作った MCP の一式をテストの終わりに (失敗しても) 止める。"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_router.mcp.manager import build_tool_set


@pytest.fixture
def events(tmp_path: Path) -> Path:
    """サーバーが受け取ったものを書くファイル。"""
    return tmp_path / "events.jsonl"


@pytest.fixture
def tool_sets() -> Iterator[list]:
    """作った ``McpToolSet`` を覚えておき、最後にすべて止める (子プロセスを残さない)。"""
    made: list = []
    yield made
    for tool_set in made:
        tool_set.close()


@pytest.fixture
def build(tool_sets: list):
    """設定から ``McpToolSet`` を作る関数 (作ったものは fixture が止める)。"""

    def make(settings):
        """作って覚える。"""
        tool_set = build_tool_set(settings)
        tool_sets.append(tool_set)
        return tool_set

    return make
