"""比較の基準: 何もしない素の Flask-SocketIO サーバー (eventlet)。llm_router と同じスタックの「床」を測るため。

``uv run python benchmarks/bare_stack.py PORT`` で起動する (ベンチマークがサブプロセスとして起動する)。

- ``/healthz``: 準備完了の確認。
- ``/agent`` 名前空間の ``start``: ルーム ``thread:<id>`` に入り ack を返す (llm_router の ``start`` の最小形)。
- ``burst`` ``{"thread_id", "count", "delta"}``: llm_router の ``text_delta`` と同じ形・同じ大きさの封筒を
  ``count`` 個、そのルームへ送り、最後に ``run_finished`` を送る。送出はバックグラウンドのタスクで
  llm_router のランと同じく ``socketio.emit(..., to=room)`` を使う。

llm_router と同じ設定 (async_handlers、ログ無し、max_size、受け付けたソケットの TCP_NODELAY) で動かし、
違いは「アプリの処理が無い」ことだけにする。
"""

import sys

if __name__ == "__main__":
    import warnings

    # eventlet は保守モードで import 時に警告を出す (app.py と同じ扱い)
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()

import random
import socket
import time
import uuid
from typing import Any

NAMESPACE = "/agent"


def create_app() -> tuple[Any, Any]:
    """素の Flask アプリと SocketIO (eventlet) を作る。"""
    from flask import Flask, request
    from flask_socketio import SocketIO, join_room

    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="eventlet", async_handlers=True, logger=False, engineio_logger=False)

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
        thread_id = (payload or {}).get("thread_id") or "thr_" + uuid.uuid4().hex[:20]
        join_room("thread:" + thread_id, sid=request.sid, namespace=NAMESPACE)
        return {"ok": True, "thread_id": thread_id, "last_seq": 0}

    @socketio.on("burst", namespace=NAMESPACE)
    def on_burst(payload: dict) -> dict:
        """``count`` 個の text_delta 相当のイベントをバックグラウンドで送る。"""
        run_id = "run_" + uuid.uuid4().hex[:20]
        socketio.start_background_task(_burst, socketio, payload["thread_id"], run_id, payload)
        return {"ok": True, "run_id": run_id}

    return app, socketio


def _burst(socketio: Any, thread_id: str, run_id: str, payload: dict) -> None:
    """封筒つきのイベントを ``count`` 個送り、最後に ``run_finished`` を送る。

    ``interval`` があれば、その間隔で送り (位相はランごとにずらす)、本文には送る直前の ``monotonic_ns`` を書く
    (llm_router の遅延の計測で偽の OpenAI がするのと同じ。ここでは上流が無いので、送出から受信まで)。
    """
    room = "thread:" + thread_id
    message_id = "msg_" + uuid.uuid4().hex[:16]
    delta = payload.get("delta", "あいう")
    count = int(payload["count"])
    yield_each = bool(payload.get("yield", True))
    interval = float(payload.get("interval") or 0)
    start = time.monotonic() + random.uniform(0, interval)
    for seq in range(1, count + 1):
        if interval:
            socketio.sleep(max(0.0, start + (seq - 1) * interval - time.monotonic()))
            delta = f"{time.monotonic_ns()};"
        event = {
            "type": "text_delta",
            "thread_id": thread_id,
            "run_id": run_id,
            "seq": seq,
            "ts": time.time(),
            "message_id": message_id,
            "delta": delta,
        }
        socketio.emit("text_delta", event, to=room, namespace=NAMESPACE)
        if yield_each and not interval:
            # llm_router のランは上流の読み取りのたびに他のグリーンスレッドへ譲る: 同じく譲って送出を進める
            socketio.sleep(0)
    end = {"type": "run_finished", "thread_id": thread_id, "run_id": run_id, "seq": count + 1, "ts": time.time()}
    end.update({"finish_reason": "stop", "usage": {"input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}})
    socketio.emit("run_finished", end, to=room, namespace=NAMESPACE)


def main(port: int) -> None:
    """ループバックで起動する (ブロックする)。"""
    app, socketio = create_app()
    socketio.run(app, host="127.0.0.1", port=port, log_output=False, max_size=1024)


if __name__ == "__main__":
    main(int(sys.argv[1]))
