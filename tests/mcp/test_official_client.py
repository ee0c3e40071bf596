"""公式 ``mcp`` のクライアントとの突き合わせ: 同じ本物のサーバーから、私たちのクライアントと同じものが見える。

独立した実装 (公式の ClientSession) が見るツールの一覧 (ページ分けを含む) と呼び出しの結果が、
私たちのクライアントの見たものと一致することを確かめる。
"""

from __future__ import annotations

import concurrent.futures
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from llm_router.mcp.tools import CombinedToolRegistry
from tests.mcp.helpers import FAST, PAGED, ROOT, settings_with, stdio_server


def official_view(module: str, events: str, *args: str) -> tuple[list[str], str, str]:
    """公式クライアントで (ページを追った全ツール名、取り決めた版、echo か t01 の結果の文) を得る。"""

    async def run() -> tuple[list[str], str, str]:
        """サーバーを起動して初期化し、一覧を最後まで読み、1 つ呼ぶ。"""
        params = StdioServerParameters(command=sys.executable, args=["-m", module, "--events", events, *args], cwd=ROOT)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            init = await session.initialize()
            names: list[str] = []
            cursor = None
            while True:
                page = await session.list_tools(cursor=cursor)
                names.extend(t.name for t in page.tools)
                cursor = page.nextCursor
                if not cursor:
                    break
            if "echo" in names:
                result = await session.call_tool("echo", {"text": "突き合わせ"})
            else:
                result = await session.call_tool("t01", {"n": 2})
            return names, str(init.protocolVersion), result.content[0].text

    # 別のスレッドで回す: 同じプロセスで Playwright の sync API (ブラウザテスト) が動いていると、主スレッドには
    # asyncio のループが回っていて anyio.run がそこでは使えない
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, run).result()


def test_same_tools_and_results_as_the_official_client(build, events):
    """FastMCP のサーバー: 公式クライアントと同じツール名、同じ版、同じ結果の文。"""
    names, version, text = official_view(FAST, str(events))
    tool_set = build(settings_with({"fast": stdio_server(FAST, events)}))
    ours = tool_set.tools()
    assert [t.tool for t in ours.values()] == names
    assert tool_set.servers["fast"].connection.protocol_version == version
    assert CombinedToolRegistry(None, tool_set).call("fast__echo", {"text": "突き合わせ"}) == {"result": text}


def test_same_paginated_list_as_the_official_client(build, events):
    """ページ分けするサーバー: 公式クライアントがページを追って見る一覧と同じ順序・同じ数。"""
    names, _, text = official_view(PAGED, str(events), "--tools", "23", "--page", "5")
    tool_set = build(settings_with({"paged": stdio_server(PAGED, events, "--tools", "23", "--page", "5")}))
    assert [t.tool for t in tool_set.tools().values()] == names and len(names) == 24
    assert CombinedToolRegistry(None, tool_set).call("paged__t01", {"n": 2}) == text
