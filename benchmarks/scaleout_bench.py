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
import concurrent.futures
import multiprocessing as mp
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from _common import command_line, cpu_seconds, machine, report, summary_ms, table
from _servers import BENCH_KEY, OPENAI_MODEL, BareServer
from realtime_bench import _idle_connections, _spread, _summarise, client_shares, paced_upstream, split_evenly

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


@dataclass(frozen=True)
class Load:
    """1 つの構成に流す負荷。ランは ``ramp_s`` 秒の間のでたらめな時刻に始まり、各 ``chunks`` チャンクを ``rate`` チャンク/秒。"""

    runs: int
    chunks: int
    rate: float
    idle: int
    clients: int
    ramp_s: float

    @property
    def timeout(self) -> float:
        """1 本のクライアントのプロセスを待つ最大秒数。"""
        return 60 + self.ramp_s + self.chunks / self.rate * 3

    def window(self, first_start: float, last_start: float) -> tuple[int, int]:
        """全部のランが流れている間 (最後のランが始まって 0.5 秒後から、最初のランが終わるまで) の ns の範囲。

        ``first_start``/``last_start`` はクライアントのプロセスがランを始め始めた時刻の最小と最大。
        """
        return int((last_start + self.ramp_s + 0.5) * 1e9), int((first_start + self.chunks / self.rate) * 1e9)


def _drive(urls: list[str], pids: list[int], load: Load, bare: dict[str, Any] | None) -> dict[str, Any]:
    """ランを ``urls`` のサーバーへ均等に分けて流し、結果 (遅延、CPU 秒、経過秒) をまとめる。"""
    cpu0 = [cpu_seconds(p) for p in pids]
    began = time.monotonic()
    share = split_evenly(load.runs, len(urls))
    per_client = max(1, load.clients // len(urls))
    parties = sum(len(client_shares(n, per_client)) for n in share)
    results: list[dict[str, Any]] = []
    # クライアントのプロセスが全部スレッドを開き終えてから、同じ時刻からランを始める (共有の Barrier)
    with mp.get_context("spawn").Manager() as manager, concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        barrier = manager.Barrier(parties)
        futures = [
            pool.submit(_spread, u, n, per_client, load.timeout, bare, barrier, load.ramp_s)
            for u, n in zip(urls, share, strict=True)
        ]
        for f in futures:
            results += f.result()
    elapsed = time.monotonic() - began
    cpu = sum(cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True))
    low, high = load.window(min(r["start_at"] for r in results), max(r["start_at"] for r in results))
    steady = [
        lat for r in results for lat, stamp in zip(r["latencies"], r["stamps"], strict=True) if low <= stamp < high
    ]
    summary = _summarise(results, cpu, elapsed)
    events = summary["events"]
    return {
        **summary,
        "latency_ms": summary_ms(steady),
        "latency_all_ms": summary["latency_ms"],
        "cpu_us_per_event": cpu / events * 1e6 if events else float("nan"),
    }


