"""1 トークンの経路のベンチマーク: 本物のサーバープロセスを通るプロトコルのイベントの CPU 効率と遅延。

``uv run python benchmarks/realtime_bench.py [--quick] [--json PATH]``

1. 効率: サーバープロセスの CPU 秒あたりのプロトコルのイベント数 (``/proc/<pid>/stat``)。同じ実行の中で、
   素の Flask-SocketIO (eventlet) が同じ数・同じ形のイベントを 1 クライアントへ送るときと比べる。
   llm_router 側は 2 通り: 偽の OpenAI (ループバックの HTTP + SSE、1 チャンク 3 文字) を上流にしたもの
   (上流の読み取り・解析を含む本当の経路) と、プロセス内のデモ・プロバイダ (``stream_delay_s=0``) のもの。
2. 遅延: 上流のチャンクからクライアントのイベントまで。上流 (``paced_upstream.py``、1 スレッドの asyncio) が
   各チャンクの本文に送出直前の ``time.monotonic_ns()`` を書き、クライアント (別プロセス) が受信時刻から引く。N 本のランを同時に流す
   (各ランは ``--rate`` チャンク/秒、位相はランごとにずらす)。クライアントは複数のプロセスに分ける。
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _common import ROOT, command_line, cpu_seconds, machine, report, summary_ms, table
from _servers import BareServer, TimedClient, router_server
from idle_clients import IdleClients
from lean_client import LeanClient

from llm_router.core.schemas.events import RUN_END_EVENTS
from tests.fakes.openai_fake import OpenAIFake

DELTA = "あいう"  # 1 イベントの本文 (日本語 3 文字: LLM の 1 トークン前後)


# ---------------------------------------------------------------- 効率 (イベント / サーバー CPU 秒)


def _measure_runs(client: TimedClient, pid: int, thread_id: str, runs: int, before_each: Any) -> tuple[int, float]:
    """``runs`` 回のランを順に流し、(受け取ったイベント数, その間のサーバーの CPU 秒) を返す。

    CPU 時間の刻みは 10 ms (クロックティック) なので、ランごとではなく全体の前後で読む。
    ack の処理やランの準備など、ランごとの費用も含む。
    """
    events = 0
    cpu0 = cpu_seconds(pid)
    for i in range(runs):
        before_each()
        client.clear()
        run_id = client.send_message(thread_id, f"bench {i}")["run_id"]
        client.wait_end(run_id)
        events += len(client.events)
    return events, cpu_seconds(pid) - cpu0


def throughput_router_openai(deltas: int, runs: int, extra: list[str] | None = None) -> dict[str, Any]:
    """llm_router + 偽の OpenAI: 1 ランに ``deltas`` 個の text_delta (``extra`` はサーバーへのオーバーライド)。"""
    with OpenAIFake() as fake:
        server = router_server(fake.base_url, extra)
        try:
            client = TimedClient(server.url).connect()
            thread_id = client.start()["thread_id"]
            # 暖機 (接続プール、遅延 import、JIT の無い CPython でもキャッシュは温まる)
            _measure_runs(client, server.proc.pid, thread_id, 2, lambda: fake.add_text_turn(DELTA * 200, chunk_size=3))
            events, cpu = _measure_runs(
                client, server.proc.pid, thread_id, runs, lambda: fake.add_text_turn(DELTA * deltas, chunk_size=3)
            )
            client.disconnect()
        finally:
            server.close()
    return {"events": events, "cpu_s": cpu, "per_cpu_s": events / cpu if cpu else float("nan")}


def throughput_router_demo(min_events: int, extra: list[str] | None = None) -> dict[str, Any]:
    """llm_router + デモ・プロバイダ (``stream_delay_s=0``): ``min_events`` を超えるまでランを繰り返す。"""
    server = router_server(None, ["providers.demo.stream_delay_s=0", "agent.model=demo/scripted", *(extra or [])])
    try:
        client = TimedClient(server.url).connect()
        thread_id = client.start()["thread_id"]
        _measure_runs(client, server.proc.pid, thread_id, 3, lambda: None)
        events, cpu = 0, 0.0
        while events < min_events:
            # 履歴が伸びすぎないよう、10 ランごとに新しいスレッドにする
            thread_id = client.start()["thread_id"]
            e, c = _measure_runs(client, server.proc.pid, thread_id, 10, lambda: None)
            events, cpu = events + e, cpu + c
        client.disconnect()
    finally:
        server.close()
    return {"events": events, "cpu_s": cpu, "per_cpu_s": events / cpu if cpu else float("nan")}


def throughput_bare(count: int, runs: int, yield_each: bool) -> dict[str, Any]:
    """素のスタック: 1 回に ``count`` 個のイベントを ``runs`` 回 (``yield_each`` なら 1 つ送るごとに譲る)。"""
    with BareServer() as bare:
        pid = bare.proc.pid
        client = TimedClient(bare.url).connect()
        thread_id = client.start()["thread_id"]

        def burst() -> int:
            """1 回分を送らせ、届いた数を返す。"""
            client.clear()
            payload = {"thread_id": thread_id, "count": count, "delta": DELTA, "yield": yield_each}
            client.wait_end(client.call("burst", payload)["run_id"])
            return len(client.events)

        burst()  # 暖機
        cpu0 = cpu_seconds(pid)
        events = sum(burst() for _ in range(runs))
        cpu = cpu_seconds(pid) - cpu0
        client.disconnect()
    return {"events": events, "cpu_s": cpu, "per_cpu_s": events / cpu if cpu else float("nan")}


# ---------------------------------------------------------------- 遅延 (上流のチャンク → クライアントのイベント)


@contextmanager
def paced_upstream(chunks: int, rate: float) -> Iterator[str]:
    """``paced_upstream.py`` (1 スレッドの asyncio の上流) を別プロセスで起動し、``base_url`` を渡す。"""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "paced_upstream.py"), str(chunks), str(rate)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def latency_client(
    url: str,
    threads: int,
    timeout: float,
    bare: dict[str, Any] | None = None,
    barrier: Any = None,
    ramp_s: float = 0.0,
) -> dict[str, Any]:
    """(別プロセス) 1 本のソケットで ``threads`` 個のスレッドを開き、ランを同時に流して遅延を集める。

    ``bare`` があれば素のスタックの ``burst`` (その中身を引数に) で同じ形のイベントを流させる。
    クライアントは :class:`LeanClient` (受信の時刻だけを取り、解読は計測の後: ``benchmarks/lean_client.py``)。
    ``barrier`` (全部のクライアントのプロセスで共有の ``multiprocessing`` の Barrier) があれば、全員がスレッドを
    開き終えるのを待ってから、``ramp_s`` 秒の間のでたらめな時刻にランを 1 本ずつ始める (待つ間も受信を読み続ける)。
    無ければすぐに続けて始める。返す ``stamps[i]`` は ``latencies[i]`` のチャンクを上流 (または素のスタック) が
    送った時刻 (ns)、``start_at`` はランを始め始めた時刻 (``time.monotonic()``、マシン全体で共通)。
    """
    client = LeanClient(url).connect()
    try:
        started = client.call_many("start", [{}] * threads)
        if any("thread_id" not in ack for ack in started):
            raise RuntimeError(f"start refused: {next(a for a in started if 'thread_id' not in a)}")
        thread_ids = [ack["thread_id"] for ack in started]
        if barrier is not None:
            barrier.wait(timeout)
        start_at = time.monotonic()
        # 送る時刻 (Barrier が無ければ None: すぐに続けて送る)
        at = None if barrier is None else sorted(start_at + random.uniform(0, ramp_s) for _ in thread_ids)
        if bare is None:
            payloads = [{"thread_id": t, "content": "bench"} for t in thread_ids]
            acks = client.call_many("user_message", payloads, at)
        else:
            acks = client.call_many("burst", [{"thread_id": t, **bare} for t in thread_ids], at)
        refused = [ack for ack in acks if "run_id" not in ack]
        if refused:
            raise RuntimeError(f"{len(refused)} runs refused: {refused[0]}")
        client.wait_ends(len(thread_ids), timeout)
        latencies: list[float] = []
        stamps: list[int] = []
        ends: dict[str, int] = {}
        events = client.events()
        for name, data, received in events:
            if name == "text_delta":
                stamp = int(data["delta"].rstrip(";"))
                stamps.append(stamp)
                latencies.append((received - stamp) / 1e9)
            elif name in RUN_END_EVENTS:
                ends[name] = ends.get(name, 0) + 1
        return {"latencies": latencies, "stamps": stamps, "events": len(events), "ends": ends, "start_at": start_at}
    finally:
        client.close()


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` を ``parts`` 個に、差が高々 1 になるよう分ける (先頭ほど多い。0 の部分も返す)。"""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def client_shares(runs: int, processes: int) -> list[int]:
    """``runs`` 本のランを ``processes`` 個のクライアントのプロセスへ分けた数 (0 本のプロセスは作らない)。"""
    return [n for n in split_evenly(runs, processes) if n]


