"""キーの無いサーバー (デモモデル) でのコンソールのテスト: 新しい利用者が最初に見る画面。"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import Console, screenshot


def test_demo_banner_and_model_selector(page, demo_server):
    """デモモデルの帯が出て、モデル欄には設定されたモデルと別名が並び、キーの無いものは印付きで選べない。"""
    Console(page, demo_server).open()
    expect(page.locator("#demo-banner")).to_be_visible()
    expect(page.locator("#demo-model-name")).to_have_text("demo/scripted")
    select = page.locator("#model-select")
    expect(select.locator("option").first).to_have_text("自動 (demo/scripted)")
    no_key = select.locator("optgroup[label='API キー未設定'] option")
    assert no_key.count() >= 1
    for i in range(no_key.count()):
        assert no_key.nth(i).is_disabled()
        assert "キー未設定" in no_key.nth(i).inner_text()
    expect(select.locator("option", has_text="別名: demo")).to_be_enabled()
    expect(page.locator("#auth-panel")).to_be_hidden()
    expect(page.locator("#empty-state")).to_be_visible()
    screenshot(page, "console-empty")


def test_send_a_message_and_see_streamed_text(page, demo_server):
    """メッセージを送ると、アシスタントのテキストが流れてきて、タイムラインに実行とステップが出る。"""
    console = Console(page, demo_server).open()
    console.send("こんにちは")
    expect(page.locator(".msg.user")).to_contain_text("こんにちは")
    assert console.wait_run_end() == "finished"
    assert "デモ" in console.assistant_text()
    assert console.state("conversation.mismatches") == 0
    expect(console.run().locator(".badge")).to_have_text("完了")
    expect(console.run().locator("details.step")).to_have_count(1)
    expect(console.run().locator(".run-usage")).to_contain_text("トークン")
    screenshot(page, "console-demo-text")


def test_suggestion_runs_a_server_tool(page, demo_server):
    """入力例を押すとそのまま送られ、デモモデルがサーバー側の calculator を呼ぶ。"""
    console = Console(page, demo_server).open()
    page.locator(".suggestion", has_text="計算して").click()
    assert console.wait_run_end() == "finished"
    card = console.run().locator(".tool-card", has_text="calculator")
    expect(card).to_have_attribute("data-state", "done")
    expect(card.locator(".tool-output")).to_contain_text("84")
    assert "84" in console.assistant_text()


def test_demo_client_tool_and_confirmation(page, demo_server):
    """デモモデルでも、ブラウザ側ツール (ロケール) と確認ダイアログが動く。"""
    console = Console(page, demo_server).open()
    console.send("私のブラウザのロケールを教えて")
    assert console.wait_run_end() == "finished"
    expect(console.run().locator(".tool-card", has_text="get_browser_locale")).to_have_attribute("data-state", "done")
    console.send("確認してから進めて")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.locator("#confirm-yes").click()
    assert console.wait_run_end() == "finished"
    expect(console.run().locator(".tool-card", has_text="confirm_action")).to_have_attribute("data-state", "done")
    screenshot(page, "console-demo-tools")


def test_reasoning_streams_into_a_collapsible_block(page, demo_server):
    """思考を「中」にすると、ステップの中に折りたためる「思考」ブロックが流れ、終わると畳まれる。"""
    console = Console(page, demo_server).open()
    page.locator("#reasoning-select").select_option("medium")
    # 設定の変更は同じスレッドへの start のやり直しで効く (ページは次の送信の前にその ack を待つ)
    console.send("こんにちは、考えてから答えて")
    assert console.wait_run_end() == "finished"
    block = console.run().locator("details.reasoning")
    expect(block).to_have_count(1)
    expect(block.locator("summary")).to_contain_text("思考")
    assert block.get_attribute("open") is None
    block.locator("summary").click()
    assert len(block.locator(".reasoning-text").inner_text()) > 0
    screenshot(page, "console-reasoning")


def test_dark_colour_scheme(browser, demo_server):
    """暗い配色の環境では、ページも暗い配色になる (文字と背景の色が入れ替わる)。"""
    ctx = browser.new_context(
        locale="ja-JP", timezone_id="Asia/Tokyo", viewport={"width": 1360, "height": 860}, color_scheme="dark"
    )
    try:
        page = ctx.new_page()
        console = Console(page, demo_server).open()
        page.locator(".suggestion", has_text="計算して").click()
        assert console.wait_run_end() == "finished"
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        text = page.evaluate("getComputedStyle(document.body).color")
        assert _luminance(background) < 0.1 < 0.7 < _luminance(text)
        screenshot(page, "console-dark")
    finally:
        ctx.close()


def _luminance(css_rgb: str) -> float:
    """``rgb(r, g, b)`` の相対輝度 (WCAG の定義)。"""
    channels = [int(v) / 255 for v in css_rgb[css_rgb.index("(") + 1 : css_rgb.index(")")].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_tools_panel_lists_the_thread_tools(page, demo_server):
    """「使えるツール」には、start の ack が返したこのスレッドのツールが実行場所つきで並ぶ。"""
    Console(page, demo_server).open()
    page.locator(".tools-info summary").click()
    pills = page.locator("#tools-list .tool-pill")
    expect(pills.filter(has_text="calculator").locator(".executor")).to_have_text("サーバー")
    expect(pills.filter(has_text="confirm_action").locator(".executor")).to_have_text("ブラウザ")
    expect(pills.filter(has_text="get_browser_locale")).to_have_count(1)
    expect(pills.filter(has_text="get_selected_text")).to_have_count(1)
