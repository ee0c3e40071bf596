"""ストアの継ぎ目: :class:`ThreadStore` (スレッド・履歴・ラン・リース) と :class:`EventLog` (``seq`` を配る)。

バックエンド (``memory`` / ``sqlite`` / 後の ``redis``) はどちらも満たす :class:`Store` を実装する。
登録簿はこの型だけを知り、どのバックエンドかを知らない。

約束 (契約テスト ``tests/store/test_contract.py`` が両方のバックエンドで確かめる):

- ``seq`` はスレッドごとに 1 から 1 ずつ増え、欠けず、再利用されない (古いイベントを捨てても、再起動しても)。
- :meth:`Store.commit` はイベントの追加と履歴の変更を 1 つのトランザクションで行う。返ったときには全部が
  保存されており、例外 (:class:`~llm_router.store.errors.StoreUnavailable` など) のときには何も残らない。
  呼ぶ側はこれが返ってからイベントを送る (先書き)。
- 時刻はすべて壁時計 (``time.time()``)。イベントログの上限 (件数・バイト数・経過秒) は再起動をまたいで効く。
  どの上限でも最新の 1 件は残す。
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from llm_router.core.schemas.thread_record import HistoryEntry, StoredThread

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 200


@dataclass(frozen=True)
class LogLimits:
    """イベントログの上限。``None`` はその上限なし。"""

    max_events: int | None = 10000
    max_bytes: int | None = None
    max_age_s: float | None = 3600.0


@dataclass
class HistoryChange:
    """履歴の変更: まず ``truncate_to`` 件目以降を消し (``None`` なら消さない)、次に ``append`` を足す。

    ユーザーメッセージ・完了したステップ・中断されたテキストは ``append``、失敗したランの巻き戻しと
    ``rewind`` は ``truncate_to`` で表す。
    """

    truncate_to: int | None = None
    append: list[HistoryEntry] = field(default_factory=list)


@dataclass
class CommitItem:
    """:meth:`Store.commit_batch` の 1 項目 (``commit`` の引数と同じもの)。結果か誤りがここに入る。"""

    thread_id: str
    events: Sequence[dict[str, Any]] = ()
    history: HistoryChange | None = None
    title: str | None = None
    run_started: str | None = None
    run_ended: str | None = None
    now: float | None = None
    result: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        """題名は ``None`` か文字列 (誤りは ``title`` を名指しした ``ValueError``。どのバックエンドも確かめ直さない)。"""
        check_title(self.title)


@dataclass(frozen=True)
class ThreadSummary:
    """``list_threads`` の 1 件。"""

    thread_id: str
    title: str | None
    model: str | None
    created_at: float
    updated_at: float
    last_seq: int
    active_run_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """プロトコルの ``threads[]`` の 1 件の形。"""
        return {
            "thread_id": self.thread_id,
            "title": self.title,
            "model": self.model,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_seq": self.last_seq,
            "active_run_id": self.active_run_id,
        }


@dataclass(frozen=True)
class ThreadPage:
    """``list_threads`` の 1 ページ。``next_cursor`` は次のページの ``before`` (無ければ ``None``)。"""

    threads: list[ThreadSummary]
    next_cursor: str | None

    @staticmethod
    def start(limit: Any, before: str | None) -> tuple[float, str] | None:
        """``list_threads`` の引数を確かめ、``before`` の位置 ``(updated_at, thread_id)`` (無ければ ``None``) を返す。

        Raises:
            ValueError: ``limit`` が範囲外、``before`` が壊れているとき (その引数を名指し)。
        """
        check_limit(limit)
        return decode_cursor(before) if before is not None else None

    @classmethod
    def of(cls, summaries: Sequence[ThreadSummary], limit: int) -> ThreadPage:
        """新しい順に ``limit + 1`` 件まで読んだ要約から 1 ページを作る (超えた分があれば最後の 1 件が続きの位置)。"""
        page = list(summaries[:limit])
        more = len(summaries) > limit
        return cls(page, encode_cursor(page[-1].updated_at, page[-1].thread_id) if more else None)


@dataclass(frozen=True)
class LogBounds:
    """イベントログの範囲: 保持している最古の ``seq`` と最後に配った ``seq`` (空なら first = last + 1)。"""

    first_seq: int
    last_seq: int

    def missing_before(self, seq: int) -> bool:
        """``seq`` の直後からの再開に要るイベントが既に捨てられていれば真。"""
        return seq < self.last_seq and seq + 1 < self.first_seq


@dataclass(frozen=True)
class ActiveRun:
    """終わりのイベントがまだ記録されていないラン (と、あればそのリース)。"""

    thread_id: str
    run_id: str
    started_at: float
    lease_owner: str | None = None
    lease_expires_at: float | None = None


@runtime_checkable
class EventLog(Protocol):
    """スレッドごとのイベントログ。``seq`` を配る唯一の場所。"""

    def append(self, thread_id: str, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """イベントを足し、各 dict に ``seq`` を入れて返す (1 つのトランザクション)。"""
        ...

    def after(self, thread_id: str, seq: int, limit: int | None = None) -> list[dict[str, Any]]:
        """``seq`` より後の保持しているイベントを古い順に返す (再開の再送)。"""
        ...

    def bounds(self, thread_id: str) -> LogBounds:
        """保持している範囲。"""
        ...

    def trim(self, thread_id: str, now: float | None = None) -> int:
        """上限を超えた古いイベントを捨て、捨てた件数を返す。"""
        ...


@runtime_checkable
class ThreadStore(Protocol):
    """スレッド (設定・履歴・題名・所有者)、ランの記録、ランのリース。"""

    def create_thread(self, thread: StoredThread) -> None:
        """スレッドを作る (同じ ID があれば ``ThreadExists``)。"""
        ...

    def load_thread(self, thread_id: str) -> StoredThread | None:
        """スレッドを履歴ごと読む (無ければ ``None``)。"""
        ...

    def thread_owner(self, thread_id: str) -> str | None:
        """所有者だけを読む (無ければ ``None``)。"""
        ...

    def list_threads(self, owner: str, limit: int = DEFAULT_LIST_LIMIT, before: str | None = None) -> ThreadPage:
        """所有者のスレッドを ``updated_at`` の新しい順に返す。"""
        ...

    def update_thread(
        self, thread_id: str, *, title: str | None = None, config: StoredThread | None = None, now: float | None = None
    ) -> None:
        """題名か設定 (``config`` の :meth:`StoredThread.config_dict`) を変える。"""
        ...

    def delete_thread(self, thread_id: str) -> bool:
        """スレッドと、その履歴・イベント・ラン・リースを消す。消したら真。"""
        ...

    def mark_run_active(self, thread_id: str, run_id: str, now: float | None = None) -> None:
        """ランが始まったことを記録する。"""
        ...

    def mark_run_ended(self, thread_id: str, run_id: str, now: float | None = None) -> None:
        """ランが終わったことを記録する。"""
        ...

    def active_runs(self) -> list[ActiveRun]:
        """終わっていないランの一覧 (起動時の回復: 呼ぶ側が ``interrupted`` で閉じる)。"""
        ...

    def has_run(self, thread_id: str, run_id: str) -> bool:
        """そのスレッドで使われたことのある ``run_id`` なら真。"""
        ...

    def acquire_run_lease(self, thread_id: str, run_id: str, owner_id: str, ttl_s: float) -> bool:
        """スレッドのランのリースを取る。期限内の他のリースがあれば偽 (1 スレッドに 1 ラン)。"""
        ...

    def renew_run_lease(self, thread_id: str, run_id: str, owner_id: str, ttl_s: float) -> bool:
        """自分のリースの期限を延ばす。もう自分のものでなければ偽。"""
        ...

    def release_run_lease(self, thread_id: str, run_id: str, owner_id: str) -> None:
        """自分のリースを手放す (他人のものなら何もしない)。"""
        ...


@runtime_checkable
class Committer(Protocol):
    """:meth:`commit` を持つもの: ストアと、まとめて書く窓口 (:class:`~llm_router.store.group.GroupCommitter`)。

    実装するのは :meth:`commit_batch` だけでよい。:meth:`commit` の既定の実装は、引数を 1 つの
    :class:`CommitItem` にして :meth:`commit_batch` で書き、項目の誤りをそのまま投げる。
    """

    def commit_batch(self, items: Sequence[CommitItem]) -> None:
        """いくつもの項目をまとめて書く (グループコミット)。各項目は全部か何もなしで、結果は項目に入る。"""
        ...

    def commit(
        self,
        thread_id: str,
        events: Sequence[dict[str, Any]] = (),
        *,
        history: HistoryChange | None = None,
        title: str | None = None,
        run_started: str | None = None,
        run_ended: str | None = None,
        now: float | None = None,
    ) -> list[dict[str, Any]]:
        """イベントの追加・履歴の変更・題名・ランの開始/終了を 1 つのトランザクションで行う。

        返ったときには全部が保存され、各イベントに ``seq`` が入っている。誤りは何も書かずに投げる。
        """
        item = CommitItem(thread_id, events, history, title, run_started, run_ended, now)
        self.commit_batch([item])
        if item.error is not None:
            raise item.error
        return item.result


@runtime_checkable
class Store(ThreadStore, EventLog, Committer, Protocol):
    """バックエンドが実装するもの全部。

    バックエンドはこのクラスを継ぎ、:meth:`append` と :meth:`~Committer.commit` の既定の実装を使う
    (どちらも :meth:`~Committer.commit_batch` の上に立つ)。
    """

    backend: str
    # ストアの壁時計 (``time.time``。テストでは差し替える)
    _clock: Any

    def append(self, thread_id: str, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """イベントを足す (:meth:`~Committer.commit` の短縮)。"""
        return self.commit(thread_id, events)

    def list_threads(self, owner: str, limit: int = DEFAULT_LIST_LIMIT, before: str | None = None) -> ThreadPage:
        """所有者のスレッドを ``(updated_at, thread_id)`` の新しい順に 1 ページ返す。

        引数を確かめて続きの位置を決め (:meth:`ThreadPage.start`)、バックエンドの :meth:`_newest_threads` が
        ``limit + 1`` 件まで読み、ページに切る (:meth:`ThreadPage.of`)。ページの規則はこの 1 か所だけ。
        """
        bound = ThreadPage.start(limit, before)
        return ThreadPage.of(self._newest_threads(owner, bound, limit + 1), limit)

    def _newest_threads(self, owner: str, bound: tuple[float, str] | None, count: int) -> list[ThreadSummary]:
        """(バックエンド) ``bound`` より前 (無ければ最新から) の所有者のスレッドを新しい順に ``count`` 件まで。"""
        raise NotImplementedError

    def update_thread(
        self, thread_id: str, *, title: str | None = None, config: StoredThread | None = None, now: float | None = None
    ) -> None:
        """題名か設定を変え、``updated_at`` を ``now`` (省略時はストアの時計) に進める。

        題名を確かめて時刻を決めてから、バックエンドの :meth:`_update_thread` が書く。
        """
        check_title(title)
        self._update_thread(thread_id, title, config, self._clock() if now is None else now)

    def _update_thread(self, thread_id: str, title: str | None, config: StoredThread | None, now: float) -> None:
        """(バックエンド) 確かめた題名か設定を書き、``updated_at`` を ``now`` にする (無いスレッドは ``UnknownThread``)。"""
        raise NotImplementedError

    def close(self) -> None:
        """接続を閉じる。"""
        ...


# ---------------------------------------------------------------- バックエンドが共有する小さな部品


def check_limit(limit: Any) -> int:
    """``list_threads`` の ``limit`` を確かめる (1..MAX_LIST_LIMIT の整数)。"""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit: expected an integer from 1 to {MAX_LIST_LIMIT}, got {limit!r}")
    return limit


def check_title(title: Any) -> None:
    """題名は ``None`` (変えない) か文字列であること (誤りは ``title`` を名指しした ``ValueError``)。"""
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title: expected a string, got {type(title).__name__}")


def encode_cursor(updated_at: float, thread_id: str) -> str:
    """ページの続きの位置 (``updated_at`` と ``thread_id``) を不透明な文字列にする。"""
    raw = json.dumps([updated_at, thread_id], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """:func:`encode_cursor` の逆。壊れた値は ``before`` を名指しした ``ValueError``。"""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        updated_at, thread_id = value
        if not isinstance(updated_at, int | float) or not isinstance(thread_id, str):
            raise TypeError
        return float(updated_at), thread_id
    except Exception:
        raise ValueError("before: not a cursor returned by list_threads") from None
