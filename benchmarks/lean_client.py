"""遅延の計測用の軽いクライアント: 1 本の websocket で Engine.IO v4 / Socket.IO v5 を直接話し、受信の時刻だけを記録する。

python-socketio のクライアント (``TimedClient``) は 1 イベントごとに読み手のスレッド、Engine.IO と Socket.IO の
解読、JSON、条件変数の通知を通る。2 コアのマシンで 200 本のランを測ると、その費用 (サーバーと同じコアの上) が
サーバーの CPU を奪い、クライアントの中の待ちが「サーバーの遅延」に見えてしまう (docs/benchmarks.md
「スケールアウト」)。ここでは:

- ソケットから一度に読めるだけ読み (``recv(1 MiB)``)、読んだ時刻を 1 つ取って、その中の全フレームに付ける
  (同じ読み取りに入ったフレームは同時に届いている)。
- ランの間は解読しない: フレームの文字列と時刻を並べておくだけ。終わりのイベントは文字列の先頭で見分ける。
  JSON の解読は計測の後。
- サーバーの ping (``2``) には pong (``3``) を返す。

websocket のフレーム (RFC 6455): サーバーからのフレームはマスクなし、クライアントからのフレームはマスクつき。
分割されたフレーム (FIN が 0) は使われない前提 (python-engineio はメッセージを 1 フレームで送る) で、来たら止まる。
参考: Socket.IO protocol v5 / Engine.IO protocol v4 (``benchmarks/idle_clients.py`` と同じ)。
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time
from typing import Any
from urllib.parse import urlsplit

NAMESPACE = "/agent"
_EVENT = f"42{NAMESPACE},"
_ACK = f"43{NAMESPACE},"
_END_PREFIXES = tuple(f'{_EVENT}["{name}"'.encode() for name in ("run_finished", "run_error", "run_cancelled"))


class LeanClient:
    """1 本の websocket の Socket.IO クライアント (受信の時刻つき、解読は後で)。"""

    def __init__(self, url: str) -> None:
        """接続先 (``http://127.0.0.1:PORT``) を覚える (まだ繋がない: :meth:`connect`)。"""
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.sock: socket.socket | None = None
        self._buffer = b""
        self._pos = 0  # バッファの中で、まだ取り出していない最初のバイト
        self._received = 0  # 最後にソケットから読んだ時刻 (ns)
        self._next_ack = 1
        self.frames: list[tuple[bytes, int]] = []  # (Socket.IO のパケット, 受信時刻 ns)
        self._acks: dict[int, bytes] = {}  # ack の番号 -> まだ解読していない ack の中身
        self._ack_prefix = _ACK.encode()
        self.ended = 0

    # ------------------------------------------------------------ 接続と送信

    def connect(self, timeout: float = 30.0) -> LeanClient:
        """websocket へ上げ、Engine.IO の open を受け取り、名前空間に入る。"""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {self.host}:{self.port}\r\nOrigin: http://{self.host}:{self.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the websocket handshake")
            head += chunk
        head, _, self._buffer = head.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket upgrade refused: {head[:200]!r}")
        self.sock = sock
        if not self._next_packet().startswith(b"0"):
            raise ConnectionError("no Engine.IO open packet")
        self._send(f"40{NAMESPACE},")
        while not self._next_packet().startswith(f"40{NAMESPACE},".encode()):
            pass
        return self

    def call(self, event: str, payload: Any) -> Any:
        """``event`` を ack つきで送り、ack の最初の値を返す (待つ間に来たイベントも時刻つきで記録する)。"""
        return self.call_many(event, [payload])[0]

    def call_many(self, event: str, payloads: list[Any], at: list[float] | None = None) -> list[Any]:
        """``event`` を ack つきで続けて送り (ack を待たずに)、全部の ack の最初の値を送った順に返す。

        ``at`` (``time.monotonic()`` の時刻の昇順の並び) があれば、i 番目はその時刻に送る (待つ間も読み続ける)。
        無ければすぐに続けて送る。1 つずつ ack を待つと、負荷の下では後のランほど遅れて始まる。
        """
        ids = []
        for i, payload in enumerate(payloads):
            if at is not None:
                self._read_until(at[i])
            ack_id = self._next_ack
            self._next_ack += 1
            ids.append(ack_id)
            self._send(f"42{NAMESPACE},{ack_id}" + json.dumps([event, payload], ensure_ascii=False))
        while any(i not in self._acks for i in ids):
            self._next_packet()
        return [json.loads(self._acks.pop(i))[0] for i in ids]

    def wait_ends(self, count: int, timeout: float) -> None:
        """終わりのイベント (``run_finished``/``run_error``/``run_cancelled``) が ``count`` 個届くまで読む。"""
        deadline = time.monotonic() + timeout
        while self.ended < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.ended} of {count} runs ended within {timeout}s")
            self._next_packet()

    def events(self) -> list[tuple[str, Any, int]]:
        """記録したイベントを解読して ``(名前, データ, 受信時刻 ns)`` の並びにする (計測の後で呼ぶ)。"""
        out = []
        for packet, received in self.frames:
            if packet.startswith(_EVENT.encode()):
                name, *args = json.loads(packet[len(_EVENT) :])
                out.append((name, args[0] if len(args) == 1 else args, received))
        return out

    def close(self) -> None:
        """ソケットを閉じる (サーバーは切断として扱う)。"""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # ------------------------------------------------------------ フレーム

    def _send(self, text: str) -> None:
        """テキストのフレームを 1 つ送る (クライアントからはマスクつき)。"""
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        assert self.sock is not None
        self.sock.sendall(header + mask + masked)

    def _next_packet(self) -> bytes:
        """次の Engine.IO のパケット (テキスト) を返す (:meth:`_handle` を通してから)。"""
        while True:
            packet = self._take_frame()
            if packet is None:
                self._fill()
                continue
            self._handle(packet)
            return packet

    def _handle(self, packet: bytes) -> None:
        """ping には pong を返し、イベントは時刻つきで記録し、ack は番号ごとに取っておく。"""
        if packet == b"2":
            self._send("3")
        elif packet.startswith(b"42"):  # Engine.IO の message (4) の中の Socket.IO の EVENT (2)
            self.frames.append((packet, self._received))
            if packet.startswith(_END_PREFIXES):
                self.ended += 1
        elif packet.startswith(self._ack_prefix):  # ACK (3): 解読せずに取っておく
            body = packet[len(self._ack_prefix) :]
            digits = len(body) - len(body.lstrip(b"0123456789"))
            self._acks[int(body[:digits])] = body[digits:]

    def _read_until(self, deadline: float) -> None:
        """``deadline`` (``time.monotonic()``) まで、届いたものを読み続ける (送る時刻を待つ間も受信の時刻を正しく取る)。"""
        assert self.sock is not None
        while True:
            while (packet := self._take_frame()) is not None:
                self._handle(packet)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            readable, _, _ = select.select([self.sock], [], [], left)
            if readable:
                self._fill()

    def _fill(self) -> None:
        """ソケットから読めるだけ読み、読んだ時刻を覚える (その読み取りの全フレームに付ける)。"""
        assert self.sock is not None
        chunk = self.sock.recv(1 << 20)
        self._received = time.monotonic_ns()
        if not chunk:
            raise ConnectionError("server closed the connection")
        self._buffer = self._buffer[self._pos :] + chunk
        self._pos = 0

    def _take_frame(self) -> bytes | None:
        """バッファから完全なフレームを 1 つ取り出す (足りなければ ``None``)。"""
        buf, start = self._buffer, self._pos
        if len(buf) - start < 2:
            return None
        first, second = buf[start], buf[start + 1]
        if not first & 0x80:
            raise ConnectionError("fragmented websocket frames are not supported here")
        length, offset = second & 0x7F, start + 2
        if length == 126:
            if len(buf) < start + 4:
                return None
            (length,), offset = struct.unpack_from("!H", buf, start + 2), start + 4
        elif length == 127:
            if len(buf) < start + 10:
                return None
            (length,), offset = struct.unpack_from("!Q", buf, start + 2), start + 10
        if len(buf) < offset + length:
            return None
        payload, self._pos = buf[offset : offset + length], offset + length
        opcode = first & 0x0F
        if opcode == 0x8:
            raise ConnectionError("server closed the websocket")
        if opcode in (0x9, 0xA):  # websocket の ping/pong (python-engineio は使わない): 読み捨てる
            return b""
        return payload
