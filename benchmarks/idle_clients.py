"""たくさんの待機中の接続を、スレッドを作らずに持つ軽いクライアント (Engine.IO v4 / Socket.IO v5 を直接話す)。

python-socketio のクライアントは 1 接続ごとに読み書きのスレッドを持つので、1,000 接続には向かない。
ここでは websocket-client の同期の接続を順に開き、``/socket.io/?EIO=4&transport=websocket`` で
ハンドシェイクし (``0{...}`` を受け取る)、名前空間 ``/agent`` に入る (``40/agent,`` → ``40/agent,{"sid"}``)。
接続を保つ間は 1 つのスレッドが ``select`` で全接続を見て、サーバーの ping (``2``) に pong (``3``) を返す
(Engine.IO の規約: 返さないと pingInterval + pingTimeout で切られる)。

参考: Socket.IO protocol v5 / Engine.IO protocol v4 (https://socket.io/docs/v4/socket-io-protocol/)。
"""

from __future__ import annotations

import json
import select
import threading
from typing import Any

import websocket

NAMESPACE = "/agent"


class IdleClients:
    """待機中の Socket.IO 接続の束。"""

    def __init__(self, url: str) -> None:
        """接続先 (``http://127.0.0.1:PORT``) を覚える。"""
        self.ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.origin = url
        self.sockets: list[websocket.WebSocket] = []
        self._stop = threading.Event()
        self._pinger: threading.Thread | None = None
        self._lock = threading.Lock()

    def open(self, count: int, token: str | None = None) -> None:
        """``count`` 個の接続を開き、それぞれ ``/agent`` に入る (応答を待つ)。"""
        auth = json.dumps({"token": token}) if token else ""
        for _ in range(count):
            ws = websocket.create_connection(self.ws_url, timeout=30, origin=self.origin)
            opened = ws.recv()
            if not str(opened).startswith("0"):
                raise RuntimeError(f"unexpected Engine.IO open packet: {opened!r}")
            ws.send(f"40{NAMESPACE},{auth}")
            self._expect(ws, f"40{NAMESPACE},")
            with self._lock:
                self.sockets.append(ws)
        if self._pinger is None:
            self._pinger = threading.Thread(target=self._answer_pings, daemon=True)
            self._pinger.start()

    def call_all(self, event: str, payload: Any) -> list[Any]:
        """全接続から ``event`` を ack つきで送り、ack を集める (1 つずつ順に)。"""
        acks = []
        with self._lock:
            for ws in self.sockets:
                ws.send(f"42{NAMESPACE},1" + json.dumps([event, payload]))
                reply = self._expect(ws, f"43{NAMESPACE},1")
                acks.append(json.loads(reply[len(f"43{NAMESPACE},1") :])[0])
        return acks

    @staticmethod
    def _expect(ws: websocket.WebSocket, prefix: str) -> str:
        """``prefix`` で始まるメッセージが来るまで読む (途中の ping には答える)。"""
        while True:
            message = ws.recv()
            if message == "2":
                ws.send("3")
                continue
            if str(message).startswith(prefix):
                return str(message)
            if str(message).startswith(f"44{NAMESPACE}"):
                raise RuntimeError(f"connection refused: {message}")

    def _answer_pings(self) -> None:
        """(スレッド) 全接続を ``poll`` で見て、ping に pong を返す。それ以外は読み捨てる。

        ``select.select`` は 1024 番以上のファイル記述子を扱えないので ``poll`` を使う。poll の集合は接続の数が
        変わったときだけ作り直し、読めるものが来るまで ``poll`` の中で待つ (1,000 接続の集合を 50 ms ごとに作り直すと、
        それだけで計測のマシンの CPU を 0.5 コアほど使っていた)。読むのはロックの下で poll し直してから
        (``call_all`` が先に読んだ ack のために ``recv`` で止まらないよう)。
        """
        poller, by_fd, known = select.poll(), {}, -1
        while not self._stop.is_set():
            with self._lock:
                if len(self.sockets) != known:
                    by_fd = {ws.sock.fileno(): ws for ws in self.sockets if ws.sock is not None}
                    poller = select.poll()
                    for fd in by_fd:
                        poller.register(fd, select.POLLIN)
                    known = len(self.sockets)
            if not poller.poll(200):
                continue
            with self._lock:
                for fd, _ in poller.poll(0):
                    try:
                        if by_fd[fd].recv() == "2":
                            by_fd[fd].send("3")
                    except (websocket.WebSocketException, OSError):
                        poller.unregister(fd)  # 閉じた接続は見ない (POLLHUP で回り続けないよう)

    def close(self) -> None:
        """全接続を閉じる。"""
        self._stop.set()
        if self._pinger is not None:
            self._pinger.join(5)
        with self._lock:
            for ws in self.sockets:
                # 閉じる握手を 1 つずつ待つと遅い: ソケットをそのまま閉じる (サーバーは切断として扱う)
                ws.shutdown()
            self.sockets.clear()
