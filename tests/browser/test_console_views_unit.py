"""コンソールの部品の単体の確かめ (ページの中で ES モジュールを読み込み、サーバーのイベントなしで動かす)。

- 時刻の表示 (``threads.js`` の ``toDate`` / ``relativeTime``) と content の文字 (``dom.js`` の ``contentText``)。
- 履歴 (``get_history`` の ``messages`` の形) から描いた会話とタイムライン: 発言、テキスト、ツールの札と結果、中断の印、
  最後の発言だけの「編集」。
- 一覧 (``ThreadListView``): ページを ``before`` で続けて読み、中身の無い会話を出さず、失敗は欄に出す。
  ここでの ``request`` はページの中の関数で、プロトコルそのものは test_console_threads.py が本物のサーバーで確かめる。
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import Console

HISTORY = [
    {
        "message_id": "m1",
        "run_id": "r1",
        "role": "user",
        "content": "12 * 7 は?",
        "tool_calls": [],
        "created_at": 1764600000.0,
    },
    {
        "message_id": "m2",
        "run_id": "r1",
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"tool_call_id": "c1", "name": "calculator", "arguments": {"expression": "12 * 7"}, "executor": "server"}
        ],
        "created_at": 1764600001.0,
    },
    {"message_id": "m3", "run_id": "r1", "role": "tool", "content": 84, "tool_call_id": "c1", "is_error": False},
    {"message_id": "m4", "run_id": "r1", "role": "assistant", "content": "**84** です。", "tool_calls": []},
    {"message_id": "m5", "run_id": "r2", "role": "user", "content": [{"type": "text", "text": "長く話して"}]},
    {"message_id": "m6", "run_id": "r2", "role": "assistant", "content": "途中まで", "interrupted": True},
]


def test_time_and_content_helpers(page, demo_server):
    """時刻は秒・ミリ秒・ISO のどれでも読め、相対表示になる。content は文字列でも部品の配列でも文字になる。"""
    Console(page, demo_server).open()
    out = page.evaluate(
        """async () => {
            const t = await import('/ui/js/threads.js');
            const d = await import('/ui/js/dom.js');
            const now = new Date(2026, 11, 2, 12, 0, 0);
            const s = now.getTime() / 1000;
            return {
                seconds: t.toDate(1764600000).getTime(),
                millis: t.toDate(1764600000000).getTime(),
                iso: t.toDate('2025-12-01T14:40:00Z').getTime(),
                bad: t.toDate('not a time'),
                justNow: t.relativeTime(new Date((s - 5) * 1000), now),
                minutes: t.relativeTime(new Date((s - 300) * 1000), now),
                hours: t.relativeTime(new Date((s - 7200) * 1000), now),
                yesterday: t.relativeTime(new Date(2026, 11, 1, 14, 5), now),
                older: t.relativeTime(new Date(2026, 10, 20, 9, 3), now),
                text: d.contentText('abc'),
                parts: d.contentText([{type: 'text', text: 'a'}, {type: 'image_url'}, {type: 'text', text: 'b'}]),
            };
        }"""
    )
    assert out["seconds"] == out["millis"] == out["iso"] == 1764600000000
    assert out["bad"] is None
    assert out["justNow"] == "たった今"
    assert out["minutes"] == "5 分前"
    assert out["hours"] == "2 時間前"
    assert out["yesterday"] == "昨日 14:05"
    assert out["older"] == "2026/11/20 09:03"
    assert out["text"] == "abc" and out["parts"] == "ab"


def test_history_is_drawn_into_the_conversation_and_the_timeline(page, demo_server):
    """履歴の messages から、発言・テキスト (Markdown)・ツールの札と結果・中断の印が描かれ、編集は最後の発言だけ。"""
    console = Console(page, demo_server).open()
    page.evaluate("(messages) => window.llmRouterConsole.showHistory({messages, last_seq: 12})", HISTORY)
    assert console.user_texts() == ["12 * 7 は?", "長く話して"]
    first = page.locator(".msg.assistant").nth(0)
    expect(first.locator(".chip")).to_have_attribute("data-state", "done")
    expect(first.locator("strong")).to_have_text("84")
    expect(page.locator(".msg.assistant").nth(1).locator(".msg-stopped")).to_contain_text("中断されました")
    expect(page.locator(".msg.user .edit-button")).to_have_count(1)
    expect(page.locator(".msg.user").last.locator(".edit-button")).to_have_count(1)
    runs = page.locator("details.run")
    expect(runs).to_have_count(2)
    expect(runs.first.locator(".badge")).to_have_text("履歴")
    expect(runs.first.locator(".tool-output")).to_have_text("84")
    expect(runs.first.locator(".tool-card")).to_have_attribute("data-state", "done")
    expect(runs.last.locator(".item-cancel")).to_contain_text("中断")
    assert page.locator("body").get_attribute("data-running") == "false"
    # 巻き戻し (thread_rewound と同じ処理) で r2 が消え、編集は r1 の発言に移る
    page.evaluate("() => window.llmRouterConsole.applyRewind(['r2'])")
    assert console.user_texts() == ["12 * 7 は?"]
    expect(page.locator("details.run")).to_have_count(1)
    expect(page.locator(".msg.user .edit-button")).to_have_count(1)
    # 2 度目は何も変えない
    page.evaluate("() => window.llmRouterConsole.applyRewind(['r2'])")
    assert console.user_texts() == ["12 * 7 は?"]


def test_thread_list_pages_and_hides_empty_threads(page, demo_server):
    """一覧は next_cursor を before に渡して続きを足し、中身の無い会話を出さず、読めなければ欄に出す。"""
    Console(page, demo_server).open()
    out = page.evaluate(
        """async () => {
            const { ThreadListView } = await import('/ui/js/threads.js');
            const list = document.createElement('ul');
            const more = document.createElement('button');
            const status = document.createElement('p');
            document.body.append(list, more, status);
            const calls = [];
            const pages = {
                first: { threads: [
                    { thread_id: 't3', title: '三つ目', updated_at: Date.now() / 1000, last_seq: 9, active_run_id: 'r9' },
                    { thread_id: 't0', title: null, updated_at: Date.now() / 1000, last_seq: 0 },
                    { thread_id: 't2', title: null, updated_at: Date.now() / 1000, last_seq: 4 },
                ], next_cursor: 'c1' },
                c1: { threads: [{ thread_id: 't1', title: '一つ目', updated_at: Date.now() / 1000 - 600, last_seq: 3 }], next_cursor: null },
            };
            let fail = false;
            const view = new ThreadListView({
                list, more, status,
                request: async (event, payload) => {
                    calls.push([event, payload]);
                    if (fail) { const e = new Error('down'); e.code = 'store_unavailable'; throw e; }
                    return pages[payload.before || 'first'];
                },
                onOpen: () => {}, onDeleted: () => {},
            });
            view.setCurrent('t2');
            await view.refresh();
            const firstTitles = [...list.querySelectorAll('.thread-title')].map((e) => e.textContent);
            const moreShown = !more.hidden;
            const active = [...list.querySelectorAll('.thread-active')].length;
            const current = list.querySelector('[aria-current="true"]')?.dataset.threadId;
            more.click();
            await new Promise((r) => setTimeout(r, 0));
            await new Promise((r) => setTimeout(r, 0));
            const allTitles = [...list.querySelectorAll('.thread-title')].map((e) => e.textContent);
            const times = [...list.querySelectorAll('time')].map((e) => e.textContent);
            fail = true;
            await view.refresh();
            return { calls, firstTitles, moreShown, active, current, allTitles, moreAfter: !more.hidden, times,
                     status: status.textContent, kept: list.querySelectorAll('.thread-item').length };
        }"""
    )
    assert out["calls"][0] == ["list_threads", {"limit": 30}]
    assert out["calls"][1] == ["list_threads", {"limit": 30, "before": "c1"}]
    assert out["firstTitles"] == ["三つ目", "(無題)"]
    assert out["moreShown"] is True
    assert out["active"] == 1
    assert out["current"] == "t2"
    assert out["allTitles"] == ["三つ目", "(無題)", "一つ目"]
    assert out["moreAfter"] is False
    assert out["times"] == ["たった今", "たった今", "10 分前"]
    assert "store_unavailable" in out["status"]
    assert out["kept"] == 3
