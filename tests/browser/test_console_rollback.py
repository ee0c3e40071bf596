"""コンソール: 巻き戻された発言の「再送信」と、タイムラインの「文脈の切り詰め」(本物のサーバー + OpenAI の偽サーバー)。

- 偽サーバーに 400 を 1 回だけ返させる: その実行は ``run_error`` (``rolled_back: true``) で終わり、会話の発言に
  印と「再送信」ボタンが付く。押すと同じ文が新しい実行として送られて普通に答え、偽サーバーが受け取った
  リクエストには、その文がちょうど 1 回だけある (失敗した分は履歴に残っていない)。
- 文脈の小さいモデル (``providers.openai.context_tokens``) で長い発言を重ねると、タイムラインに
  「文脈の切り詰め」が出る。
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import FAKE_OPENAI_KEY, Console, require_chromium
from tests.realtime.harness import ServerProcess


def _user_texts(body: dict[str, Any]) -> list[str]:
    """OpenAI のリクエスト本文のユーザーの発言。"""
    out = []
    for message in body.get("messages") or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        out.append(content if isinstance(content, str) else "".join(p.get("text", "") for p in content or []))
    return out


def test_a_rolled_back_message_can_be_sent_again(page, openai_server, openai_fake):
    """400 で巻き戻った発言に「再送信」が出て、押すと同じ文が 1 回だけ上流へ行き、普通に答える。"""
    console = Console(page, openai_server).open()
    text = "巻き戻されるはずの発言です"
    openai_fake.add_error(400, "Invalid image: the image is too large")
    console.send(text)
    assert console.wait_run_end() == "error"
    user = page.locator(".msg.user").nth(0)
    expect(user).to_have_class("msg user rolled-back")
    resend = user.locator("button.resend-button")
    expect(resend).to_have_text("再送信")
    expect(console.run().locator(".item-error")).to_contain_text("発言は履歴から外されました")
    before = len(openai_fake.chat_requests())
    resend.click()
    expect(resend).to_be_disabled()
    expect(resend).to_have_text("再送信しました")
    expect(page.locator(".msg.user")).to_have_count(2)
    expect(page.locator(".msg.assistant").last).to_contain_text(f"了解しました: {text}")
    assert console.wait_run_end() == "finished"
    bodies = openai_fake.chat_requests()[before:]
    assert bodies, "the resent message did not reach the provider"
    assert _user_texts(bodies[-1]).count(text) == 1, json.dumps(bodies[-1], ensure_ascii=False)[:2000]


@pytest.fixture
def small_context_server(openai_fake: Any) -> Iterator[ServerProcess]:
    """文脈が 6000 トークンのモデルに向けたサーバー。"""
    require_chromium()
    overrides = [
        f"providers.openai.base_url={openai_fake.base_url}",
        # models のパターンに当たらないモデルなので、プロバイダの既定 context_tokens が効く
        "agent.model=openai/small-context-model",
        "providers.openai.context_tokens=6000",
        "agent.max_tokens=100",
    ]
    with ServerProcess(overrides, secrets={"OPENAI_API_KEY": FAKE_OPENAI_KEY}) as server:
        yield server


def test_the_timeline_shows_context_trimmed(page, small_context_server):
    """2 つ目の長い発言で古いターンが外れ、タイムラインにその件数が出る。会話の表示は消えない。"""
    console = Console(page, small_context_server).open()
    console.send("一つ目の長い話。" + "あ" * 2500)
    assert console.wait_run_end(60_000) == "finished"
    expect(console.run().locator(".item-trim")).to_have_count(0)
    console.send("二つ目の長い話。" + "い" * 2500)
    assert console.wait_run_end(60_000) == "finished"
    trim = console.run().locator(".item-trim")
    expect(trim).to_have_count(1)
    expect(trim).to_contain_text("古いメッセージ 2 件")
    expect(page.locator(".msg.user")).to_have_count(2)
