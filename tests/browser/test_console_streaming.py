"""コンソールのストリーミング、停止、再接続と再開、大量のデルタのテスト (本物のサーバー + OpenAI の偽サーバー)。

偽サーバーの規則: 文に ``[slow]`` を含めると、長い応答を 1 フレームごとに 0.05 秒待って流す。
時間の長さは一切検証しない (状態と内容だけを見る)。
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import Console, screenshot

SLOW_TEXT = "これはゆっくり流れる長い応答です。" * 20


def _wait_text_at_least(console: Console, chars: int) -> None:
    """最後のアシスタントの発言が ``chars`` 文字以上になるまで待つ。"""
    console.page.wait_for_function(
        """(n) => {
            const msgs = document.querySelectorAll('.msg.assistant');
            const last = msgs[msgs.length - 1];
            return last && last.querySelector('.msg-text') && last.querySelector('.msg-text').textContent.length >= n;
        }""",
        arg=chars,
    )


def test_text_streams_in_piece_by_piece(page, openai_server):
    """テキストは一度にではなく、少しずつ増えながら表示され、最後は全文になる。"""
    console = Console(page, openai_server).open()
    # 会話の DOM が変わるたびに、アシスタントのテキストの長さを記録する (ページの中で、待ち時間なしに)
    page.evaluate(
        """() => {
            window.lengths = [];
            new MutationObserver(() => {
                const msgs = document.querySelectorAll('.msg.assistant .msg-text');
                const last = msgs[msgs.length - 1];
                if (last) window.lengths.push(last.textContent.length);
            }).observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true });
        }"""
    )
    console.send("[slow] 長めに答えて")
    assert console.wait_run_end() == "finished"
    lengths = page.evaluate("() => window.lengths")
    intermediate = {n for n in lengths if 0 < n < len(SLOW_TEXT)}
    assert len(intermediate) >= 10, lengths
    assert lengths == sorted(lengths)  # 減ったり巻き戻ったりしない
    assert console.assistant_text() == SLOW_TEXT
    assert console.state("conversation.mismatches") == 0


def test_stop_button_cancels_mid_stream_and_shows_where(page, openai_server):
    """停止ボタンで実行が止まり、会話とタイムラインに止まった位置が出る。部分テキストは残る。"""
    console = Console(page, openai_server).open()
    console.send("[slow] 止めるまで話して")
    _wait_text_at_least(console, 20)
    expect(page.locator("#stop")).to_be_enabled()
    page.locator("#stop").click()
    assert console.wait_run_end() == "cancelled"
    partial = console.assistant_text()
    assert 20 <= len(partial) < len(SLOW_TEXT)
    assert SLOW_TEXT.startswith(partial)
    expect(console.assistant().locator(".msg-stopped")).to_contain_text("停止しました")
    expect(console.run().locator(".item-cancel")).to_contain_text("ステップ 1 の途中で停止")
    expect(console.run().locator(".badge")).to_have_text("停止")
    expect(page.locator("#stop")).to_be_disabled()
    expect(page.locator("#send")).to_be_enabled()
    screenshot(page, "console-stopped")
    # 止めた後も同じスレッドで続けられる
    console.send("続けて")
    assert console.wait_run_end() == "finished"


def test_keyboard_only_send_newline_and_escape(page, openai_server):
    """キーボードだけで: Tab で入力欄へ、Shift+Enter で改行、Enter で送信、Esc で停止。"""
    console = Console(page, openai_server).open()
    page.locator("body").focus()
    for _ in range(30):
        if page.evaluate("document.activeElement && document.activeElement.id") == "prompt":
            break
        page.keyboard.press("Tab")
    expect(page.locator("#prompt")).to_be_focused()
    page.keyboard.type("[slow] 一行目")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("二行目")
    assert page.locator("#prompt").input_value() == "[slow] 一行目\n二行目"
    page.keyboard.press("Enter")
    expect(page.locator(".msg.user").last).to_contain_text("二行目")
    assert page.locator("#prompt").input_value() == ""
    _wait_text_at_least(console, 10)
    page.keyboard.press("Escape")
    assert console.wait_run_end() == "cancelled"
    # フォーカスが見える (focus-visible の枠)
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")


def test_forced_disconnect_catches_up_without_duplicates(page, openai_server):
    """ストリームの途中で接続を切ると、自動で再接続し、最後の seq から再開して重複なく全文になる。"""
    console = Console(page, openai_server).open()
    console.send("[slow] 切断されても続けて")
    _wait_text_at_least(console, 30)
    seq_before = console.state("connection.lastSeq")
    page.evaluate("() => window.llmRouterConsole.connection.socket.io.engine.close()")
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "connected")
    assert console.wait_run_end() == "finished"
    assert console.assistant_text() == SLOW_TEXT
    assert console.state("conversation.mismatches") == 0
    assert console.state("connection.lastSeq") > seq_before
    assert console.state("connection.connectCount") == 2
    # 送り直された分は seq で捨てられ、二重に表示されない
    assert page.locator(".msg.assistant").count() == 1
    assert page.locator("details.run").count() == 1


def test_offline_then_online_catches_up(page, context, openai_server):
    """ネットワークが切れて戻ったときも、続きから再開して全文になる。"""
    console = Console(page, openai_server).open()
    console.send("[slow] オフラインを挟んで")
    _wait_text_at_least(console, 30)
    context.set_offline(True)
    # オフラインの間に接続が切れたことをページが知るまで待つ (engine を閉じて確実に切る)
    page.evaluate("() => window.llmRouterConsole.connection.socket.io.engine.close()")
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "reconnecting")
    screenshot(page, "console-reconnecting")
    context.set_offline(False)
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "connected", timeout=30_000)
    assert console.wait_run_end() == "finished"
    assert console.state("connection.connectCount") >= 2
    assert console.assistant_text() == SLOW_TEXT
    assert console.state("conversation.mismatches") == 0


def test_reload_redraws_the_thread_from_the_server(page, openai_server):
    """ページを読み込み直しても、同じスレッドの会話がサーバーの履歴 (get_history) から戻り、タイムラインにも履歴として出る。"""
    console = Console(page, openai_server).open()
    console.send("覚えておいてほしい文")
    assert console.wait_run_end() == "finished"
    before = console.assistant_text()
    console.open()
    expect(page.locator(".msg.user > .msg-text")).to_have_text("覚えておいてほしい文")
    expect(console.assistant().locator(".msg-text")).to_have_text(before)
    expect(console.run().locator(".badge")).to_have_text("履歴")
    # 続けて送れば、新しい実行はふつうに流れて完了する
    console.send("続き")
    assert console.wait_run_end() == "finished"
    expect(console.run().locator(".badge")).to_have_text("完了")


def test_five_thousand_deltas_stay_responsive(page, openai_server, openai_fake):
    """5,000 個のデルタが流れる間もページは操作に応え、最後は全文が揃う。"""
    pieces = [f"{i % 10}" for i in range(5000)]
    # 1 文字ずつ、フレームごとに少し間を置いて流す (流れている最中に操作できるように)
    openai_fake.add_text_turn("".join(pieces), chunk_size=1, delay_s=0.001)
    console = Console(page, openai_server).open()
    console.send("たくさん流して")
    _wait_text_at_least(console, 100)
    # 流れている最中でも入力でき、折りたたみのボタンが効く
    page.locator("#prompt").fill("応答しますか")
    assert page.locator("#prompt").input_value() == "応答しますか"
    page.locator("#collapse-all").click()
    expect(console.run()).not_to_have_attribute("open", "")
    page.locator("#expand-all").click()
    expect(console.run()).to_have_attribute("open", "")
    streaming_while_used = console.run().get_attribute("data-state") == "running"
    assert console.wait_run_end(timeout_ms=120_000) == "finished"
    assert streaming_while_used, "the stream ended before the page was used; the check above proved nothing"
    assert console.assistant_text() == "".join(pieces)
    assert console.state("conversation.mismatches") == 0
    assert console.state("connection.lastSeq") > 5000
    expect(console.run().locator(".text-count")).to_have_text("5,000 文字")
    # 終わった後も、次の実行ができる
    page.locator("#prompt").press("Enter")
    assert console.wait_run_end() == "finished"


def test_retries_and_the_final_error_are_shown(page, openai_server):
    """プロバイダの失敗 (429) は再試行としてタイムラインに出て、尽きればエラーとして会話とタイムラインに出る。"""
    console = Console(page, openai_server).open()
    console.send("[fail:429] 混んでいるとき")
    assert console.wait_run_end() == "error"
    expect(console.run().locator(".item-retry").first).to_contain_text("再試行")
    expect(console.run().locator(".item-error")).to_contain_text("provider_rate_limited")
    expect(console.assistant().locator(".msg-error")).to_be_visible()
    screenshot(page, "console-error")


def test_broken_stream_resets_the_step(page, openai_server):
    """出力の途中でストリームが切れると、そのステップはやり直し (step_reset) として打ち消し線で示される。"""
    console = Console(page, openai_server).open()
    console.send("[break] 途中で切れる")
    console.wait_run_end()
    expect(console.run().locator(".item-reset").first).to_contain_text("ステップのやり直し")
    assert console.run().locator(".item.void").count() >= 1


def test_server_restart_mid_run_is_shown_and_the_page_carries_on(page, monkeypatch):
    """実行中にサーバーが再起動しても、ページは再接続し、実行が終わったことと履歴が失われたことを示し、続けて使える。"""
    from tests.realtime import harness

    first = harness.ServerProcess().start()
    try:
        console = Console(page, first).open()
        console.send("こんにちは")  # デモモデルの長めの説明 (ゆっくり流れる)
        _wait_text_at_least(console, 10)
        first.stop()
        # 同じポートで起動し直す (ページは同じ URL に再接続する)
        monkeypatch.setattr(harness, "free_port", lambda: first.port)
        second = harness.ServerProcess().start()
    finally:
        first.close()
    try:
        console.server = second
        expect(page.locator("#warnings-banner")).to_contain_text("サーバーが再起動", timeout=30_000)
        assert console.wait_run_end() == "cancelled"
        expect(console.assistant().locator(".msg-stopped")).to_contain_text("サーバーの停止")
        console.send("再起動の後に 12 * 3 を計算して")
        assert console.wait_run_end() == "finished"
        assert console.state("conversation.mismatches") == 0
    finally:
        second.close()


def test_stop_after_the_current_step(page, openai_server, openai_fake):
    """「このステップの後で停止」は、いまのモデル呼び出しとそのツールを終えてから、次のステップに進まずに止める。"""
    # 引数を 1 文字ずつゆっくり流すツール呼び出し (押す間がある)。続きの台本は積まない: 誤って続けば規則の応答で次のステップができ、失敗する
    openai_fake.add_tool_call_turn([("calculator", {"expression": "2 + 3"})], arg_chunk_size=1, delay_s=0.05)
    console = Console(page, openai_server).open()
    console.send("計算して、その後で止めて")
    expect(console.run().locator(".tool-card", has_text="calculator")).to_be_visible()
    after_step = page.locator("#stop-after-step")
    expect(after_step).to_be_visible()
    after_step.click()
    expect(after_step).to_have_text("このステップの後で停止します…")
    assert console.wait_run_end() == "cancelled"
    steps = console.run().locator("details.step")
    expect(steps).to_have_count(1)
    card = console.run().locator(".tool-card", has_text="calculator")
    expect(card).to_have_attribute("data-state", "done")
    expect(card.locator(".tool-output")).to_have_text("5")
    expect(console.run().locator(".item-cancel")).to_contain_text("ステップ 1 の後で停止")
    expect(after_step).to_be_hidden()
