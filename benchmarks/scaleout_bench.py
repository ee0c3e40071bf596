"""スケールアウトのベンチマーク: 1 つのプロセスと、1 つの Redis を共有する 2 つのプロセスを 1 回の実行で比べる。

``uv run python benchmarks/scaleout_bench.py [--runs 200] [--idle 1000] [--chunks 60] [--rate 20] [--json PATH]``

- llm_router の構成は ``store.backend=redis`` (同じ Redis の上の同じ経路)。2 プロセスの構成では、ランのクライアントも
  待機中の接続も 2 つのプロセスに半分ずつ繋ぐ (ランはクライアントが繋いだプロセスで動く)。
- 素のスタックの床: 同じ実行の中で、上流もストアも無い素の Flask-SocketIO (``bare_stack.py``) を 1 つと 2 つ
  起動し、同じラン数・間隔・待機中の接続・クライアントで emit させる。このマシンで枠組みだけが出せる遅延で、
  llm_router の行はこれに上流の 1 ホップ (HTTP の読み取りと解析) と永続化を足したもの。
- 遅延: 上流 (``paced_upstream.py``) が各チャンクに送出直前の時刻を書き、クライアント (別プロセス) が受信時刻から
  引く (``realtime_bench.py`` と同じ)。クライアントは ``lean_client.py`` (受信の時刻だけを取り、解読は計測の後)。
  各クライアントはランを同時に始める (``user_message`` を ack を待たずに続けて送る)。
- 効率: 受け取ったイベントの数 / サーバーのプロセスの CPU 秒の合計 (Redis の CPU 秒は別の列)。
- 比較の床: 同じ負荷を 1 つのプロセスで既定の ``store.backend=sqlite`` (一時フォルダのファイル) に流した行も測る
  (``--no-sqlite`` で省く)。Redis のストアが 1 イベントに足した費用は、この行との差で読む。
- 別のプロセスからの cancel: A で流れているランを B のソケットから cancel し、上流 (偽の OpenAI) が接続の
  切断を見るまでの時間。
"""

from __future__ import annotations

import argparse
import itertools
import time
from contextlib import ExitStack
from typing import Any

from _common import command_line, cpu_seconds, machine, report, summary_ms, table
from _servers import BENCH_KEY, OPENAI_MODEL, BareServer
from realtime_bench import _idle_connections, _spread, paced_upstream

from tests.fakes.openai_fake import OpenAIFake
from tests.realtime.harness import ProtocolClient, ServerProcess
from tests.support.redis_server import RedisServer, require_redis_server


def cluster_server(redis_url: str, openai_base_url: str, backend: str = "redis") -> ServerProcess:
    """``store.backend=redis`` の llm_router を 1 つ起動する (制限はベンチマークの邪魔にならないよう外す)。

    ``backend="sqlite"`` なら既定のストア (ハーネスが一時フォルダのファイルを指定する) で起動する (比較の床)。
    """
    overrides = [
        *(["store.backend=redis"] if backend == "redis" else []),
        "server.rate_limit_per_minute=100000000",
        "server.log_level=WARNING",
        "server.max_threads_per_principal=0",
        "server.max_active_runs_per_principal=0",
        f"providers.openai.base_url={openai_base_url}",
        f"agent.model={OPENAI_MODEL}",
    ]
    secrets = {"OPENAI_API_KEY": BENCH_KEY}
    if backend == "redis":
        secrets["LLM_ROUTER_REDIS_URL"] = redis_url
    return ServerProcess(overrides=overrides, secrets=secrets).start(timeout=60)


def _warm(url: str) -> None:
    """最初のランの準備 (import やキャッシュ) を計測の外で済ませる。"""
    client = ProtocolClient(url).connect()
    try:
        for _ in range(3):
            thread_id = client.start()["thread_id"]
            client.wait_run_end(client.send_message(thread_id, "warm")["run_id"], timeout=60)
    finally:
        client.disconnect()


