"""テストが別プロセスで動かすワーカー (「別のサーバープロセス」の代わり)。URL は ``LLM_ROUTER_REDIS_URL`` から。

使い方 (リポジトリのルートで ``python -m tests.cluster.cluster_worker <mode> ...``):

- ``hold <prefix> <thread_id> <run_id> <lease_s>``: 貸与を取って更新係で持ち続け、コマンドにも答える
  (``held <process_id>`` を出した後、殺されるまで動く)。
- ``eventlet <prefix>``: 最初に eventlet で monkey-patch してから、ストアへの書き込み (``RedisStore.commit``)・貸与・
  コマンドの往復・ストリームの追従を試し、結果を JSON で出す。
"""

from __future__ import annotations

import sys
from types import SimpleNamespace


def _parts(prefix: str, lease_s: float = 10.0):
    """環境変数の URL とテストの設定から、クライアントと部品 (イベントを書くのはサーバーと同じ ``RedisStore``) を作る。"""
    import os

    from llm_router.cluster.connection import Keys, connect, new_process_id
    from llm_router.cluster.leases import RunLeases
    from llm_router.store.redis import RedisStore

    # conftest の TEST_REDIS と同じ値 (pytest と Hydra を import しないで済むように、属性だけの入れ物で渡す)
    test_redis = SimpleNamespace(connect_timeout_s=1.0, socket_timeout_s=2.0, retries=1)
    url = os.environ["LLM_ROUTER_REDIS_URL"]
    keys = Keys(prefix)
    client = connect(url, test_redis)
    blocking = connect(url, test_redis, socket_timeout_s=10)
    pid = new_process_id()
    return client, blocking, keys, pid, RedisStore(client, keys=keys), RunLeases(client, pid, lease_s, keys)


def run_hold(prefix: str, thread_id: str, run_id: str, lease_s: float) -> None:
    """貸与を取り、更新係とコマンドの受信を動かしたまま、殺されるまで待つ。"""
    import threading

    from llm_router.cluster.commands import CommandBus
    from llm_router.cluster.leases import LeaseRenewer

    client, blocking, keys, pid, _store, leases = _parts(prefix, lease_s)
    lease = leases.acquire(thread_id, run_id)
    renewer = LeaseRenewer(leases, on_lost=lambda _lease: None)
    renewer.hold(lease)
    renewer.start()

    def handler(kind: str, payload: dict) -> dict:
        """コマンドに、受け取ったものと自分の id で答える。"""
        return {"ok": True, "kind": kind, "owner": pid, "echo": payload}

    bus = CommandBus(client, blocking, pid, handler, poll_s=0.2, keys=keys)
    bus.start()
    print(f"held {pid}", flush=True)
    threading.Event().wait()


def run_eventlet(prefix: str) -> None:
    """eventlet で monkey-patch した下で、ストアへの書き込み・貸与・コマンドの往復・追従が動くことを確かめて JSON で出す。"""
    import eventlet

    eventlet.monkey_patch()
    import json
    import socket

    from llm_router.cluster.commands import CommandBus
    from llm_router.cluster.connection import new_process_id
    from llm_router.cluster.follower import StreamFollower
    from llm_router.cluster.leases import LeaseRenewer, RunInProgress
    from llm_router.core.schemas.thread_record import StoredThread

    client, blocking, keys, pid, store, leases = _parts(prefix, 0.6)
    store.create_thread(StoredThread("th", "alice"))
    seqs = [store.commit("th", [{"type": "x", "i": i}])[0]["seq"] for i in range(5)]
    lease = leases.acquire("th", "run-1")
    renewer = LeaseRenewer(leases, on_lost=lambda _lease: None)
    renewer.hold(lease)
    renewer.start()
    bus = CommandBus(client, blocking, pid, lambda kind, payload: {"ok": True, "kind": kind}, poll_s=0.2, keys=keys)
    bus.start()
    # 別の「プロセス」: 別の id と別の接続の送り手 (緑スレッドの間で往復する)
    other_client, other_blocking, _k, _p, _e, other_leases = _parts(prefix, 0.6)
    other = CommandBus(other_client, other_blocking, new_process_id(), lambda k, p: {}, keys=keys)
    reply = other.send_to_owner(other_leases, "th", "cancel", {"mode": "now"})
    # 貸与の 3 期間、更新係が緑スレッドで動いて貸与を保つ (待つ間もハブは他の緑スレッドを動かす)
    refused = 0
    deadline = eventlet.hubs.get_hub().clock() + 1.8
    while eventlet.hubs.get_hub().clock() < deadline:
        try:
            other_leases.acquire("th", "run-2")
        except RunInProgress:
            refused += 1
        eventlet.sleep(0.1)
    # ストリームの追従も緑スレッドで: 別の接続で書いたものが seq 順に届く
    followed: list[int] = []
    got_all = eventlet.event.Event()

    def deliver(_thread_id: str, events: list) -> None:
        """届いた seq を記録する。"""
        followed.extend(e["seq"] for e in events)
        if len(followed) >= 8:
            got_all.send(True)

    follower = StreamFollower(_parts(prefix)[1], pid, deliver, block_s=2.0, keys=keys)
    follower.start()
    follower.watch("th", 2)
    other_store = _parts(prefix)[4]
    for i in range(5):
        other_store.commit("th", [{"type": "y", "i": i}])
    with eventlet.Timeout(10, False):
        got_all.wait()
    follower.stop()
    renewer.stop()
    bus.stop()
    print(
        json.dumps(
            {
                "patched": socket.socket.__module__,
                "seqs": seqs,
                "reply": reply,
                "refused": refused,
                "still_held": leases.holder("th") is not None and leases.holder("th").token == lease.token,
                "followed": followed,
            }
        ),
        flush=True,
    )


def main(argv: list[str]) -> None:
    """引数のモードで動く。"""
    mode, *args = argv
    if mode == "hold":
        run_hold(args[0], args[1], args[2], float(args[3]))
    elif mode == "eventlet":
        run_eventlet(args[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
