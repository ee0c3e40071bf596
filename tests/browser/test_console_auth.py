"""接続トークンが必要なサーバーでのコンソールのテスト (LLM_ROUTER_API_TOKENS を設定した本物のサーバー)。"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Console, require_chromium, screenshot
from tests.realtime.harness import ServerProcess

TOKEN = "browser-test-token-1"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[ServerProcess]:
    """トークン必須の本物のサーバー (デモモデル)。"""
    require_chromium()
    with ServerProcess(secrets={"LLM_ROUTER_API_TOKENS": f"{TOKEN},another-token"}) as server:
        yield server


def test_token_field_appears_and_a_wrong_token_is_refused(page, auth_server):
    """認証が必要なら接続トークンの欄が出て、違うトークンでは接続できず、その旨が出る。"""
    page.goto(auth_server.url + "/")
    panel = page.locator("#auth-panel")
    expect(panel).to_be_visible()
    expect(page.locator("#auth-token")).to_be_focused()
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "unauthorized")
    page.locator("#auth-token").fill("wrong-token")
    page.locator("#auth-token").press("Enter")
    expect(page.locator("#auth-error")).to_contain_text("トークンが違います")
    expect(page.locator("#send")).to_be_disabled()
    screenshot(page, "console-auth")


def test_right_token_connects_and_is_kept_in_session_storage(page, auth_server):
    """正しいトークンで接続でき、トークンは sessionStorage に置かれ、読み込み直しても使われる。"""
    page.goto(auth_server.url + "/")
    page.locator("#auth-token").fill(TOKEN)
    page.locator("#auth-panel button[type=submit]").click()
    expect(page.locator("body")).to_have_attribute("data-thread-ready", "true")
    expect(page.locator("#auth-panel")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.getItem('llm_router.console.token')") == TOKEN
    assert page.evaluate("() => localStorage.length") == 0
    console = Console(page, auth_server)
    console.send("こんにちは")
    assert console.wait_run_end() == "finished"
    # 再読み込みしても同じタブならトークンの入力は要らない
    console.open()
    expect(page.locator("#auth-panel")).to_be_hidden()


def test_api_info_needs_the_token_and_never_reveals_it(page, auth_server):
    """/api/info はトークンが要る: 無い・違う・クエリ文字列のトークンは 401 (認証が必要なことだけ)、
    Bearer の正しいトークンなら情報を返す。どの応答にもトークンは含まれない。"""
    for url, headers in (
        ("/api/info", {}),
        ("/api/info", {"Authorization": "Bearer wrong-token"}),
        (f"/api/info?token={TOKEN}", {}),
        ("/api/info", {"Authorization": f"Basic {TOKEN}"}),
    ):
        response = page.request.get(auth_server.url + url, headers=headers)
        assert response.status == 401, url
        body = response.json()
        assert body["auth_required"] is True and body["error"]["code"] == "unauthorized"
        assert "models" not in body and TOKEN not in response.text()
    response = page.request.get(auth_server.url + "/api/info", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.ok
    info = response.json()
    assert info["auth_required"] is True and info["models"]
    assert TOKEN not in response.text()


def test_console_reads_the_model_list_after_the_token_is_accepted(page, auth_server):
    """トークンを入れて接続できたら、コンソールはトークンつきで /api/info を読み直し、モデルの一覧を出す。"""
    page.goto(auth_server.url + "/")
    expect(page.locator("#auth-panel")).to_be_visible()
    page.locator("#auth-token").fill(TOKEN)
    page.locator("#auth-panel button[type=submit]").click()
    expect(page.locator("body")).to_have_attribute("data-thread-ready", "true")
    expect(page.locator("#model-select option").nth(1)).to_be_attached()
