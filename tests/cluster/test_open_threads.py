"""主体の使用中のスレッドの数 (OpenThreads): 全プロセスで共有する上限と、空きのスレッドだけを閉じること。"""

from __future__ import annotations

import threading

from llm_router.cluster.open_threads import OpenThreads


def test_threads_in_use_are_counted_once_across_clients_and_only_idle_ones_are_closed(client, make_client, keys):
    """使用中のスレッドの表: 2 つのクライアント (別プロセスの代わり) が同時に開いても上限を超えない。上限では
    どこにもソケットもランも無い最古のものだけを閉じる (開いたばかりのものは開いたプロセスの在席で守られる)。"""
    a = OpenThreads(client, "proc-a", 30, keys)
    b = OpenThreads(make_client(), "proc-b", 30, keys)
    for tid in ("thr_1", "thr_2"):
        client.hset(f"{keys.prefix}:t:{tid}:record", "owner", "alice")
    results: dict[str, bool] = {}
    barrier = threading.Barrier(2)

    def open_one(opener: OpenThreads, tid: str) -> None:
        """合図で同時に開く。"""
        barrier.wait()
        results[tid] = opener.open("alice", tid, 1).allowed

    workers = [
        threading.Thread(target=open_one, args=(a, "thr_1")),
        threading.Thread(target=open_one, args=(b, "thr_2")),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert sorted(results.values()) == [False, True] and a.count("alice") == 1
    winner = next(t for t, ok in results.items() if ok)
    assert a.open("alice", winner, 1).allowed, "opening a thread already in use is not counted again"

    # 開いたプロセスの在席がある間は空きではない。在席が消えてランも無ければ、新しいスレッドに席を譲る
    client.hset(f"{keys.prefix}:t:thr_3:record", "owner", "alice")
    assert not b.open("alice", "thr_3", 1).allowed
    client.delete(f"{keys.prefix}:t:{winner}:present")
    client.hset(f"{keys.prefix}:t:{winner}:record", "active_run", "run_1")
    assert not b.open("alice", "thr_3", 1).allowed, "a thread with an open run is not idle"
    client.hdel(f"{keys.prefix}:t:{winner}:record", "active_run")
    opened = b.open("alice", "thr_3", 1)
    assert opened.allowed and opened.evicted == [winner]
    b.close("alice", ["thr_3"])
    assert b.count("alice") == 1, "a thread with a socket present is not closed by close()"
    b.close("alice", ["thr_3"], force=True)
    assert b.count("alice") == 0
