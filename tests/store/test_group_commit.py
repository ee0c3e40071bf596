"""グループコミット: まとめても先書き (返ったときにはコミット済み) と ``seq`` の連続は崩れない。"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llm_router.store.base import CommitItem, HistoryChange
from llm_router.store.errors import StoreUnavailable, UnknownThread
from llm_router.store.group import GroupCommitter
from llm_router.store.sqlite import SqliteStore
from tests.store.conftest import entry, event, sample_thread

ROOT = Path(__file__).resolve().parents[2]


def test_commit_batch_isolates_a_bad_item(make_store):
    """1 つのまとまりの中で、悪い項目 (無いスレッド・範囲外の切り詰め) だけが誤りになり、他は書かれる。"""
    store = make_store()
    store.create_thread(sample_thread("thr_a"))
    store.create_thread(sample_thread("thr_b"))
    items = [
        CommitItem("thr_a", [event(), event()], HistoryChange(append=[entry("a")])),
        CommitItem("ghost", [event()]),
        CommitItem("thr_b", [event()], HistoryChange(truncate_to=3)),
        CommitItem("thr_b", [event()]),
    ]
    store.commit_batch(items)
    assert [e["seq"] for e in items[0].result] == [1, 2] and items[0].error is None
    assert isinstance(items[1].error, UnknownThread)
    assert isinstance(items[2].error, ValueError) and "seq" not in items[2].events[0]
    assert [e["seq"] for e in items[3].result] == [1]
    assert len(store.load_thread("thr_a").history) == 1
    assert [e["seq"] for e in store.after("thr_b", 0)] == [1]


def test_a_refused_batch_fails_every_item_and_writes_nothing(tmp_path):
    """SQLite がまとまりを拒めば (ディスクが一杯)、全項目が StoreUnavailable になり、何も書かれない。"""
    store = SqliteStore(tmp_path / "s.sqlite3")
    store.create_thread(sample_thread("thr_a"))
    store.create_thread(sample_thread("thr_b"))
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    items = [CommitItem("thr_a", [event(text="x" * 5000)]), CommitItem("thr_b", [event(text="y" * 5000)])]
    store.commit_batch(items)
    assert all(isinstance(i.error, StoreUnavailable) for i in items)
    assert all("seq" not in i.events[0] for i in items)
    assert store.after("thr_a", 0) == [] and store.after("thr_b", 0) == []


def test_group_committer_with_real_threads(tmp_path):
    """本物のスレッド 8 本がそれぞれのスレッドへ書く: 全部コミットされ、``seq`` は連続し、まとまりが生じる。"""
    store = SqliteStore(tmp_path / "s.sqlite3")
    committer = GroupCommitter(store)
    writers, per_writer = 8, 150
    for w in range(writers):
        store.create_thread(sample_thread(f"thr_{w}"))
    got: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def write(w: int) -> None:
        """1 イベントずつ書き、返った時点でストアから読めることも確かめる (先書き)。"""
        try:
            seqs = got.setdefault(w, [])
            for _ in range(per_writer):
                (ev,) = committer.commit(f"thr_{w}", [event()])
                seqs.append(ev["seq"])
                assert store.bounds(f"thr_{w}").last_seq >= ev["seq"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for w in range(writers):
        assert got[w] == list(range(1, per_writer + 1))
        assert [e["seq"] for e in store.after(f"thr_{w}", 0)] == got[w]
    assert committer.items == writers * per_writer
    assert committer.batches < committer.items, "concurrent writers were grouped into shared transactions"


def test_group_committer_raises_the_items_own_error(tmp_path):
    """自分の項目の誤りは、その呼び出しにそのまま投げられる。"""
    committer = GroupCommitter(SqliteStore(tmp_path / "s.sqlite3"))
    with pytest.raises(UnknownThread):
        committer.commit("ghost", [event()])


def test_group_commit_under_eventlet_green_threads(tmp_path):
    """eventlet (monkey patch 済みの子プロセス) の 40 本のグリーンスレッド: seq は連続し、まとめて書かれる。"""
    done = subprocess.run(
        [sys.executable, "-m", "tests.store.group_writer", str(tmp_path / "g.sqlite3"), "40", "25"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(seqs == list(range(1, 26)) for seqs in result["seqs"].values()) and len(result["seqs"]) == 40
    assert result["items"] == 1000
    assert result["batches"] <= 100, f"green threads ready at once share a transaction ({result['batches']} batches)"


def test_group_committer_commit_batch_writes_every_item(tmp_path):
    """窓口の ``commit_batch``: まとまりの上限を超える項目も全部書かれ、悪い項目だけが誤りになる。"""
    store = SqliteStore(tmp_path / "s.sqlite3")
    committer = GroupCommitter(store, max_batch=2)
    store.create_thread(sample_thread("thr_a"))
    store.create_thread(sample_thread("thr_b"))
    items = [
        CommitItem("thr_a", [event(), event()]),
        CommitItem("ghost", [event()]),
        CommitItem("thr_b", [event()]),
        CommitItem("thr_a", [event()]),
    ]
    committer.commit_batch(items)
    assert [e["seq"] for e in items[0].result] == [1, 2] and items[0].error is None
    assert isinstance(items[1].error, UnknownThread)
    assert [e["seq"] for e in items[2].result] == [1] and [e["seq"] for e in items[3].result] == [3]
    assert [e["seq"] for e in store.after("thr_a", 0)] == [1, 2, 3]
    assert committer.items == 4 and committer.batches == 2
