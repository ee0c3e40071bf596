"""同梱のエージェントコンソール (Web ページ) を Flask アプリに登録する。

- ``/``: コンソールの HTML (``templates/console.html``)。
- ``/ui/...``: コンソールの静的ファイル (CSS、ES モジュール、同梱の socket.io クライアント)。
  ビルド工程はなく、ファイルをそのまま配信する (``uv run python app.py`` だけで動くように)。
- ``GET /api/info``: ページが最初に読む情報 (認証の要否、既定モデル、モデル一覧、サーバーツール名)。
  秘密情報 (API キー、接続トークン) は決して含めない。キーについては「あるかどうか」だけを返す。
  接続トークンが設定されていれば、Socket.IO と同じトークンを ``Authorization: Bearer <token>`` で求める
  (トークンを URL に載せないため、クエリ文字列では受けない)。無い・違うときは 401 で
  ``{"auth_required": true, "error": {"code": "unauthorized", ...}}`` だけを返す。
"""

from __future__ import annotations

from typing import Any

from llm_router.core.schemas.common import REASONING_LEVELS

# Content-Security-Policy: ページはインラインのスクリプトもスタイルも使わず、自分のオリジンだけに接続する。
# モデルの出力は textContent でしか描画しないが、万一の注入に備えて二重に守る (OWASP の CSP 推奨に従う)。
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def api_info(settings: Any, router: Any) -> dict[str, Any]:
    """``GET /api/info`` の本文を作る (秘密を含まない公開情報だけ)。

    Args:
        settings: アプリの ``Settings``。
        router: ``ModelRouter`` (``available_models()``、``default_spec()``、``is_demo_default()``)。

    Returns:
        ``auth_required``、``default_model``、``demo``、``models``、``server_tools`` などを持つ辞書。
    """
    agent = settings.config.agent
    return {
        "protocol_version": 1,
        "namespace": "/agent",
        "auth_required": bool(settings.api_tokens),
        "default_model": router.default_spec(),
        "demo": bool(router.is_demo_default()),
        "models": router.available_models(),
        "server_tools": list(agent.server_tools),
        "reasoning_levels": list(REASONING_LEVELS),
        "max_steps": agent.max_steps,
        "client_tool_timeout_s": agent.client_tool_timeout_s,
    }


def _add_security_headers(response: Any) -> Any:
    """コンソールの応答にセキュリティ関連のヘッダを付ける。"""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _bearer(headers: Any) -> str | None:
    """``Authorization: Bearer <token>`` のトークン (無ければ ``None``)。"""
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def register_web(app: Any, settings: Any, router: Any) -> None:
    """コンソールのページ、静的ファイル、``/api/info`` をアプリに登録する。

    Args:
        app: Flask アプリ。
        settings: アプリの ``Settings``。
        router: ``ModelRouter``。モデル一覧と既定モデルをここから得る。
    """
    from flask import Blueprint, jsonify, make_response, render_template, request

    from llm_router.realtime.auth import Authenticator

    authenticator = Authenticator(settings.api_tokens)

    # アプリ本体の static (/static) と衝突しないよう、コンソールのファイルは /ui に置く
    web = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/ui")

    @web.get("/")
    def console() -> Any:
        """コンソールの HTML を返す。"""
        response = make_response(render_template("console.html"))
        response.headers["Cache-Control"] = "no-store"
        return _add_security_headers(response)

    @web.get("/api/info")
    def info() -> Any:
        """ページが最初に読む情報を JSON で返す (トークンが設定されていれば Bearer トークンが要る)。"""
        if authenticator.required and authenticator.principal({"token": _bearer(request.headers)}) is None:
            body = {
                "auth_required": True,
                "error": {"code": "unauthorized", "message": "send the connection token as Authorization: Bearer"},
            }
            response = jsonify(body)
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="llm_router"'
            response.headers["Cache-Control"] = "no-store"
            return _add_security_headers(response)
        response = jsonify(api_info(settings, router))
        response.headers["Cache-Control"] = "no-store"
        return _add_security_headers(response)

    @web.after_request
    def static_headers(response: Any) -> Any:
        """静的ファイルにも nosniff などを付ける。"""
        return _add_security_headers(response)

    app.register_blueprint(web)
