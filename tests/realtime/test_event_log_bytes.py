"""イベントログのバイト数の上限 (``server.event_log_max_bytes``): 大きなイベントを何度も抱え込まない。"""

import json

from llm_router.realtime.event_log import EventLog


def _event(seq: int, payload: str) -> dict:
    """封筒つきのイベント。"""
    return {"type": "tool_result", "thread_id": "t", "run_id": "r", "seq": seq, "ts": 0.0, "result": payload}


def test_the_log_keeps_at_most_max_bytes_of_events_and_always_the_newest():
    """900 KB の結果を 10 回足しても、保持するのは上限 (2 MB) に収まる分だけで、最新は必ず残る。"""
    log = EventLog(10_000, 3600, max_bytes=2_000_000)
    big = "x" * 900_000
    for seq in range(1, 11):
        log.append(_event(seq, big))
    kept = log.after(0)
    assert sum(len(json.dumps(e)) for e in kept) <= 2_000_000
    assert [e["seq"] for e in kept] == [9, 10]
    assert log.first_seq == 9 and log.last_seq == 10 and log.missing_before(0)


def test_a_single_event_larger_than_the_limit_is_kept_alone_until_the_next():
    """上限より大きい 1 件は最新として残り、次のイベントで捨てられる。seq は連続のまま。"""
    log = EventLog(10_000, 3600, max_bytes=1000)
    log.append(_event(1, "y" * 5000))
    assert [e["seq"] for e in log.after(0)] == [1]
    log.append(_event(2, "small"))
    assert [e["seq"] for e in log.after(0)] == [2] and log.bytes < 1000


def test_japanese_text_is_counted_on_the_safe_side():
    """日本語はエスケープした長さで数える (UTF-8 のバイト数以上)。"""
    log = EventLog(10_000, 3600, max_bytes=10**9)
    text = "日本語の長い結果" * 100
    log.append(_event(1, text))
    assert log.bytes >= len(json.dumps(_event(1, text), ensure_ascii=False).encode("utf-8"))


def test_count_limit_still_applies_with_a_byte_limit():
    """件数の上限も同時に効く。"""
    log = EventLog(3, 3600, max_bytes=10**9)
    for seq in range(1, 6):
        log.append(_event(seq, "z"))
    assert [e["seq"] for e in log.after(0)] == [3, 4, 5]
