"""FastMCP で作ったテスト用の MCP サーバー (stdio か streamable HTTP)。

起動: ``python -m tests.mcp.servers.fast_server --transport stdio --events FILE``
または ``--transport http --port N [--json] --events FILE``。``--json`` で答えを JSON にする (既定は SSE)。
ツール: echo (テキスト)、picture (テキストと画像)、forecast (構造化された結果)、fail (isError)、
slow (取り消されたら events に書く)、crash (プロセスを終える)、grow (ツールを加えて list_changed)、ping_client、ask_roots、big、getenv、pid。
"""

from __future__ import annotations

import argparse
import os
import struct
import zlib
from typing import Any

import anyio
from mcp.server.fastmcp import Context, FastMCP, Image

from tests.mcp.servers.recording import RecordingMiddleware, RecordingStdin, record


def tiny_png() -> bytes:
    """1x1 の赤い PNG。"""

    def chunk(kind: bytes, data: bytes) -> bytes:
        """PNG のチャンク 1 つ。"""
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = zlib.compress(b"\x00\xff\x00\x00")
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def build(events: str | None, json_response: bool, port: int) -> FastMCP:
    """ツールを登録した FastMCP を作る。"""
    app = FastMCP("llm-router-test", json_response=json_response, host="127.0.0.1", port=port)

    @app.tool()
    def echo(text: str) -> str:
        """受け取った文をそのまま返す。"""
        return f"echo: {text}"

    @app.tool()
    def picture(caption: str) -> list:
        """説明の文と 1x1 の PNG 画像を返す。"""
        return [caption, Image(data=tiny_png(), format="png")]

    @app.tool()
    def forecast(city: str) -> dict[str, Any]:
        """都市の天気 (構造化された結果)。"""
        return {"city": city, "temperature_c": 21, "sky": "晴れ"}

    @app.tool()
    def fail(reason: str) -> str:
        """いつも失敗する (isError の結果になる)。"""
        raise ValueError(f"refused: {reason}")

    @app.tool()
    async def slow(seconds: float) -> str:
        """``seconds`` 秒待って返す。取り消されたら events に書く。"""
        record(events, {"kind": "tool", "event": "slow_started"})
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            record(events, {"kind": "tool", "event": "slow_cancelled"})
            raise
        return f"slept {seconds}"

    @app.tool()
    def crash() -> str:
        """プロセスをすぐに終える (呼び出しの途中で落ちるサーバー)。"""
        os._exit(3)

    @app.tool()
    async def grow(ctx: Context) -> str:
        """ツール ``added`` を加え、notifications/tools/list_changed を送る。"""

        def added() -> str:
            """加えられたツール。"""
            return "added tool"

        app.add_tool(added, name="added", description="grow で加わったツール")
        await ctx.session.send_tool_list_changed()
        return "grown"

    @app.tool()
    async def ping_client(ctx: Context) -> str:
        """クライアントに ping を送り、答えが来たら "pong" を返す (サーバーからの要求への答えの確認)。"""
        await ctx.session.send_ping()
        return "pong"

    @app.tool()
    async def ask_roots(ctx: Context) -> str:
        """クライアントに roots/list を頼む (対応しないクライアントはエラーで答える)。"""
        try:
            await ctx.session.list_roots()
        except Exception as exc:
            return f"roots refused: {exc}"
        return "roots answered"

    @app.tool()
    def big(size: int) -> str:
        """``size`` 文字の文 (大きすぎる答えの確認用)。"""
        return "x" * size

    @app.tool()
    def getenv(name: str) -> str:
        """環境変数 ``name`` の値 (無ければ "<unset>")。子プロセスに渡る環境の確認用。"""
        return os.environ.get(name, "<unset>")

    @app.tool()
    def pid() -> int:
        """このサーバープロセスの PID。"""
        return os.getpid()

    return app


async def run_stdio(app: FastMCP, events: str | None) -> None:
    """標準入力を記録しながら stdio で動かす。"""
    from mcp.server.stdio import stdio_server

    server = app._mcp_server
    async with stdio_server(stdin=RecordingStdin(events)) as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main() -> None:
    """引数を読んで起動する。"""
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--events", default=os.environ.get("MCP_TEST_EVENTS"))
    parser.add_argument("--start-delay", type=float, default=0.0, help="標準入力を読み始めるまでの秒数 (遅い起動)")
    args = parser.parse_args()
    app = build(args.events, args.json, args.port)
    if args.start_delay:
        import time

        time.sleep(args.start_delay)
    record(args.events, {"kind": "process", "event": "started", "pid": os.getpid()})
    if args.transport == "stdio":
        anyio.run(run_stdio, app, args.events)
        return
    import uvicorn

    uvicorn.run(
        RecordingMiddleware(app.streamable_http_app(), args.events),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
