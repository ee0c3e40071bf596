"""アシスタントのテキストの描画のテスト: Markdown の部分集合と、HTML を決して解釈しないこと。"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import Console

ANSWER = "\n".join(
    [
        "## 手順",
        "1. **準備** をする",
        "2. `uv sync` を実行する",
        "- 詳しくは [公式の文書](https://docs.astral.sh/uv/) を見る",
        "- [危ないリンク](javascript:alert(1)) は使えない",
        "",
        '<img src=x onerror="window.injected = true"><script>window.injected = true</script>',
        "```python",
        "print('<b>こんにちは</b>')",
        "```",
    ]
)


def test_markdown_is_rendered_and_html_is_never_interpreted(page, openai_server, openai_fake):
    """見出し・リスト・太字・コード・リンクが組み立てられ、HTML は文字のまま表示される (実行されない)。"""
    openai_fake.add_text_turn(ANSWER, chunk_size=7)
    console = Console(page, openai_server).open()
    console.send("書式つきで答えて")
    assert console.wait_run_end() == "finished"
    assert console.state("conversation.mismatches") == 0
    body = console.assistant().locator(".msg-text")
    expect(body.locator(".md-heading")).to_have_text("手順")
    expect(body.locator("ol.md-list > li")).to_have_count(2)
    expect(body.locator("ol strong")).to_have_text("準備")
    expect(body.locator("ol code.md-inline")).to_have_text("uv sync")
    link = body.locator("a")
    expect(link).to_have_count(1)
    expect(link).to_have_attribute("href", "https://docs.astral.sh/uv/")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(body.locator("pre.md-code")).to_have_text("print('<b>こんにちは</b>')")
    # HTML は要素にならず、文字として見える
    assert body.locator("img, script, b").count() == 0
    expect(body).to_contain_text('<img src=x onerror="window.injected = true">')
    assert page.evaluate("() => window.injected") is None
    # コピーのボタンは元の Markdown を写す
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    console.assistant().locator(".copy-button").click()
    expect(console.assistant().locator(".copy-button")).to_have_text("コピーしました")
    assert page.evaluate("() => navigator.clipboard.readText()") == ANSWER
