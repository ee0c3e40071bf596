"""グループコミット: 同時に書こうとしている何本ものラン (別々のスレッド) のコミットを 1 トランザクションにまとめる。

先書きは崩さない: 各呼び出しは、自分の項目がコミットされてから返る (呼ぶ側はその後でイベントを送る)。
まとめられるのは「同じ瞬間に書こうとしている別の呼び出し」だけで、わざと待つ時間は入れない。

しくみ (リーダーとフォロワー):

1. 呼び出しは項目を待ち行列の末尾に足す。リーダーがいなければ自分がリーダーになる。
2. リーダーは一度だけ譲り (``pause``: eventlet ではハブへ戻り、実行できる他のグリーンスレッドが
   待ち行列に加わる)、待ち行列の先頭から ``max_batch`` 件を取って ``Store.commit_batch`` で書く。
3. 書いた項目の呼び出しを起こし、待ち行列が残っていればその先頭をリーダーにして起こす。

同じスレッドの 2 つのイベントが 1 つのまとまりに入ると、起きる順番によっては送る順が ``seq`` の順と
入れ替わり得る。登録簿の送出口はスレッドごとのロックを「コミット → 送信」の間持つので、まとまりに入るのは
別々のスレッドの項目だけになる (README.md)。
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from llm_router.store.base import CommitItem, Committer, Store


def _yield_once() -> None:
    """一度だけ譲る (eventlet で monkey patch されていればハブへ戻る)。"""
    time.sleep(0)


class _Waiting:
    """待ち行列の 1 件: 項目と、起こすための Event と、リーダーを任されたかどうか。"""

    __slots__ = ("done", "item", "lead")

    def __init__(self, item: CommitItem) -> None:
        """項目を受け取る。"""
        self.item = item
        self.done = threading.Event()
        self.lead = False


class GroupCommitter(Committer):
    """:meth:`Store.commit` と同じ形の ``commit`` (:class:`~llm_router.store.base.Committer`) を、まとめて書く窓口。

    Args:
        store: 書き込み先のストア (``commit_batch`` を持つもの)。
        max_batch: 1 トランザクションに入れる最大の項目数。
        pause: リーダーが書く前に一度譲る関数 (既定は ``time.sleep(0)``)。
    """

    def __init__(self, store: Store, max_batch: int = 256, pause: Callable[[], None] = _yield_once) -> None:
        """窓口を作る。"""
        self.store = store
        self.max_batch = max(1, int(max_batch))
        self._pause = pause
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._leading = False
        self.batches = 0
        self.items = 0

    def commit_batch(self, items: Sequence[CommitItem]) -> None:
        """項目を待ち行列に足し、全部がコミットされる (か誤りが入る) まで待つ。

        :meth:`~llm_router.store.base.Committer.commit` はこれを 1 項目で呼ぶ。リーダーがいなければ先頭の項目の
        呼び出しがリーダーになり、後の項目はリーダーが書くのを待つ (リーダーを任されたらその項目で書く)。
        """
        waiting = [_Waiting(item) for item in items]
        with self._lock:
            self._queue.extend(waiting)
            lead = not self._leading and bool(waiting)
            self._leading = self._leading or lead
        for i, me in enumerate(waiting):
            first_leader = lead and i == 0
            if not first_leader:
                me.done.wait()
            if first_leader or me.lead:
                self._lead(me)

    def _lead(self, me: _Waiting) -> None:
        """リーダーとして 1 まとまりを書き、次のリーダーを決める (``me`` は常に待ち行列の先頭)。"""
        self._pause()
        with self._lock:
            batch = self._queue[: self.max_batch]
            del self._queue[: len(batch)]
        try:
            self.store.commit_batch([w.item for w in batch])
        except BaseException as exc:  # 想定外の失敗も、待っている全員に伝える
            for w in batch:
                if w.item.error is None and not w.item.result:
                    w.item.error = exc
        with self._lock:
            self.batches += 1
            self.items += len(batch)
            successor = self._queue[0] if self._queue else None
            if successor is not None:
                successor.lead = True
            else:
                self._leading = False
        for w in batch:
            if w is not me:
                w.done.set()
        if successor is not None:
            successor.done.set()
