"""AG-UI のエンドポイント (``POST /agui``): Socket.IO のバスの横で、同じエージェントループを AG-UI の SSE で話す。

使い方は docs/agui.md、流れの図は同じフォルダの README.md。
"""

from __future__ import annotations

from typing import Any


def register_agui(app: Any, socketio: Any, services: Any) -> None:
    """設定 ``agui.enabled`` なら、``agui.path`` (既定 ``/agui``) に POST (と CORS の OPTIONS) のルートを登録する。"""
    config = services.settings.config.agui
    if not config.enabled:
        return
    from llm_router.agui.route import AguiEndpoint, unbuffered

    endpoint = AguiEndpoint(services, socketio)
    app.extensions["llm_router_agui"] = endpoint
    app.add_url_rule(config.path, "agui", endpoint.handle, methods=["POST", "OPTIONS"])
    app.wsgi_app = unbuffered(app.wsgi_app, config.path)


__all__ = ["register_agui"]