def _spread(
    url: str,
    runs: int,
    processes: int,
    timeout: float,
    bare: dict[str, Any] | None,
    barrier: Any = None,
    ramp_s: float = 0.0,
) -> list[dict[str, Any]]:
    """``runs`` 本のランを ``processes`` 個のクライアントのプロセスに分けて流し、結果を集める。"""
    shares = client_shares(runs, processes)
    with mp.get_context("spawn").Pool(len(shares)) as pool:
        jobs = [(url, n, timeout, bare, barrier, ramp_s) for n in shares]
        return pool.starmap_async(latency_client, jobs).get(timeout + 60)


def _summarise(results: list[dict[str, Any]], cpu: float, elapsed: float) -> dict[str, Any]:
    """クライアントのプロセスの結果とサーバーの CPU 秒をまとめる。"""
    values = list(itertools.chain.from_iterable(r["latencies"] for r in results))
    events = sum(r["events"] for r in results)
    ends: dict[str, int] = {}
    for r in results:
        for k, v in r["ends"].items():
            ends[k] = ends.get(k, 0) + v
    return {
        "latency_ms": summary_ms(values),
        "events": events,
        "elapsed_s": elapsed,
        "server_cpu_s": cpu,
        "server_cpu_share": cpu / elapsed if elapsed else float("nan"),
        "events_per_cpu_s": events / cpu if cpu else float("nan"),
        "ends": ends,
    }


