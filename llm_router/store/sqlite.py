"""``sqlite`` バックエンド (既定): Python の ``sqlite3``、WAL モード、``store.path`` の 1 ファイル。

- 開くときに親フォルダを作り、スキーマを作るか移行する (``schema_version`` 表。版 0 は表の無い古い形:
  履歴をスレッドの JSON に丸ごと入れ、イベントに大きさの欄が無かったもの)。
- 接続は 1 本をロック (``threading.RLock``) で守って共有する。eventlet ではグリーンスレッドの、threading
  モードでは本物のスレッドのロックになる。書き込みはどれも ``BEGIN IMMEDIATE`` ... ``COMMIT`` の
  1 トランザクションで、失敗したら ``ROLLBACK`` して :class:`StoreUnavailable` (ファイルのパスを名指し) を投げる。
- ``synchronous`` は既定 ``NORMAL``: WAL ではコミットごとの fsync をせず、プロセスが落ちても (SIGKILL)
  コミット済みのものは残る。電源断まで守るなら ``store.synchronous=FULL`` (README.md に費用)。
- ログの状態 (``last_seq``・件数・バイト数・最古の時刻) はスレッドごとの控えに持ち、追加のたびの上限の判定を
  O(1) にする (捨てるときだけ先頭を読む)。イベントだけのコミットはスレッドの行を書かない。``last_seq`` は
  スレッドの行の値と最新のイベントの ``seq`` の大きい方で、イベントを捨てても減らない (最新の 1 件は残す)。
- WAL のチェックポイントは本物の OS スレッドが自分の接続で行う (:class:`_Checkpointer`)。
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llm_router.core import json_codec
from llm_router.core.schemas.errors import LLMRouterError
from llm_router.core.schemas.serialization import SerializationError
from llm_router.core.schemas.thread_record import HistoryEntry, StoredThread
from llm_router.store.base import ActiveRun, CommitItem, HistoryChange, LogBounds, LogLimits, Store, ThreadSummary
from llm_router.store.errors import StoreUnavailable, ThreadExists, UnknownThread
from llm_router.store.log_rules import encode_event, head_to_drop

SCHEMA_VERSION = 1

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS threads (
    thread_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    config TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    log_count INTEGER NOT NULL DEFAULT 0,
    log_bytes INTEGER NOT NULL DEFAULT 0,
    log_first_ts REAL
);
CREATE INDEX IF NOT EXISTS threads_by_owner ON threads (owner, updated_at DESC, thread_id DESC);
CREATE TABLE IF NOT EXISTS messages (
    thread_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    run_id TEXT,
    created_at REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (thread_id, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    thread_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    size INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    thread_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    PRIMARY KEY (thread_id, run_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_active ON runs (ended_at) WHERE ended_at IS NULL;
CREATE TABLE IF NOT EXISTS leases (
    thread_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""

# 版 0 (schema_version 表の無い古い形)。移行のテストが同じ形を作る。
SCHEMA_V0 = """
CREATE TABLE threads (thread_id TEXT PRIMARY KEY, owner TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE events (thread_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, body TEXT NOT NULL,
                     PRIMARY KEY (thread_id, seq));
"""


class SqliteStore(Store):
    """SQLite のストア。

    Args:
        path: データベースのファイル (親フォルダは作る)。
        limits: イベントログの上限。
        busy_timeout_ms: 他の接続がロックを持つときに待つ最大ミリ秒 (``store.busy_timeout_ms``)。
        synchronous: ``NORMAL`` (既定) か ``FULL``。
        clock: 壁時計 (テスト用に差し替えられる)。
        checkpoint_interval_s: WAL をデータベースへ書き戻す (チェックポイント) 間隔。0 より大きければ
            SQLite の自動のチェックポイントを止め、本物の OS スレッドが自分の接続でこの間隔ごとに行う
            (eventlet のハブを fsync で止めないため。README.md)。0 なら SQLite の自動 (1,000 ページごと)。
        lock: 接続を守るロック (既定は ``threading.RLock()``: eventlet ではグリーンスレッドのロック)。
            ``eventlet.tpool`` の本物のスレッドから使うときは ``eventlet.patcher.original("threading").RLock()``
            を渡す (グリーンのロックは本物のスレッドの間では使えない)。

    Raises:
        StoreUnavailable: ファイルを開けない、移行を書けない、より新しい版のスキーマのとき。
    """

    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        limits: LogLimits | None = None,
        busy_timeout_ms: int = 5000,
        synchronous: str = "NORMAL",
        clock: Any = time.time,
        lock: Any = None,
        checkpoint_interval_s: float = 1.0,
    ) -> None:
        """ファイルを開き、スキーマを用意する。"""
        self.path = Path(path)
        self.limits = limits or LogLimits()
        self._clock = clock
        self._lock = lock if lock is not None else threading.RLock()
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"store.synchronous: expected NORMAL or FULL, got {synchronous!r}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"store {self.path}: cannot open ({exc})") from exc
        try:
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._migrate()
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreUnavailable(f"store {self.path}: cannot prepare the schema ({exc})") from exc
        # スレッドごとのログの状態 (last_seq, 件数, バイト数, 最古の時刻) の控え。コミットの後でだけ更新し、
        # 他の接続が書いたら (PRAGMA data_version が変わったら) 捨てて、ファイルから数え直す。
        self._logs: dict[str, tuple[int, int, int, float | None]] = {}
        self._data_version: int | None = None
        self._checkpointer = None
        if checkpoint_interval_s > 0:
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = _Checkpointer(self.path, float(checkpoint_interval_s), busy_timeout_ms)

    # ------------------------------------------------------------ スキーマ

    def schema_version(self) -> int:
        """いまのスキーマの版 (表が何も無ければ -1、``schema_version`` 表の無い古い形は 0)。"""
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "schema_version" in tables:
            row = self._conn.execute("SELECT max(version) FROM schema_version").fetchone()
            return int(row[0]) if row and row[0] is not None else 0
        return 0 if "threads" in tables else -1

    def _migrate(self) -> None:
        """空のファイルには版 1 を作り、版 0 は版 1 へ移す (1 トランザクション)。"""
        version = self.schema_version()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"store {self.path}: schema version {version} is newer than this server's {SCHEMA_VERSION}"
            )
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if version == 0:
                self._migrate_v0()
            else:
                _execute_script(self._conn, SCHEMA_V1)
            self._conn.execute("DELETE FROM schema_version")
            self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _migrate_v0(self) -> None:
        """(トランザクションの中で) 版 0 → 版 1: 履歴を ``messages`` に分け、イベントの大きさと ``last_seq`` を数える。"""
        c = self._conn
        c.execute("ALTER TABLE threads RENAME TO threads_v0")
        c.execute("ALTER TABLE events RENAME TO events_v0")
        _execute_script(c, SCHEMA_V1)
        for thread_id, owner, data in c.execute("SELECT thread_id, owner, data FROM threads_v0").fetchall():
            raw = json.loads(data)
            raw.setdefault("thread_id", thread_id)
            raw.setdefault("owner", owner)
            thread = StoredThread.from_dict(raw, f"threads_v0[{thread_id}]")
            c.execute(
                "INSERT INTO threads (thread_id, owner, title, created_at, updated_at, config) VALUES (?,?,?,?,?,?)",
                (thread_id, owner, thread.title, thread.created_at, thread.updated_at, _dumps(thread.config_dict())),
            )
            self._insert_entries(thread_id, 0, thread.history)
        c.execute(
            "INSERT INTO events (thread_id, seq, ts, size, body) "
            "SELECT thread_id, seq, ts, length(CAST(body AS BLOB)), body FROM events_v0"
        )
        c.execute(
            "UPDATE threads SET "
            "last_seq = coalesce((SELECT max(seq) FROM events e WHERE e.thread_id = threads.thread_id), 0), "
            "log_count = (SELECT count(*) FROM events e WHERE e.thread_id = threads.thread_id), "
            "log_bytes = coalesce((SELECT sum(size) FROM events e WHERE e.thread_id = threads.thread_id), 0), "
            "log_first_ts = (SELECT ts FROM events e WHERE e.thread_id = threads.thread_id ORDER BY seq LIMIT 1)"
        )
        c.execute("DROP TABLE threads_v0")
        c.execute("DROP TABLE events_v0")

    # ------------------------------------------------------------ トランザクション

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """書き込みの 1 トランザクション。失敗したら取り消して :class:`StoreUnavailable` にする。"""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store {self.path}: write refused ({exc})") from exc
            try:
                yield conn
                if conn.in_transaction:  # 中で取り消した (1 項目の誤り) なら確定するものは無い
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreUnavailable(f"store {self.path}: write refused ({exc})") from exc
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        """開いているトランザクションを取り消す (既に閉じていれば何もしない)。"""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """読み取りの 1 文 (失敗は :class:`StoreUnavailable`)。"""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store {self.path}: read failed ({exc})") from exc

    def _insert_entries(self, thread_id: str, start: int, entries: Sequence[HistoryEntry]) -> None:
        """(トランザクションの中で) 履歴を ``start`` 番目から足す。"""
        self._conn.executemany(
            "INSERT INTO messages (thread_id, position, message_id, run_id, created_at, body) VALUES (?,?,?,?,?,?)",
            [
                (thread_id, start + i, e.message_id, e.run_id, e.created_at, _dumps(e.to_dict()["message"]))
                for i, e in enumerate(entries)
            ],
        )

    # ------------------------------------------------------------ スレッド

    def create_thread(self, thread: StoredThread) -> None:
        """スレッドを作る (履歴があればそれも)。"""
        config = _dumps(thread.config_dict())
        with self._write() as c:
            try:
                c.execute(
                    "INSERT INTO threads (thread_id, owner, title, created_at, updated_at, config) VALUES (?,?,?,?,?,?)",
                    (thread.thread_id, thread.owner, thread.title, thread.created_at, thread.updated_at, config),
                )
            except sqlite3.IntegrityError:
                raise ThreadExists(thread.thread_id) from None
            self._insert_entries(thread.thread_id, 0, thread.history)

    def load_thread(self, thread_id: str) -> StoredThread | None:
        """スレッドを履歴ごと読む。"""
        with self._lock:
            rows = self._read(
                "SELECT owner, title, created_at, updated_at, config FROM threads WHERE thread_id = ?", (thread_id,)
            )
            if not rows:
                return None
            messages = self._read(
                "SELECT message_id, run_id, created_at, body FROM messages WHERE thread_id = ? ORDER BY position",
                (thread_id,),
            )
        owner, title, created_at, updated_at, config = rows[0]
        thread = StoredThread(thread_id, owner, title=title, created_at=created_at, updated_at=updated_at)
        try:
            thread.apply_config_dict(json.loads(config), f"threads[{thread_id}].config")
            thread.history = [
                HistoryEntry.from_dict(
                    {"message_id": mid, "run_id": rid, "created_at": ts, "message": json_codec.loads(body)},
                    f"threads[{thread_id}].history[{i}]",
                )
                for i, (mid, rid, ts, body) in enumerate(messages)
            ]
        except (ValueError, SerializationError) as exc:
            raise StoreUnavailable(f"store {self.path}: thread '{thread_id}' is unreadable ({exc})") from exc
        return thread

    def thread_owner(self, thread_id: str) -> str | None:
        """所有者 (無ければ ``None``)。"""
        rows = self._read("SELECT owner FROM threads WHERE thread_id = ?", (thread_id,))
        return rows[0][0] if rows else None

    def _newest_threads(self, owner: str, bound: tuple[float, str] | None, count: int) -> list[ThreadSummary]:
        """所有者のスレッドを ``(updated_at, thread_id)`` の降順で ``count`` 件まで (索引 ``threads_by_owner``)。"""
        sql = (
            "SELECT t.thread_id, t.title, t.config, t.created_at, t.updated_at, "
            "max(t.last_seq, coalesce((SELECT max(e.seq) FROM events e WHERE e.thread_id = t.thread_id), 0)), "
            "(SELECT r.run_id FROM runs r WHERE r.thread_id = t.thread_id AND r.ended_at IS NULL "
            " ORDER BY r.started_at DESC LIMIT 1) "
            "FROM threads t WHERE t.owner = ?"
        )
        params: list[Any] = [owner]
        if bound is not None:
            updated_at, thread_id = bound
            sql += " AND (t.updated_at < ? OR (t.updated_at = ? AND t.thread_id < ?))"
            params += [updated_at, updated_at, thread_id]
        sql += " ORDER BY t.updated_at DESC, t.thread_id DESC LIMIT ?"
        params.append(count)
        return [
            ThreadSummary(tid, title, json.loads(config).get("model"), created, updated, last_seq, active)
            for tid, title, config, created, updated, last_seq, active in self._read(sql, params)
        ]

    def _update_thread(self, thread_id: str, title: str | None, config: StoredThread | None, now: float) -> None:
        """題名か設定を書き、``updated_at`` を ``now`` にする (検証と時刻は :meth:`Store.update_thread`)。"""
        encoded = _dumps(config.config_dict()) if config is not None else None
        with self._write() as c:
            cur = c.execute(
                "UPDATE threads SET title = coalesce(?, title), config = coalesce(?, config), updated_at = ? "
                "WHERE thread_id = ?",
                (title, encoded, now, thread_id),
            )
            if cur.rowcount == 0:
                raise UnknownThread(thread_id)

    def delete_thread(self, thread_id: str) -> bool:
        """スレッドと履歴・イベント・ラン・リースを消す。消した中身はファイルの上でも 0 で上書きする。

        ``secure_delete`` をこの削除の間だけ有効にし、消した後で WAL をデータベースへ書き戻して空にする
        (``wal_checkpoint(TRUNCATE)``。読み手がいて書き戻せなければ、次の書き戻しで消える)。
        """
        with self._lock:
            self._conn.execute("PRAGMA secure_delete = ON")
            try:
                with self._write() as c:
                    cur = c.execute("DELETE FROM threads WHERE thread_id = ?", (thread_id,))
                    for table in ("messages", "events", "runs", "leases"):
                        c.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))
                    deleted = cur.rowcount > 0
                self._logs.pop(thread_id, None)
            finally:
                self._conn.execute("PRAGMA secure_delete = OFF")
            if deleted:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass
            return deleted

    # ------------------------------------------------------------ イベントと履歴

    def commit_batch(self, items: Sequence[CommitItem]) -> None:
        """いくつもの :class:`CommitItem` (別のスレッドのものでもよい) を 1 トランザクションで書く (グループコミット)。

        各項目は SAVEPOINT で区切る: 項目自身の誤り (無いスレッド、範囲外の切り詰め) はその項目だけを取り消して
        ``item.error`` に入れる。SQLite が書き込みを拒めば (ディスクが一杯など) 全部を取り消し、全項目の
        ``item.error`` が :class:`StoreUnavailable` になる。``seq`` は COMMIT の後でだけ各イベントに入る。
        """
        pending: list[tuple[CommitItem, list[tuple[Any, ...]]]] = []
        staged: dict[str, tuple[int, int, int, float | None]] = {}
        try:
            with self._write() as c:
                self._check_data_version()
                if len(items) == 1:
                    # 1 項目だけなら SAVEPOINT は要らない: 項目の誤りはトランザクションごと取り消す
                    try:
                        rows, state = self._commit_in(items[0], staged)
                        pending.append((items[0], rows))
                        staged[items[0].thread_id] = state
                    except (LLMRouterError, ValueError, TypeError) as exc:
                        items[0].error = exc
                        self._rollback()
                grouped = items if len(items) > 1 else ()
                for item in grouped:
                    c.execute("SAVEPOINT item")
                    try:
                        rows, state = self._commit_in(item, staged)
                    except (LLMRouterError, ValueError, TypeError) as exc:
                        c.execute("ROLLBACK TO item")
                        c.execute("RELEASE item")
                        item.error = exc
                        continue
                    c.execute("RELEASE item")
                    pending.append((item, rows))
                    staged[item.thread_id] = state
        except StoreUnavailable as exc:
            for item in items:
                item.error = exc
            return
        self._logs.update(staged)  # コミットできたものだけを控えに写す
        for item, rows in pending:
            for event, row in zip(item.events, rows, strict=True):
                event["seq"] = row[1]
            item.result = list(item.events)

    def _check_data_version(self) -> None:
        """(ロックの下で) 他の接続がコミットしていたら、ログの状態の控えを捨てる。"""
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._logs.clear()
            self._data_version = version

    def _log_state(
        self, thread_id: str, staged: dict[str, tuple[int, int, int, float | None]] | None = None
    ) -> tuple[int, int, int, float | None]:
        """(ロックの下で) ログの状態 ``(last_seq, 件数, バイト数, 最古の時刻)``。控えに無ければファイルから数える。

        ``last_seq`` はスレッドの行の値とイベントの最大の ``seq`` の大きい方 (上限で捨てても最新の 1 件は
        残るので、イベントの最大が最後に配った ``seq`` になる。スレッドの行は履歴や題名を変えたときにだけ書く)。
        """
        if staged is not None and thread_id in staged:
            return staged[thread_id]
        state = self._logs.get(thread_id)
        if state is not None:
            return state
        c = self._conn
        row = c.execute("SELECT last_seq FROM threads WHERE thread_id = ?", (thread_id,)).fetchone()
        if row is None:
            raise UnknownThread(thread_id)
        count, total, high, low = c.execute(
            "SELECT count(*), coalesce(sum(size), 0), max(seq), min(seq) FROM events WHERE thread_id = ?",
            (thread_id,),
        ).fetchone()
        first_ts = None
        if low is not None:
            first_ts = c.execute("SELECT ts FROM events WHERE thread_id = ? AND seq = ?", (thread_id, low)).fetchone()[
                0
            ]
        state = (max(row[0], high or 0), count, total, first_ts)
        if not c.in_transaction:
            self._logs[thread_id] = state
        return state

    def _commit_in(
        self, item: CommitItem, staged: dict[str, tuple[int, int, int, float | None]]
    ) -> tuple[list[tuple[Any, ...]], tuple[int, int, int, float | None]]:
        """(トランザクションの中で) 1 項目を書き、書いたイベントの行とログの新しい状態を返す。"""
        c = self._conn
        thread_id = item.thread_id
        now = self._clock() if item.now is None else item.now
        seq, count, total, first_ts = self._log_state(thread_id, staged)
        rows = []
        for event in item.events:
            seq += 1
            body = encode_event({**event, "seq": seq})
            rows.append((thread_id, seq, now, len(body.encode("utf-8")), body))
        if rows:
            c.executemany("INSERT INTO events (thread_id, seq, ts, size, body) VALUES (?,?,?,?,?)", rows)
            count += len(rows)
            total += sum(r[3] for r in rows)
            if first_ts is None:
                first_ts = now
        if item.history is not None:
            self._change_history(thread_id, item.history)
        if item.run_started is not None:
            c.execute(
                "INSERT OR REPLACE INTO runs (thread_id, run_id, started_at, ended_at) VALUES (?,?,?,NULL)",
                (thread_id, item.run_started, now),
            )
        if item.run_ended is not None:
            c.execute(
                "UPDATE runs SET ended_at = ? WHERE thread_id = ? AND run_id = ?", (now, thread_id, item.run_ended)
            )
            c.execute("DELETE FROM leases WHERE thread_id = ? AND run_id = ?", (thread_id, item.run_ended))
        count, total, first_ts = self._trim_in(thread_id, count, total, first_ts, now)
        if item.history is not None or item.title is not None:
            # イベントだけのコミットではスレッドの行を書かない (1 コミットで書くページを 1 つ減らす)
            c.execute(
                "UPDATE threads SET last_seq = ?, log_count = ?, log_bytes = ?, log_first_ts = ?, "
                "title = coalesce(?, title), updated_at = ? WHERE thread_id = ?",
                (seq, count, total, first_ts, item.title, now, thread_id),
            )
        return rows, (seq, count, total, first_ts)

    def _change_history(self, thread_id: str, change: HistoryChange) -> None:
        """(トランザクションの中で) 履歴を切り詰めてから足す。"""
        c = self._conn
        length = c.execute("SELECT count(*) FROM messages WHERE thread_id = ?", (thread_id,)).fetchone()[0]
        start = length
        if change.truncate_to is not None:
            if not 0 <= change.truncate_to <= length:
                raise ValueError(f"truncate_to: {change.truncate_to} is outside the history (0..{length})")
            c.execute("DELETE FROM messages WHERE thread_id = ? AND position >= ?", (thread_id, change.truncate_to))
            start = change.truncate_to
        self._insert_entries(thread_id, start, change.append)

    def _needs_trim(self, count: int, total: int, first_ts: float | None, now: float) -> bool:
        """上限のどれかを超えていれば真 (スレッドの行の数だけで判定する)。"""
        lim = self.limits
        if count <= 1:
            return False
        if lim.max_events is not None and count > lim.max_events:
            return True
        if lim.max_bytes is not None and total > lim.max_bytes:
            return True
        return lim.max_age_s is not None and first_ts is not None and first_ts < now - lim.max_age_s

    def _trim_in(
        self, thread_id: str, count: int, total: int, first_ts: float | None, now: float
    ) -> tuple[int, int, float | None]:
        """(トランザクションの中で) 上限を超えた先頭を消し、新しい (件数, バイト数, 最古の時刻) を返す。"""
        if not self._needs_trim(count, total, first_ts, now):
            return count, total, first_ts
        c = self._conn
        head = c.execute("SELECT seq, ts, size FROM events WHERE thread_id = ? ORDER BY seq", (thread_id,))
        dropped, dropped_bytes, last = head_to_drop(head, count, total, self.limits, now)
        head.close()
        if dropped:
            c.execute("DELETE FROM events WHERE thread_id = ? AND seq <= ?", (thread_id, last))
        row = c.execute("SELECT ts FROM events WHERE thread_id = ? ORDER BY seq LIMIT 1", (thread_id,)).fetchone()
        return count - dropped, total - dropped_bytes, row[0] if row else None

    def trim(self, thread_id: str, now: float | None = None) -> int:
        """上限を超えた古いイベントを捨てる。"""
        now = self._clock() if now is None else now
        with self._write():
            self._check_data_version()
            last_seq, before, total, first_ts = self._log_state(thread_id)
            count, total, first_ts = self._trim_in(thread_id, before, total, first_ts, now)
        self._logs[thread_id] = (last_seq, count, total, first_ts)
        return before - count

    def _visible_first(self, thread_id: str) -> tuple[int, int]:
        """(ロックの下で) 上限を当てたときに読める最古の ``seq`` と ``last_seq`` (捨てずに数える)。"""
        try:
            self._check_data_version()
            last_seq, count, total, first_ts = self._log_state(thread_id)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store {self.path}: read failed ({exc})") from exc
        if count == 0:
            return last_seq + 1, last_seq
        now = self._clock()
        first = self._read("SELECT min(seq) FROM events WHERE thread_id = ?", (thread_id,))[0][0]
        if self._needs_trim(count, total, first_ts, now):
            try:  # 先頭から、捨てる範囲の次の行までだけを読む
                head = self._conn.execute(
                    "SELECT seq, ts, size FROM events WHERE thread_id = ? ORDER BY seq", (thread_id,)
                )
                dropped, _, last = head_to_drop(head, count, total, self.limits, now)
                head.close()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store {self.path}: read failed ({exc})") from exc
            if dropped:
                first = last + 1
        return first, last_seq

    def after(self, thread_id: str, seq: int, limit: int | None = None) -> list[dict[str, Any]]:
        """``seq`` より後の読めるイベントを古い順に。"""
        with self._lock:
            first, _ = self._visible_first(thread_id)
            sql = "SELECT body FROM events WHERE thread_id = ? AND seq > ? ORDER BY seq"
            params: list[Any] = [thread_id, max(seq, first - 1)]
            if limit is not None:
                sql += " LIMIT ?"
                params.append(int(limit))
            rows = self._read(sql, params)
        return [json_codec.loads(body) for (body,) in rows]

    def bounds(self, thread_id: str) -> LogBounds:
        """保持している範囲。"""
        with self._lock:
            first, last = self._visible_first(thread_id)
        return LogBounds(first, last)

    # ------------------------------------------------------------ ランとリース

    def mark_run_active(self, thread_id: str, run_id: str, now: float | None = None) -> None:
        """ランの開始を記録する。"""
        self.commit(thread_id, run_started=run_id, now=now)

    def mark_run_ended(self, thread_id: str, run_id: str, now: float | None = None) -> None:
        """ランの終わりを記録し、そのランのリースを外す。"""
        self.commit(thread_id, run_ended=run_id, now=now)

    def active_runs(self) -> list[ActiveRun]:
        """終わっていないラン (索引 ``runs_active``)。"""
        rows = self._read(
            "SELECT r.thread_id, r.run_id, r.started_at, l.owner_id, l.expires_at FROM runs r "
            "LEFT JOIN leases l ON l.thread_id = r.thread_id AND l.run_id = r.run_id "
            "WHERE r.ended_at IS NULL ORDER BY r.started_at, r.thread_id"
        )
        return [ActiveRun(*row) for row in rows]

    def has_run(self, thread_id: str, run_id: str) -> bool:
        """使われたことのある ``run_id`` なら真。"""
        return bool(self._read("SELECT 1 FROM runs WHERE thread_id = ? AND run_id = ?", (thread_id, run_id)))

    def acquire_run_lease(self, thread_id: str, run_id: str, owner_id: str, ttl_s: float) -> bool:
        """期限内の他のリースが無ければ取る (同じ接続の中で読みと書きを 1 トランザクションに)。"""
        now = self._clock()
        with self._write() as c:
            if c.execute("SELECT 1 FROM threads WHERE thread_id = ?", (thread_id,)).fetchone() is None:
                raise UnknownThread(thread_id)
            row = c.execute(
                "SELECT run_id, owner_id, expires_at FROM leases WHERE thread_id = ?", (thread_id,)
            ).fetchone()
            if row is not None and row[2] > now and (row[0], row[1]) != (run_id, owner_id):
                return False
            c.execute(
                "INSERT OR REPLACE INTO leases (thread_id, run_id, owner_id, expires_at) VALUES (?,?,?,?)",
                (thread_id, run_id, owner_id, now + ttl_s),
            )
            return True

    def renew_run_lease(self, thread_id: str, run_id: str, owner_id: str, ttl_s: float) -> bool:
        """自分のリースなら期限を延ばす。"""
        with self._write() as c:
            cur = c.execute(
                "UPDATE leases SET expires_at = ? WHERE thread_id = ? AND run_id = ? AND owner_id = ?",
                (self._clock() + ttl_s, thread_id, run_id, owner_id),
            )
            return cur.rowcount > 0

    def release_run_lease(self, thread_id: str, run_id: str, owner_id: str) -> None:
        """自分のリースなら外す。"""
        with self._write() as c:
            c.execute(
                "DELETE FROM leases WHERE thread_id = ? AND run_id = ? AND owner_id = ?", (thread_id, run_id, owner_id)
            )

    def close(self) -> None:
        """チェックポイントのスレッドを止め、接続を閉じる (WAL はデータベースへ書き戻される)。"""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            self._conn.close()


def _dumps(value: Any) -> str:
    """保存用の JSON (空白なし、非 ASCII はそのまま)。"""
    return json_codec.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """``;`` で区切った文を 1 つずつ実行する (``executescript`` は開いているトランザクションを確定してしまうため)。"""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _real(module: str) -> Any:
    """eventlet で monkey patch されていても、本物の (OS の) ``threading`` / ``time`` を返す。"""
    import sys

    if "eventlet" in sys.modules:
        from eventlet import patcher

        return patcher.original(module)
    import importlib

    return importlib.import_module(module)


class _Checkpointer:
    """WAL のチェックポイントを本物の OS スレッドで定期的に行う (自分の接続で ``PASSIVE``)。

    チェックポイントは WAL のページをデータベースへ写して fsync するので、数十〜数百ミリ秒かかることがある。
    書き手の接続 (eventlet ではハブの中) で自動に走ると、その間どのランのイベントも送られない。
    ``PASSIVE`` は書き手も読み手も待たせない。SQLite の呼び出しの間は GIL が外れる。
    """

    def __init__(self, path: Path, interval_s: float, busy_timeout_ms: int) -> None:
        """スレッドを始める。"""
        threading_mod, time_mod = _real("threading"), _real("time")
        self._path, self._interval = path, interval_s
        self._busy = busy_timeout_ms
        self._stop = threading_mod.Event()
        self._sleep = time_mod.sleep
        self.count = 0
        self._thread = threading_mod.Thread(target=self._loop, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        """間隔ごとにチェックポイントする (失敗は次の回に持ち越す)。"""
        try:
            conn = sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(self._busy)}")
        except sqlite3.Error:
            return
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.count += 1
                except sqlite3.Error:
                    pass
        finally:
            conn.close()

    def stop(self) -> None:
        """スレッドを止めて待つ。"""
        self._stop.set()
        self._thread.join(timeout=5)
