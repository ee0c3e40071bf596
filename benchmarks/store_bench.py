"""ストアの費用: 1 イベントあたりの CPU と、送出の前に足される遅延 (memory と sqlite、グループコミットの有無)。

2 つの計測を 1 回の実行で行う (各設定は別々の子プロセス。eventlet の monkey patch を混ぜないため):

1. **連続書き込み** (eventlet なし): 1 本の書き手がイベントを書き続ける。1 イベントずつ 1 トランザクション
   (グループコミットなし) と、8 イベントを 1 トランザクション (ステップの中の差分をまとめた場合) の
   イベント / CPU 秒と、1 回のコミットの所要時間 (= eventlet のハブが止まる時間) の p99 / 最大。
2. **同時ラン** (eventlet、monkey patch 済み): 200 本のグリーンスレッドが 50 ms ごと (各 20 イベント/秒、
   合計 4,000 イベント/秒) に 1 イベントを書く。予定時刻からコミットが返る (= 送出できる) までの遅れの p99 を、
   ストアなし (``none``) の遅れとの差として出す。方式は、直接 ``commit`` (グループコミットなし)、
   :class:`~llm_router.store.group.GroupCommitter` (グループコミット)、``eventlet.tpool`` でのコミット。

使い方: ``uv run python benchmarks/store_bench.py [--quick] [--write] [--json PATH]``。
``--write`` は docs/benchmarks.md のストアの節を書き換える。
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, command_line, machine, machine_line, percentile, report, table

DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- store-bench:start -->", "<!-- store-bench:end -->"


def _event(i: int) -> dict[str, Any]:
    """1 トークン分の ``text_delta`` の封筒 (``seq`` はストアが入れる)。"""
    return {"type": "text_delta", "thread_id": "thr_b", "run_id": "run_b", "ts": time.time(), "text": f"tok{i} "}


def _open(backend: str, folder: str, synchronous: str = "NORMAL", lock: Any = None) -> Any:
    """ベンチマーク用のストアを開く (上限は製品の既定: 10,000 件 / 1 時間)。"""
    from llm_router.store.base import LogLimits

    limits = LogLimits(max_events=10000, max_bytes=None, max_age_s=3600)
    if backend == "memory":
        from llm_router.store.memory import MemoryStore

        return MemoryStore(limits)
    from llm_router.store.sqlite import SqliteStore

    path = Path(folder) / f"bench-{backend}-{synchronous}.sqlite3"
    return SqliteStore(path, limits, synchronous=synchronous, lock=lock)


def child_throughput(backend: str, batch: int, n: int, synchronous: str) -> dict[str, Any]:
    """(子プロセス) 1 本の書き手で ``n`` イベントを ``batch`` 件ずつコミットする。"""
    from llm_router.core.schemas.thread_record import StoredThread

    with tempfile.TemporaryDirectory() as folder:
        store = _open(backend, folder, synchronous)
        store.create_thread(StoredThread("thr_b", "bench"))
        for i in range(200):  # 温める
            store.commit("thr_b", [_event(i)])
        durations = []
        cpu0 = time.process_time()
        for i in range(0, n, batch):
            events = [_event(i + k) for k in range(batch)]
            t0 = time.perf_counter()
            store.commit("thr_b", events)
            durations.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu0
        store.close()
    return {
        "events_per_cpu_s": n / cpu,
        "commit_p99_ms": percentile(durations, 99) * 1000,
        "commit_max_ms": max(durations) * 1000,
        "per_event_us": cpu / n * 1e6,
    }


def child_paced(mode: str, runs: int, per_run: int, interval: float) -> dict[str, Any]:
    """(子プロセス、eventlet) ``runs`` 本が ``interval`` ごとに 1 イベントを書き、予定時刻からの遅れを測る。"""
    import eventlet

    eventlet.monkey_patch()
    from eventlet import tpool

    from llm_router.core.schemas.thread_record import StoredThread
    from llm_router.store.group import GroupCommitter

    folder = tempfile.mkdtemp()
    backend = "memory" if mode == "memory" else "sqlite"
    # tpool の本物のスレッドからも使うので、その方式では本物のロックにする
    lock = eventlet.patcher.original("threading").RLock() if mode == "sqlite-tpool" else None
    store = None if mode == "none" else _open(backend, folder, lock=lock)
    for r in range(runs):
        if store is not None:
            store.create_thread(StoredThread(f"thr_{r}", "bench"))
    committer = GroupCommitter(store) if mode == "sqlite-group" else None
    lateness: list[float] = []
    hub_block: list[float] = []

    def write(tid: str, i: int) -> None:
        """方式ごとの 1 イベントの書き込み。"""
        events = [_event(i)]
        if store is None:
            return
        if mode == "sqlite-tpool":
            tpool.execute(store.commit, tid, events)
        elif committer is not None:
            committer.commit(tid, events)
        else:
            t0 = time.perf_counter()
            store.commit(tid, events)
            hub_block.append(time.perf_counter() - t0)

    def run(r: int, start: float) -> None:
        """1 本のラン: 予定時刻まで眠り、書き、遅れを記録する。"""
        tid = f"thr_{r}"
        for i in range(per_run):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                eventlet.sleep(delay)
            write(tid, i)
            lateness.append(time.perf_counter() - due)

    pool = eventlet.GreenPool(runs + 1)
    start = time.perf_counter() + 0.2
    cpu0 = time.process_time()
    for r in range(runs):
        pool.spawn(run, r, start + (r / runs) * interval)
    pool.waitall()
    cpu = time.process_time() - cpu0
    return {
        "events": len(lateness),
        "cpu_s": cpu,
        "late_p50_ms": percentile(lateness, 50) * 1000,
        "late_p99_ms": percentile(lateness, 99) * 1000,
        "late_max_ms": max(lateness) * 1000,
        "hub_block_max_ms": max(hub_block) * 1000 if hub_block else float("nan"),
        "batches": committer.batches if committer else None,
        "items": committer.items if committer else None,
    }


def spawn(args: list[str]) -> dict[str, Any]:
    """子プロセスで 1 つの設定を測り、その JSON を返す。"""
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """全部の設定を測り、表を出す (``--write`` なら docs/benchmarks.md も書き換える)。"""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="小さな設定で動作確認")
    parser.add_argument("--write", action="store_true", help="docs/benchmarks.md のストアの節を書き換える")
    parser.add_argument("--json", help="結果を JSON で保存するパス")
    parser.add_argument("--runs", type=int, default=100, help="同時ランの本数 (既定 100 = 2,000 イベント/秒)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "throughput":
            out = child_throughput(rest[0], int(rest[1]), int(rest[2]), rest[3])
        else:
            out = child_paced(rest[0], int(rest[1]), int(rest[2]), float(rest[3]))
        print(json.dumps(out), flush=True)
        os._exit(0)  # tpool の本物のスレッドの後片付けを待たない

    info = machine()
    n = 4000 if args.quick else 40000
    runs, per_run, interval = (50, 20, 0.05) if args.quick else (args.runs, 100, 0.05)
    throughput = []
    for backend, batch, sync, label in [
        ("memory", 1, "NORMAL", "memory、1 イベント / コミット"),
        ("sqlite", 1, "NORMAL", "sqlite (NORMAL)、1 イベント / トランザクション (グループコミットなし)"),
        ("sqlite", 8, "NORMAL", "sqlite (NORMAL)、8 イベント / トランザクション"),
        ("sqlite", 1, "FULL", "sqlite (FULL: コミットごとに fsync)、1 イベント / トランザクション"),
        ("sqlite", 8, "FULL", "sqlite (FULL)、8 イベント / トランザクション"),
    ]:
        count = n if sync == "NORMAL" else max(800, n // 20)
        result = spawn(["throughput", backend, str(batch), str(count), sync])
        throughput.append((label, result))
    paced = {
        mode: spawn(["paced", mode, str(runs), str(per_run), str(interval)])
        for mode in ("none", "memory", "sqlite-direct", "sqlite-group", "sqlite-tpool")
    }

    rows1 = [
        (label, r["events_per_cpu_s"], r["per_event_us"], r["commit_p99_ms"], r["commit_max_ms"])
        for label, r in throughput
    ]
    body1 = table(["設定", "イベント / CPU 秒", "µs / イベント", "コミット p99 (ms)", "コミット最大 (ms)"], rows1)
    base = paced["none"]
    labels = {
        "none": "ストアなし (基準)",
        "memory": "memory",
        "sqlite-direct": "sqlite、直接 commit (グループコミットなし)",
        "sqlite-group": "sqlite、GroupCommitter (グループコミット)",
        "sqlite-tpool": "sqlite、eventlet.tpool で commit",
    }
    rows2 = []
    for mode, r in paced.items():
        grouped = f"{r['items'] / r['batches']:.1f}" if r.get("batches") else "-"
        rows2.append(
            (
                labels[mode],
                r["events"] / r["cpu_s"],
                r["late_p50_ms"],
                r["late_p99_ms"],
                r["late_p99_ms"] - base["late_p99_ms"],
                r["late_max_ms"],
                r["hub_block_max_ms"],
                grouped,
            )
        )
    body2 = table(
        [
            "方式",
            "イベント / CPU 秒",
            "遅れ p50 (ms)",
            "遅れ p99 (ms)",
            "足された p99 (ms)",
            "遅れ最大 (ms)",
            "ハブが止まった最大 (ms)",
            "1 トランザクションの平均件数",
        ],
        rows2,
    )
    title = "ストアの費用 (store_bench.py)"
    text = (
        f"#### 連続書き込み ({n:,} イベント、1 本の書き手、eventlet なし)\n\n{body1}\n\n"
        f"#### 同時ラン ({runs} 本 × {per_run} イベント、{interval * 1000:.0f} ms 間隔 = "
        f"{runs / interval:,.0f} イベント/秒、eventlet)\n\n{body2}\n"
    )
    report(title, command_line(), info, text, {"throughput": throughput, "paced": paced}, args.json)
    if args.write and not args.quick:
        section = (
            f"{START}\n## ストアの費用 (`store_bench.py`)\n\n"
            f"`{command_line()}`  \n{machine_line(info)}\n\n{text}\n{END}"
        )
        doc = DOC.read_text(encoding="utf-8")
        if START in doc:
            doc = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _m: section, doc, flags=re.S)
        else:
            doc = doc.rstrip("\n") + "\n\n" + section + "\n"
        DOC.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    main()
