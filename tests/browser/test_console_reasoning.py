"""思考 (reasoning) の表示のテスト: 思考の文を流す 3 つのプロバイダの偽サーバー (規則モード) に向けた本物のサーバー。

- Anthropic: 署名つきの thinking ブロック
- Gemini: ``thought: true`` のパーツと ``thoughtSignature``
- Ollama: ``message.thinking``

どれでも、ステップの中に折りたためる「思考」ブロックが流れ、ツールの往復も通り、署名はページに届かない。
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Console, require_chromium, screenshot
from tests.realtime.harness import ServerProcess

# プロバイダ: (偽サーバーのクラス, その引数, キーの変数, モデル, base_url の設定キー, 偽サーバーの思考の文の一部)
PROVIDERS: dict[str, tuple[str, dict[str, Any], str | None, str, str, str]] = {
    "anthropic": (
        "tests.fakes.anthropic_fake:AnthropicFake",
        {"rule_based": True},
        "ANTHROPIC_API_KEY",
        "anthropic/claude-sonnet-4-5",
        "providers.anthropic.base_url",
        "検討しています",
    ),
    "gemini": (
        "tests.fakes.gemini_fake:GeminiFake",
        {"rule_based": True},
        "GEMINI_API_KEY",
        "gemini/gemini-2.5-flash",
        "providers.gemini.base_url",
        "検討しています",
    ),
    "ollama": (
        "tests.fakes.ollama_fake:OllamaFake",
        {"rules": True},
        None,
        "ollama/qwen3",
        "providers.ollama.base_url",
        "考えています",
    ),
}


@pytest.fixture(scope="module", params=sorted(PROVIDERS))
def reasoning_setup(request) -> Iterator[tuple[str, Any, ServerProcess]]:
    """プロバイダの偽サーバーと、それに向けた本物のサーバー。"""
    require_chromium()
    target, kwargs, key_var, model, url_key, _ = PROVIDERS[request.param]
    module_name, class_name = target.split(":")
    fake_class = getattr(importlib.import_module(module_name), class_name)
    with fake_class(**kwargs) as fake:
        secrets = {key_var: f"test-key-for-{request.param}-not-real"} if key_var else {}
        overrides = [f"{url_key}={fake.base_url}", f"agent.model={model}"]
        with ServerProcess(overrides, secrets=secrets) as server:
            yield request.param, fake, server


def _signatures_sent_back(fake: Any) -> set[str]:
    """サーバーが偽サーバーへ送り返した署名 (Anthropic の signature、Gemini の thoughtSignature)。"""
    found: set[str] = set()

    def walk(node: Any) -> None:
        """JSON を辿って署名の値を集める。"""
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("signature", "thoughtSignature", "thought_signature") and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for recorded in fake.requests:
        walk(recorded.json())
    return found


def test_thinking_streams_into_the_step_and_no_signature_reaches_the_page(page, reasoning_setup):
    """思考を有効にすると、ステップの中の「思考」ブロックに思考の文が流れる。署名はページに届かない。"""
    provider, fake, server = reasoning_setup
    thought_text = PROVIDERS[provider][5]
    console = Console(page, server).open()
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
    expect(first.locator(".reasoning-text")).to_contain_text(thought_text, use_inner_text=False)
    # 終わった思考は畳まれ、開けば読める
    assert first.get_attribute("open") is None
    first.locator("summary").click()
    expect(first).to_have_attribute("open", "")
    # 思考はそのステップのテキストやツール呼び出しより前に並ぶ
    step = console.run().locator("details.step").first
    kinds = step.locator(".step-items > .item").evaluate_all("els => els.map(e => e.className)")
    assert kinds and "item-reasoning" in kinds[0]
    expect(console.run().locator(".tool-card", has_text="get_browser_locale")).to_have_attribute("data-state", "done")
    assert "Asia/Tokyo" in console.assistant_text()
    # 署名 (サーバーがプロバイダへ送り返したもの) は、ページの DOM にも受け取ったイベントにも無い
    raw = page.evaluate("() => window.rawEvents")
    assert any("reasoning_delta" in r for r in raw)
    html = page.content()
    signatures = _signatures_sent_back(fake)
    assert signatures or provider == "ollama"  # Ollama の思考には署名が無い
    for signature in signatures:
        assert signature not in html
        assert not [r for r in raw if signature in r]
    assert not [r for r in raw if "signature" in r.lower()]
    assert "signature" not in json.dumps(raw).lower()
    if provider == "anthropic":  # 画面写真は 1 つで足りる (見た目はプロバイダによらない)
        page.locator("#timeline").evaluate("el => { el.scrollTop = 0; }")
        screenshot(page, "console-reasoning-anthropic")
