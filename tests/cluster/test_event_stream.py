"""Redis Stream のイベントログ: 複数プロセスの競合でも seq が連続、再開、件数と年齢での切り詰め、削除、fencing。"""

from __future__ import annotations

import json
import time

import pytest

from llm_router.cluster.event_stream import LeaseLost, RedisEventLog
from llm_router.cluster.leases import RunLeases


def test_seq_is_contiguous_with_several_writer_processes_racing_on_one_thread(spawn_worker, keys, client):
    """4 つの別プロセスが同じスレッドに同時に書いても、seq は 1..N に重複も飛びも無く付き、ログもその順に並ぶ。"""
    writers, per_writer = 4, 150
    procs = [spawn_worker("append", keys.prefix, "th-race", str(per_writer), f"w{i}") for i in range(writers)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = {}
    for i, proc in enumerate(procs):
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        results[f"w{i}"] = json.loads(line)
    total = writers * per_writer
    every = sorted(s for seqs in results.values() for s in seqs)
    assert every == list(range(1, total + 1))
    # 各プロセスの中では自分の書いた順に増えている (そして交互に混ざった: 本当に競合した)
    for seqs in results.values():
        assert seqs == sorted(seqs)
    assert any(results["w0"][i + 1] - results["w0"][i] > 1 for i in range(per_writer - 1))
    log = RedisEventLog(client, 100000, 0, keys)
    replay = log.after("th-race", 0)
    assert [e["seq"] for e in replay] == list(range(1, total + 1))
    by_seq = {e["seq"]: e for e in replay}
    for tag, seqs in results.items():
        assert [by_seq[s]["i"] for s in seqs] == list(range(per_writer)) and {by_seq[s]["tag"] for s in seqs} == {tag}
    assert log.last_seq("th-race") == total


def test_append_sets_seq_and_replay_after_a_seq(client, keys):
    """追加は seq を返してイベントにも入れ、再開は指定の seq より後だけを中身ごと返す。"""
    log = RedisEventLog(client, 1000, 0, keys)
    events = [{"type": "text_delta", "thread_id": "a", "seq": 0, "delta": f"トークン{i}"} for i in range(10)]
    seqs = [log.append("a", e) for e in events]
    assert seqs == list(range(1, 11)) and [e["seq"] for e in events] == seqs
    assert log.after("a", 7) == events[7:]
    assert log.after("a", 10) == [] and log.after("a", 99) == []
    assert log.after("a", 0, limit=3) == events[:3]
    assert not log.missing_before("a", 0)
    # 別のスレッドは独立に 1 から
    assert log.append("b", {"type": "x"}) == 1
    assert log.append_many("a", [{"type": "y"}, {"type": "z"}]) == [11, 12]


def test_count_trimming_keeps_a_bound_and_never_reuses_a_seq(client, keys):
    """件数の上限を超えると古いものが捨てられ (概数)、残りは連続し、seq は続きから付く。"""
    log = RedisEventLog(client, 50, 0, keys)
    for start in range(0, 1000, 100):
        log.append_many("t", [{"type": "x", "i": i} for i in range(start, start + 100)])
    length = log.length("t")
    assert 50 <= length <= 250  # MAXLEN ~ は Redis の内部ノード (既定 100 件) 単位で捨てる
    first = log.first_seq("t")
    assert first > 1 and first == 1000 - length + 1
    assert log.missing_before("t", 0) and not log.missing_before("t", first - 1)
    assert [e["seq"] for e in log.after("t", 0)] == list(range(first, 1001))
    assert log.append("t", {"type": "after-trim"}) == 1001


def test_age_trimming_uses_the_wall_clock_stored_in_the_entries(client, keys):
    """年齢の上限より古いものは捨てられ (最後の 1 件は残る)、seq は続きから付く。"""
    log = RedisEventLog(client, 1000, 0.2, keys)
    log.append_many("t", [{"type": "old", "i": i} for i in range(20)])
    deadline = time.monotonic() + 10
    appended = 0
    while log.first_seq("t") <= 20:  # 古い 20 件が切り詰められるまで、書き足しながら待つ
        assert time.monotonic() < deadline, "old entries were never trimmed by age"
        log.append("t", {"type": "new"})
        appended += 1
        time.sleep(0.02)
    remaining = log.after("t", 0)
    assert remaining and all(e["type"] == "new" for e in remaining)
    assert remaining[-1]["seq"] == 20 + appended == log.last_seq("t")
    # 書き込みが止まっても、読むときに古いものは落ちる (最後の 1 件は残す)
    deadline = time.monotonic() + 10
    while len(log.after("t", 0)) > 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [e["seq"] for e in log.after("t", 0)] == [20 + appended]
    assert log.append("t", {"type": "x"}) == 21 + appended


def test_delete_removes_everything_and_the_id_starts_fresh(client, keys):
    """削除はログとカウンタを消す。同じ id のスレッドは 1 から始まる。"""
    log = RedisEventLog(client, 1000, 0, keys)
    log.append_many("gone", [{"type": "x"}] * 5)
    log.delete("gone")
    assert client.keys(f"{keys.prefix}:*") == []
    assert log.last_seq("gone") == 0 and log.after("gone", 0) == []
    assert log.append("gone", {"type": "x"}) == 1


def test_a_writer_that_lost_its_lease_cannot_append(client, make_client, keys):
    """貸与を渡した追加は、貸与を失った書き手からは拒まれ、何も書かれない。"""
    log = RedisEventLog(client, 1000, 0, keys)
    mine = RunLeases(client, "proc-a", 5, keys)
    lease = mine.acquire("t", "run-1")
    assert log.append("t", {"type": "run_started"}, lease=lease) == 1
    mine.release(lease)
    theirs = RunLeases(make_client(), "proc-b", 5, keys)
    theirs.acquire("t", "run-2")
    with pytest.raises(LeaseLost):
        log.append("t", {"type": "text_delta"}, lease=lease)
    assert log.last_seq("t") == 1 and len(log.after("t", 0)) == 1


def test_history_changes_are_written_with_the_events_that_announce_them(client, keys):
    """履歴の追加・置き換えはイベントと同じ原子操作で書かれ、貸与を失っていればどちらも書かれない。"""
    from llm_router.cluster.threads import RedisThreadRecords

    log, records = RedisEventLog(client, 1000, 0, keys), RedisThreadRecords(client, keys)
    user = {"role": "user", "content": "質問"}
    step = {"role": "assistant", "content": "答え"}
    assert log.append_many("t", [{"type": "run_started"}], history_push=[user]) == [1]
    assert log.append_many("t", [{"type": "step_finished"}], history_push=[step]) == [2]
    assert records.history("t") == [user, step]
    assert log.append_many("t", [{"type": "thread_rewound"}], history_replace=[]) == [3]
    assert records.history("t") == []
    leases = RunLeases(client, "proc-a", 5, keys)
    lease = leases.acquire("t", "run-1")
    leases.release(lease)
    with pytest.raises(LeaseLost):
        log.append_many("t", [{"type": "run_started"}], lease, history_push=[user])
    assert records.history("t") == [] and log.last_seq("t") == 3
    with pytest.raises(ValueError, match="events"):
        log.append_many("t", [], history_push=[user])
    with pytest.raises(ValueError, match="combined"):
        log.append_many("t", [{"type": "x"}], history_push=[user], history_replace=[])


def test_the_terminal_event_and_the_lease_release_are_one_step(client, keys):
    """終わりのイベントを release=True で書くと、貸与と実行中の表の記入が同じ原子操作で消える。"""
    log = RedisEventLog(client, 1000, 0, keys)
    leases = RunLeases(client, "proc-a", 5, keys)
    lease = leases.acquire("t", "run-1")
    assert leases.active_runs()["t"].run_id == "run-1"
    log.append("t", {"type": "run_started"}, lease)
    assert log.append_many("t", [{"type": "run_finished"}], lease, release=True) == [2]
    assert leases.holder("t") is None and leases.active_runs() == {}
    assert leases.claim_orphans() == []  # 後始末が 2 つ目の終わりを書く余地は無い
    with pytest.raises(LeaseLost):
        log.append("t", {"type": "late"}, lease)
    with pytest.raises(ValueError, match="release"):
        log.append_many("t", [{"type": "x"}], release=True)