def latency(
    runs: int, chunks: int, rate: float, processes: int, idle: int = 0, extra: list[str] | None = None
) -> dict[str, Any]:
    """``runs`` 本の同時のランで、上流のチャンクからクライアントのイベントまでの遅延を測る。

    同じ条件 (ラン数、間隔、クライアントのプロセス数) で素のスタックにも流させ、送出から受信までの遅延と
    CPU 秒あたりのイベント数を比べる (llm_router の遅延はそれに上流の 1 ホップと処理を足したもの)。
    ``idle`` があれば、その数の待機中の接続を開いたまま流す (docs/design.md 2 章: 1,000 接続と 200 本のラン)。
    """
    timeout = 60 + chunks / rate * 3
    with paced_upstream(chunks, rate) as base_url:
        server = router_server(base_url, extra)
        try:
            warm = TimedClient(server.url).connect()
            for _ in range(4):
                thread_id = warm.start()["thread_id"]
                warm.wait_end(warm.send_message(thread_id, "warm")["run_id"])
            warm.disconnect()
            with _idle_connections(server.url, idle):
                cpu0, began = cpu_seconds(server.proc.pid), time.monotonic()
                results = _spread(server.url, runs, processes, timeout, None)
                ours = _summarise(results, cpu_seconds(server.proc.pid) - cpu0, time.monotonic() - began)
        finally:
            server.close()
    with BareServer() as bare, _idle_connections(bare.url, idle):
        _spread(bare.url, 4, 1, timeout, {"count": 4, "interval": 0.01})
        cpu0, began = cpu_seconds(bare.proc.pid), time.monotonic()
        results = _spread(bare.url, runs, processes, timeout, {"count": chunks, "interval": 1.0 / rate})
        reference = _summarise(results, cpu_seconds(bare.proc.pid) - cpu0, time.monotonic() - began)
    return {
        "runs": runs,
        "chunks": chunks,
        "rate": rate,
        "processes": processes,
        "idle": idle,
        "router": ours,
        "bare": reference,
    }


@contextmanager
def _idle_connections(url: str, count: int) -> Iterator[None]:
    """``count`` 個の待機中の接続を開いておく (0 なら何もしない)。"""
    if not count:
        yield
        return
    idle = IdleClients(url)
    try:
        idle.open(count)
        yield
    finally:
        idle.close()


# ---------------------------------------------------------------- 実行と表


STORES = ("memory", "sqlite")


def compare_stores(args: argparse.Namespace) -> None:
    """``store.backend`` の memory と sqlite を 1 回の実行で比べる (素のスタックの床も同じ実行で測る)。

    効率 (イベント / サーバー CPU 秒) は偽の OpenAI とデモ・プロバイダの両方の経路で、遅延は ``--runs`` 本の
    同時ランで (素のスタックとの差が、その経路が足す遅延)。sqlite のファイルはサーバーごとの一時フォルダ。
    """
    deltas, reps = (2000, 2) if args.quick else (5000, 3)
    runs = args.runs or (20 if args.quick else 50)
    chunks = 40 if args.quick else 100
    bare_tight = throughput_bare(deltas, reps, yield_each=False)
    bare_yield = throughput_bare(deltas, reps, yield_each=True)
    rows = []
    results: dict[str, Any] = {"bare_tight": bare_tight, "bare_yield": bare_yield}
    for label, r in (("素のスタック: 続けて emit", bare_tight), ("素のスタック: 1 emit ごとに sleep(0)", bare_yield)):
        per = r["per_cpu_s"]
        rows.append((label, r["events"], r["cpu_s"], per, per / bare_tight["per_cpu_s"], per / bare_yield["per_cpu_s"]))
    for store in STORES:
        extra = [f"store.backend={store}"]
        for label, r in (
            (f"llm_router + 偽の OpenAI ({store})", throughput_router_openai(deltas, reps, extra)),
            (f"llm_router + デモ・プロバイダ ({store})", throughput_router_demo(deltas * reps, extra)),
        ):
            results[label] = r
            per = r["per_cpu_s"]
            rows.append(
                (label, r["events"], r["cpu_s"], per, per / bare_tight["per_cpu_s"], per / bare_yield["per_cpu_s"])
            )
    body = table(
        ["経路", "イベント数", "サーバー CPU 秒", "イベント / CPU 秒", "比 (続けて emit)", "比 (sleep(0) つき)"], rows
    )
    latency_rows = []
    for store in STORES:
        lat = latency(runs, chunks, args.rate, processes=min(4, runs), extra=[f"store.backend={store}"])
        results[f"latency_{store}"] = lat
        for label, r in ((f"llm_router ({store})", lat["router"]), ("素のスタック", lat["bare"])):
            lm = r["latency_ms"]
            latency_rows.append(
                (label, runs, lm["n"], lm["p50"], lm["p90"], lm["p99"], lm["max"], r["events_per_cpu_s"], r["ends"])
            )
    body += "\n\n" + table(
        ["サーバー", "同時ラン", "計測数", "p50 ms", "p90 ms", "p99 ms", "最大 ms", "イベント / CPU 秒", "終わり"],
        latency_rows,
    )
    body += f"\n\n各ランは {chunks} チャンクを {args.rate:g} チャンク/秒で流す。"
    report("ストアの費用 (1 トークンの経路、memory と sqlite)", command_line(), machine(), body, results, args.json)


