"""公式 ``mcp`` の低水準 API で作った stdio の MCP サーバー: ツール一覧のページ分けと ``list_changed``。

起動: ``python -m tests.mcp.servers.paged_server --tools 25 --page 10 --events FILE``。
ツール ``t00`` … はそれぞれ ``{"n": integer}`` を取り、``t00:n`` を返す。``grow`` を呼ぶと ``added_<k>`` が
一覧に加わり、``notifications/tools/list_changed`` を送る。
"""

from __future__ import annotations

import argparse
import os

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from tests.mcp.servers.recording import RecordingStdin


def main() -> None:
    """引数を読んで起動する。"""
    parser = argparse.ArgumentParser()
    parser.add_argument("--tools", type=int, default=25)
    parser.add_argument("--page", type=int, default=10)
    parser.add_argument("--events", default=os.environ.get("MCP_TEST_EVENTS"))
    args = parser.parse_args()
    names = [f"t{i:02d}" for i in range(args.tools)] + ["grow"]
    server: Server = Server("paged-test")

    def tool(name: str) -> types.Tool:
        """ツールの定義 (grow は引数なし)。"""
        if name == "grow":
            schema = {"type": "object", "properties": {}}
        else:
            schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        return types.Tool(name=name, description=f"tool {name}", inputSchema=schema)

    @server.list_tools()
    async def list_tools(request: types.ListToolsRequest) -> types.ListToolsResult:
        """``cursor`` (先頭の番号の文字列) から ``--page`` 個を返す。"""
        cursor = request.params.cursor if request.params is not None else None
        start = int(cursor) if cursor else 0
        end = start + args.page
        next_cursor = str(end) if end < len(names) else None
        return types.ListToolsResult(tools=[tool(n) for n in names[start:end]], nextCursor=next_cursor)

    @server.call_tool(validate_input=False)
    async def call_tool(name: str, arguments: dict) -> list[types.TextContent]:
        """``grow`` なら一覧を増やして知らせる。ほかは名前と n を返す。"""
        if name == "grow":
            added = f"added_{len(names)}"
            names.append(added)
            await server.request_context.session.send_tool_list_changed()
            return [types.TextContent(type="text", text=f"added {added}")]
        return [types.TextContent(type="text", text=f"{name}:{arguments.get('n')}")]

    async def run() -> None:
        """標準入力を記録しながら動かす。"""
        async with stdio_server(stdin=RecordingStdin(args.events)) as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(run)


if __name__ == "__main__":
    main()
