"""eventlet のグリーンスレッドからグループコミットで書く子プロセス (テストとベンチマークが使う)。

使い方: ``python -m tests.store.group_writer <path> <runs> <events_per_run>``。monkey patch の後で
``runs`` 本のグリーンスレッドが、それぞれ自分のスレッドへ 1 イベントずつ書く。結果を JSON で 1 行出す。
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402

from llm_router.core.schemas.thread_record import StoredThread  # noqa: E402
from llm_router.store.group import GroupCommitter  # noqa: E402
from llm_router.store.sqlite import SqliteStore  # noqa: E402


def main() -> None:
    """書いて、スレッドごとの ``seq`` とまとまりの数を出す。"""
    path, runs, per_run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = SqliteStore(path)
    for r in range(runs):
        store.create_thread(StoredThread(f"thr_{r}", "alice"))
    committer = GroupCommitter(store)
    seqs: dict[str, list[int]] = {}

    def run(r: int) -> None:
        """1 本のランの書き手 (ストリームの間に上流を待つ代わりに 1 回譲る)。"""
        tid = f"thr_{r}"
        got = seqs.setdefault(tid, [])
        for i in range(per_run):
            (ev,) = committer.commit(tid, [{"type": "text_delta", "run_id": "run_1", "text": f"{r}-{i}"}])
            got.append(ev["seq"])
            eventlet.sleep(0)

    pool = eventlet.GreenPool()
    for r in range(runs):
        pool.spawn(run, r)
    pool.waitall()
    print(json.dumps({"seqs": seqs, "batches": committer.batches, "items": committer.items}), flush=True)


if __name__ == "__main__":
    main()
