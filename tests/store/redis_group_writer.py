"""eventlet のグリーンスレッドから RedisStore に書く子プロセス (2 つのプロセスが同じ Redis で競うテスト用)。

使い方: ``python -m tests.store.redis_group_writer <redis_url> <prefix> <name> <runs> <commits>``。monkey patch の
後で ``runs`` 本のグリーンスレッドが、それぞれ ``commits`` 回、自分のスレッドと共有のスレッド ``thr_shared`` へ
2 件ずつのまとまりを書く。共有のスレッドで付いた ``seq``、コミットの回数と Redis への往復の回数を JSON で 1 行出す。
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402

from llm_router.cluster.connection import Keys, connect  # noqa: E402
from llm_router.core.schemas.thread_record import StoredThread  # noqa: E402
from llm_router.store.errors import ThreadExists  # noqa: E402
from llm_router.store.redis import RedisStore  # noqa: E402


def main() -> None:
    """書いて、結果を出す。"""
    url, prefix, name, runs, commits = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    store = RedisStore(connect(url), keys=Keys(prefix))
    try:
        store.create_thread(StoredThread("thr_shared", "alice"))
    except ThreadExists:
        pass  # もう 1 つのプロセスが先に作った
    for r in range(runs):
        store.create_thread(StoredThread(f"thr_{name}_{r}", "alice"))
    shared: list[list[int]] = []
    own: dict[str, list[int]] = {}
    count = {"commits": 0}

    def run(r: int) -> None:
        """1 本のランの書き手: 自分のスレッドと共有のスレッドへ交互に書き、1 回ごとに譲る。"""
        tid = f"thr_{name}_{r}"
        for i in range(commits):
            batch = [{"type": "text_delta", "run_id": "run_1", "text": f"{name}-{r}-{i}-{k}"} for k in range(2)]
            own.setdefault(tid, []).extend(e["seq"] for e in store.commit(tid, batch))
            batch = [{"type": "text_delta", "run_id": "run_1", "text": f"{name}-{r}-{i}-{k}"} for k in range(2)]
            shared.append([e["seq"] for e in store.commit("thr_shared", batch)])
            count["commits"] += 2
            eventlet.sleep(0)

    pool = eventlet.GreenPool()
    for r in range(runs):
        pool.spawn(run, r)
    pool.waitall()
    result = {"shared": shared, "own": own, "commits": count["commits"], "round_trips": store.commit_round_trips}
    print(json.dumps(result), flush=True)
    store.close()


if __name__ == "__main__":
    main()
