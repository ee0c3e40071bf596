"""AG-UI のスレッドの小さな台帳 (メモリ上、件数に上限): 所有者、実行中のラン、次のランへ渡すサーバー側ツールの結果。

- ``threadId`` は最初に使った主体のもの。別の主体が同じ ``threadId`` を使うと :class:`Forbidden` (HTTP 403)。
- 1 つのスレッドで同時に動くランは 1 つだけ (2 つ目は :class:`Busy`、HTTP 409)。
- ランが終わると、そのランでサーバーが答えたツールの結果を覚えておく。次のランの ``messages`` に
  その呼び出しの ``role: "tool"`` のメッセージが無ければ、ここから補う (docs/agui.md「ツールの規則」)。
- 件数が ``agui.max_threads`` を超えたら、使われていない古いものから忘れる (実行中のものは忘れない)。
  忘れたスレッドは、次に使った主体のものになる。
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from llm_router.core.schemas.common import ToolResult


class Forbidden(Exception):
    """別の主体のスレッド。"""


class Busy(Exception):
    """そのスレッドではランが実行中。"""


@dataclass
class AguiThread:
    """1 つのスレッドの記録 (台帳のロックの下で読み書きする)。"""

    owner: str
    active_run: Any = None
    kept_results: dict[str, ToolResult] = field(default_factory=dict)


class AguiThreads:
    """主体ごとのスレッドの台帳。

    Args:
        max_threads: 覚えておくスレッドの数の上限。
    """

    def __init__(self, max_threads: int) -> None:
        """空の台帳を作る。"""
        self.max_threads = max(1, max_threads)
        self._threads: OrderedDict[str, AguiThread] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """覚えているスレッドの数。"""
        return len(self._threads)

    def check_owner(self, thread_id: str, principal: str) -> None:
        """別の主体のスレッドなら :class:`Forbidden` (状態は変えない)。"""
        with self._lock:
            record = self._threads.get(thread_id)
        if record is not None and record.owner != principal:
            raise Forbidden(thread_id)

    def begin(self, thread_id: str, principal: str, run: Any) -> dict[str, ToolResult]:
        """ランを登録し、前のランから渡されたサーバー側ツールの結果を返す。

        Raises:
            Forbidden: 別の主体のスレッド。
            Busy: ランが実行中。
        """
        with self._lock:
            record = self._threads.get(thread_id)
            if record is None:
                record = AguiThread(owner=principal)
                self._threads[thread_id] = record
                self._evict(keep=thread_id)
            elif record.owner != principal:
                raise Forbidden(thread_id)
            if record.active_run is not None:
                raise Busy(thread_id)
            record.active_run = run
            self._threads.move_to_end(thread_id)
            return dict(record.kept_results)

    def finish(self, thread_id: str, run: Any, results: dict[str, ToolResult]) -> None:
        """ランの終わり: 実行中から外し、そのランでサーバーが答えた結果を次のランのために覚える。"""
        with self._lock:
            record = self._threads.get(thread_id)
            if record is None or record.active_run is not run:
                return
            record.active_run = None
            record.kept_results = dict(results)

    def _evict(self, keep: str) -> None:
        """(ロックの下で) 上限を超えた分を、古くて実行中でないものから忘れる (``keep`` はいま加えたもの)。"""
        if len(self._threads) <= self.max_threads:
            return
        for key in list(self._threads):
            if len(self._threads) <= self.max_threads:
                return
            if key != keep and self._threads[key].active_run is None:
                del self._threads[key]
