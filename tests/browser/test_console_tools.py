"""コンソールのブラウザ側ツールとツール表示のテスト (本物のサーバー + OpenAI の偽サーバー、規則モード)。

偽サーバーの規則: ユーザーの文がツール名を含めばそのツールを呼び (文中の JSON を引数にする)、
ツールの結果を受け取ったら ``ツールの結果: <結果>`` と答える。だから最終テキストを見れば、
ページが何を結果として返したかが分かる。
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import FAKE_OPENAI_KEY, Console, require_chromium, screenshot
from tests.realtime.harness import ServerProcess


def _tool_message_contents(fake) -> list[str]:
    """偽サーバーが受け取った、すべての role=tool のメッセージの中身。"""
    contents = []
    for body in fake.chat_requests():
        for message in body.get("messages", []):
            if message.get("role") == "tool":
                content = message.get("content")
                contents.append(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False))
    return contents


def test_client_tool_locale_is_answered_by_the_page(page, openai_server, openai_fake):
    """get_browser_locale はブラウザで実行され、ロケールとタイムゾーンが tool_result で返る。"""
    console = Console(page, openai_server).open()
    console.send("get_browser_locale でロケールを調べて")
    assert console.wait_run_end() == "finished"
    card = console.run().locator(".tool-card", has_text="get_browser_locale")
    expect(card).to_have_attribute("data-state", "done")
    expect(card.locator(".executor")).to_have_text("ブラウザ")
    expect(card.locator(".tool-state")).to_contain_text("ブラウザで実行")
    text = console.assistant_text()
    assert "Asia/Tokyo" in text and "ja-JP" in text
    # モデル (偽サーバー) へ実際に届いた結果にもタイムゾーンが入っている
    assert any("Asia/Tokyo" in c for c in _tool_message_contents(openai_fake))
    screenshot(page, "console-client-tool")


@pytest.mark.parametrize(("button", "confirmed"), [("#confirm-yes", True), ("#confirm-no", False)])
def test_confirm_dialog_asks_the_person(page, openai_server, button, confirmed):
    """confirm_action はページ内のダイアログで尋ね、押したボタンの答えを返す (はい / いいえ)。"""
    console = Console(page, openai_server).open()
    console.send('confirm_action {"message": "ファイル report.txt を削除してよいですか?"}')
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-message")).to_have_text("ファイル report.txt を削除してよいですか?")
    # 取り返しのつかない操作の確認なので、既定のフォーカスは「いいえ」
    expect(page.locator("#confirm-no")).to_be_focused()
    if confirmed:
        screenshot(page, "console-confirm-dialog")
    page.locator(button).click()
    expect(dialog).to_be_hidden()
    assert console.wait_run_end() == "finished"
    assert f'"confirmed": {json.dumps(confirmed)}' in console.assistant_text()


def test_escape_in_the_dialog_answers_no_without_stopping_the_run(page, openai_server):
    """ダイアログが開いている間の Esc は「いいえ」で、実行の停止ではない。"""
    console = Console(page, openai_server).open()
    console.send('confirm_action {"message": "続けますか?"}')
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    assert console.wait_run_end() == "finished"
    assert '"confirmed": false' in console.assistant_text()


def test_selected_text_is_read_from_the_page(page, openai_server):
    """get_selected_text は、ページ上で選択されたテキストを返す。"""
    console = Console(page, openai_server).open()
    console.send("最初のメッセージです")
    console.wait_run_end()
    # 会話中のユーザーの発言を選択してから、選択を読むツールを使わせる
    page.evaluate(
        """() => {
            const el = document.querySelector('.msg.user .msg-text');
            const range = document.createRange();
            range.selectNodeContents(el);
            const sel = document.getSelection();
            sel.removeAllRanges();
            sel.addRange(range);
        }"""
    )
    expect(page.locator("#selection-hint")).to_contain_text("選択中のテキスト")
    console.send("get_selected_text で選択を読んで")
    assert console.wait_run_end() == "finished"
    assert "最初のメッセージです" in console.assistant_text()


def test_client_call_with_invalid_arguments_is_not_executed(page, openai_server):
    """スキーマに合わない引数の呼び出しは、ページで実行されない (ダイアログは出ず、エラーの結果になる)。"""
    console = Console(page, openai_server).open()
    console.send('confirm_action {"unexpected": 1}')
    assert console.wait_run_end() == "finished"
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert console.state("tools.executed") == 0
    card = console.run().locator(".tool-card", has_text="confirm_action")
    expect(card).to_have_attribute("data-state", "error")
    expect(card.locator(".tool-output")).to_contain_text("invalid arguments")


def test_server_tool_shows_arguments_result_and_duration(page, openai_server):
    """サーバー側ツールの呼び出しは、引数・結果・所要時間・実行場所がタイムラインに出る。"""
    console = Console(page, openai_server).open()
    console.send('calculator {"expression": "123 * 456"}')
    assert console.wait_run_end() == "finished"
    card = console.run().locator(".tool-card", has_text="calculator")
    expect(card).to_have_attribute("data-state", "done")
    expect(card.locator(".tool-args")).to_contain_text('"expression": "123 * 456"')
    expect(card.locator(".tool-output")).to_contain_text("56088")
    expect(card.locator(".tool-state")).to_contain_text("サーバーで実行")
    expect(card.locator(".tool-state")).to_contain_text(" ms")
    assert "56088" in console.assistant_text()
    screenshot(page, "console-server-tool")


@pytest.fixture(scope="module")
def short_timeout_server(openai_fake):
    """ブラウザ側ツールの待ち時間が短い (1.5 秒) 本物のサーバー。"""
    require_chromium()
    overrides = [
        f"providers.openai.base_url={openai_fake.base_url}",
        "agent.model=openai/gpt-4.1-mini",
        "agent.client_tool_timeout_s=1.5",
    ]
    with ServerProcess(overrides, secrets={"OPENAI_API_KEY": FAKE_OPENAI_KEY}) as server:
        yield server


def test_unanswered_confirmation_is_withdrawn_when_the_call_times_out(page, short_timeout_server):
    """答えないまま時間切れになった確認は、ダイアログごと取り下げられ、時間切れの結果がモデルへ返る。"""
    console = Console(page, short_timeout_server).open()
    console.send('confirm_action {"message": "放っておかれる確認"}')
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_be_hidden(timeout=15_000)
    assert console.wait_run_end() == "finished"
    card = console.run().locator(".tool-card", has_text="confirm_action")
    expect(card).to_have_attribute("data-state", "error")
    expect(card.locator(".tool-output")).to_contain_text("timed out")
    assert console.state("tools.executed") == 0
    # 次の確認はふつうに出る (取り下げた後もダイアログは使える)
    console.send('confirm_action {"message": "次の確認"}')
    expect(dialog.locator("#confirm-message")).to_have_text("次の確認")
    page.locator("#confirm-yes").click()
    assert console.wait_run_end() == "finished"


def test_model_selector_switches_the_thread_model(page, openai_server):
    """モデル欄で選んだモデルが同じスレッドの以降の実行に効き、デモモデルなら帯が出る。"""
    console = Console(page, openai_server).open()
    expect(page.locator("#demo-banner")).to_be_hidden()
    no_key = page.locator("#model-select option", has_text="anthropic/claude-sonnet-4-6")
    expect(no_key).to_be_disabled()
    expect(no_key).to_contain_text("キー未設定")
    page.locator("#model-select").select_option("demo/scripted")
    expect(page.locator("#demo-banner")).to_be_visible()
    console.send("こんにちは")
    assert console.wait_run_end() == "finished"
    expect(console.run().locator(".run-meta")).to_contain_text("demo/scripted")
    page.locator("#model-select").select_option("")
    expect(page.locator("#demo-banner")).to_be_hidden()
    console.send("もう一度")
    assert console.wait_run_end() == "finished"
    expect(console.run().locator(".run-meta")).to_contain_text("openai/gpt-4.1-mini")
    # 選んだモデルはタブに覚えられている (自動に戻したので空)
    assert page.evaluate("() => sessionStorage.getItem('llm_router.console.model')") is None


def test_new_conversation_starts_an_empty_thread(page, openai_server):
    """「新しい会話」で会話とタイムラインが空になり、新しいスレッドで続けられる。"""
    console = Console(page, openai_server).open()
    console.send("最初の会話")
    assert console.wait_run_end() == "finished"
    old_thread = console.state("connection.threadId")
    page.locator("#new-thread").click()
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("details.run")).to_have_count(0)
    expect(page.locator("#empty-state")).to_be_visible()
    expect(page.locator("#prompt")).to_be_focused()
    assert console.state("connection.threadId") != old_thread
    console.send("二つ目の会話")
    assert console.wait_run_end() == "finished"
    expect(page.locator(".msg.user")).to_have_count(1)


def test_selection_is_forgotten_when_it_is_cleared_outside_the_input(page, openai_server):
    """入力欄の外で選択を外すと、get_selected_text は空を返す (古い選択を返さない)。"""
    console = Console(page, openai_server).open()
    console.send("選ばれる文")
    console.wait_run_end()
    page.evaluate(
        """() => {
            const range = document.createRange();
            range.selectNodeContents(document.querySelector('.msg.user .msg-text'));
            document.getSelection().removeAllRanges();
            document.getSelection().addRange(range);
        }"""
    )
    expect(page.locator("#selection-hint")).to_contain_text("選択中のテキスト")
    page.evaluate("() => document.getSelection().removeAllRanges()")
    expect(page.locator("#selection-hint")).to_have_text("")
    console.send("get_selected_text で選択を読んで")
    assert console.wait_run_end() == "finished"
    assert '"has_selection": false' in console.assistant_text()


def test_dialog_is_answered_with_the_keyboard(page, openai_server):
    """確認ダイアログはキーボードだけで答えられる (Tab で「はい」へ移り Enter)。"""
    console = Console(page, openai_server).open()
    console.send('confirm_action {"message": "キーボードで答えますか?"}')
    expect(page.locator("#confirm-no")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#confirm-yes")).to_be_focused()
    page.keyboard.press("Enter")
    assert console.wait_run_end() == "finished"
    assert '"confirmed": true' in console.assistant_text()
    # ダイアログが閉じると、フォーカスは入力欄に戻る
    expect(page.locator("#prompt")).to_be_focused()


def test_long_run_keeps_only_the_latest_steps_open(page, openai_server, openai_fake):
    """ステップの多い実行では、直近の 3 ステップだけが開いていて、古いステップは畳まれる (開けば読める)。"""
    for i in range(5):
        openai_fake.add_tool_call_turn([("calculator", {"expression": f"{i} + 1"})])
    openai_fake.add_text_turn("5 回計算しました。")
    console = Console(page, openai_server).open()
    console.send("何度も計算して")
    assert console.wait_run_end() == "finished"
    steps = console.run().locator("details.step")
    expect(steps).to_have_count(6)
    opened = steps.evaluate_all("els => els.map(e => e.open)")
    assert opened == [False, False, False, True, True, True]
    expect(console.run().locator(".run-meta")).to_contain_text("6 ステップ · ツール 5 回")
    steps.first.locator("summary").click()
    expect(steps.first.locator(".tool-output")).to_have_text("1")
    page.locator("#timeline").evaluate("el => { el.scrollTop = 0; }")
    screenshot(page, "console-long-run")
    page.locator("#collapse-all").click()
    assert steps.evaluate_all("els => els.every(e => !e.open)")


def test_advanced_settings_reach_the_model(page, openai_server, openai_fake):
    """詳細設定のシステムプロンプト・温度・最大ステップ数が、同じスレッドの次の実行に使われる。"""
    console = Console(page, openai_server).open()
    page.locator("#settings-panel summary").click()
    page.locator("#system-prompt").fill("あなたはテスト用の簡潔なアシスタントです。")
    page.locator("#temperature").fill("0.3")
    page.locator("#max-steps").fill("3")
    page.locator("#max-steps").press("Enter")
    expect(page.locator("#settings-status")).to_contain_text("適用しました")
    console.send("設定を使って答えて")
    assert console.wait_run_end() == "finished"
    expect(console.run().locator(".item-run")).to_contain_text("最大 3 ステップ")
    body = openai_fake.chat_requests()[-1]
    assert body["messages"][0] == {"role": "system", "content": "あなたはテスト用の簡潔なアシスタントです。"}
    assert body["temperature"] == 0.3
    # 消すと、次の実行からシステムプロンプトは送られない
    page.locator("#system-prompt").fill("")
    page.locator("#settings-form button[type=submit]").click()
    expect(page.locator("#settings-status")).to_contain_text("適用しました")
    console.send("もう一度")
    assert console.wait_run_end() == "finished"
    assert openai_fake.chat_requests()[-1]["messages"][0]["role"] != "system"


def test_refused_settings_are_reported_and_not_kept(page, openai_server):
    """範囲外の設定はブラウザの検証で止まり、それをすり抜けてサーバーに断られても保存されず、会話は続けられる。"""
    console = Console(page, openai_server).open()
    page.locator("#settings-panel summary").click()
    page.locator("#temperature").fill("5")
    page.locator("#settings-form button[type=submit]").click()
    assert page.locator("#temperature").evaluate("el => el.validity.valid") is False
    expect(page.locator("#settings-status")).to_have_text("")
    # ブラウザの検証を通らない経路 (直接の呼び出し) でも、サーバーが断り、値は残らない
    page.evaluate("() => window.llmRouterConsole.applySettings()")
    expect(page.locator("#settings-status")).to_contain_text("適用できませんでした")
    expect(page.locator("#settings-status")).to_contain_text("temperature")
    assert page.evaluate("() => sessionStorage.getItem('llm_router.console.temperature')") is None
    console.send("まだ使えますか")
    assert console.wait_run_end() == "finished"
