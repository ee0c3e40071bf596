"""Redis の部品 (llm_router/cluster) の費用: イベントの追加、Socket.IO のメッセージキュー、プロセス間コマンドの往復。

    uv run python benchmarks/redis_bench.py            # 本番の規模。docs/benchmarks.md の Redis 節を書き換える
    uv run python benchmarks/redis_bench.py --quick    # 小さな規模で動作確認 (docs には書かない)

1 回の実行の中で、自分で起動した redis-server (空きポート、永続化なし) に対して測る:

1. **イベントの追加**: 1 件ごとの往復で、素の ``XADD`` / ``PUBLISH`` と、サーバーの経路の ``RedisStore.commit``
   (Lua: スレッドの確認 + INCR + 明示 ID の XADD + 上限の確認)、リースつき (fencing)、16 件まとめた ``commit``。
   1 件あたりの壁時計、このプロセスの CPU、redis-server の CPU。``RedisStore.commit`` は eventlet の子プロセスでも、
   1 本と 16 本のグリーンスレッドから同時に (グループコミット: 往復の間に並んだコミットが次の 1 回の往復にまとまる)。
2. **Socket.IO のメッセージキュー**: 素の Flask-SocketIO (``benchmarks/_queue_server.py``、eventlet) で、ルームへの
   ``emit`` を キューなし / ``RedisManager`` あり (自分のソケットへ直接 + PUBLISH) / キューありで
   ``ignore_queue=True`` (自分のソケットだけ) / 別のプロセスのソケットへ (キュー経由でだけ届く) の 4 通り。
   一気に送ったときのサーバー CPU (全サーバープロセスの合計) と redis-server の CPU のイベントあたりの値、
   一定間隔で送ったときの送出から受信までの遅延。
3. **プロセス間コマンドの往復**: 別プロセスの持ち主 (``tests/cluster/cluster_worker.py hold``) へ ``cancel`` を送り、
   答えが戻るまで (サーバーの ``ClusterRuntime.forward`` と同じくリースから持ち主を引いて ``send`` するものと、
   宛先が分かっている ``send``)。
4. **ストリームの追従**: 別プロセスが ``XREAD BLOCK`` でスレッドのストリームを読み、``commit`` の直前から
   受け取るまでの遅延 (「ログそのものを配送に使う」設計の材料)。
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, command_line, cpu_seconds, machine, report, summary_ms, table, wait_until
from _servers import TimedClient

from tests.support.redis_server import RedisServer, free_port, redis_server_binary

DOC_FILE = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- redis-bench:start -->", "<!-- redis-bench:end -->"
DELTA = "あいうえおかきくけこ"


def _client(url: str, timeout: float = 10.0) -> Any:
    """計測用のクライアント。"""
    from llm_router.cluster.connection import connect
    from llm_router.config.schema import RedisStoreConfig

    return connect(url, RedisStoreConfig(socket_timeout_s=timeout))


def _envelope(i: int) -> dict[str, Any]:
    """``text_delta`` と同じ形・大きさの封筒。"""
    return {
        "type": "text_delta",
        "thread_id": "thr_bench0000000000000000",
        "run_id": "run_bench0000000000000000",
        "seq": 0,
        "ts": time.time(),
        "message_id": "msg_bench00000000",
        "delta": DELTA,
        "i": i,
    }


def bench_append(server: RedisServer, n: int) -> list[dict[str, Any]]:
    """1 件ずつ (と 16 件まとめて) 書いたときの 1 件あたりの費用 (サーバーの経路の ``RedisStore.commit``)。"""
    from llm_router.cluster.connection import Keys
    from llm_router.core.schemas.thread_record import StoredThread
    from llm_router.store.base import LogLimits
    from llm_router.store.redis import RedisStore

    client = _client(server.url)
    keys = Keys("bench")
    limits = LogLimits(max_events=10000, max_bytes=8 << 20, max_age_s=3600)
    store = RedisStore(client, limits, keys)
    # fencing: このプロセスがランの期限内のリースを持つときだけ書く (サーバーの ``ClusterRuntime`` と同じ設定)
    fenced = RedisStore(_client(server.url), limits, keys)
    fenced.fence_writes("bench-proc")
    for tid in ("plain", "fenced", "batch"):
        store.create_thread(StoredThread(tid, "bench"))
    run_id = _envelope(0)["run_id"]
    assert fenced.acquire_run_lease("fenced", run_id, "bench-proc", 3600)
    fenced.commit("fenced", [{**_envelope(0), "type": "run_started"}], run_started=run_id)
    payload = json.dumps(_envelope(0), ensure_ascii=False)

    def raw_xadd(i: int) -> None:
        """素の XADD (自動 ID、MAXLEN ~)。"""
        client.xadd(keys.events("raw"), {"e": payload}, maxlen=10000, approximate=True)

    def raw_publish(i: int) -> None:
        """素の PUBLISH (聞き手なし)。"""
        client.publish("bench:channel", payload)

    def commit(i: int) -> None:
        """RedisStore.commit の 1 件 (Lua の 1 回の往復)。"""
        store.commit("plain", [_envelope(i)])

    def commit_fenced(i: int) -> None:
        """リースで fencing した commit。"""
        fenced.commit("fenced", [_envelope(i)])

    batch = 16

    def commit_batch(i: int) -> None:
        """16 件まとめた commit (i は 16 の倍数のときだけ呼ばれる)。"""
        store.commit("batch", [_envelope(i + k) for k in range(batch)])

    rows = []
    for name, fn, step in [
        ("素の XADD", raw_xadd, 1),
        ("素の PUBLISH", raw_publish, 1),
        ("RedisStore.commit (1 件ずつ)", commit, 1),
        ("commit (リースで fencing)", commit_fenced, 1),
        ("commit (16 件ずつ)", commit_batch, batch),
    ]:
        for i in range(0, min(n, 500), step):  # 温め (スクリプトの読み込み、接続)
            fn(i)
        redis_cpu0, cpu0, t0 = cpu_seconds(server.process.pid), time.process_time(), time.perf_counter()
        for i in range(0, n, step):
            fn(i)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        redis_cpu = cpu_seconds(server.process.pid) - redis_cpu0
        rows.append(
            {
                "name": name,
                "n": n,
                "wall_us": wall / n * 1e6,
                "client_cpu_us": cpu / n * 1e6,
                "redis_cpu_us": redis_cpu / n * 1e6,
                "per_s": n / wall,
            }
        )
    assert store.bounds("plain").last_seq == n + min(n, 500)
    store.close()
    fenced.close()
    for writers in (1, 16):
        rows.append(bench_store_commit(server, n, writers))
    return rows


def bench_store_commit(server: RedisServer, n: int, writers: int) -> dict[str, Any]:
    """サーバーの経路の ``RedisStore.commit`` を、eventlet の子プロセス (``_store_writer.py``) の ``writers`` 本の
    グリーンスレッドから、合わせて ``n`` 件 (1 件ずつのコミット) 書いたときの 1 件あたりの費用。"""
    import uuid

    per = max(1, n // writers)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "_store_writer.py"), server.url, f"sw{uuid.uuid4().hex[:6]}"]
    redis_cpu0 = cpu_seconds(server.process.pid)
    out = subprocess.run([*cmd, str(writers), str(per)], capture_output=True, text=True, timeout=600, check=True)
    redis_cpu = cpu_seconds(server.process.pid) - redis_cpu0  # 温めの分も含む (20 件 × writers)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    count = got["commits"]
    name = "RedisStore.commit (1 本のグリーンスレッド)" if writers == 1 else f"RedisStore.commit ({writers} 本が同時に)"
    return {
        "name": name,
        "n": count,
        "wall_us": got["wall_s"] / count * 1e6,
        "client_cpu_us": got["cpu_s"] / count * 1e6,
        "redis_cpu_us": redis_cpu / (count + 20 * writers) * 1e6,
        "per_s": count / got["wall_s"],
        "round_trips": got["round_trips"],
    }


class QueueServer:
    """``benchmarks/_queue_server.py`` のサブプロセス。"""

    def __init__(self, mode: str, redis_url: str) -> None:
        """まだ起動しない。"""
        self.mode, self.redis_url, self.port = mode, redis_url, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """接続先。"""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> QueueServer:
        """起動して ``/healthz`` を待つ。"""
        import urllib.request

        args = [
            sys.executable,
            str(ROOT / "benchmarks" / "_queue_server.py"),
            str(self.port),
            self.mode,
            self.redis_url,
        ]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def healthy() -> bool:
            """200 なら真。"""
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"queue server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1.0) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(healthy, 30, "queue server not ready", interval=0.05)
        return self

    def stop(self) -> None:
        """止める。"""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _latencies(client: TimedClient) -> list[float]:
    """受信した text_delta の、送出 (本文の monotonic_ns) から受信までの秒。"""
    out = []
    with client._cond:
        pairs = list(zip(client.events, client.times, strict=True))
    for (event, data), received in pairs:
        if event == "text_delta":
            out.append((received - int(data["delta"].split(";", 1)[0])) / 1e9)
    return out


def bench_socketio(server: RedisServer, n_burst: int, n_paced: int, interval: float) -> list[dict[str, Any]]:
    """ルームへの emit の費用を 4 通りで測る。"""
    rows = []
    for label, modes in [
        ("キューなし (1 プロセス)", ["direct"]),
        ("RedisManager (自分のソケットへ直接 + PUBLISH)", ["queue"]),
        ("RedisManager で ignore_queue=True (自分のソケットだけ)", ["local"]),
        ("RedisManager で別のプロセスのソケットへ", ["queue", "queue"]),
    ]:
        procs = [QueueServer(m, server.url).start() for m in modes]
        emitter, receiver_proc = procs[0], procs[-1]
        receiver = TimedClient(receiver_proc.url).connect()
        trigger = receiver if emitter is receiver_proc else TimedClient(emitter.url).connect()
        try:
            row: dict[str, Any] = {"name": label}
            for kind, count, gap in [("burst", n_burst, 0.0), ("paced", n_paced, interval)]:
                thread_id = f"{kind}-{len(rows)}"
                assert receiver.call("start", {"thread_id": thread_id})["ok"]
                if trigger is not receiver:
                    # 送り手のプロセスのルームにはソケットがいない: 届くのはキュー経由だけ
                    assert trigger.call("start", {"thread_id": "other"})["ok"]
                receiver.clear()
                cpu0 = sum(cpu_seconds(p.proc.pid) for p in procs)
                redis0 = cpu_seconds(server.process.pid)
                t0 = time.perf_counter()
                assert trigger.call("burst", {"thread_id": thread_id, "count": count, "interval": gap})["ok"]
                receiver.wait_end("run_bench", timeout=120)
                wall = time.perf_counter() - t0
                cpu = sum(cpu_seconds(p.proc.pid) for p in procs) - cpu0
                redis_cpu = cpu_seconds(server.process.pid) - redis0
                got = len(_latencies(receiver))
                if got != count:
                    raise RuntimeError(f"{label}: received {got} of {count} events")
                if kind == "burst":
                    row.update(
                        burst_n=count,
                        server_cpu_us=cpu / count * 1e6,
                        redis_cpu_us=redis_cpu / count * 1e6,
                        events_per_cpu_s=count / cpu if cpu else float("nan"),
                        events_per_s=count / wall,
                    )
                else:
                    lat = summary_ms(_latencies(receiver))
                    row.update(paced_n=count, lat_p50=lat["p50"], lat_p99=lat["p99"], lat_max=lat["max"])
            rows.append(row)
        finally:
            receiver.disconnect()
            if trigger is not receiver:
                trigger.disconnect()
            for p in procs:
                p.stop()
    return rows


def bench_commands(server: RedisServer, n: int) -> list[dict[str, Any]]:
    """別プロセスの持ち主へのコマンドの往復 (本物のサブプロセス)。"""
    from llm_router.cluster.commands import CommandBus
    from llm_router.cluster.connection import Keys
    from llm_router.cluster.leases import RunLeases

    keys = Keys("benchcmd")
    env = {**os.environ, "LLM_ROUTER_REDIS_URL": server.url}
    owner = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.cluster_worker", "hold", keys.prefix, "t", "run-1", "10"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = owner.stdout.readline() if owner.stdout else ""
        if not line.startswith("held "):
            raise RuntimeError("command owner did not start")
        owner_id = line.split()[1]
        client, blocking = _client(server.url), _client(server.url, timeout=15)
        peer = CommandBus(client, blocking, "bench-peer", lambda k, p: {}, keys=keys)
        leases = RunLeases(client, keys)

        def send_to_holder() -> dict[str, Any]:
            """サーバーの ``ClusterRuntime.forward`` と同じく、リースから持ち主を引いてから送る。"""
            holder = leases.holder("t")
            assert holder is not None
            return peer.send(holder.process_id, "cancel", {"mode": "now"})

        rows = []
        for name, fn in [
            ("holder + send (リースから持ち主を引く)", send_to_holder),
            ("send (宛先が分かっている)", lambda: peer.send(owner_id, "cancel", {"mode": "now"})),
        ]:
            for _ in range(min(200, n)):
                fn()
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                reply = fn()
                times.append(time.perf_counter() - t0)
                assert reply["ok"] and reply["owner"] == owner_id
            rows.append({"name": name, **summary_ms(times)})
        client.close()
        blocking.close()
        return rows
    finally:
        owner.kill()
        owner.wait(10)
        if owner.stdout:
            owner.stdout.close()


def tail_reader(url: str, stream: str, count: int) -> None:
    """(サブプロセス) ``XREAD BLOCK`` でストリームを追い、``count`` 件の遅延を JSON で出す。"""
    client = _client(url, timeout=30)
    last, latencies = "0-0", []
    print("ready", flush=True)
    while len(latencies) < count:
        result = client.xread({stream: last}, block=10000, count=1000)
        now = time.monotonic_ns()
        for _key, entries in result or []:
            for entry_id, fields in entries:
                last = entry_id.decode()
                sent = int(json.loads(fields[b"e"])["delta"].split(";", 1)[0])
                latencies.append((now - sent) / 1e9)
    print(json.dumps(latencies), flush=True)


def bench_tail(server: RedisServer, n: int, interval: float) -> dict[str, Any]:
    """commit の直前から、別プロセスの XREAD BLOCK が受け取るまで。"""
    from llm_router.cluster.connection import Keys
    from llm_router.core.schemas.thread_record import StoredThread
    from llm_router.store.redis import RedisStore

    keys = Keys("benchtail")
    reader = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--tail-reader", server.url, keys.events("t"), str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        if (reader.stdout.readline() if reader.stdout else "").strip() != "ready":
            raise RuntimeError("tail reader did not start")
        store = RedisStore(_client(server.url), keys=keys)
        store.create_thread(StoredThread("t", "bench"))
        start = time.monotonic()
        for i in range(n):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # 一定間隔で送るための待ち (競合を隠すものではない)
            event = _envelope(i)
            event["delta"] = f"{time.monotonic_ns()};"
            store.commit("t", [event])
        out, _ = reader.communicate(timeout=60)
        store.close()
        return {"name": "commit → 別プロセスの XREAD BLOCK", **summary_ms(json.loads(out.strip().splitlines()[-1]))}
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(10)


def _cpu(row: dict[str, Any]) -> float:
    """1 件あたりの CPU (クライアント + redis-server、µs)。"""
    return row["client_cpu_us"] + row["redis_cpu_us"]


def _per_trip(row: dict[str, Any]) -> float:
    """1 回の往復で書いたコミットの件数 (往復の数が記録されていなければ 1)。"""
    trips = row.get("round_trips") or 0
    return row["n"] / trips if trips else 1.0


def render(results: dict[str, Any], command: str, info: dict[str, Any]) -> str:
    """docs/benchmarks.md の Redis 節 (日本語)。"""
    from _common import machine_line

    a = {r["name"]: r for r in results["append"]}
    sio = results["socketio"]
    direct, queue, local, remote = (sio[i] for i in range(4))
    rt = results["commands"]
    lines = [
        "## Redis の部品: イベントの追加、Socket.IO のメッセージキュー、プロセス間コマンド (`redis_bench.py`)",
        "",
        f"`{command}`  ",
        f"{machine_line(info)} → 終了時 {info['loadavg_end']}",
        "",
        "redis-server (Debian の 7.x、永続化なし) はスクリプトが自分で空きポートに起動します。クライアントも"
        " redis-server も同じ 2 コアのマシンのループバックです。2 コアを他の作業と分け合っているので、絶対値より"
        "同じ実行の中の比を見てください。",
        "",
        "### イベントの追加 (1 件ずつの往復)",
        "",
        table(
            ["方法", "件数", "壁時計 µs/件", "クライアント CPU µs/件", "redis-server CPU µs/件", "件/秒"],
            [
                [r["name"], r["n"], r["wall_us"], r["client_cpu_us"], r["redis_cpu_us"], r["per_s"]]
                for r in results["append"]
            ],
        ),
        "",
        f"- CPU (クライアント + redis-server) で比べると、`RedisStore.commit` の 1 件は素の XADD の"
        f" {_cpu(a['RedisStore.commit (1 件ずつ)']) / _cpu(a['素の XADD']):.2f} 倍 (Lua でスレッドの確認、INCR、"
        "明示 ID の XADD、バイト数の控えと件数の上限の確認)、16 件まとめた `commit` は 1 件あたり"
        f" {_cpu(a['commit (16 件ずつ)']) / _cpu(a['RedisStore.commit (1 件ずつ)']):.2f} 倍。壁時計は 1 往復の待ちが"
        "ほとんどで、マシンの負荷で大きく揺れます。",
        "- サーバーの経路 (`RedisStore.commit`、`llm_router/store/redis.py`) は、サーバーと同じく eventlet の子プロセス"
        " (`benchmarks/_store_writer.py`) で測る (1 回ごとに 1 度譲る)。16 本が同時に書くと、往復の間に並んだ"
        "コミットが次の 1 回の往復にまとまり (グループコミット、わざと待たない)、1 往復あたり"
        f" {_per_trip(a['RedisStore.commit (16 本が同時に)']):.1f} 件、CPU (クライアント + redis-server) は 1 本のときの"
        f" {_cpu(a['RedisStore.commit (16 本が同時に)']) / _cpu(a['RedisStore.commit (1 本のグリーンスレッド)']):.2f} 倍。",
        "",
        "### Socket.IO のメッセージキュー (ルームへの emit、ソケット 1 つ)",
        "",
        f"一気に送る: {direct['burst_n']:,} 件。一定間隔: {direct['paced_n']:,} 件を {results['interval_ms']:g} ms ごと"
        " (遅延は送出直前の `monotonic_ns` から受信まで)。サーバー CPU は関わるサーバープロセスの合計です。",
        "",
        table(
            [
                "構成",
                "サーバー CPU µs/件",
                "redis-server CPU µs/件",
                "件/サーバー CPU 秒",
                "件/秒",
                "遅延 p50 ms",
                "遅延 p99 ms",
            ],
            [
                [
                    r["name"],
                    r["server_cpu_us"],
                    r["redis_cpu_us"],
                    r["events_per_cpu_s"],
                    r["events_per_s"],
                    r["lat_p50"],
                    r["lat_p99"],
                ]
                for r in sio
            ],
        ),
        "",
        f"- キューを通すと、自分のソケットへ届けるだけでもサーバー CPU が 1 件あたり"
        f" {queue['server_cpu_us'] - direct['server_cpu_us']:.1f} µs 増えます"
        f" (キューなしの {queue['server_cpu_us'] / direct['server_cpu_us']:.2f} 倍: JSON への変換、同期の PUBLISH の往復、"
        "自分の購読スレッドが自分の送ったものを受けて捨てる分)。",
        f"- `ignore_queue=True` で自分のソケットだけに送ると {local['server_cpu_us'] / direct['server_cpu_us']:.2f} 倍"
        " (キューを設定していること自体の費用はほぼ無い)。",
        f"- 別のプロセスのソケットへは、2 プロセス合計で {remote['server_cpu_us']:.1f} µs/件"
        f" (キューなしの {remote['server_cpu_us'] / direct['server_cpu_us']:.2f} 倍)、遅延 p99 {remote['lat_p99']:.2f} ms。",
        "",
        "### プロセス間コマンドの往復 (別プロセスの持ち主へ `cancel`、答えが戻るまで)",
        "",
        table(
            ["方法", "回数", "p50 ms", "p90 ms", "p99 ms", "最大 ms"],
            [[r["name"], r["n"], r["p50"], r["p90"], r["p99"], r["max"]] for r in rt],
        ),
        "",
        f"- 往復の p50 は {rt[0]['p50']:.2f} ms、p99 は {rt[0]['p99']:.1f} ms (リースから持ち主を引く方)。"
        "別プロセスからの cancel で上流が閉じるまでの目標 (p99 100 ms) のうち、残りは持ち主のプロセスの中の"
        " cancel の経路 (1 プロセスのときと同じ) です。",
        "",
        "### ストリームの追従 (commit の直前から、別プロセスの `XREAD BLOCK` が受け取るまで)",
        "",
        table(
            ["経路", "件数", "p50 ms", "p90 ms", "p99 ms", "最大 ms"],
            [
                [
                    results["tail"]["name"],
                    results["tail"]["n"],
                    results["tail"]["p50"],
                    results["tail"]["p90"],
                    results["tail"]["p99"],
                    results["tail"]["max"],
                ]
            ],
        ),
        "",
        "配送の設計の選択は [llm_router/cluster/README.md](../llm_router/cluster/README.md) にあります。",
        "",
    ]
    return "\n".join(lines)


def write_section(body: str, path: Path = DOC_FILE) -> None:
    """docs/benchmarks.md の印 (START / END) の間を書き換える (無ければ末尾に足す)。他の節には触れない。"""
    text = path.read_text(encoding="utf-8") if path.exists() else "# ベンチマーク\n"
    block = f"{START}\n{body}{END}\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """ベンチマークを実行して表を出す (``--quick`` と ``--no-write`` 以外は docs/benchmarks.md に書く)。"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="小さな規模で動作確認 (docs には書かない)")
    parser.add_argument("--no-write", action="store_true", help="docs/benchmarks.md に書かない")
    parser.add_argument("--json", help="結果を JSON でも保存するパス")
    parser.add_argument("--tail-reader", nargs=3, metavar=("URL", "STREAM", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tail_reader:
        tail_reader(args.tail_reader[0], args.tail_reader[1], int(args.tail_reader[2]))
        return 0
    binary = redis_server_binary()
    if not binary:
        print("redis-server が必要です: sudo apt-get install redis-server", file=sys.stderr)
        return 2
    n_append, n_burst, n_paced, n_cmd, n_tail = (
        (2000, 2000, 300, 300, 300) if args.quick else (20000, 20000, 2000, 2000, 2000)
    )
    interval = 0.002
    info = machine()
    command = command_line()
    with RedisServer(binary) as server:
        results = {
            "interval_ms": interval * 1000,
            "append": bench_append(server, n_append),
            "socketio": bench_socketio(server, n_burst, n_paced, interval),
            "commands": bench_commands(server, n_cmd),
            "tail": bench_tail(server, n_tail, interval),
        }
    info = {**info, "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    body = render(results, command, info)
    report("Redis の部品", command, info, body, results, args.json)
    if not args.quick and not args.no_write:
        write_section(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
