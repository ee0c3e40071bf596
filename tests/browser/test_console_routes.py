"""コンソールの HTTP ルート (``/``、静的ファイル、``/api/info``) のテスト。ブラウザは使わない。"""

from __future__ import annotations

import json

import pytest
from flask import Flask

from llm_router.config.settings import load_settings
from llm_router.core.router import ModelRouter
from llm_router.web import register_web

OPENAI_KEY = "sk-test-routes-secret-value-1234"
TOKEN = "routes-secret-token-5678"


@pytest.fixture
def client():
    """OpenAI のキーと接続トークンを持つ設定で、コンソールだけを登録した Flask アプリ。"""
    settings = load_settings([], env_file=None, environ={"OPENAI_API_KEY": OPENAI_KEY, "LLM_ROUTER_API_TOKENS": TOKEN})
    app = Flask(__name__)
    register_web(app, settings, ModelRouter(settings))
    return app.test_client()


def test_api_info_lists_models_and_never_a_secret(client):
    """/api/info: 認証の要否、既定モデル、モデル一覧 (キーの有無つき)、サーバー側ツール。秘密は含まない。

    トークンが設定されているので、Bearer トークンなしでは 401 (認証が必要なことだけを返す)。
    """
    refused = client.get("/api/info")
    assert refused.status_code == 401 and refused.get_json()["auth_required"] is True
    assert TOKEN not in refused.get_data(as_text=True)
    response = client.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    info = response.get_json()
    assert info["auth_required"] is True
    assert info["demo"] is False
    assert info["default_model"].startswith("openai/")
    ids = {m["id"]: m for m in info["models"]}
    assert ids[info["default_model"]]["has_key"] is True
    assert any(not m["has_key"] for m in info["models"])
    assert "demo/scripted" in ids
    assert {"calculator", "current_time"} <= set(info["server_tools"])
    body = response.get_data(as_text=True)
    assert OPENAI_KEY not in body and TOKEN not in body


def test_console_page_is_served_with_a_strict_csp(client):
    """/ はコンソールの HTML を返し、インラインのスクリプトを許さない CSP が付く。"""
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<html lang="ja">' in html
    assert "/ui/vendor/socket.io.min.js" in html and "/ui/js/main.js" in html
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_vendored_socketio_client_and_modules_are_served(client):
    """同梱の socket.io クライアント (版の注記つき) と ES モジュールが配信される。"""
    vendor = client.get("/ui/vendor/socket.io.min.js")
    assert vendor.status_code == 200
    assert b"Socket.IO v4.8.1" in vendor.get_data()[:200]
    module = client.get("/ui/js/main.js")
    assert module.status_code == 200
    assert "javascript" in module.headers["Content-Type"]


def test_demo_default_without_keys():
    """キーが 1 つも無ければ、既定はデモモデルで、認証は不要と伝える。"""
    settings = load_settings([], env_file=None, environ={})
    app = Flask(__name__)
    register_web(app, settings, ModelRouter(settings))
    info = json.loads(app.test_client().get("/api/info").get_data())
    assert info["demo"] is True
    assert info["default_model"] == "demo/scripted"
    assert info["auth_required"] is False
