"""思考 (reasoning) の表示のテスト: Anthropic の偽サーバー (規則モード、署名つき thinking) に向けた本物のサーバー。"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import Console, screenshot


def test_anthropic_thinking_streams_into_the_step_and_no_signature_reaches_the_page(page, anthropic_server):
    """思考を有効にすると、ステップの中の「思考」ブロックに thinking の文が流れる。署名はページに届かない。"""
    console = Console(page, anthropic_server).open()
    page.locator("#reasoning-select").select_option("high")
    # ページが受け取ったイベントを生のまま控えておく (署名が混ざっていないかを見るため)
    page.evaluate(
        """() => {
            window.rawEvents = [];
            window.llmRouterConsole.connection.socket.onAny((name, p) => window.rawEvents.push(JSON.stringify(p)));
        }"""
    )
    console.send("get_browser_locale で調べてから答えて")
    assert console.wait_run_end() == "finished"
    blocks = console.run().locator("details.reasoning")
    assert blocks.count() >= 1
    first = blocks.first
    expect(first.locator(".reasoning-label")).to_have_text("思考")
    expect(first.locator(".reasoning-text")).to_contain_text("検討しています", use_inner_text=False)
    # 思考はそのステップのテキストやツール呼び出しより前に並ぶ
    step = console.run().locator("details.step").first
    kinds = step.locator(".step-items > .item").evaluate_all("els => els.map(e => e.className)")
    assert kinds and "item-reasoning" in kinds[0]
    expect(console.run().locator(".tool-card", has_text="get_browser_locale")).to_have_attribute("data-state", "done")
    html = page.content()
    assert "sig_" not in html and "signature" not in html
    raw = page.evaluate("() => window.rawEvents")
    assert any("reasoning_delta" in r for r in raw)
    assert not [r for r in raw if "sig_" in r or "signature" in r.lower()]
    first.locator("summary").click()
    expect(first).to_have_attribute("open", "")
    screenshot(page, "console-reasoning-anthropic")