def _drive(
    urls: list[str], pids: list[int], runs: int, clients: int, timeout: float, bare: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], float, float]:
    """ランを ``urls`` のサーバーへ均等に分けて流し、(クライアントの結果, 経過秒, サーバーの CPU 秒の合計) を返す。"""
    import concurrent.futures

    cpu0 = [cpu_seconds(p) for p in pids]
    began = time.monotonic()
    share = [runs // len(urls) + (1 if i < runs % len(urls) else 0) for i in range(len(urls))]
    per_client = max(1, clients // len(urls))
    results: list[dict[str, Any]] = []
    # 各サーバーへのクライアントのプロセスを同時に走らせる (サーバーごとに別の Pool)
    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        futures = [pool.submit(_spread, u, n, per_client, timeout, bare) for u, n in zip(urls, share, strict=True)]
        for f in futures:
            results += f.result()
    elapsed = time.monotonic() - began
    return results, elapsed, sum(cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True))


def configuration(
    processes: int, runs: int, chunks: int, rate: float, idle: int, clients: int, backend: str = "redis"
) -> dict[str, Any]:
    """``processes`` 個のサーバーで ``runs`` 本の同時ランと ``idle`` 個の待機中の接続を流し、遅延と効率を返す。"""
    timeout = 60 + chunks / rate * 3
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(require_redis_server()))
        base_url = stack.enter_context(paced_upstream(chunks, rate))
        servers = [cluster_server(redis.url, base_url, backend) for _ in range(processes)]
        for server in servers:
            stack.callback(server.close)
        for server in servers:
            _warm(server.url)
            stack.enter_context(_idle_connections(server.url, idle // processes))
        redis_cpu0 = cpu_seconds(redis.process.pid)
        results, elapsed, cpu = _drive(
            [s.url for s in servers], [s.proc.pid for s in servers], runs, clients, timeout, None
        )
        redis_cpu = cpu_seconds(redis.process.pid) - redis_cpu0
    return _summary(processes, backend, results, elapsed, cpu, redis_cpu)


def bare_configuration(processes: int, runs: int, chunks: int, rate: float, idle: int, clients: int) -> dict[str, Any]:
    """素の Flask-SocketIO (``bare_stack.py``) を ``processes`` 個起動し、同じ負荷 (ラン数・間隔・待機中の接続・
    クライアントのプロセス数) を流す: このマシンでの枠組みだけの床 (上流の読み取りもストアも無い)。"""
    timeout = 60 + chunks / rate * 3
    with ExitStack() as stack:
        servers = [stack.enter_context(BareServer()) for _ in range(processes)]
        for server in servers:
            _spread(server.url, 4, 1, timeout, {"count": 4, "interval": 0.01})
            stack.enter_context(_idle_connections(server.url, idle // processes))
        pids = [s.proc.pid for s in servers]  # type: ignore[union-attr]
        payload = {"count": chunks, "interval": 1.0 / rate}
        results, elapsed, cpu = _drive([s.url for s in servers], pids, runs, clients, timeout, payload)
    return _summary(processes, "bare", results, elapsed, cpu, 0.0)


def _summary(
    processes: int, backend: str, results: list[dict[str, Any]], elapsed: float, cpu: float, redis_cpu: float
) -> dict[str, Any]:
    """クライアントのプロセスの結果と CPU 秒を 1 つの構成の行にまとめる。"""
    values = list(itertools.chain.from_iterable(r["latencies"] for r in results))
    events = sum(r["events"] for r in results)
    ends: dict[str, int] = {}
    for r in results:
        for k, v in r["ends"].items():
            ends[k] = ends.get(k, 0) + v
    return {
        "processes": processes,
        "backend": backend,
        "latency_ms": summary_ms(values),
        "events": events,
        "elapsed_s": elapsed,
        "server_cpu_s": cpu,
        "redis_cpu_s": redis_cpu,
        "events_per_cpu_s": events / cpu if cpu else float("nan"),
        "cpu_us_per_event": cpu / events * 1e6 if events else float("nan"),
        "ends": ends,
    }


def cross_cancel(samples: int) -> dict[str, Any]:
    """A で流れているランを B のソケットから cancel し、ack と上流の切断までの時間を測る。"""
    ack_ms: list[float] = []
    closed_ms: list[float] = []
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(require_redis_server()))
        fake = stack.enter_context(OpenAIFake(rules=True))
        a, b = cluster_server(redis.url, fake.base_url), cluster_server(redis.url, fake.base_url)
        stack.callback(a.close)
        stack.callback(b.close)
        on_a, on_b = ProtocolClient(a.url).connect(), ProtocolClient(b.url).connect()
        stack.callback(on_a.disconnect)
        stack.callback(on_b.disconnect)
        thread_id = on_a.start()["thread_id"]
        on_b.start(thread_id=thread_id)
        for _ in range(samples):
            fake.reset()
            run_id = on_a.send_message(thread_id, "[stall] 長い話")["run_id"]
            on_b.wait_for("text_delta", lambda e, r=run_id: e["run_id"] == r)
            began = time.perf_counter()
            on_b.call("cancel", {"thread_id": thread_id})
            ack_ms.append((time.perf_counter() - began) * 1000)
            fake.server.client_disconnected.wait(10)
            closed_ms.append((time.perf_counter() - began) * 1000)
            on_b.wait_run_end(run_id)
    return {
        "ack_ms": summary_ms([v / 1000 for v in ack_ms]),
        "upstream_closed_ms": summary_ms([v / 1000 for v in closed_ms]),
    }


def main() -> None:
    """引数を読み、計測して Markdown の表を出す。"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="同時に流すランの数 (既定 200)")
    parser.add_argument("--idle", type=int, default=1000, help="開いておく待機中の接続の数 (既定 1000)")
    parser.add_argument("--chunks", type=int, default=60, help="1 ランの上流のチャンク数 (既定 60)")
    parser.add_argument("--rate", type=float, default=20.0, help="1 ランの上流のチャンク/秒 (既定 20)")
    parser.add_argument("--clients", type=int, default=4, help="ランのクライアントのプロセスの数 (既定 4)")
    parser.add_argument("--cancel-samples", type=int, default=30, help="別のプロセスからの cancel の回数 (既定 30)")
    parser.add_argument("--no-sqlite", action="store_true", help="比較の床 (1 プロセス、sqlite) を測らない")
    parser.add_argument("--json", help="結果を JSON でも保存するパス")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    rows = []
    plan = [(1, "bare"), (2, "bare"), (1, "redis"), (2, "redis")] + ([] if args.no_sqlite else [(1, "sqlite")])
    labels = {"bare": "素のスタック", "redis": "llm_router (redis)", "sqlite": "llm_router (sqlite、Redis なし)"}
    for processes, backend in plan:
        if backend == "bare":
            r = bare_configuration(processes, args.runs, args.chunks, args.rate, args.idle, args.clients)
        else:
            r = configuration(processes, args.runs, args.chunks, args.rate, args.idle, args.clients, backend)
        results[f"{backend}_processes_{processes}"] = r
        lm = r["latency_ms"]
        rows.append(
            (
                f"{labels[backend]}: {processes} プロセス",
                lm["n"],
                lm["p50"],
                lm["p90"],
                lm["p99"],
                lm["max"],
                r["server_cpu_s"],
                r["redis_cpu_s"],
                r["events_per_cpu_s"],
                r["cpu_us_per_event"],
                r["ends"],
            )
        )
    body = table(
        [
            "構成",
            "計測数",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "最大 ms",
            "サーバー CPU 秒",
            "Redis CPU 秒",
            "イベント / サーバー CPU 秒",
            "サーバー CPU µs / イベント",
            "終わり",
        ],
        rows,
    )
    body += (
        f"\n\n{args.runs} 本の同時ラン (各 {args.chunks} チャンクを {args.rate:g} チャンク/秒) と {args.idle} 個の"
        "待機中の接続。2 プロセスではどちらも半分ずつ。素のスタックは上流もストアも無い Flask-SocketIO (bare_stack.py) が"
        "同じ間隔で emit するもので、このマシンで枠組みだけが出せる遅延 (床)。sqlite の行は Redis を使わない同じ負荷。"
    )
    cancel = cross_cancel(args.cancel_samples)
    results["cross_cancel"] = cancel
    body += "\n\n" + table(
        ["別のプロセスからの cancel", "回数", "p50 ms", "p90 ms", "p99 ms", "最大 ms"],
        [
            ("ack まで", cancel["ack_ms"]["n"], *(cancel["ack_ms"][k] for k in ("p50", "p90", "p99", "max"))),
            (
                "上流の切断まで",
                cancel["upstream_closed_ms"]["n"],
                *(cancel["upstream_closed_ms"][k] for k in ("p50", "p90", "p99", "max")),
            ),
        ],
    )
    report(
        "スケールアウト (1 プロセスと、1 つの Redis の 2 プロセス)", command_line(), machine(), body, results, args.json
    )


if __name__ == "__main__":
    main()
