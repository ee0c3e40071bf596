"""素の Flask-SocketIO サーバー (eventlet) を、Redis のメッセージキューあり / なしで起動する (redis_bench.py 用)。

``uv run python benchmarks/_queue_server.py PORT MODE [REDIS_URL]`` (ベンチマークがサブプロセスとして起動する)。

- MODE ``direct``: キューなし (1 プロセスの今の形)。
- MODE ``queue``: ``SocketIO(message_queue=REDIS_URL)`` (python-socketio の ``RedisManager``)。ルームへの ``emit`` は
  自分のソケットへ直接届け、さらに Redis へ PUBLISH する (他のプロセスのソケットのため)。
- MODE ``local``: キューは設定するが、``emit(..., ignore_queue=True)`` で自分のソケットにだけ届ける
  (「他のプロセスにソケットがあるときだけ Redis に流す」設計の、他に誰もいないときの費用)。
- ``/agent`` の ``start {thread_id}``: ルームに入る。``burst {thread_id, count, interval}``: ルームへ ``count`` 個の
  ``text_delta`` 相当の封筒を送り、最後に ``run_finished``。本文には送る直前の ``monotonic_ns`` を書く。
"""

import sys

if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()

import socket
import time
from typing import Any

NAMESPACE = "/agent"


def create_app(mode: str, redis_url: str | None) -> tuple[Any, Any]:
    """Flask アプリと SocketIO を作る (``mode`` でキューの有無を選ぶ)。"""
    from flask import Flask, request
    from flask_socketio import SocketIO, join_room

    app = Flask(__name__)
    queue = redis_url if mode in ("queue", "local") else None
    socketio = SocketIO(
        app, async_mode="eventlet", async_handlers=True, logger=False, engineio_logger=False, message_queue=queue
    )
    local_only = mode == "local"
    inner = app.wsgi_app

    def nodelay(environ: dict, start_response: Any) -> Any:
        """llm_router の server.py と同じく、受け付けたソケットに TCP_NODELAY を付ける (同じ条件で比べるため)。"""
        source = environ.get("eventlet.input")
        if hasattr(source, "get_socket"):
            source.get_socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return inner(environ, start_response)

    app.wsgi_app = nodelay

    @app.get("/healthz")
    def healthz() -> dict:
        """死活確認。"""
        return {"ok": True}

    @socketio.on("start", namespace=NAMESPACE)
    def on_start(payload: Any = None) -> dict:
        """ルームに入れて ack を返す。"""
        join_room("thread:" + payload["thread_id"], sid=request.sid, namespace=NAMESPACE)
        return {"ok": True}

    @socketio.on("burst", namespace=NAMESPACE)
    def on_burst(payload: dict) -> dict:
        """バックグラウンドでルームへ送る。"""
        socketio.start_background_task(_burst, socketio, payload, local_only)
        return {"ok": True}

    return app, socketio


def _burst(socketio: Any, payload: dict, local_only: bool) -> None:
    """``count`` 個の封筒を送り (``interval`` があればその間隔で)、最後に ``run_finished`` を送る。"""
    room = "thread:" + payload["thread_id"]
    count, interval = int(payload["count"]), float(payload.get("interval") or 0)
    extra = {"ignore_queue": True} if local_only else {}
    start = time.monotonic()
    for seq in range(1, count + 1):
        if interval:
            socketio.sleep(max(0.0, start + (seq - 1) * interval - time.monotonic()))
        event = {
            "type": "text_delta",
            "thread_id": payload["thread_id"],
            "run_id": "run_bench",
            "seq": seq,
            "ts": time.time(),
            "message_id": "msg_bench",
            "delta": f"{time.monotonic_ns()};",
        }
        socketio.emit("text_delta", event, to=room, namespace=NAMESPACE, **extra)
        if not interval:
            socketio.sleep(0)
    end = {"type": "run_finished", "thread_id": payload["thread_id"], "run_id": "run_bench", "seq": count + 1}
    socketio.emit("run_finished", end, to=room, namespace=NAMESPACE, **extra)


def main(port: int, mode: str, redis_url: str | None) -> None:
    """ループバックで起動する (ブロックする)。"""
    app, socketio = create_app(mode, redis_url)
    socketio.run(app, host="127.0.0.1", port=port, log_output=False, max_size=1024)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
