"""キャンセルトークン: エージェントループ、待機中のツール、開いている HTTP 応答に同じ取り消しを届ける。

``cancel()`` は登録されたコールバックを呼ぶ。クライアントはこれでストリームのソケットを
``shutdown`` し、停止したストリームを読んでいるグリーンスレッドを即座に起こす
(eventlet では別のグリーンスレッドからの ``response.close()`` は再入エラーになるため)。
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from llm_router.core.schemas.errors import RequestCancelled


class CancelToken:
    """一度だけ立つ取り消しフラグと、そのときに呼ぶコールバックの集合。"""

    def __init__(self) -> None:
        """未キャンセルの状態で作る。"""
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        """キャンセル済みなら真。"""
        return self._event.is_set()

    def cancel(self, reason: str = "client") -> bool:
        """キャンセルする。初回なら真を返し、登録済みのコールバックをすべて呼ぶ。"""
        with self._lock:
            if self._event.is_set():
                return False
            self.reason = reason
            self._event.set()
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            try:
                callback()
            except Exception:
                pass
        return True

    def add_callback(self, callback: Callable[[], None]) -> int:
        """キャンセル時に呼ぶ関数を登録し、解除用の番号を返す。既にキャンセル済みなら即座に呼ぶ。"""
        with self._lock:
            if not self._event.is_set():
                self._next += 1
                self._callbacks[self._next] = callback
                return self._next
        callback()
        return 0

    def remove_callback(self, handle: int) -> None:
        """登録を解除する。"""
        with self._lock:
            self._callbacks.pop(handle, None)

    def wait(self, timeout: float | None = None) -> bool:
        """キャンセルされるか ``timeout`` 秒経つまで待つ。キャンセルされたら真。"""
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        """キャンセル済みなら :class:`RequestCancelled` を投げる。"""
        if self._event.is_set():
            raise RequestCancelled("request cancelled")
