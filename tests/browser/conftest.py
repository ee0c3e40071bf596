"""ブラウザテストの共通部品: Debian の Chromium を Playwright (sync API) で動かし、本物のサーバーに向ける。

- ブラウザは ``/usr/bin/chromium`` だけを使う (``playwright install`` は決してしない)。無ければ
  インストール方法を理由にしてスキップし、``LLM_ROUTER_REQUIRE_BROWSER=1`` のときは失敗させる (.ci/run)。
- サーバーは ``tests/realtime/harness.py`` の :class:`ServerProcess` で、本物の ``app.py`` を空きポートで起動する。
  デモモデル (キー無し) と、ループバックの OpenAI の偽サーバー (規則モード) に向けたものを共有の部品として用意する
  (Anthropic / Gemini / Ollama の偽サーバーは test_console_reasoning.py が自分で起動する)。
- 画面写真は ``LLM_ROUTER_UPDATE_SCREENSHOTS=1`` のときだけ ``docs/screenshots/`` を上書きする。ふだんは
  一時フォルダに撮る (テストを走らせるたびに作業ツリーの PNG が変わらないように)。
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.realtime.harness import ROOT, ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
# これらが無いと Chromium は閉じたネットワークへ接続を試み続ける (docs/design.md 3 章)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("LLM_ROUTER_UPDATE_SCREENSHOTS") == "1"
    else Path(os.environ.get("TMPDIR", "/tmp")) / f"llm_router_screenshots_{os.getpid()}"
)
FAKE_OPENAI_KEY = "sk-test-browser-not-a-real-key"


def require_chromium() -> None:
    """Chromium が無ければスキップ (必須の指定があれば失敗)。

    フィクスチャ ``browser`` (セッションで 1 つ) は tests/conftest.py にある: Playwright の sync API は
    1 つのプロセスに 1 つしか同時に動かせないので、どのフォルダのテストも同じものを使う。
    """
    if CHROMIUM.exists():
        return
    reason = "ブラウザテストには Debian の Chromium が必要です: sudo apt-get install chromium (/usr/bin/chromium)"
    if os.environ.get("LLM_ROUTER_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " [LLM_ROUTER_REQUIRE_BROWSER=1]")
    pytest.skip(reason)


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """テストごとの新しいブラウザコンテキスト (日本語ロケール、東京のタイムゾーン)。"""
    ctx = browser.new_context(
        locale="ja-JP", timezone_id="Asia/Tokyo", viewport={"width": 1360, "height": 860}, color_scheme="light"
    )
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """新しいページ。JavaScript の例外と CSP 違反は集めておき、テストの最後に無いことを確かめる。"""
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield pg
    assert not errors, f"JavaScript errors or CSP violations on the page: {errors}"


@pytest.fixture(scope="session")
def demo_server() -> Iterator[ServerProcess]:
    """キーの無い (デモモデルの) 本物のサーバー。"""
    require_chromium()
    with ServerProcess() as server:
        yield server


@pytest.fixture(scope="session")
def openai_fake() -> Iterator[Any]:
    """規則モードの OpenAI 偽サーバー (ループバック)。"""
    from tests.fakes.openai_fake import OpenAIFake

    with OpenAIFake(rules=True) as fake:
        yield fake


@pytest.fixture(scope="session")
def openai_server(openai_fake: Any) -> Iterator[ServerProcess]:
    """OpenAI の偽サーバーに向けた本物のサーバー (既定モデル openai/gpt-4.1-mini)。"""
    require_chromium()
    overrides = [f"providers.openai.base_url={openai_fake.base_url}", "agent.model=openai/gpt-4.1-mini"]
    with ServerProcess(overrides, secrets={"OPENAI_API_KEY": FAKE_OPENAI_KEY}) as server:
        yield server


def screenshot(page: Any, name: str) -> Path:
    """画面写真を ``SCREENSHOTS/<name>.png`` に保存する (``LLM_ROUTER_UPDATE_SCREENSHOTS=1`` なら docs/ を更新)。"""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


class Console:
    """コンソールのページを操作・観察する小さな窓口 (テストを読みやすくするため)。"""

    def __init__(self, page: Any, server: ServerProcess) -> None:
        """ページと、向けるサーバーを受け取る。"""
        self.page = page
        self.server = server

    def open(self) -> Console:
        """ページを開き、接続してスレッドに入る (start の ack) まで待つ。"""
        from playwright.sync_api import expect

        self.page.goto(self.server.url + "/")
        expect(self.page.locator("body")).to_have_attribute("data-thread-ready", "true")
        expect(self.page.locator("#send")).to_be_enabled()
        return self

    def send(self, text: str) -> None:
        """入力欄に書いて Enter で送る。"""
        self.page.locator("#prompt").fill(text)
        self.page.locator("#prompt").press("Enter")

    def run(self, index: int = -1) -> Any:
        """タイムラインの実行 (既定は最後)。"""
        runs = self.page.locator("details.run")
        return runs.last if index == -1 else runs.nth(index)

    def assistant(self, index: int = -1) -> Any:
        """会話のアシスタントの発言 (既定は最後)。"""
        items = self.page.locator(".msg.assistant")
        return items.last if index == -1 else items.nth(index)

    def wait_run_end(self, timeout_ms: int = 30_000) -> str:
        """最後の実行が終わるまで待ち、その状態 (finished / error / cancelled) を返す。"""
        self.page.wait_for_function(
            """() => {
                const runs = document.querySelectorAll('details.run');
                const last = runs[runs.length - 1];
                return last && last.dataset.state !== 'running' && document.body.dataset.running === 'false';
            }""",
            timeout=timeout_ms,
        )
        return self.run().get_attribute("data-state")

    def assistant_text(self, index: int = -1) -> str:
        """アシスタントの発言のテキスト部分 (ツールの札や状態表示を除く)。"""
        return self.assistant(index).locator(".msg-text").evaluate_all("els => els.map(e => e.textContent).join('')")

    def threads(self) -> Any:
        """左の一覧の会話の行 (新しい順)。"""
        return self.page.locator("#thread-list li.thread-item")

    def thread(self, title: str) -> Any:
        """題名がちょうど ``title`` の一覧の行。"""
        from playwright.sync_api import expect

        row = self.threads().filter(has=self.page.locator(".thread-title", has_text=title))
        expect(row).to_have_count(1)
        return row

    def thread_titles(self) -> list[str]:
        """一覧の題名を上から順に。"""
        return self.threads().locator(".thread-title").all_text_contents()

    def open_thread(self, title: str) -> None:
        """一覧の会話を開き、履歴が描かれてスレッドに入る (start の ack) まで待つ。"""
        from playwright.sync_api import expect

        self.thread(title).locator("button.thread-open").click()
        expect(self.page.locator("body")).to_have_attribute("data-history-loaded", "true")
        expect(self.page.locator("body")).to_have_attribute("data-thread-ready", "true")

    def user_texts(self) -> list[str]:
        """会話のユーザーの発言の文 (上から順に)。"""
        return self.page.locator(".msg.user > .msg-text").all_text_contents()

    def state(self, expression: str) -> Any:
        """ページのコンソールの状態を読む (例 ``connection.lastSeq``)。"""
        return self.page.evaluate(f"() => window.llmRouterConsole.{expression}")
