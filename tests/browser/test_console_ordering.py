"""コンソールの接続部品 (connection.js) の並べ替えと重複排除を、ページの中で直接確かめるテスト。

サーバーの振る舞いに頼らず、順番の乱れ・重複・飛び・別スレッドのイベントを作って ``receive`` に渡す。
"""

from __future__ import annotations

from tests.browser.conftest import Console

SETUP = """async () => {
    const { AgentConnection } = await import('/ui/js/connection.js');
    const seen = [];
    const conn = new AgentConnection({
        getToken: () => null, onEvent: (e) => seen.push(e.seq), onStatus: () => {},
        onStarted: () => {}, onStartFailed: () => {},
    });
    conn.useThread('thread_a');
    window.probe = { conn, seen };
    window.feed = (seqs, thread = 'thread_a') =>
        seqs.forEach((seq) => conn.receive('text_delta', { type: 'text_delta', thread_id: thread, run_id: 'r', seq, ts: 0 }));
}"""


def test_events_are_delivered_in_seq_order_once(page, demo_server):
    """順番が乱れ、重複したイベントも、seq の順に 1 回ずつだけ渡される。"""
    Console(page, demo_server).open()
    page.evaluate(SETUP)
    page.evaluate("() => feed([1, 2, 2, 4, 3, 5, 1, 5, 6])")
    assert page.evaluate("() => probe.seen") == [1, 2, 3, 4, 5, 6]
    assert page.evaluate("() => probe.conn.duplicates") == 3
    assert page.evaluate("() => probe.conn.lastSeq") == 6


def test_events_of_another_thread_are_ignored(page, demo_server):
    """別のスレッドのイベントは渡さない (同じソケットが前の会話の部屋に残っていても)。"""
    Console(page, demo_server).open()
    page.evaluate(SETUP)
    page.evaluate("() => { feed([1, 2], 'thread_b'); feed([1]); }")
    assert page.evaluate("() => probe.seen") == [1]


def test_a_gap_that_never_fills_is_skipped_after_a_resync_attempt(page, demo_server):
    """埋まらない飛び (サーバーのログが上限で切られた) は、再開を頼み直した後に飛ばして先へ進む。"""
    Console(page, demo_server).open()
    page.evaluate(SETUP)
    page.evaluate("() => feed([1, 4, 5])")
    assert page.evaluate("() => probe.seen") == [1]
    page.wait_for_function("() => probe.seen.length === 3", timeout=15_000)
    assert page.evaluate("() => probe.seen") == [1, 4, 5]
    page.evaluate("() => feed([2, 3, 6])")
    assert page.evaluate("() => probe.seen") == [1, 4, 5, 6]


def test_resume_sends_the_last_seq_and_a_lost_thread_restarts_the_count(page, demo_server):
    """再開の start は最後の seq を送る。サーバーがログを失っていれば (last_seq が小さい)、数え直して新しいイベントを受ける。"""
    Console(page, demo_server).open()
    page.evaluate(SETUP)
    page.evaluate("() => feed([1, 2, 3])")
    result = page.evaluate(
        """async () => {
            let info = null;
            let sent = null;
            probe.conn.onStarted = (ack, i) => { info = i; };
            // 再起動したサーバーのふりをする小さなソケット: start に last_seq 0 で答える
            probe.conn.socket = { connected: true, timeout: () => ({ emit: (event, payload, cb) => {
                sent = payload;
                cb(null, { ok: true, thread_id: payload.thread_id, model: 'demo/scripted', tools: [], last_seq: 0, warnings: [] });
            } }) };
            await probe.conn.start({ resumed: true });
            feed([1, 2]);
            return { info, resume: sent.resume_after_seq };
        }"""
    )
    assert result == {"info": {"resumed": True, "lost": True}, "resume": 3}
    assert page.evaluate("() => probe.seen") == [1, 2, 3, 1, 2]
