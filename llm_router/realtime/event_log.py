"""スレッドごとのイベントログ: 連続した ``seq`` の送信済みイベントを、件数・経過時間・バイト数で上限を付けて保持する。

バイト数は各イベントを JSON にした長さ (``ensure_ascii`` の既定どおり。日本語はエスケープした 6 文字で数えるので、
UTF-8 のバイト数より多めになり安全側)。900 KB のツール結果を何度も抱えてメモリを使い切ることはない。

再開 (``start`` の ``resume_after_seq``) はここから ``seq > N`` のイベントを取り出して送り直す。
追加は O(1) (``collections.deque``)。古いものは追加のたびに先頭から捨てる (償却 O(1))。
スレッドの排他はこのクラスの外 (スレッドのロック) で行う。
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any


class EventLog:
    """1 スレッド分の送信済みイベント。``seq`` は 1 から 1 ずつ増える。

    Args:
        max_events: 保持する最大件数 (``server.event_log_max_events``)。
        max_age_s: 保持する最大秒数 (``server.event_log_max_age_s``)。
        clock: 経過時間の計測に使う単調時計 (テスト用に差し替えられる)。
        max_bytes: 保持するイベントの JSON の長さの合計の上限 (``server.event_log_max_bytes``。0 以下なら無制限)。
    """

    def __init__(
        self,
        max_events: int,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = 0,
    ) -> None:
        """空のログを作る。"""
        self.max_events = max(1, int(max_events))
        self.max_age_s = float(max_age_s)
        self.max_bytes = int(max_bytes)
        self._clock = clock
        self._items: deque[tuple[float, dict[str, Any], int]] = deque()
        self.bytes = 0
        self.last_seq = 0

    def next_seq(self) -> int:
        """次に付ける ``seq``。"""
        return self.last_seq + 1

    def append(self, event: dict[str, Any]) -> None:
        """``seq`` を付けたイベントを末尾に足す (``event["seq"]`` は :meth:`next_seq` であること)。"""
        now = self._clock()
        size = len(json.dumps(event, default=str)) if self.max_bytes > 0 else 0
        self._items.append((now, event, size))
        self.bytes += size
        self.last_seq = event["seq"]
        self._trim(now)

    def _trim(self, now: float) -> None:
        """多すぎる・古すぎる・合計が大きすぎるイベントを先頭から捨てる (最後の 1 件は残す)。"""
        limit = now - self.max_age_s
        items = self._items
        while len(items) > 1 and (
            len(items) > self.max_events or items[0][0] < limit or (self.max_bytes > 0 and self.bytes > self.max_bytes)
        ):
            self.bytes -= items.popleft()[2]

    @property
    def first_seq(self) -> int:
        """保持している最古の ``seq`` (空なら ``last_seq + 1``)。"""
        return self._items[0][1]["seq"] if self._items else self.last_seq + 1

    def after(self, seq: int) -> list[dict[str, Any]]:
        """``seq`` より後のイベントを古い順に返す。捨てた範囲は含まれない (:meth:`missing_before` で分かる)。"""
        self._trim(self._clock())
        if not self._items or seq >= self.last_seq:
            return []
        start = max(0, seq + 1 - self.first_seq)
        return [event for _, event, _ in islice(self._items, start, None)]

    def missing_before(self, seq: int) -> bool:
        """``seq`` の直後からの再開に必要なイベントが既に捨てられていれば真。"""
        return seq < self.last_seq and seq + 1 < self.first_seq

    def __len__(self) -> int:
        """保持している件数。"""
        return len(self._items)
