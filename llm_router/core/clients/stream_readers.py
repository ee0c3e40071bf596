"""ストリームの読み取り器: SSE と NDJSON の I/O を持たないデコーダ。

どちらもバイト列を ``feed`` するとイベント (行) のリストを返す。チャンクの境界がどこにあってもよい
(CRLF の途中、UTF-8 の多バイト文字の途中でも)。

参考: WHATWG HTML Living Standard "Server-sent events" の解釈規則
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)、
httpx の ``LineDecoder`` (末尾の ``\\r`` をチャンクをまたいで持ち越す)。
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class SSEEvent:
    """1 つの SSE イベント。``event`` は ``event:`` フィールド (無ければ ``None``)。"""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """``data`` を JSON として解析する。"""
        return json.loads(self.data)


class SSEDecoder:
    """SSE のインクリメンタルなデコーダ (I/O なし)。"""

    def __init__(self) -> None:
        """空の状態で作る。"""
        self._buffer = b""
        self._skip_lf = False
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """バイト列を与え、完成したイベントを返す。"""
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._skip_lf = False
        if not chunk:
            return []
        data = self._buffer + chunk if self._buffer else chunk
        lines = data.splitlines(keepends=True)
        last = lines[-1]
        if last.endswith(b"\n"):
            self._buffer = b""
        elif last.endswith(b"\r"):
            # CRLF がチャンクの境目で割れているかもしれない: 次の先頭の \n を捨てる
            self._buffer = b""
            self._skip_lf = True
        else:
            self._buffer = lines.pop()
        events: list[SSEEvent] = []
        for raw in lines:
            event = self._line(raw.rstrip(b"\r\n").decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        """ストリームの終わり: 残りの行を処理し、空行で終わっていないイベントも返す (寛容に)。"""
        events: list[SSEEvent] = []
        if self._buffer:
            event = self._line(self._buffer.decode("utf-8", errors="replace"))
            self._buffer = b""
            if event is not None:
                events.append(event)
        event = self._line("")
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        """1 行を解釈し、空行でイベントが完成したらそれを返す。"""
        if not line:
            if not self._data:
                self._event = None
                return None
            event = SSEEvent("\n".join(self._data), self._event, self._id, self._retry)
            self._data = []
            self._event = None
            self._retry = None
            return event
        if line.startswith(":"):
            return None  # コメント (キープアライブ)
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        return None


class NDJSONDecoder:
    """NDJSON (改行区切りの JSON) のインクリメンタルなデコーダ (I/O なし)。

    解析できない行は ``ValueError`` (行の先頭を含む) を投げる。
    """

    def __init__(self) -> None:
        """空の状態で作る。"""
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Any]:
        """バイト列を与え、完成した行の JSON 値を返す。"""
        data = self._buffer + chunk if self._buffer else chunk
        *lines, self._buffer = data.split(b"\n")
        return [self._parse(line) for line in lines if line.strip()]

    def flush(self) -> list[Any]:
        """ストリームの終わり: 改行で終わっていない最後の行を返す。"""
        rest, self._buffer = self._buffer, b""
        return [self._parse(rest)] if rest.strip() else []

    @staticmethod
    def _parse(line: bytes) -> Any:
        """1 行を JSON として解析する。"""
        try:
            return json.loads(line)
        except ValueError as exc:
            snippet = line[:200].decode("utf-8", errors="replace")
            raise ValueError(f"invalid NDJSON line: {snippet!r}") from exc
