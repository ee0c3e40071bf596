"""SQLite のバックエンドに固有のこと: 再起動をまたぐ連続性、移行、削除、ディスクが一杯、読み取り専用、
トランザクションの途中の失敗、ロック、本物のスレッドの並行な書き込み、SIGKILL からの回復。
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llm_router.core.schemas.common import Message
from llm_router.core.schemas.thread_record import HistoryEntry, StoredThread
from llm_router.store.base import HistoryChange, LogLimits
from llm_router.store.errors import StoreUnavailable
from llm_router.store.sqlite import SCHEMA_V0, SCHEMA_VERSION, SqliteStore
from tests.store.conftest import FakeClock, entry, event, sample_thread

ROOT = Path(__file__).resolve().parents[2]


def raw(path: Path) -> sqlite3.Connection:
    """テストが中身を直接見るための別の接続。"""
    return sqlite3.connect(str(path))


def test_fresh_path_creates_folder_wal_and_version(tmp_path):
    """無いフォルダのファイルを開くとフォルダとスキーマ (版 1) ができ、WAL モードになる。"""
    path = tmp_path / "a" / "b" / "store.sqlite3"
    SqliteStore(path).close()
    conn = raw(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"threads", "messages", "events", "runs", "leases"} <= tables


def test_empty_existing_file_is_migrated(tmp_path):
    """0 バイトのファイル (空のデータベース) にもスキーマを作る。"""
    path = tmp_path / "empty.sqlite3"
    path.write_bytes(b"")
    store = SqliteStore(path)
    assert store.schema_version() == SCHEMA_VERSION
    store.create_thread(sample_thread())
    assert store.append("thr_1", [event()])[0]["seq"] == 1


def test_everything_survives_a_reopen_and_seq_continues(tmp_path):
    """閉じて開き直しても、スレッド・履歴・イベント・ラン・リースが残り、``seq`` は続きから (捨てた後も)。"""
    path = tmp_path / "store.sqlite3"
    limits = LogLimits(max_events=3, max_bytes=None, max_age_s=None)
    store = SqliteStore(path, limits)
    thread = sample_thread()
    store.create_thread(thread)
    store.commit("thr_1", [event("run_started")], history=HistoryChange(append=[entry("q")]), run_started="run_1")
    for _ in range(5):
        store.append("thr_1", [event()])
    assert store.acquire_run_lease("thr_1", "run_1", "proc_a", 60)
    store.close()
    again = SqliteStore(path, limits)
    assert [e["seq"] for e in again.after("thr_1", 0)] == [4, 5, 6]
    assert again.append("thr_1", [event()])[0]["seq"] == 7
    assert again.load_thread("thr_1").history[0].message.text() == "q"
    (run,) = again.active_runs()
    assert (run.run_id, run.lease_owner) == ("run_1", "proc_a")
    assert not again.acquire_run_lease("thr_1", "run_2", "proc_b", 60), "the lease survives the reopen"


def make_v0(path: Path) -> None:
    """版 0 (schema_version 表の無い古い形) のファイルを作る: 履歴はスレッドの JSON の中、イベントに大きさが無い。"""
    thread = StoredThread(
        "thr_old", "alice", model="openai/gpt-4.1-mini", title="昔の会話", created_at=100.0, updated_at=200.0
    )
    thread.history = [
        HistoryEntry(Message.user("こんにちは"), "msg_1", "run_1", 101.0),
        HistoryEntry(Message.assistant("やあ"), "msg_2", "run_1", 102.0),
    ]
    conn = raw(path)
    conn.executescript(SCHEMA_V0)
    conn.execute("INSERT INTO threads VALUES (?, ?, ?)", ("thr_old", "alice", json.dumps(thread.to_dict())))
    conn.execute("INSERT INTO threads VALUES (?, ?, ?)", ("thr_empty", "bob", json.dumps({"created_at": 50.0})))
    for seq in (3, 4, 5):  # 1 と 2 は既に捨てられていた
        body = json.dumps({"type": "text_delta", "seq": seq, "text": "日本語"}, ensure_ascii=False)
        conn.execute("INSERT INTO events VALUES (?, ?, ?, ?)", ("thr_old", seq, 150.0 + seq, body))
    conn.commit()
    conn.close()


def test_migration_from_version_0(tmp_path):
    """版 0 のファイルを開くと版 1 へ移り、履歴・題名・時刻・イベントが残り、``seq`` は続きから。"""
    path = tmp_path / "old.sqlite3"
    make_v0(path)
    store = SqliteStore(path, LogLimits(max_events=None, max_bytes=None, max_age_s=None))
    assert store.schema_version() == SCHEMA_VERSION
    thread = store.load_thread("thr_old")
    assert [e.message.text() for e in thread.history] == ["こんにちは", "やあ"]
    assert (thread.title, thread.created_at, thread.updated_at, thread.model) == (
        "昔の会話",
        100.0,
        200.0,
        "openai/gpt-4.1-mini",
    )
    assert [e["seq"] for e in store.after("thr_old", 0)] == [3, 4, 5]
    assert store.bounds("thr_old").first_seq == 3
    assert store.append("thr_old", [event()])[0]["seq"] == 6
    assert store.load_thread("thr_empty").owner == "bob"
    assert store.append("thr_empty", [event()])[0]["seq"] == 1
    store.close()
    conn = raw(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    sizes = conn.execute(
        "SELECT size, length(CAST(body AS BLOB)) FROM events WHERE thread_id='thr_old' AND seq=3"
    ).fetchone()
    assert sizes[0] == sizes[1] and sizes[0] > len('{"type":"text_delta"')
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "threads_v0" not in tables and "events_v0" not in tables
    assert SqliteStore(path).schema_version() == SCHEMA_VERSION, "reopening a migrated file is a no-op"


def test_a_failed_migration_leaves_the_old_file_untouched(tmp_path):
    """版 0 の中身が壊れていれば移行は全部取り消され、元の形のまま残る (エラーはパスを名指し)。"""
    path = tmp_path / "old.sqlite3"
    make_v0(path)
    conn = raw(path)
    conn.execute("UPDATE threads SET data = ? WHERE thread_id = 'thr_old'", (json.dumps({"history": "oops"}),))
    conn.commit()
    conn.close()
    with pytest.raises(Exception, match="history"):
        SqliteStore(path)
    conn = raw(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"threads", "events"}
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3


def test_newer_schema_is_refused(tmp_path):
    """この版より新しいスキーマのファイルは開かない (パスと版を名指し)。"""
    path = tmp_path / "new.sqlite3"
    SqliteStore(path).close()
    conn = raw(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreUnavailable, match="schema version 99") as info:
        SqliteStore(path)
    assert str(path) in str(info.value)


def test_delete_leaves_no_row_and_no_bytes_in_the_file(tmp_path):
    """削除の後、どの表にもそのスレッドの行が無く、ファイル (と WAL) のバイトにも中身が残らない。"""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    secret = "MARKER-7d1f0c2e-" * 20
    store.create_thread(sample_thread("thr_gone"))
    store.create_thread(sample_thread("thr_kept"))
    store.commit(
        "thr_gone",
        [event("run_started", text=secret)],
        history=HistoryChange(append=[entry(secret)]),
        title=secret[:60],
        run_started="run_1",
    )
    store.acquire_run_lease("thr_gone", "run_1", "proc", 10)
    store.append("thr_kept", [event(text="keep me")])
    assert store.delete_thread("thr_gone")
    conn = raw(path)
    for table in ("threads", "messages", "events", "runs", "leases"):
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE thread_id = 'thr_gone'").fetchone()[0] == 0, table
    conn.close()
    store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("store.sqlite3"))
    assert b"MARKER-7d1f0c2e" not in data
    assert b"keep me" in data


def test_injected_failure_mid_transaction_leaves_nothing(tmp_path):
    """イベントを書いた後、履歴の書き込みで失敗させる: イベントも履歴も題名も ``seq`` も何も変わらない。"""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    store.create_thread(sample_thread())
    store.append("thr_1", [event()])
    conn = raw(path)
    conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.message_id = 'msg_boom' "
        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    conn.commit()
    events = [event("run_started", "run_2"), event()]
    with pytest.raises(StoreUnavailable, match="injected failure"):
        store.commit(
            "thr_1",
            events,
            history=HistoryChange(append=[entry("ok", "run_2"), entry("boom", "run_2")]),
            title="never",
            run_started="run_2",
        )
    assert all("seq" not in e for e in events), "no seq is handed out for a refused write"
    for reader in (store, SqliteStore(path)):
        assert [e["seq"] for e in reader.after("thr_1", 0)] == [1]
        assert reader.load_thread("thr_1").history == [] and reader.load_thread("thr_1").title is None
        assert reader.active_runs() == []
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    assert store.append("thr_1", [event()])[0]["seq"] == 2


def test_full_disk_is_a_clear_error_and_nothing_is_corrupted(tmp_path):
    """ファイルが大きくなれない (``max_page_count``) とき: パスを名指しした StoreUnavailable、受理済みは残る。"""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    store.create_thread(sample_thread())
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages + 3}")
    acked = []
    with pytest.raises(StoreUnavailable) as info:
        for _ in range(1000):
            acked += store.commit("thr_1", [event(text="x" * 3000)], history=HistoryChange(append=[entry("h")]))
    assert str(path) in str(info.value) and "full" in str(info.value)
    assert acked, "some writes fit before the disk was full"
    assert [e["seq"] for e in store.after("thr_1", 0)] == [e["seq"] for e in acked]
    assert len(store.load_thread("thr_1").history) == len(acked)
    assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    assert store.append("thr_1", [event()])[0]["seq"] == len(acked) + 1, "seq continues once there is room"


@pytest.fixture
def read_only(tmp_path):
    """ファイルを書けなくする関数 (root なら chattr +i、それ以外は chmod)。後で必ず戻す。"""
    undo = []

    def make(path: Path) -> None:
        """``path`` を書けなくする。"""
        if os.geteuid() == 0:
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
            if done.returncode != 0:
                pytest.skip(f"running as root and chattr +i failed ({done.stderr.decode().strip()})")
            undo.append(["chattr", "-i", str(path)])
        else:
            path.chmod(0o444)
            tmp_path.chmod(0o555)
            undo.append(["chmod", "755", str(tmp_path)])

    yield make
    for command in undo:
        subprocess.run(command, check=False)


def test_read_only_file_refuses_writes_and_still_reads(tmp_path, read_only):
    """読み取り専用のファイル: 読めるものは読め、書き込みはパスを名指しした StoreUnavailable で、中身は壊れない。"""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    store.create_thread(sample_thread())
    store.commit("thr_1", [event(), event()], history=HistoryChange(append=[entry("q")]))
    store.close()
    read_only(path)
    store = SqliteStore(path)
    assert [e["seq"] for e in store.after("thr_1", 0)] == [1, 2]
    assert store.load_thread("thr_1").history[0].message.text() == "q"
    assert [t.thread_id for t in store.list_threads("alice").threads] == ["thr_1"]
    with pytest.raises(StoreUnavailable) as info:
        store.commit("thr_1", [event()], history=HistoryChange(append=[entry("no")]))
    assert str(path) in str(info.value) and "readonly" in str(info.value)
    with pytest.raises(StoreUnavailable):
        store.create_thread(sample_thread("thr_2"))
    assert store.bounds("thr_1").last_seq == 2
    assert raw(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_locked_by_another_writer_is_a_clear_error(tmp_path):
    """他の接続が書き込みのロックを持ち続けると、待った後 StoreUnavailable (``locked``) で何も書かれない。"""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path, busy_timeout_ms=50)
    store.create_thread(sample_thread())
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.append("thr_1", [event()])
    finally:
        other.execute("ROLLBACK")
    assert store.append("thr_1", [event()])[0]["seq"] == 1


def test_real_threads_writing_concurrently(tmp_path):
    """本物のスレッド 4 本: 2 本は別々のスレッドへ、2 本は同じスレッドへ。``seq`` と履歴の位置は欠けず重ならない。"""
    store = SqliteStore(tmp_path / "store.sqlite3", LogLimits(max_events=None, max_bytes=None, max_age_s=None))
    for tid in ("thr_a", "thr_b", "thr_shared"):
        store.create_thread(sample_thread(tid))
    per_writer = 300
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(name: str, thread_id: str) -> None:
        """``per_writer`` 回、イベント 1 つと履歴 1 件を書く。"""
        try:
            start.wait()
            seqs = []
            for i in range(per_writer):
                (ev,) = store.commit(
                    thread_id,
                    [event(writer=name, i=i)],
                    history=HistoryChange(append=[entry(f"{name}-{i}", message_id=f"{name}-{i}")]),
                )
                seqs.append(ev["seq"])
            got[name] = seqs
        except BaseException as exc:
            errors.append(exc)

    workers = [
        threading.Thread(target=writer, args=args)
        for args in (("a", "thr_a"), ("b", "thr_b"), ("s1", "thr_shared"), ("s2", "thr_shared"))
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert got["a"] == list(range(1, per_writer + 1)) and got["b"] == list(range(1, per_writer + 1))
    assert sorted(got["s1"] + got["s2"]) == list(range(1, 2 * per_writer + 1))
    assert got["s1"] == sorted(got["s1"]) and got["s2"] == sorted(got["s2"])
    shared = store.after("thr_shared", 0)
    assert [e["seq"] for e in shared] == list(range(1, 2 * per_writer + 1))
    for name in ("s1", "s2"):
        assert [e["i"] for e in shared if e["writer"] == name] == list(range(per_writer))
    history = store.load_thread("thr_shared").history
    assert len(history) == 2 * per_writer and len({h.message_id for h in history}) == 2 * per_writer


def test_sigkill_mid_stream_keeps_every_acknowledged_event(tmp_path):
    """子プロセスが書いている途中で SIGKILL: 受け取った (ack の) ``seq`` はすべて残り、欠けず、続きから書ける。"""
    path = tmp_path / "store.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    acked: list[int] = []
    for _round in range(2):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.store.crash_writer", str(path), "thr_c"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline().strip() == "ready"
            target = len(acked) + 400
            while len(acked) < target:
                line = child.stdout.readline()
                assert line, "the writer died on its own"
                acked.append(int(line))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL
        store = SqliteStore(path, LogLimits(max_events=None, max_bytes=None, max_age_s=None))
        kept = [e["seq"] for e in store.after("thr_c", 0)]
        assert kept == list(range(1, len(kept) + 1)), "seq is contiguous after the crash"
        assert set(acked) <= set(kept), "every acknowledged event is in the log"
        assert acked == list(range(1, len(acked) + 1))
        history = store.load_thread("thr_c").history
        assert len(history) == kept[-1] // 2, "history written in the same transaction as its event"
        acked = kept  # 2 回目は、書かれていて ack の届かなかったものから続ける
        store.close()
    store = SqliteStore(path)
    assert store.append("thr_c", [event()])[0]["seq"] == acked[-1] + 1


def test_clock_is_wall_clock_across_reopen(tmp_path):
    """経過秒の上限は再起動をまたいで効く (保存した時刻が壁時計だから)。"""
    path = tmp_path / "store.sqlite3"
    clock = FakeClock()
    limits = LogLimits(max_events=None, max_bytes=None, max_age_s=100)
    store = SqliteStore(path, limits, clock=clock)
    store.create_thread(sample_thread())
    store.append("thr_1", [event(), event()])
    store.close()
    clock.advance(50)
    store = SqliteStore(path, limits, clock=clock)
    store.append("thr_1", [event()])
    clock.advance(60)
    store.close()
    store = SqliteStore(path, limits, clock=clock)
    assert [e["seq"] for e in store.after("thr_1", 0)] == [3]


def test_background_checkpoint_moves_the_wal_into_the_database(tmp_path):
    """自動のチェックポイントを止めた書き手の代わりに、本物のスレッドが WAL をデータベースへ書き戻す。"""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path, checkpoint_interval_s=0.05)
    try:
        assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        store.create_thread(sample_thread())
        before = path.stat().st_size
        for _ in range(50):
            store.append("thr_1", [event(text="z" * 1000)])
        deadline = time.monotonic() + 30
        while path.stat().st_size <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.stat().st_size > before, "the checkpoint thread copied the WAL pages into the database file"
        assert [e["seq"] for e in store.after("thr_1", 0)] == list(range(1, 51))
    finally:
        store.close()
    assert not store._checkpointer._thread.is_alive()
    auto = SqliteStore(tmp_path / "auto.sqlite3", checkpoint_interval_s=0)
    assert auto._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000 and auto._checkpointer is None
    auto.close()


def test_two_connections_on_one_file_keep_seq_contiguous(tmp_path):
    """同じファイルを開いた 2 つのストアが交互に書いても ``seq`` は欠けず重ならない (控えは data_version で捨てる)。"""
    path = tmp_path / "store.sqlite3"
    first, second = SqliteStore(path), SqliteStore(path)
    try:
        first.create_thread(sample_thread())
        got = []
        for i in range(10):
            writer = first if i % 3 else second
            got += [e["seq"] for e in writer.append("thr_1", [event(), event()])]
        assert got == list(range(1, 21))
        assert first.bounds("thr_1").last_seq == second.bounds("thr_1").last_seq == 20
        assert second.list_threads("alice").threads[0].last_seq == 20
        assert first.delete_thread("thr_1")
        second.create_thread(sample_thread())
        assert first.append("thr_1", [event()])[0]["seq"] == 1, "a recreated thread starts again at 1"
    finally:
        first.close()
        second.close()
