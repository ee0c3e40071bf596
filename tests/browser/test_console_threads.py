"""コンソール: 会話の一覧、別のブラウザでの再開、編集して答え直す、再送信、2 つ目のタブ (本物のサーバー + OpenAI の偽サーバー)。

- サーバーはテストごとに一時フォルダの SQLite ストア (``store.path``) で起動する (一覧の件数と順序を確かめるため、
  他のテストのスレッドが混ざらないように)。
- 「別のブラウザ」は sessionStorage も何も共有しない新しいブラウザコンテキスト。そこで見える会話は、サーバーの
  ``list_threads`` と ``get_history`` と ``run_started.message`` から描かれたものだけ。
- 偽サーバーの規則: ``了解しました: <発話>`` で答える。発話にツール名があればそのツールを呼ぶ。``[slow]`` はゆっくり流す。
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import FAKE_OPENAI_KEY, Console, require_chromium, screenshot
from tests.realtime.harness import ProtocolClient, ServerProcess


def _server(openai_fake: Any, store_path: Path) -> ServerProcess:
    """OpenAI の偽サーバーに向け、``store_path`` の SQLite ストアを使うサーバー (まだ起動しない)。"""
    overrides = [
        f"providers.openai.base_url={openai_fake.base_url}",
        "agent.model=openai/gpt-4.1-mini",
        "store.backend=sqlite",
        f"store.path={store_path}",
    ]
    return ServerProcess(overrides, secrets={"OPENAI_API_KEY": FAKE_OPENAI_KEY})


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """テストごとの SQLite ストアのファイル。"""
    return tmp_path / "threads.sqlite3"


@pytest.fixture
def server(openai_fake: Any, store_path: Path) -> Iterator[ServerProcess]:
    """このテストだけのサーバー (空のストア)。"""
    require_chromium()
    with _server(openai_fake, store_path) as srv:
        yield srv


@pytest.fixture
def fresh_context(browser: Any) -> Iterator[Any]:
    """もう 1 つの、何も共有しないブラウザコンテキスト (別のブラウザの代わり)。"""
    ctx = browser.new_context(locale="ja-JP", timezone_id="Asia/Tokyo", viewport={"width": 1360, "height": 860})
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


def _new_page(ctx: Any) -> Any:
    """ページを開き、JavaScript の例外を集める (テストの最後に無いことを確かめる)。"""
    pg = ctx.new_page()
    pg.js_errors = []
    pg.on("pageerror", lambda exc: pg.js_errors.append(str(exc)))
    return pg


def _user_texts(body: dict[str, Any]) -> list[str]:
    """OpenAI のリクエスト本文のユーザーの発言。"""
    out = []
    for message in body.get("messages") or []:
        if message.get("role") == "user":
            content = message.get("content")
            out.append(content if isinstance(content, str) else "".join(p.get("text", "") for p in content or []))
    return out


def _last_chat_users(openai_fake: Any) -> list[str]:
    """偽サーバーが最後に受け取ったチャットのリクエストのユーザーの発言。"""
    bodies = openai_fake.chat_requests()
    assert bodies, "no request reached the provider"
    return _user_texts(bodies[-1])


def test_thread_list_lists_renames_and_deletes(page, server):
    """一覧は新しい順に題名と時刻を出し、名前の変更と (確かめてからの) 削除がサーバーに効く。"""
    console = Console(page, server).open()
    expect(page.locator("#thread-list .thread-empty")).to_be_visible()
    console.send("最初の会話の質問")
    assert console.wait_run_end() == "finished"
    expect(console.threads()).to_have_count(1)
    first = console.thread("最初の会話の質問")
    expect(first).to_have_attribute("aria-current", "true")
    expect(first.locator("time.thread-time")).to_have_text("たった今")
    assert first.locator("time.thread-time").get_attribute("datetime")
    page.locator("#new-thread").click()
    expect(page.locator(".msg.user")).to_have_count(0)
    console.send("二つ目の会話の質問")
    assert console.wait_run_end() == "finished"
    expect(console.threads()).to_have_count(2)
    expect(console.threads().locator(".thread-title")).to_have_text(["二つ目の会話の質問", "最初の会話の質問"])
    expect(console.thread("二つ目の会話の質問")).to_have_attribute("aria-current", "true")

    # 名前の変更: Esc で取り消せ、Enter で保存される (読み込み直しても残る = サーバーに保存された)
    console.thread("最初の会話の質問").locator("button.thread-rename").click()
    rename = page.locator("input.thread-rename-input")
    expect(rename).to_be_focused()
    rename.fill("取り消される名前")
    rename.press("Escape")
    expect(page.locator("input.thread-rename-input")).to_have_count(0)
    console.thread("最初の会話の質問").locator("button.thread-rename").click()
    page.locator("input.thread-rename-input").fill("名前を変えた会話")
    page.locator("input.thread-rename-input").press("Enter")
    expect(console.threads().locator(".thread-title", has_text="名前を変えた会話")).to_have_count(1)
    screenshot(page, "console-threads")
    console.open()
    expect(console.threads()).to_have_count(2)
    # (名前の変更で updated_at が進むかどうかはサーバーの決めることなので、順序はここでは問わない)
    assert sorted(console.thread_titles()) == sorted(["二つ目の会話の質問", "名前を変えた会話"])

    # 削除: まず確かめる (既定は「やめる」)。やめれば残り、削除すれば消える
    renamed = console.thread("名前を変えた会話")
    renamed.locator("button.thread-delete").click()
    expect(page.locator("button.thread-delete-cancel")).to_be_focused()
    expect(page.locator(".thread-delete-text")).to_contain_text("名前を変えた会話")
    page.locator("button.thread-delete-cancel").click()
    expect(console.threads()).to_have_count(2)
    thread_id = console.thread("名前を変えた会話").get_attribute("data-thread-id")
    console.thread("名前を変えた会話").locator("button.thread-delete").click()
    page.locator("button.thread-delete-confirm").click()
    expect(console.threads()).to_have_count(1)
    expect(console.threads().locator(".thread-title")).to_have_text(["二つ目の会話の質問"])
    with ProtocolClient(server.url) as client:
        ack = client.call("get_history", {"thread_id": thread_id})
        assert ack["ok"] is False and ack["error"]["code"] == "unknown_thread", ack
        listed = client.call("list_threads", {})
        assert [t["thread_id"] for t in listed["threads"]] == [console.threads().first.get_attribute("data-thread-id")]
    console.open()
    expect(console.threads()).to_have_count(1)


def test_deleting_the_open_conversation_starts_a_new_one(page, server):
    """開いている会話を削除すると、空の新しい会話に移る (消えたスレッドに送り続けない)。"""
    console = Console(page, server).open()
    console.send("消える会話")
    assert console.wait_run_end() == "finished"
    old_id = console.state("connection.threadId")
    console.thread("消える会話").locator("button.thread-delete").click()
    page.locator("button.thread-delete-confirm").click()
    expect(page.locator(".msg.user")).to_have_count(0)
    expect(page.locator("body")).to_have_attribute("data-thread-ready", "true")
    assert console.state("connection.threadId") != old_id
    console.send("新しい会話での質問")
    assert console.wait_run_end() == "finished"
    expect(console.threads().locator(".thread-title")).to_have_text(["新しい会話での質問"])


def test_the_list_pages_with_next_cursor(page, server):
    """一覧の 1 ページに収まらない数の会話は「さらに表示」で続きを読む (list_threads の next_cursor)。"""
    with ProtocolClient(server.url) as client:
        for i in range(35):
            thread_id = f"paged-thread-{i:02d}"
            assert client.call("start", {"thread_id": thread_id})["ok"]
            assert client.call("update_thread", {"thread_id": thread_id, "title": f"会話 {i:02d}"})["ok"]
    console = Console(page, server).open()
    # 最初のページの 30 件には、このページが開いたばかりの空の会話 (いちばん新しい) も入っていて、それは出さない
    expect(console.threads()).to_have_count(29)
    expect(console.threads().first.locator(".thread-title")).to_have_text("会話 34")
    more = page.locator("#thread-more")
    expect(more).to_be_visible()
    more.click()
    expect(console.threads()).to_have_count(35)
    expect(more).to_be_hidden()
    expect(console.threads().locator(".thread-title")).to_have_text([f"会話 {i:02d}" for i in reversed(range(35))])
    # 実行の始まり・終わりで読み直しても、足した分は畳まれない
    console.send("一覧を読み直させる発言")
    assert console.wait_run_end() == "finished"
    expect(console.threads().first.locator(".thread-title")).to_have_text("一覧を読み直させる発言")
    expect(console.threads()).to_have_count(36)


def test_reopen_in_a_fresh_browser_after_a_server_restart(page, fresh_context, openai_fake, store_path):
    """サーバーを止めて同じストアで起動し直しても、別のブラウザの一覧に会話があり、開けば履歴が描かれ、続けられる。"""
    first = _server(openai_fake, store_path).start()
    try:
        console = Console(page, first).open()
        console.send('calculator で {"expression": "12 * 7"} を計算して')
        assert console.wait_run_end() == "finished"
        expect(console.assistant()).to_contain_text("ツールの結果: 84")
        console.send("[slow] 長く話して")
        page.wait_for_function(
            "() => { const m = document.querySelectorAll('.msg.assistant'); return (m[m.length - 1]?.textContent || '').length > 40; }"
        )
        page.locator("#stop").click()
        assert console.wait_run_end() == "cancelled"
        thread_id = console.state("connection.threadId")
    finally:
        first.close()
    second = _server(openai_fake, store_path).start()
    try:
        other = _new_page(fresh_context)
        fresh = Console(other, second).open()
        assert other.evaluate("() => Object.keys(sessionStorage).filter(k => k.includes('messages'))") == []
        expect(fresh.threads()).to_have_count(1)
        row = fresh.threads().first
        assert row.get_attribute("data-thread-id") == thread_id
        expect(row.locator(".thread-title")).to_have_text('calculator で {"expression": "12 * 7"} を計算して')
        fresh.open_thread('calculator で {"expression": "12 * 7"} を計算して')
        assert fresh.state("connection.threadId") == thread_id
        assert fresh.user_texts() == ['calculator で {"expression": "12 * 7"} を計算して', "[slow] 長く話して"]
        expect(other.locator(".msg.assistant").first).to_contain_text("ツールの結果: 84")
        expect(other.locator(".msg.assistant .chip").first).to_have_attribute("data-state", "done")
        expect(other.locator(".msg.assistant").last.locator(".msg-stopped")).to_contain_text("中断")
        expect(other.locator("details.run")).to_have_count(2)
        card = other.locator("details.run").first.locator(".tool-card")
        expect(card.locator(".tool-output")).to_have_text("84")
        seq_after_history = fresh.state("connection.lastSeq")
        assert seq_after_history > 0
        other.locator("details.run").first.locator("summary").click()
        expect(card).to_be_visible()
        screenshot(other, "console-reopened")
        # 続ける: 新しい実行の seq は続きから、上流には前の発言も届く
        fresh.send("続きの質問です")
        assert fresh.wait_run_end() == "finished"
        expect(fresh.assistant()).to_contain_text("了解しました: 続きの質問です")
        assert fresh.state("connection.lastSeq") > seq_after_history
        users = _last_chat_users(openai_fake)
        assert users[0] == 'calculator で {"expression": "12 * 7"} を計算して', users
        assert users[-1] == "続きの質問です", users
        assert fresh.user_texts()[-1] == "続きの質問です"
        assert other.js_errors == []
    finally:
        second.close()


def test_edit_and_regenerate_the_last_message(page, fresh_context, server, openai_fake):
    """最後の発言を直して送ると、その実行は消えて答え直し、上流には直した文だけが行く。別のブラウザの画面も追従する。"""
    console = Console(page, server).open()
    console.send("一つ目の発言")
    assert console.wait_run_end() == "finished"
    console.send("二つ目の発言")
    assert console.wait_run_end() == "finished"
    # 編集できるのは最後の発言だけ
    expect(page.locator(".msg.user .edit-button")).to_have_count(1)
    expect(page.locator(".msg.user").last.locator(".edit-button")).to_be_visible()

    # 別のブラウザで同じ会話を開き、編集の間はオフラインにしておく (戻ったときの再開に thread_rewound が入る)
    other = _new_page(fresh_context)
    watcher = Console(other, server).open()
    watcher.open_thread("一つ目の発言")
    assert watcher.user_texts() == ["一つ目の発言", "二つ目の発言"]
    fresh_context.set_offline(True)
    other.evaluate("() => window.llmRouterConsole.connection.socket.io.engine.close()")
    expect(other.locator("#conn-status")).to_have_attribute("data-state", "reconnecting")

    page.locator(".msg.user").last.locator(".edit-button").click()
    editor = page.locator("textarea.edit-input")
    expect(editor).to_have_value("二つ目の発言")
    editor.fill("二つ目を直した発言")
    screenshot(page, "console-edit")
    page.locator("button.edit-submit").click()
    expect(page.locator(".msg.assistant").last).to_contain_text("了解しました: 二つ目を直した発言")
    assert console.wait_run_end() == "finished"
    assert console.user_texts() == ["一つ目の発言", "二つ目を直した発言"]
    expect(page.locator(".msg.assistant")).to_have_count(2)
    expect(page.locator("details.run")).to_have_count(2)
    assert _last_chat_users(openai_fake) == ["一つ目の発言", "二つ目を直した発言"]

    fresh_context.set_offline(False)
    expect(other.locator("#conn-status")).to_have_attribute("data-state", "connected", timeout=30_000)
    expect(other.locator(".msg.assistant").last).to_contain_text("了解しました: 二つ目を直した発言")
    assert watcher.user_texts() == ["一つ目の発言", "二つ目を直した発言"]
    expect(other.locator(".msg.assistant")).to_have_count(2)
    assert other.js_errors == []

    # 読み込み直しても (履歴から) 同じ: 消した発言は戻らない
    console.open()
    assert console.user_texts() == ["一つ目の発言", "二つ目を直した発言"]
    # 編集で送った run も、ふたたび編集できる (もう一度直すと、また 1 つだけ置き換わる)
    page.locator(".msg.user").last.locator(".edit-button").click()
    page.locator("textarea.edit-input").fill("三度目の正直")
    page.locator("textarea.edit-input").press("Enter")
    expect(page.locator(".msg.assistant").last).to_contain_text("了解しました: 三度目の正直")
    assert console.wait_run_end() == "finished"
    assert console.user_texts() == ["一つ目の発言", "三度目の正直"]


def test_an_edit_shows_live_in_a_second_tab(page, context, server):
    """同じ会話を開いた 2 つ目のタブは、編集の thread_rewound を受けて消えた実行を外し、新しい発言を出す。"""
    console = Console(page, server).open()
    console.send("元の発言")
    assert console.wait_run_end() == "finished"
    second = _new_page(context)
    tab = Console(second, server).open()
    tab.open_thread("元の発言")
    assert tab.user_texts() == ["元の発言"]
    page.locator(".msg.user .edit-button").click()
    page.locator("textarea.edit-input").fill("直した発言")
    page.locator("button.edit-submit").click()
    expect(second.locator(".msg.assistant").last).to_contain_text("了解しました: 直した発言")
    assert tab.user_texts() == ["直した発言"]
    expect(second.locator(".msg.assistant")).to_have_count(1)
    assert second.js_errors == []


def test_a_rolled_back_message_is_resent_and_the_history_holds_it_once(page, fresh_context, server, openai_fake):
    """400 で巻き戻った発言を「再送信」すると答えが返り、一覧と別のブラウザの履歴にはその発言が 1 回だけある。"""
    console = Console(page, server).open()
    text = "巻き戻されてから送り直す発言"
    openai_fake.add_error(400, "Invalid request: rejected once")
    console.send(text)
    assert console.wait_run_end() == "error"
    user = page.locator(".msg.user").first
    expect(user).to_have_class("msg user rolled-back")
    # 巻き戻された発言は編集の対象ではない (履歴に無いので rewind できない)
    expect(page.locator(".msg.user .edit-button")).to_have_count(0)
    user.locator("button.resend-button").click()
    assert console.wait_run_end() == "finished"
    expect(page.locator(".msg.assistant").last).to_contain_text(f"了解しました: {text}")
    assert _last_chat_users(openai_fake).count(text) == 1
    expect(console.threads()).to_have_count(1)
    expect(console.threads().first.locator(".thread-title")).to_have_text(text)
    # 再送信した発言は編集できる
    expect(page.locator(".msg.user").last.locator(".edit-button")).to_be_visible()

    other = _new_page(fresh_context)
    fresh = Console(other, server).open()
    fresh.open_thread(text)
    assert fresh.user_texts() == [text]
    expect(other.locator(".msg.user.rolled-back")).to_have_count(0)
    expect(other.locator(".msg.assistant")).to_have_count(1)
    expect(other.locator(".msg.assistant")).to_contain_text(f"了解しました: {text}")
    assert other.js_errors == []


def test_a_second_tab_shows_the_messages_as_they_are_sent(page, context, server):
    """同じ会話の 2 つ目のタブに、送られた発言がすぐに出る (run_started.message)。送ったタブでは 2 重にならない。"""
    console = Console(page, server).open()
    console.send("はじめの発言")
    assert console.wait_run_end() == "finished"
    second = _new_page(context)
    tab = Console(second, server).open()
    tab.open_thread("はじめの発言")
    console.send("[slow] 2 つ目のタブにも見える発言")
    # 実行がまだ流れているうちに、2 つ目のタブに発言と流れているテキストが出る
    expect(second.locator(".msg.user > .msg-text").last).to_have_text("[slow] 2 つ目のタブにも見える発言")
    expect(second.locator("body")).to_have_attribute("data-running", "true")
    second.wait_for_function(
        "() => (document.querySelectorAll('.msg.assistant .msg-text')[1]?.textContent || '').length > 0"
    )
    assert console.wait_run_end() == "finished"
    assert tab.wait_run_end() == "finished"
    assert console.user_texts() == ["はじめの発言", "[slow] 2 つ目のタブにも見える発言"]
    assert tab.user_texts() == ["はじめの発言", "[slow] 2 つ目のタブにも見える発言"]
    assert tab.assistant_text() == console.assistant_text()
    # 2 つ目のタブから送っても、最初のタブに出る
    tab.send("2 つ目のタブからの発言")
    expect(page.locator(".msg.user > .msg-text").last).to_have_text("2 つ目のタブからの発言")
    assert tab.wait_run_end() == "finished"
    assert console.wait_run_end() == "finished"
    assert console.user_texts() == tab.user_texts()
    assert len(console.user_texts()) == 3
    assert second.js_errors == []


def test_reloading_the_tab_redraws_from_the_server(page, server):
    """読み込み直すと、会話はサーバーの履歴から描かれる (sessionStorage には開いていたスレッドの id しか無い)。"""
    console = Console(page, server).open()
    console.send("読み込み直しても残る発言")
    assert console.wait_run_end() == "finished"
    keys = page.evaluate("() => Object.keys(sessionStorage)")
    assert keys == ["llm_router.console.thread_id"], json.dumps(keys)
    console.open()
    expect(page.locator("body")).to_have_attribute("data-history-loaded", "true")
    assert console.user_texts() == ["読み込み直しても残る発言"]
    expect(console.assistant()).to_contain_text("了解しました: 読み込み直しても残る発言")
    expect(console.run().locator(".badge")).to_have_text("履歴")


def test_a_tab_that_opens_the_thread_mid_run_follows_it_to_the_end(page, context, server):
    """実行の途中で同じ会話を開いたタブも、履歴の発言と、続きのテキストを受けて終わりまで追う (全文になる)。"""
    console = Console(page, server).open()
    console.send("[slow] 途中から見られる長い話")
    page.wait_for_function(
        "() => { const m = document.querySelectorAll('.msg.assistant .msg-text'); return (m[0]?.textContent || '').length > 30; }"
    )
    second = _new_page(context)
    tab = Console(second, server).open()
    row = tab.thread("[slow] 途中から見られる長い話")
    expect(row.locator(".thread-active")).to_have_text("実行中")
    tab.open_thread("[slow] 途中から見られる長い話")
    assert tab.user_texts() == ["[slow] 途中から見られる長い話"]
    expect(second.locator("body")).to_have_attribute("data-running", "true")
    expect(second.locator("#stop")).to_be_enabled()
    assert tab.wait_run_end() == "finished"
    assert console.wait_run_end() == "finished"
    # 動いていた実行は始まりから送り直してもらうので、断片の和も全文と一致する
    assert tab.assistant_text() == console.assistant_text()
    assert tab.state("conversation.mismatches") == 0
    expect(second.locator("details.run")).to_have_count(1)
    expect(second.locator("details.run .badge")).to_have_text("完了")
    expect(row.locator(".thread-active")).to_have_count(0)
    assert second.js_errors == []


def test_reloading_mid_run_follows_the_run_to_the_end(page, server):
    """実行の途中で読み込み直しても、発言は履歴から出て、実行は続きのイベントで終わりまで流れる。"""
    console = Console(page, server).open()
    console.send("[slow] 読み込み直しても続く話")
    page.wait_for_function(
        "() => { const m = document.querySelectorAll('.msg.assistant .msg-text'); return (m[0]?.textContent || '').length > 30; }"
    )
    page.goto(server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-thread-ready", "true")
    expect(page.locator("body")).to_have_attribute("data-history-loaded", "true")
    assert console.user_texts() == ["[slow] 読み込み直しても続く話"]
    expect(page.locator("body")).to_have_attribute("data-running", "true")
    assert console.wait_run_end() == "finished"
    assert console.assistant_text() == "これはゆっくり流れる長い応答です。" * 20
    assert console.state("conversation.mismatches") == 0
    expect(page.locator(".msg.assistant")).to_have_count(1)
    expect(page.locator("details.run")).to_have_count(1)


def test_a_browser_tool_waiting_for_an_answer_is_asked_again_after_a_reload(page, server):
    """確認ダイアログ (ブラウザ側ツール) を待っている間に読み込み直しても、ダイアログがまた出て、答えれば実行が終わる。"""
    console = Console(page, server).open()
    console.send("confirm_action で確かめてから進めて")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    page.goto(server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-history-loaded", "true")
    expect(dialog).to_be_visible()
    assert console.user_texts() == ["confirm_action で確かめてから進めて"]
    page.locator("#confirm-yes").click()
    assert console.wait_run_end() == "finished"
    expect(console.assistant()).to_contain_text("ツールの結果:")
    expect(console.assistant()).to_contain_text('"confirmed": true')
    expect(page.locator(".msg.assistant")).to_have_count(1)


def _sign_in(ctx: Any, srv: ServerProcess, token: str) -> Console:
    """新しいページでトークンを入れて接続し、スレッドに入るまで待つ。"""
    pg = _new_page(ctx)
    pg.goto(srv.url + "/")
    pg.locator("#auth-token").fill(token)
    pg.locator("#auth-token").press("Enter")
    expect(pg.locator("body")).to_have_attribute("data-thread-ready", "true")
    return Console(pg, srv)


def test_each_token_sees_only_its_own_conversations(browser, openai_fake, store_path):
    """トークン (主体) ごとに一覧が分かれる: 別のトークンのブラウザには出ず、同じトークンの別のブラウザには出る。"""
    require_chromium()
    overrides = [f"providers.openai.base_url={openai_fake.base_url}", "agent.model=openai/gpt-4.1-mini"]
    secrets = {"OPENAI_API_KEY": FAKE_OPENAI_KEY, "LLM_ROUTER_API_TOKENS": "token-alice,token-bob"}
    contexts = [browser.new_context(locale="ja-JP", timezone_id="Asia/Tokyo") for _ in range(3)]
    try:
        with ServerProcess([*overrides, f"store.path={store_path}"], secrets=secrets) as srv:
            alice = _sign_in(contexts[0], srv, "token-alice")
            alice.send("アリスの会話")
            assert alice.wait_run_end() == "finished"
            expect(alice.threads()).to_have_count(1)
            bob = _sign_in(contexts[1], srv, "token-bob")
            expect(bob.page.locator("#thread-list .thread-empty")).to_be_visible()
            bob.send("ボブの会話")
            assert bob.wait_run_end() == "finished"
            expect(bob.threads().locator(".thread-title")).to_have_text(["ボブの会話"])
            alice_again = _sign_in(contexts[2], srv, "token-alice")
            expect(alice_again.threads().locator(".thread-title")).to_have_text(["アリスの会話"])
            alice_again.open_thread("アリスの会話")
            assert alice_again.user_texts() == ["アリスの会話"]
            for console in (alice, bob, alice_again):
                assert console.page.js_errors == []
    finally:
        for ctx in contexts:
            ctx.close()
