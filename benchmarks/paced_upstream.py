"""遅延の計測用の上流: 一定の間隔でチャンクを送る OpenAI Chat Completions 風の SSE サーバー (asyncio、1 スレッド)。

``uv run python benchmarks/paced_upstream.py CHUNKS RATE`` で起動し、最初の行に ``PORT`` を出す (止めるまで動く)。

各チャンクの本文には、書き込みの直前に取った ``time.monotonic_ns()`` を ``"<ns>;"`` の形で入れる。
``tests/fakes`` の偽サーバー (1 接続 1 スレッド) では、数百の接続が同時に流れると GIL の取り合いで
時刻を取ってから送るまでの間に待たされ、その待ちがサーバーの遅延に見えてしまう。ここでは 1 つの
イベントループで全接続を扱い、時刻を書き込みの直前に埋め込む (asyncio の TCP 接続は TCP_NODELAY つき)。

形は ``tests/fakes/openai_fake.py`` の ``text_response`` と同じ (``chat.completion.chunk``、最後に
``finish_reason``、``include_usage`` の使用量チャンク、``data: [DONE]``)。HTTP/1.1 の keep-alive と
chunked 転送だけを話す。最後のユーザー発話が ``warm`` なら 3 チャンクだけ送る (暖機用)。

``hub_bench.py`` 用の 2 つの形: 最後のユーザー発話が ``call {"name": ..., "arguments": {...}}`` なら、
そのツール呼び出しを 1 つ返す (``finish_reason: tool_calls``)。最後のメッセージがツールの結果なら、
``ok`` と短く答える (どちらも間隔を置かずに送る)。
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

STAMP = "@@STAMP@@"


def _sse(obj: Any) -> bytes:
    """SSE の 1 フレーム。"""
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


def _chunked(data: bytes) -> bytes:
    """chunked 転送の 1 チャンク。"""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """``chat.completion.chunk`` の本文。"""
    return {
        "id": "chatcmpl-paced",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


class PacedUpstream:
    """``chunks`` 個のチャンクを ``interval_s`` ごとに送る上流。"""

    def __init__(self, chunks: int, interval_s: float) -> None:
        """チャンク数と間隔を受け取る。"""
        self.chunks = chunks
        self.interval_s = interval_s

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """1 接続: keep-alive で要求を順に処理する。"""
        try:
            while True:
                body = await self._read_request(reader)
                if body is None:
                    break
                await self._respond(writer, body)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> dict[str, Any] | None:
        """要求の頭と本文を読む (接続が閉じたら ``None``)。"""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        raw = await reader.readexactly(length) if length else b""
        return json.loads(raw) if raw else {}

    async def _respond(self, writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
        """間隔を保ってチャンクを送る。時刻は書き込みの直前に埋める。"""
        model = str(body.get("model", "gpt-paced"))
        messages = body.get("messages") or [{}]
        last = messages[-1]
        content = last.get("content")
        if last.get("role") == "tool":
            await self._send_all(writer, model, [{"role": "assistant", "content": "ok"}], "stop")
            return
        if isinstance(content, str) and content.startswith("call "):
            call = json.loads(content[5:])
            tool_call = {
                "index": 0,
                "id": f"call_{random.randrange(10**9)}",
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
            }
            await self._send_all(writer, model, [{"role": "assistant", "tool_calls": [tool_call]}], "tool_calls")
            return
        chunks = 3 if messages[-1].get("content") == "warm" else self.chunks
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(_chunked(_sse(_chunk(model, {"role": "assistant", "content": ""}))))
        prefix, suffix = _sse(_chunk(model, {"content": STAMP})).split(STAMP.encode())
        loop = asyncio.get_running_loop()
        start = loop.time() + random.uniform(0, self.interval_s)
        for i in range(chunks):
            await asyncio.sleep(max(0.0, start + i * self.interval_s - loop.time()))
            writer.write(_chunked(prefix + f"{time.monotonic_ns()};".encode() + suffix))
        usage = {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": chunks + 5}
        end = {**_chunk(model, {}, "stop")}
        writer.write(_chunked(_sse(end)))
        writer.write(_chunked(_sse({**_chunk(model, {}), "choices": [], "usage": usage})))
        writer.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    async def _send_all(writer: asyncio.StreamWriter, model: str, deltas: list[dict[str, Any]], finish: str) -> None:
        """差分をまとめて送り、``finish`` で終える (ツール呼び出しとツールの結果への答え)。"""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for delta in deltas:
            writer.write(_chunked(_sse(_chunk(model, delta))))
        writer.write(_chunked(_sse(_chunk(model, {}, finish))))
        usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        writer.write(_chunked(_sse({**_chunk(model, {}), "choices": [], "usage": usage})))
        writer.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()


async def serve(chunks: int, rate: float) -> None:
    """ループバックの空きポートで待ち受け、ポート番号を出して動き続ける。"""
    upstream = PacedUpstream(chunks, 1.0 / rate)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2])))
