"""テスト用サーバーの共通部品: サーバーが受け取ったものを JSON Lines のファイルに書く。

- stdio: 標準入力の各行 (JSON-RPC のメッセージ) を、サーバーが読む前に書く。
- HTTP: ASGI のミドルウェアで、各リクエストのメソッド・ヘッダ・本文と、応答の状態・Content-Type を書く。
テストはこのファイルを読んで「サーバーが何を見たか」を確かめる (notifications/cancelled、ヘッダ、DELETE)。
"""

from __future__ import annotations

import json
import sys
import threading
from io import TextIOWrapper
from typing import Any

import anyio

_lock = threading.Lock()


def record(path: str | None, entry: dict[str, Any]) -> None:
    """1 行を追記する (``path`` が無ければ何もしない)。"""
    if not path:
        return
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        f.flush()


class RecordingStdin:
    """標準入力の行を記録してから渡す非同期イテレータ (``mcp.server.stdio.stdio_server(stdin=...)`` 用)。"""

    def __init__(self, path: str | None) -> None:
        """記録先を受け取る。"""
        self._path = path
        self._file = anyio.wrap_file(TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"))

    def __aiter__(self) -> RecordingStdin:
        """自分自身を返す。"""
        return self

    async def __anext__(self) -> str:
        """次の行を読み、メッセージとして記録して返す。"""
        line = await self._file.readline()
        if not line:
            raise StopAsyncIteration
        try:
            record(self._path, {"kind": "stdin", "message": json.loads(line)})
        except ValueError:
            record(self._path, {"kind": "stdin", "raw": line[:200]})
        return line


class RecordingMiddleware:
    """HTTP のリクエスト (メソッド・ヘッダ・本文) と応答 (状態・Content-Type) を記録する ASGI ミドルウェア。"""

    def __init__(self, app: Any, path: str | None) -> None:
        """包むアプリと記録先を受け取る。"""
        self.app = app
        self.path = path

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """HTTP なら本文を読み切って記録し、同じ本文をアプリに渡し直す。"""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record(self.path, {"kind": "request", "method": scope["method"], "headers": headers, "body": parsed})

        async def replay() -> dict:
            """読み済みの本文を先に返し、その後は元の receive (切断の検知) に任せる。"""
            if messages:
                return messages.pop(0)
            return await receive()

        async def watch(message: dict) -> None:
            """応答の開始を記録する。"""
            if message["type"] == "http.response.start":
                response_headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
                record(
                    self.path,
                    {
                        "kind": "response",
                        "method": scope["method"],
                        "status": message["status"],
                        "content_type": response_headers.get("content-type", ""),
                        "session_id": response_headers.get("mcp-session-id"),
                        "request": (parsed or {}).get("method") if isinstance(parsed, dict) else None,
                    },
                )
            await send(message)

        await self.app(scope, replay, watch)