def configuration(processes: int, load: Load, backend: str = "redis") -> dict[str, Any]:
    """``processes`` 個のサーバーで ``load`` のランと待機中の接続を流し、遅延と効率を返す。"""
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(require_redis_server()))
        base_url = stack.enter_context(paced_upstream(load.chunks, load.rate))
        servers = [cluster_server(redis.url, base_url, backend) for _ in range(processes)]
        for server in servers:
            stack.callback(server.close)
        for server in servers:
            _warm(server.url)
            stack.enter_context(_idle_connections(server.url, load.idle // processes))
        redis_cpu0 = cpu_seconds(redis.process.pid)
        result = _drive([s.url for s in servers], [s.proc.pid for s in servers], load, None)
        result["redis_cpu_s"] = cpu_seconds(redis.process.pid) - redis_cpu0
    return {"processes": processes, "backend": backend, **result}


def bare_configuration(processes: int, load: Load) -> dict[str, Any]:
    """素の Flask-SocketIO (``bare_stack.py``) を ``processes`` 個起動し、同じ負荷 (ラン数・間隔・待機中の接続・
    クライアントのプロセス数) を流す: このマシンでの枠組みだけの床 (上流の読み取りもストアも無い)。"""
    with ExitStack() as stack:
        servers = [stack.enter_context(BareServer()) for _ in range(processes)]
        for server in servers:
            _spread(server.url, 4, 1, load.timeout, {"count": 4, "interval": 0.01})
            stack.enter_context(_idle_connections(server.url, load.idle // processes))
        pids = [s.proc.pid for s in servers]  # type: ignore[union-attr]
        payload = {"count": load.chunks, "interval": 1.0 / load.rate}
        result = _drive([s.url for s in servers], pids, load, payload)
    return {"processes": processes, "backend": "bare", "redis_cpu_s": 0.0, **result}


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
    parser.add_argument("--chunks", type=int, default=100, help="1 ランの上流のチャンク数 (既定 100)")
    parser.add_argument("--rate", type=float, default=20.0, help="1 ランの上流のチャンク/秒 (既定 20)")
    parser.add_argument("--ramp", type=float, default=1.0, help="ランを始める時刻をばらす秒数 (既定 1)")
    parser.add_argument("--clients", type=int, default=4, help="ランのクライアントのプロセスの数 (既定 4)")
    parser.add_argument("--cancel-samples", type=int, default=30, help="別のプロセスからの cancel の回数 (既定 30)")
    parser.add_argument("--no-sqlite", action="store_true", help="比較の床 (1 プロセス、sqlite) を測らない")
    parser.add_argument("--json", help="結果を JSON でも保存するパス")
    args = parser.parse_args()
    load = Load(args.runs, args.chunks, args.rate, args.idle, args.clients, args.ramp)
    if args.chunks / args.rate < args.ramp + 1.5:
        parser.error("--chunks / --rate must exceed --ramp + 1.5 s (the window where every run streams)")
    results: dict[str, Any] = {}
    rows = []
    plan = [(1, "bare"), (2, "bare"), (1, "redis"), (2, "redis")] + ([] if args.no_sqlite else [(1, "sqlite")])
    labels = {"bare": "素のスタック", "redis": "llm_router (redis)", "sqlite": "llm_router (sqlite、Redis なし)"}
    for processes, backend in plan:
        r = bare_configuration(processes, load) if backend == "bare" else configuration(processes, load, backend)
        results[f"{backend}_processes_{processes}"] = r
        lm, la = r["latency_ms"], r["latency_all_ms"]
        rows.append(
            (
                f"{labels[backend]}: {processes} プロセス",
                lm["n"],
                lm["p50"],
                lm["p90"],
                lm["p99"],
                lm["max"],
                la["p99"],
                r["server_cpu_s"],
                r["redis_cpu_s"],
                r["cpu_us_per_event"],
                r["ends"],
            )
        )
    body = table(
        [
            "構成",
            "計測数 (定常)",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "最大 ms",
            "p99 ms (始まりを含む全部)",
            "サーバー CPU 秒",
            "Redis CPU 秒",
            "サーバー CPU µs / イベント",
            "終わり",
        ],
        rows,
    )
    body += (
        f"\n\n{args.runs} 本のラン (各 {args.chunks} チャンクを {args.rate:g} チャンク/秒、始まりは {args.ramp:g} 秒の間に"
        f"ばらす) と {args.idle} 個の待機中の接続。2 プロセスではどちらも半分ずつ。p50〜最大は全部のランが流れている間"
        "(最後のランが始まって 0.5 秒後から最初のランが終わるまでに上流が送ったチャンク) の遅延。"
        "素のスタックは上流もストアも無い Flask-SocketIO (bare_stack.py) が同じ間隔で emit するもので、"
        "このマシンで枠組みだけが出せる遅延 (床)。sqlite の行は Redis を使わない同じ負荷。"
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
