"""テストが別プロセスで動かすワーカー (「別のサーバープロセス」の代わり)。URL は ``LLM_ROUTER_REDIS_URL`` から。

使い方 (リポジトリのルートで ``python -m tests.cluster.cluster_worker <mode> ...``):

- ``hold <prefix> <thread_id> <run_id> <lease_s>``: サーバーと同じ部品一式 (``ClusterRuntime``) でランのリースを取り、
  更新係で持ち続け、コマンドにも答える (``held <process_id>`` を出した後、殺されるまで動く)。
- ``eventlet <prefix>``: 最初に eventlet で monkey-patch してから、ストアへの書き込み (``RedisStore.commit``)・リースの
  更新係・コマンドの往復・ストリームの追従 (どれも ``ClusterRuntime`` の部品) を試し、結果を JSON で出す。
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def build_runtime(
    url: str,
    prefix: str,
    lease_s: float,
    handler: Callable[[str, dict], dict] | None = None,
    deliver: Callable[[str, list], Any] | None = None,
    on_lost: Callable[[str, str], Any] | None = None,
    on_orphan: Callable[[Any], Any] | None = None,
) -> Any:
    """設定から、サーバーと同じストア (``RedisStore``) と部品一式 (``ClusterRuntime``) を作る (まだ動かさない)。

    接続の設定はテストの ``TEST_REDIS`` と同じ短めの値。渡されなかったコールバックは何もしない。
    """
    from llm_router.config.settings import load_settings
    from llm_router.realtime.cluster import ClusterRuntime
    from llm_router.store.redis import open_redis_store

    overrides = [
        f"store.run_lease_s={lease_s}",
        f"store.redis.key_prefix={prefix}",
        "store.redis.connect_timeout_s=1",
        "store.redis.socket_timeout_s=2",
        "store.redis.retries=1",
        "store.redis.command_timeout_s=2",
        "store.redis.command_poll_s=0.2",
    ]
    settings = load_settings(overrides, env_file=None, environ={"LLM_ROUTER_REDIS_URL": url})
    store = open_redis_store(settings)

    def ignore(*_args: Any) -> None:
        """何もしない。"""

    return ClusterRuntime(
        settings,
        store,
        handler or (lambda _kind, _payload: {}),
        deliver or ignore,
        on_lost or ignore,
        on_orphan or ignore,
    )


def run_hold(prefix: str, thread_id: str, run_id: str, lease_s: float) -> None:
    """ランのリースを取り、更新係とコマンドの受信を動かしたまま、殺されるまで待つ。"""
    import os
    import threading

    from llm_router.core.schemas.thread_record import StoredThread

    pid: list[str] = []

    def handler(kind: str, payload: dict) -> dict:
        """コマンドに、受け取ったものと自分の id で答える。"""
        return {"ok": True, "kind": kind, "owner": pid[0], "echo": payload}

    runtime = build_runtime(os.environ["LLM_ROUTER_REDIS_URL"], prefix, lease_s, handler)
    pid.append(runtime.process_id)
    runtime.store.create_thread(StoredThread(thread_id, "alice"))
    if not runtime.acquire(thread_id, run_id):
        raise SystemExit("the run lease was not acquired")
    runtime.start()
    print(f"held {runtime.process_id}", flush=True)
    threading.Event().wait()


def run_eventlet(prefix: str) -> None:
    """eventlet で monkey-patch した下で、ストアへの書き込み・リース・コマンドの往復・追従が動くことを確かめて JSON で出す。"""
    import eventlet

    eventlet.monkey_patch()
    import json
    import os
    import socket

    from llm_router.core.schemas.thread_record import StoredThread

    url = os.environ["LLM_ROUTER_REDIS_URL"]
    followed: list[int] = []
    got_all = eventlet.event.Event()

    def deliver(_thread_id: str, events: list) -> None:
        """届いた seq を記録する。"""
        followed.extend(e["seq"] for e in events)
        if len(followed) >= 8:
            got_all.send(True)

    runtime = build_runtime(url, prefix, 0.6, lambda kind, payload: {"ok": True, "kind": kind}, deliver)
    store = runtime.store
    store.create_thread(StoredThread("th", "alice"))
    seqs = [store.commit("th", [{"type": "x", "i": i}])[0]["seq"] for i in range(5)]
    assert runtime.acquire("th", "run-1")
    runtime.start()
    # 別の「プロセス」: 別の id と別の接続の部品一式 (緑スレッドの間で往復する)
    other = build_runtime(url, prefix, 0.6)
    other.start()
    reply = other.forward("th", "cancel", {"mode": "now"})
    # リースの 3 期間、更新係が緑スレッドで動いてリースを保つ (待つ間もハブは他の緑スレッドを動かす)
    refused = 0
    deadline = eventlet.hubs.get_hub().clock() + 1.8
    while eventlet.hubs.get_hub().clock() < deadline:
        if not other.acquire("th", "run-2"):
            refused += 1
        eventlet.sleep(0.1)
    # ストリームの追従も緑スレッドで: 別の接続で書いたものが seq 順に届く
    runtime.watch("th", 2)
    for i in range(5):
        other.store.commit("th", [{"type": "y", "i": i}])
    with eventlet.Timeout(10, False):
        got_all.wait()
    still_held = other.holder("th") == (runtime.process_id, "run-1")
    other.stop()
    runtime.stop()
    print(
        json.dumps(
            {
                "patched": socket.socket.__module__,
                "seqs": seqs,
                "reply": reply,
                "refused": refused,
                "still_held": still_held,
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