def main() -> None:
    """引数を読み、計測して Markdown の表を出す。"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="小さな規模で短く (1 分未満)")
    parser.add_argument("--runs", type=int, help="遅延の計測で同時に流すランの数 (既定 200、--quick は 50)")
    parser.add_argument("--rate", type=float, default=20.0, help="1 ランの上流のチャンク/秒 (既定 20)")
    parser.add_argument("--idle", type=int, default=0, help="遅延の計測の間、開いておく待機中の接続の数 (既定 0)")
    parser.add_argument("--json", help="結果を JSON でも保存するパス")
    parser.add_argument("--stores", action="store_true", help="store.backend の memory と sqlite を比べる (効率と遅延)")
    args = parser.parse_args()
    if args.stores:
        compare_stores(args)
        return
    deltas, reps = (2000, 2) if args.quick else (5000, 3)
    runs = args.runs or (50 if args.quick else 200)
    chunks = 40 if args.quick else 100
    command = command_line()
    info = machine()

    bare_tight = throughput_bare(deltas, reps, yield_each=False)
    bare_yield = throughput_bare(deltas, reps, yield_each=True)
    openai_path = throughput_router_openai(deltas, reps)
    demo_path = throughput_router_demo(deltas * reps)
    rows = []
    for label, r in (
        ("素のスタック: 続けて emit", bare_tight),
        ("素のスタック: 1 emit ごとに sleep(0)", bare_yield),
        ("llm_router + 偽の OpenAI (HTTP/SSE)", openai_path),
        ("llm_router + デモ・プロバイダ", demo_path),
    ):
        per = r["per_cpu_s"]
        rows.append((label, r["events"], r["cpu_s"], per, per / bare_tight["per_cpu_s"], per / bare_yield["per_cpu_s"]))
    body = table(
        ["経路", "イベント数", "サーバー CPU 秒", "イベント / CPU 秒", "比 (続けて emit)", "比 (sleep(0) つき)"], rows
    )
    latency_rows = []
    latencies = []
    for n in (5, runs):
        lat = latency(n, chunks, args.rate, processes=min(4, n), idle=args.idle if n == runs else 0)
        latencies.append(lat)
        for label, r in (("llm_router", lat["router"]), ("素のスタック", lat["bare"])):
            lm = r["latency_ms"]
            latency_rows.append(
                (label, n, lm["n"], lm["p50"], lm["p90"], lm["p99"], lm["max"], r["events_per_cpu_s"], r["ends"])
            )
    body += "\n\n" + table(
        ["サーバー", "同時ラン", "計測数", "p50 ms", "p90 ms", "p99 ms", "最大 ms", "イベント / CPU 秒", "終わり"],
        latency_rows,
    )
    body += (
        f"\n\n各ランは {chunks} チャンクを {args.rate:g} チャンク/秒で流す。llm_router は上流 (paced_upstream.py) のチャンク送出から"
        "クライアントの受信まで、素のスタックはサーバーの emit からクライアントの受信まで。"
        f"クライアントは最大 4 プロセス (1 プロセス 1 ソケット)。{runs} 本の計測中の待機中の接続: {args.idle}。"
    )
    report(
        "1 トークンの経路",
        command,
        info,
        body,
        {
            "bare_tight": bare_tight,
            "bare_yield": bare_yield,
            "router_openai": openai_path,
            "router_demo": demo_path,
            "latency": latencies,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
