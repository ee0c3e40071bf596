"""eventlet のグリーンスレッドから ``RedisStore.commit`` で書く子プロセス (redis_bench.py 用)。

``uv run python benchmarks/_store_writer.py REDIS_URL PREFIX WRITERS COMMITS`` (ベンチマークがサブプロセスとして起動する)。

サーバーと同じく最初に monkey patch し、``WRITERS`` 本のグリーンスレッドがそれぞれ自分のスレッドへ 1 件ずつ
``COMMITS`` 回書く (1 回ごとに 1 度譲る: 上流の次の読み取りを待つランの代わり)。温めの後の壁時計の秒・
このプロセスの CPU 秒・コミットの数・Redis への往復の数を JSON で 1 行出す。
"""

import sys

if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()

import json
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DELTA = "あいうえおかきくけこ"


def envelope(thread_id: str, i: int) -> dict:
    """``text_delta`` と同じ形・大きさの封筒 (``seq`` はストアが付ける)。"""
    return {
        "type": "text_delta",
        "thread_id": thread_id,
        "run_id": "run_bench0000000000000000",
        "ts": time.time(),
        "message_id": "msg_bench00000000",
        "delta": DELTA,
        "i": i,
    }


def main() -> None:
    """書いて、結果を出す。"""
    import eventlet

    from llm_router.cluster.connection import Keys, connect
    from llm_router.core.schemas.thread_record import StoredThread
    from llm_router.store.base import LogLimits
    from llm_router.store.redis import RedisStore

    url, prefix, writers, commits = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = RedisStore(connect(url), LogLimits(max_events=10000, max_bytes=8 << 20, max_age_s=3600), Keys(prefix))
    threads = [f"w{k}" for k in range(writers)]
    for tid in threads:
        store.create_thread(StoredThread(tid, "bench"))
        for i in range(20):  # 温め (スクリプトの読み込み、接続)
            store.commit(tid, [envelope(tid, i)])

    def run(tid: str) -> None:
        """1 本のランの書き手。"""
        for i in range(commits):
            store.commit(tid, [envelope(tid, i)])
            eventlet.sleep(0)

    trips0, cpu0, t0 = store.commit_round_trips, time.process_time(), time.perf_counter()
    pool = eventlet.GreenPool(writers)
    for tid in threads:
        pool.spawn(run, tid)
    pool.waitall()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "commits": writers * commits,
                "round_trips": store.commit_round_trips - trips0,
            }
        ),
        flush=True,
    )
    store.close()


if __name__ == "__main__":
    main()
