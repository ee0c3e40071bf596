"""イベントログの規則 (どのバックエンドも同じ): 保存用の JSON とその大きさ、上限のために捨てる先頭。

``memory`` / ``sqlite`` / ``redis`` のバックエンドが使う。上限 (:class:`~llm_router.store.base.LogLimits`) の
意味は docs/protocol.md 12 章。
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from llm_router.core import json_codec
from llm_router.store.base import LogLimits


def encode_event(event: dict[str, Any]) -> str:
    """イベントを保存用の JSON にする (大きさの上限もこの UTF-8 のバイト数で数える)。"""
    return json_codec.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def head_to_drop(
    head: Iterable[tuple[int, float, int]], count: int, total_bytes: int, limits: LogLimits, now: float
) -> tuple[int, int, int]:
    """古い順のイベント ``(seq, ts, size)`` の先頭から、上限のために捨てる範囲を決める。

    最新の 1 件は必ず残す。``(捨てる件数, 捨てるバイト数, 捨てる最後の seq)`` を返す (捨てなければ 0 件)。
    """
    cutoff = None if limits.max_age_s is None else now - limits.max_age_s
    dropped = dropped_bytes = last = 0
    it: Iterator[tuple[int, float, int]] = iter(head)
    for seq, ts, size in it:
        remaining = count - dropped
        if remaining <= 1:
            break
        over_count = limits.max_events is not None and remaining > limits.max_events
        over_bytes = limits.max_bytes is not None and total_bytes - dropped_bytes > limits.max_bytes
        too_old = cutoff is not None and ts < cutoff
        if not (over_count or over_bytes or too_old):
            break
        dropped += 1
        dropped_bytes += size
        last = seq
    return dropped, dropped_bytes, last
