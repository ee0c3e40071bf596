"""イベントの受け口 (シンク)。エージェントループはイベントをここへ渡すだけで、送り先を知らない。

リアルタイム層は ``type`` / ``thread_id`` / ``seq`` / ``ts`` の封筒を付けて Socket.IO で送る。
テストや CLI には、受け取ったイベントを順に貯める :class:`CollectingSink` を使う。
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class EventSink(Protocol):
    """プロトコルのイベントを受け取るもの。"""

    def emit(self, event_type: str, run_id: str | None, fields: dict[str, Any]) -> None:
        """イベント 1 つを受け取る (``fields`` は封筒を除いたイベント固有のフィールド)。"""
        ...


class CollectingSink:
    """受け取ったイベントを ``(event_type, run_id, fields)`` の順のリストに貯めるシンク (スレッド安全)。"""

    def __init__(self, on_emit: Callable[[str, str | None, dict[str, Any]], None] | None = None) -> None:
        """空で作る。``on_emit`` を渡すと各イベントのたびに呼ぶ (テストでの割り込み用)。"""
        self.events: list[tuple[str, str | None, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._on_emit = on_emit

    def emit(self, event_type: str, run_id: str | None, fields: dict[str, Any]) -> None:
        """イベントを貯め、待っている者を起こす。"""
        with self._cond:
            self.events.append((event_type, run_id, fields))
            self._cond.notify_all()
        if self._on_emit is not None:
            self._on_emit(event_type, run_id, fields)

    def types(self) -> list[str]:
        """受け取ったイベント名の一覧 (順番どおり)。"""
        with self._cond:
            return [e[0] for e in self.events]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        """指定した名前のイベントのフィールドの一覧。"""
        with self._cond:
            return [e[2] for e in self.events if e[0] == event_type]

    def wait_for(
        self, predicate: Callable[[list[tuple[str, str | None, dict[str, Any]]]], bool], timeout: float = 5.0
    ) -> bool:
        """``predicate(events)`` が真になるまで最大 ``timeout`` 秒待つ。真になれば真を返す。"""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wait_for_type(self, event_type: str, timeout: float = 5.0, count: int = 1) -> bool:
        """名前 ``event_type`` のイベントが ``count`` 個届くまで待つ。"""
        return self.wait_for(lambda evs: sum(1 for e in evs if e[0] == event_type) >= count, timeout)
