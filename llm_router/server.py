"""Flask アプリと Socket.IO サーバーを組み立てて起動する。

- 非同期モードは ``server.async_mode`` (eventlet が既定、gevent / threading も選べる。モンキーパッチは app.py)。
- CORS は ``server.cors_allowed_origins`` (空なら自分のオリジンと localhost だけ。``*`` を既定にしない)。
- ``max_http_buffer_size`` は設定から。これを ``server.max_payload_bytes`` より大きくしておくことで、
  大きすぎるペイロードは接続を切られる前に ``payload_too_large`` の ack で答えられる。
- 起動は ``socketio.run`` (gunicorn は eventlet ワーカーを 26.0 で削除した)。eventlet の同時接続数の上限
  (``max_size``、既定 1024) は ``server.max_connections`` から。
- 終了 (SIGINT / SIGTERM) では、実行中のランを ``shutdown`` でキャンセルし、そのイベントを送ってから止める。
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any

from llm_router.config.settings import Settings
from llm_router.core.schemas.errors import ConfigurationError
from llm_router.logging_setup import configure_logging

logger = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 5.0
SIGNAL_POLL_S = 0.2
FLUSH_S = 0.3
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Services:
    """アプリが共有するもの (ルーター、サーバー側ツール、スレッド登録簿)。``app.extensions["llm_router"]``。"""

    settings: Settings
    router: Any
    tools: Any
    registry: Any
    mcp: Any = None


def create_app(settings: Settings) -> tuple[Any, Any]:
    """Flask アプリと SocketIO を作る (``/agent`` 名前空間、``/healthz``、あればコンソールの登録を含む)。"""
    from flask import Flask
    from flask_socketio import SocketIO

    from llm_router.core import json_codec
    from llm_router.core.offload import check_mode
    from llm_router.core.router import ModelRouter
    from llm_router.realtime import AgentNamespace, Authenticator, RateLimiter, ThreadRegistry, origin_checker
    from llm_router.realtime.packets import Packet

    server = settings.config.server
    check_mode(settings.config.agent.tool_executor)  # 使えない組み合わせは起動で断る
    # 大きな JSON の変換はハブの外で (llm_router/core/json_codec.py)
    json_codec.configure(
        server.offload_json_bytes, settings.config.agent.tool_executor, settings.config.agent.tool_threads
    )
    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    # 未設定なら起動ごとにランダム (セッションは再起動で無効になるが、鍵をコードに書かない)
    app.config["SECRET_KEY"] = settings.flask_secret_key or os.urandom(32).hex()
    socketio = SocketIO(
        app,
        async_mode=server.async_mode,
        cors_allowed_origins=origin_checker(list(server.cors_allowed_origins)),
        max_http_buffer_size=max(server.max_http_buffer_size, server.max_payload_bytes + 65536),
        async_handlers=True,
        json=json_codec.SocketIOJson,
        serializer=Packet,  # バイナリの確かめ方だけ速いパケット (llm_router/realtime/packets.py)
        logger=False,
        engineio_logger=False,
    )
    router = ModelRouter(settings)
    tools = _server_tools(settings)
    tools, mcp = _with_mcp(tools, settings)
    registry = ThreadRegistry(settings, socketio, router, tools)
    limiter: Any = RateLimiter(server.rate_limit_per_minute)
    if registry.cluster is not None:
        from llm_router.realtime.cluster import SharedRateLimit

        limiter = SharedRateLimit(registry.cluster, limiter)  # 全プロセスで共有 (store.backend=redis)
    namespace = AgentNamespace(registry, Authenticator(settings.api_tokens), limiter, server.max_payload_bytes)
    socketio.on_namespace(namespace)
    app.wsgi_app = _tcp_nodelay(app.wsgi_app)
    app.extensions["llm_router"] = Services(settings, router, tools, registry, mcp)

    from llm_router.agui import register_agui

    register_agui(app, socketio, app.extensions["llm_router"])  # POST /agui (docs/agui.md)

    @app.get("/healthz")
    def healthz() -> dict:
        """死活確認。"""
        return {"ok": True}

    if importlib.util.find_spec("llm_router.web.routes") is not None:
        from llm_router.web.routes import register_web

        register_web(app, settings, router)
    else:

        @app.get("/")
        def index() -> str:
            """コンソールが無いときの仮のトップページ。"""
            return "<!doctype html><meta charset=utf-8><title>llm_router</title><h1>llm_router</h1>"

    return app, socketio


def _tcp_nodelay(wsgi_app: Any) -> Any:
    """受け付けた接続のソケットに ``TCP_NODELAY`` を付ける WSGI ミドルウェア (websocket の接続にも効く)。

    eventlet の WSGI サーバーは Nagle のアルゴリズムを切らない。ブラウザはサーバーへほとんど送らないので
    ACK が遅延 (Linux で最大 40 ms) し、続けて送る小さなイベント (text_started の直後の text_delta など) が
    その ACK まで止められる。benchmarks/realtime_bench.py の遅延の p99 がこれで約 40 ms から数 ms になった。
    ソケットの取り出し方は simple-websocket と同じ (eventlet は ``eventlet.input``、Werkzeug は ``werkzeug.socket``)。
    """

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        """ソケットに TCP_NODELAY を付けてから、元のアプリを呼ぶ。"""
        source = environ.get("eventlet.input")
        sock = source.get_socket() if hasattr(source, "get_socket") else environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass  # TCP 以外 (UNIX ソケットなど) や閉じたソケット: 何もしない
        return wsgi_app(environ, start_response)

    return app


def _freeze_startup_objects() -> None:
    """起動で作られたオブジェクト (Flask、Hydra、eventlet など約 10 万個) を GC の対象から外す (``gc.freeze``)。

    世代 2 の回収は追跡中の全オブジェクトをたどり、その間 (eventlet では 1 スレッドなので) どのイベントも
    送られない。benchmarks/realtime_bench.py の 200 本の同時ランでは、この停止 (数十 ms) が遅延の p99 と最大値を
    決めていた。起動時のオブジェクトは終了まで生きるので、先に回収してから凍結する (Python 文書 ``gc.freeze``)。
    """
    gc.collect()
    gc.freeze()


def _server_tools(settings: Settings) -> Any:
    """サーバー側ツールのレジストリ (``tools/`` パッケージが無ければ ``None``: サーバー側ツールなしで動く)。"""
    if importlib.util.find_spec("tools.registry") is None:
        logger.warning("the tools package is missing: no server tools are available")
        return None
    from tools.registry import default_registry

    try:
        return default_registry(settings)
    except ImportError as exc:
        # 設定 (agent.server_tools) にあるツールのモジュールが無い: 起動は続け、理由をログに残す
        logger.error("server tools unavailable (%s): running without server tools", exc)
        return None


def _with_mcp(tools: Any, settings: Settings) -> tuple[Any, Any]:
    """MCP サーバーのツールを登録簿に合わせる (docs/mcp.md)。``start: eager`` のサーバーはここで起動を始める。

    Raises:
        ConfigurationError: ``mcp`` の設定の誤り (サーバー名とキーを挙げる)。
    """
    from llm_router.mcp.manager import with_mcp_tools

    tools, mcp = with_mcp_tools(tools, settings)
    if mcp is not None:
        mcp.start_eager()
    return tools, mcp


def _install_shutdown(socketio: Any, services: Services) -> None:
    """SIGINT / SIGTERM で、ランを ``shutdown`` でキャンセルしてイベントを送ってから終了する。"""
    state = {"stopping": False}

    def graceful() -> None:
        """ランを止め、イベントが送り出されるのを少し待ってからプロセスを終える。"""
        try:
            services.registry.shutdown(SHUTDOWN_TIMEOUT_S)
            if services.mcp is not None:
                services.mcp.close()
            socketio.sleep(FLUSH_S)
            services.registry.close()
        finally:
            logger.info("llm_router stopped")
            logging.shutdown()
            # eventlet の wsgi.server は開いている WebSocket が閉じるまで戻らない (pool.waitall) ので、ここで終える
            os._exit(0)

    def watch() -> None:
        """停止の合図を待ち、来たら穏やかに終える。

        シグナルハンドラの中でタスクを作っても、eventlet のハブは epoll の待ちを (PEP 475 により) 元の
        タイムアウトのまま再開するため、次のタイマーまで (最長 60 秒) 動かないことがある。そこでハンドラは
        旗を立てるだけにし、このタスクが短い間隔で旗を見る。
        """
        while not state["stopping"]:
            socketio.sleep(SIGNAL_POLL_S)
        graceful()

    def on_signal(signum: int, frame: Any) -> None:
        """1 回目は穏やかに、2 回目はすぐに終える。"""
        if state["stopping"]:
            os._exit(1)
        state["stopping"] = True

    socketio.start_background_task(watch)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def serve(settings: Settings) -> None:
    """サーバーを起動する (ブロックする)。"""
    configure_logging(settings.config.server.log_level, settings.secrets.all_values())
    try:
        app, socketio = create_app(settings)
    except ConfigurationError as exc:
        raise SystemExit(f"configuration error: {exc.message}") from None
    services: Services = app.extensions["llm_router"]
    if services.mcp is not None:
        # ${VAR} から置き換えた MCP のヘッダと env の値もログから伏せる
        configure_logging(
            settings.config.server.log_level, [*settings.secrets.all_values(), *services.mcp.secret_values()]
        )
    server = settings.config.server
    if not settings.api_tokens:
        logger.warning(
            "LLM_ROUTER_API_TOKENS is empty: every connection is accepted (bound to %s; keep it on loopback)",
            server.host,
        )
        if server.host not in LOOPBACK_HOSTS:
            logger.warning(
                "server.host=%s is not loopback and no token is set: anyone who can reach it can connect", server.host
            )
    if services.router.is_demo_default():
        logger.warning(
            "no provider API key is set: the default model is %s (the in-process demo provider, no real LLM)",
            services.router.default_spec(),
        )
    logger.info("llm_router listening on http://%s:%d (async_mode=%s)", server.host, server.port, server.async_mode)
    _install_shutdown(socketio, services)
    _freeze_startup_objects()
    kwargs: dict[str, Any] = {}
    if server.async_mode == "eventlet":
        from llm_router.websocket_mask import install

        install()  # 大きな受信フレームのマスク解除でハブを止めない
        kwargs["max_size"] = server.max_connections
    elif server.async_mode == "threading":
        # Werkzeug はリクエストごとに INFO のログ行を出す (1 イベントごとのログを避ける)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # Werkzeug の開発サーバー。threading は eventlet を離れたい利用者のための選択肢 (docs/design.md 1 章)
        kwargs["allow_unsafe_werkzeug"] = True
    socketio.run(app, host=server.host, port=server.port, log_output=False, **kwargs)
