"""テストが別プロセスで動かすワーカー (「別のサーバープロセス」の代わり)。URL は ``LLM_ROUTER_REDIS_URL`` から。

使い方 (リポジトリのルートで ``python -m tests.cluster.cluster_worker <mode> ...``):

- ``append <prefix> <thread_id> <count> <tag>``: ``ready`` を出し、標準入力に 1 行来たらイベントを 1 件ずつ
  ``count`` 件書き、付いた ``seq`` を JSON で出す。
- ``hold <prefix> <thread_id> <run_id> <lease_s>``: 貸与を取って更新係で持ち続け、コマンドにも答える
  (``held <process_id>`` を出した後、殺されるまで動く)。
- ``eventlet <prefix>``: 最初に eventlet で monkey-patch してから、追加・貸与・コマンドの往復・ストリームの追従を
  試し、結果を JSON で出す。
"""

from __future__ import annotations

import sys
from types import SimpleNamespace


def _parts(prefix: str, lease_s: float = 10.0):
    """環境変数の URL とテストの設定から、クライアントと部品を作る。"""
    import os

    from llm_router.cluster.connection import Keys, connect, new_process_id
    from llm_router.cluster.event_stream import RedisEventLog
    from llm_router.cluster.leases import RunLeases

    # conftest の TEST_REDIS と同じ値 (pytest と Hydra を import しないで済むように、属性だけの入れ物で渡す)
    test_redis = SimpleNamespace(connect_timeout_s=1.0, socket_timeout_s=2.0, retries=1)
    url = os.environ["LLM_ROUTER_REDIS_URL"]
    keys = Keys(prefix)
    client = connect(url, test_redis)
    blocking = connect(url, test_redis, socket_timeout_s=10)
    pid = new_process_id()
    return client, blocking, keys, pid, RedisEventLog(client, 100000, 0, keys), RunLeases(client, pid, lease_s, keys)


def run_append(prefix: str, thread_id: str, count: int, tag: str) -> None:
    """イベントを 1 件ずつ書き、付いた ``seq`` を 1 行の JSON で出す。"""
    import json

    _client, _blocking, _keys, _pid, events, _leases = _parts(prefix)
    print("ready", flush=True)
    sys.stdin.readline()  # 全員の準備ができてから同時に書き始める (テストが "go" を送る)
    seqs = [events.append(thread_id, {"type": "text_delta", "tag": tag, "i": i}) for i in range(count)]
    print(json.dumps(seqs), flush=True)


def run_hold(prefix: str, thread_id: str, run_id: str, lease_s: float) -> None:
    """貸与を取り、更新係とコマンドの受信を動かしたまま、殺されるまで待つ。"""
    import threading

    from llm_router.cluster.commands import CommandBus
    from llm_router.cluster.leases import LeaseRenewer

    client, blocking, keys, pid, _events, leases = _parts(prefix, lease_s)
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
    """eventlet で monkey-patch した下で、追加・貸与・コマンドの往復が動くことを確かめて JSON で出す。"""
    import eventlet

    eventlet.monkey_patch()
    import json
    import socket

    from llm_router.cluster.commands import CommandBus
    from llm_router.cluster.connection import new_process_id
    from llm_router.cluster.follower import StreamFollower
    from llm_router.cluster.leases import LeaseRenewer, RunInProgress

    client, blocking, keys, pid, events, leases = _parts(prefix, 0.6)
    seqs = [events.append("th", {"type": "x", "i": i}) for i in range(5)]
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
    other_events = _parts(prefix)[4]
    for i in range(5):
        other_events.append("th", {"type": "y", "i": i})
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
    if mode == "append":
        run_append(args[0], args[1], int(args[2]), args[3])
    elif mode == "hold":
        run_hold(args[0], args[1], args[2], float(args[3]))
    elif mode == "eventlet":
        run_eventlet(args[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
