"""台本どおりに応答する偽の HTTP サーバー (ループバック、本物の HTTP/1.1、SSE / NDJSON の枠組み)。

各プロバイダの偽サーバーは、この上に「そのプロバイダの形」の応答を作る関数を足すだけにする。
受け取ったリクエストはすべて記録し、ストリームの途中でクライアントが接続を閉じたことも記録する。
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    """偽サーバーが受け取った 1 リクエスト。"""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """本文を JSON として解析する。"""
        return json.loads(self.body) if self.body else None


@dataclass
class JSONResponse:
    """JSON 本文の応答 (エラー応答にも使う)。"""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RawResponse:
    """任意のバイト列の応答。"""

    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"


@dataclass
class StreamResponse:
    """ストリーム応答: ``frames`` (バイト列) を順に書く。

    Attributes:
        delay_s: 各フレームの前に待つ秒数。
        break_after: この数のフレームの後、終わりの印なしに接続を切る (ストリーム破損)。
        stall_after: この数のフレームの後、クライアントが接続を閉じるまで何も送らずに待つ。
        chunked: ``Transfer-Encoding: chunked`` で送る (偽でなければ接続を閉じて終わりを示す)。
        stall_before_headers: 応答ヘッダを送る前に、クライアントが接続を閉じるまで待つ (最初のバイトが遅い上流)。
    """

    frames: list[bytes]
    content_type: str = "text/event-stream"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    break_after: int | None = None
    stall_after: int | None = None
    chunked: bool = True
    stall_before_headers: bool = False


def sse_frame(data: Any, event: str | None = None) -> bytes:
    """SSE の 1 イベントのバイト列 (``data`` が str でなければ JSON にする)。"""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return (head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n").encode()


def ndjson_frame(obj: Any) -> bytes:
    """NDJSON の 1 行のバイト列。"""
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode()


Scripted = JSONResponse | RawResponse | StreamResponse
Handler = Callable[[RecordedRequest], Scripted]


class FakeServer:
    """台本 (キュー) かハンドラ関数で応答する偽の HTTP サーバー。

    使い方: ``server.enqueue(response)`` で次の応答を積む。キューが空なら ``handler`` を呼ぶ。
    どちらも無ければ 500 を返す (台本と呼び出しが合わないことをテストで気づけるように)。
    """

    def __init__(self, handler: Handler | None = None) -> None:
        """ループバックの空きポートで起動する。"""
        self.requests: list[RecordedRequest] = []
        self.handler = handler
        self._queue: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self.client_disconnected = threading.Event()
        self.disconnected_at: float | None = None
        self.stream_started = threading.Event()
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            """1 接続分の要求を処理する。"""

            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """標準エラーへのログを出さない。"""

            def _serve(self) -> None:
                """記録して、台本の応答を書く。"""
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = RecordedRequest(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                response = fake._next(recorded)
                fake._write(self, response)

            do_POST = _serve
            do_GET = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``。"""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def enqueue(self, *responses: Scripted) -> None:
        """次に返す応答を積む。"""
        with self._lock:
            self._queue.extend(responses)

    def _next(self, request: RecordedRequest) -> Scripted:
        """記録し、次の応答を決める。"""
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.popleft()
        if self.handler is not None:
            return self.handler(request)
        return JSONResponse({"error": {"message": f"fake server has no script for {request.path}"}}, status=500)

    def _write(self, h: BaseHTTPRequestHandler, response: Scripted) -> None:
        """応答を書く。"""
        if isinstance(response, StreamResponse):
            self._write_stream(h, response)
            return
        if isinstance(response, JSONResponse):
            payload = json.dumps(response.body).encode()
            content_type = "application/json"
        else:
            payload, content_type = response.body, response.content_type
        h.send_response(response.status)
        h.send_header("content-type", content_type)
        h.send_header("content-length", str(len(payload)))
        for key, value in response.headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(payload)
        h.wfile.flush()

    def _write_stream(self, h: BaseHTTPRequestHandler, response: StreamResponse) -> None:
        """ストリーム応答を書く。クライアントが閉じたら記録する。"""
        if response.stall_before_headers:
            self.stream_started.set()
            self._wait_for_close(h.connection)
            h.close_connection = True
            return
        h.send_response(response.status)
        h.send_header("content-type", response.content_type)
        if response.chunked:
            h.send_header("transfer-encoding", "chunked")
        else:
            h.send_header("connection", "close")
            h.close_connection = True
        for key, value in response.headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.flush()
        self.stream_started.set()
        try:
            for i, frame in enumerate(response.frames):
                if response.break_after is not None and i >= response.break_after:
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                if response.stall_after is not None and i >= response.stall_after:
                    self._wait_for_close(h.connection)
                    return
                if response.delay_s:
                    time.sleep(response.delay_s)
                self._write_piece(h, frame, response.chunked)
            if response.stall_after is not None and response.stall_after >= len(response.frames):
                self._wait_for_close(h.connection)
                return
            if response.break_after is not None and response.break_after >= len(response.frames):
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            if response.chunked:
                h.wfile.write(b"0\r\n\r\n")
                h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._mark_disconnected()
            h.close_connection = True

    @staticmethod
    def _write_piece(h: BaseHTTPRequestHandler, frame: bytes, chunked: bool) -> None:
        """1 フレームを (chunked なら 1 チャンクとして) 書いて送り出す。"""
        if chunked:
            h.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
        else:
            h.wfile.write(frame)
        h.wfile.flush()

    def _wait_for_close(self, conn: socket.socket, limit_s: float = 30.0) -> None:
        """クライアントが接続を閉じるまで待ち (最大 ``limit_s`` 秒)、閉じたら記録する。"""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable:
                try:
                    if not conn.recv(1024):
                        break
                except OSError:
                    break
        else:
            return
        self._mark_disconnected()

    def _mark_disconnected(self) -> None:
        """クライアントの切断を記録する。"""
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
        self.client_disconnected.set()

    def close(self) -> None:
        """サーバーを止める。"""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeServer:
        """``with`` で使う。"""
        return self

    def __exit__(self, *exc: object) -> None:
        """``with`` を抜けたら止める。"""
        self.close()
