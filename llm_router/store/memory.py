"""``memory`` バックエンド: プロセスのメモリだけに置く (再起動で何も残らない)。

約束は SQLite と同じ (契約テストが両方を確かめる)。各操作はまず全部を検査・符号化してから、ロックの下で
一度に反映するので、途中の例外で半端な状態は残らない。履歴は符号化した dict で持ち、読むたびに新しい
オブジェクトを作る (呼ぶ側が変えてもストアの中身は変わらない)。
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_router.core.schemas.thread_record import HistoryEntry, StoredThread
from llm_router.store.base import ActiveRun, CommitItem, LogBounds, LogLimits, Store, ThreadSummary
from llm_router.store.errors import ThreadExists, UnknownThread
from llm_router.store.log_rules import encode_event, head_to_drop


@dataclass
class _Thread:
    """1 スレッド分の中身。"""

    owner: str
    config: dict[str, Any]
    title: str | None
    created_at: float
    updated_at: float
    history: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0
    events: deque[tuple[int, float, int, dict[str, Any]]] = field(default_factory=deque)
    log_bytes: int = 0
    runs: dict[str, list[float | None]] = field(default_factory=dict)
    lease: tuple[str, str, float] | None = None


class MemoryStore(Store):
    """メモリ上のストア。

    Args:
        limits: イベントログの上限。
        clock: 壁時計 (テスト用に差し替えられる)。
    """

    backend = "memory"

    def __init__(self, limits: LogLimits | None = None, clock: Any = time.time) -> None:
        """空のストアを作る。"""
        self.limits = limits or LogLimits()
        self._clock = clock
        self._threads: dict[str, _Thread] = {}
        self._lock = threading.RLock()

    def _get(self, thread_id: str) -> _Thread:
        """スレッドを引く (無ければ :class:`UnknownThread`)。"""
        thread = self._threads.get(thread_id)
        if thread is None:
            raise UnknownThread(thread_id)
        return thread

    # ------------------------------------------------------------ スレッド

    def create_thread(self, thread: StoredThread) -> None:
        """スレッドを作る (履歴があればそれも)。"""
        config = thread.config_dict()
        history = [e.to_dict() for e in thread.history]
        with self._lock:
            if thread.thread_id in self._threads:
                raise ThreadExists(thread.thread_id)
            self._threads[thread.thread_id] = _Thread(
                thread.owner, config, thread.title, thread.created_at, thread.updated_at, history
            )

    def load_thread(self, thread_id: str) -> StoredThread | None:
        """スレッドを履歴ごと読む (毎回新しいオブジェクト)。"""
        with self._lock:
            t = self._threads.get(thread_id)
            if t is None:
                return None
            config, history = t.config, list(t.history)
            out = StoredThread(thread_id, t.owner, title=t.title, created_at=t.created_at, updated_at=t.updated_at)
        out.apply_config_dict(config)
        out.history = [HistoryEntry.from_dict(e, f"history[{i}]") for i, e in enumerate(history)]
        return out

    def thread_owner(self, thread_id: str) -> str | None:
        """所有者 (無ければ ``None``)。"""
        t = self._threads.get(thread_id)
        return None if t is None else t.owner

    def _newest_threads(self, owner: str, bound: tuple[float, str] | None, count: int) -> list[ThreadSummary]:
        """所有者のスレッドを ``(updated_at, thread_id)`` の降順で ``count`` 件まで。"""
        with self._lock:
            rows = [
                (t.updated_at, tid, t)
                for tid, t in self._threads.items()
                if t.owner == owner and (bound is None or (t.updated_at, tid) < bound)
            ]
            rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
            return [
                ThreadSummary(
                    tid, t.title, t.config.get("model"), t.created_at, t.updated_at, t.last_seq, self._active_id(t)
                )
                for _, tid, t in rows[:count]
            ]

    @staticmethod
    def _active_id(t: _Thread) -> str | None:
        """終わっていない最新のラン ID。"""
        active = [(v[0], rid) for rid, v in t.runs.items() if v[1] is None]
        return max(active)[1] if active else None

    def _update_thread(self, thread_id: str, title: str | None, config: StoredThread | None, now: float) -> None:
        """題名か設定を書き、``updated_at`` を ``now`` にする (検証と時刻は :meth:`Store.update_thread`)。"""
        new_config = config.config_dict() if config is not None else None
        with self._lock:
            t = self._get(thread_id)
            if title is not None:
                t.title = title
            if new_config is not None:
                t.config = new_config
            t.updated_at = now

    def delete_thread(self, thread_id: str) -> bool:
        """スレッドを丸ごと消す。"""
        with self._lock:
            return self._threads.pop(thread_id, None) is not None

    # ------------------------------------------------------------ イベントと履歴

    def commit_batch(self, items: Sequence[CommitItem]) -> None:
        """項目ごとに :meth:`_commit_item` する (メモリではまとめても得が無い)。"""
        for item in items:
            try:
                self._commit_item(item)
            except Exception as exc:
                item.error = exc

    def _commit_item(self, item: CommitItem) -> None:
        """1 項目を、全部を検査・符号化してから、ロックの下で一度に反映する (結果は ``item.result``)。"""
        history, events = item.history, item.events
        now = self._clock() if item.now is None else item.now
        entries = [e.to_dict() for e in history.append] if history is not None else []
        with self._lock:
            t = self._get(item.thread_id)
            if history is not None and history.truncate_to is not None:
                if not 0 <= history.truncate_to <= len(t.history):
                    raise ValueError(f"truncate_to: {history.truncate_to} is outside the history (0..{len(t.history)})")
            seq = t.last_seq
            prepared = []
            for event in events:
                seq += 1
                body = encode_event({**event, "seq": seq})
                prepared.append((seq, len(body.encode("utf-8"))))
            # ここから先は失敗しない (反映だけ)
            for event, (seq, size) in zip(events, prepared, strict=True):
                event["seq"] = seq
                t.events.append((seq, now, size, event))
                t.log_bytes += size
            if prepared:
                t.last_seq = prepared[-1][0]
            if history is not None:
                if history.truncate_to is not None:
                    del t.history[history.truncate_to :]
                t.history.extend(entries)
                t.updated_at = now
            if item.title is not None:
                t.title = item.title
                t.updated_at = now
            if item.run_started is not None:
                t.runs[item.run_started] = [now, None]
            if item.run_ended is not None and item.run_ended in t.runs:
                t.runs[item.run_ended][1] = now
                if t.lease is not None and t.lease[0] == item.run_ended:
                    t.lease = None
            self._trim(t, now)
        item.result = list(events)

    def _trim(self, t: _Thread, now: float) -> int:
        """(ロックの下で) 上限を超えた先頭を捨てる。"""
        heads = ((seq, ts, size) for seq, ts, size, _ in t.events)
        dropped, dropped_bytes, _ = head_to_drop(heads, len(t.events), t.log_bytes, self.limits, now)
        for _ in range(dropped):
            t.events.popleft()
        t.log_bytes -= dropped_bytes
        return dropped

    def trim(self, thread_id: str, now: float | None = None) -> int:
        """上限を超えた古いイベントを捨てる。"""
        with self._lock:
            return self._trim(self._get(thread_id), self._clock() if now is None else now)

    def _view(self, t: _Thread, now: float) -> int:
        """(ロックの下で) 経過時間の上限で読めなくなった先頭の件数 (捨てずに数える)。"""
        heads = ((seq, ts, size) for seq, ts, size, _ in t.events)
        return head_to_drop(heads, len(t.events), t.log_bytes, self.limits, now)[0]

    def after(self, thread_id: str, seq: int, limit: int | None = None) -> list[dict[str, Any]]:
        """``seq`` より後のイベント (上限を超えたものは含めない)。"""
        with self._lock:
            t = self._get(thread_id)
            skip = self._view(t, self._clock())
            out = [event for i, (s, _, _, event) in enumerate(t.events) if i >= skip and s > seq]
        return out if limit is None else out[:limit]

    def bounds(self, thread_id: str) -> LogBounds:
        """保持している範囲。"""
        with self._lock:
            t = self._get(thread_id)
            skip = self._view(t, self._clock())
            if skip >= len(t.events):
                return LogBounds(t.last_seq + 1, t.last_seq)
            return LogBounds(t.events[skip][0], t.last_seq)

    # ------------------------------------------------------------ ランとリース

    def mark_run_active(self, thread_id: str, run_id: str, now: float | None = None) -> None:
        """ランの開始を記録する。"""
        with self._lock:
            self._get(thread_id).runs[run_id] = [self._clock() if now is None else now, None]

    def mark_run_ended(self, thread_id: str, run_id: str, now: float | None = None) -> None:
        """ランの終わりを記録し、そのランのリースを外す。"""
        with self._lock:
            t = self._get(thread_id)
            if run_id in t.runs:
                t.runs[run_id][1] = self._clock() if now is None else now
            if t.lease is not None and t.lease[0] == run_id:
                t.lease = None

    def active_runs(self) -> list[ActiveRun]:
        """終わっていないラン。"""
        out = []
        with self._lock:
            for tid, t in self._threads.items():
                for rid, (started, ended) in t.runs.items():
                    if ended is None:
                        lease = t.lease if t.lease is not None and t.lease[0] == rid else None
                        out.append(
                            ActiveRun(tid, rid, started, lease[1] if lease else None, lease[2] if lease else None)
                        )
        return sorted(out, key=lambda r: (r.started_at, r.thread_id))

    def has_run(self, thread_id: str, run_id: str) -> bool:
        """使われたことのある ``run_id`` なら真。"""
        t = self._threads.get(thread_id)
        return t is not None and run_id in t.runs

    def acquire_run_lease(self, thread_id: str, run_id: str, owner_id: str, ttl_s: float) -> bool:
        """期限内の他のリースが無ければ取る。"""
        with self._lock:
            t = self._get(thread_id)
            now = self._clock()
            if t.lease is not None and t.lease[2] > now and (t.lease[0], t.lease[1]) != (run_id, owner_id):
                return False
            t.lease = (run_id, owner_id, now + ttl_s)
            return True

    def renew_run_lease(self, thread_id: str, run_id: str, owner_id: str, ttl_s: float) -> bool:
        """自分のリースなら期限を延ばす。"""
        with self._lock:
            t = self._threads.get(thread_id)
            if t is None or t.lease is None or (t.lease[0], t.lease[1]) != (run_id, owner_id):
                return False
            t.lease = (run_id, owner_id, self._clock() + ttl_s)
            return True

    def release_run_lease(self, thread_id: str, run_id: str, owner_id: str) -> None:
        """自分のリースなら外す。"""
        with self._lock:
            t = self._threads.get(thread_id)
            if t is not None and t.lease is not None and (t.lease[0], t.lease[1]) == (run_id, owner_id):
                t.lease = None

    def close(self) -> None:
        """何もしない (メモリだけなので)。"""
