"""Flask アプリと Socket.IO サーバーを組み立てて起動する。"""

from __future__ import annotations

import logging

from llm_router.config.settings import Settings
from llm_router.logging_setup import configure_logging

logger = logging.getLogger(__name__)


def create_app(settings: Settings):
    """Flask アプリと SocketIO を作る (ルートの登録を含む)。"""
    from flask import Flask
    from flask_socketio import SocketIO

    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    app.config["SECRET_KEY"] = settings.flask_secret_key or __import__("secrets").token_hex(32)
    socketio = SocketIO(
        app,
        async_mode=settings.config.server.async_mode,
        cors_allowed_origins=list(settings.config.server.cors_allowed_origins) or None,
        max_http_buffer_size=settings.config.server.max_http_buffer_size,
    )

    @app.get("/healthz")
    def healthz() -> dict:
        """死活確認。"""
        return {"ok": True}

    @app.get("/")
    def index() -> str:
        """仮のトップページ。"""
        return "<!doctype html><meta charset=utf-8><title>llm_router</title><h1>llm_router</h1>"

    return app, socketio


def serve(settings: Settings) -> None:
    """サーバーを起動する (ブロックする)。"""
    configure_logging(settings.config.server.log_level, settings.secrets.all_values())
    app, socketio = create_app(settings)
    server = settings.config.server
    if not settings.api_tokens:
        logger.warning("LLM_ROUTER_API_TOKENS is empty: every connection is accepted (bound to %s)", server.host)
    logger.info("llm_router listening on http://%s:%d (async_mode=%s)", server.host, server.port, server.async_mode)
    kwargs = {}
    if server.async_mode == "eventlet":
        kwargs["max_size"] = server.max_connections
    socketio.run(app, host=server.host, port=server.port, log_output=False, **kwargs)
