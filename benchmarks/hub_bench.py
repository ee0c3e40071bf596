"""ハブの公平さ: 1 人の利用者の応答が流れている間に、別の利用者が敵対的な仕事を送っても途切れないか。

``uv run python benchmarks/hub_bench.py [--chunks 150] [--rate 25] [--async-mode eventlet] [--json out.json]``

1. 上流は ``paced_upstream.py`` (1 スレッドの asyncio)。流す側のランは ``--rate`` チャンク/秒 (既定 25 = 40 ms 間隔)
   で ``--chunks`` 個のテキストのチャンクを受け取る。
2. 同じサーバープロセスで 2 回流す: まず敵対的な仕事なし (基準)、次に別の利用者 (別の接続・別のスレッド) が
   流れている間ずっと敵対的な仕事を送り続ける:
   - 破滅的な正規表現: スキーマの pattern が ``^(a|a)*$`` のクライアント側ツールを、40 個の a と b で呼ぶ
     (バックトラックする照合器では何分もかかる)。
   - 計算の爆弾: ``9**9**9**9``、単項演算 499 段、巨大な積、10000 個の括弧 (calculator はサーバー側ツール)。
   - 900 KB のツール結果: クライアント側ツールの答えに 900 KB の文字列を返す (モデルには
     ``agent.max_tool_result_chars`` に縮めた形で届き、``tool_result`` イベントは全文)。
   敵対的な仕事は別のプロセス (``--attack URL``) が送る: 900 KB の JSON の解析などでベンチマークの
   プロセスの GIL を取り合い、流す側の受信時刻を遅らせないため。
3. 流す側のクライアントが受け取った ``text_delta`` の間隔 (受信時刻の差) の最大と p99 を比べる。
   目標は上流の間隔 40 ms に対して最大 100 ms 未満。
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import threading
import time
from typing import Any

from _common import command_line, cpu_seconds, machine, percentile, report, table
from _servers import TimedClient, router_server
from realtime_bench import paced_upstream

from tests.realtime.harness import ProtocolClient

REGEX_TOOL = {
    "name": "match_it",
    "description": "破滅的な pattern を持つツール",
    "parameters": {
        "type": "object",
        "properties": {"s": {"type": "string", "pattern": "^(a|a)*$"}},
        "required": ["s"],
    },
}
DUMP_TOOL = {
    "name": "dump",
    "description": "大きな結果を返すツール",
    "parameters": {"type": "object", "properties": {}},
}
BIG_RESULT = "x" * 900_000
HOSTILE_CALLS = [
    ("regex", {"name": "match_it", "arguments": {"s": "a" * 40 + "b"}}),
    ("calc_power", {"name": "calculator", "arguments": {"expression": "9**9**9**9"}}),
    ("calc_unary", {"name": "calculator", "arguments": {"expression": "-" * 499 + "1"}}),
    ("calc_product", {"name": "calculator", "arguments": {"expression": "*".join(["(10**900)"] * 20)}}),
    ("calc_parens", {"name": "calculator", "arguments": {"expression": "(" * 10000 + "1" + ")" * 10000}}),
    ("result_900kb", {"name": "dump", "arguments": {}}),
]


def _gaps(client: TimedClient, run_id: str) -> list[float]:
    """ラン ``run_id`` の ``text_delta`` の受信間隔 (秒)。"""
    times = [
        t
        for (name, data), t in zip(client.events, client.times, strict=True)
        if isinstance(data, dict) and data.get("run_id") == run_id and data.get("type") == "text_delta"
    ]
    return [(b - a) / 1e9 for a, b in itertools.pairwise(times)]


def _stream_once(client: TimedClient, thread_id: str, timeout: float) -> list[float]:
    """流す側のランを 1 回流し、``text_delta`` の間隔を返す。"""
    client.clear()
    run_id = client.send_message(thread_id, "長い話をしてください")["run_id"]
    client.wait_end(run_id, timeout)
    return _gaps(client, run_id)


def _attack(url: str, stop: threading.Event, counts: dict[str, int], errors: list[str]) -> None:
    """``stop`` まで敵対的な仕事を順に送り続ける (別の接続・別のスレッド)。"""
    attacker = ProtocolClient(url).connect()
    try:
        thread_id = attacker.start(tools=[REGEX_TOOL, DUMP_TOOL])["thread_id"]
        while not stop.is_set():
            for kind, call in HOSTILE_CALLS:
                if stop.is_set():
                    break
                ack = attacker.send_message(thread_id, "call " + json.dumps(call))
                if not ack.get("ok"):
                    errors.append(f"{kind}: {ack}")
                    continue
                run_id = ack["run_id"]
                if kind == "result_900kb":
                    ready = attacker.wait_for(
                        "tool_call_ready", lambda e, r=run_id: e["run_id"] == r and e["executor"] == "client"
                    )
                    attacker.call(
                        "tool_result",
                        {"thread_id": thread_id, "tool_call_id": ready["tool_call_id"], "result": BIG_RESULT},
                        timeout=30,
                    )
                end = attacker.wait_run_end(run_id, timeout=60)
                if end["type"] != "run_finished":
                    errors.append(f"{kind}: {end['type']}")
                counts[kind] = counts.get(kind, 0) + 1
            attacker.events.clear()  # 900 KB の結果を溜め込まない
    finally:
        attacker.disconnect()


def _attack_main(url: str) -> None:
    """(別プロセス) 標準入力が閉じるまで敵対的な仕事を送り、回数と失敗を JSON で標準出力に書く。"""
    stop, counts, errors = threading.Event(), {}, []
    worker = threading.Thread(target=_attack, args=(url, stop, counts, errors), daemon=True)
    worker.start()
    print("started", flush=True)
    sys.stdin.read()
    stop.set()
    worker.join(120)
    print(json.dumps({"counts": counts, "errors": errors}), flush=True)


def _start_attacker(url: str, only: str) -> subprocess.Popen[str]:
    """敵対的な仕事を送るプロセスを起動し、接続して送り始めるまで待つ。"""
    cmd = [sys.executable, __file__, "--attack", url] + (["--only", only] if only else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "started":  # type: ignore[union-attr]
        proc.kill()
        raise RuntimeError("the attacker process did not start")
    return proc


def _stop_attacker(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """標準入力を閉じて止め、回数と失敗を受け取る。"""
    try:
        out, _ = proc.communicate("", timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return {"counts": {}, "errors": ["the attacker did not stop"]}
    return json.loads(out.strip().splitlines()[-1])


def _row(label: str, gaps: list[float]) -> list[Any]:
    """表の 1 行 (ミリ秒)。"""
    ms = [g * 1000 for g in gaps]
    return [label, len(ms), f"{percentile(ms, 50):.1f}", f"{percentile(ms, 99):.1f}", f"{max(ms):.1f}"]


def main() -> None:
    """基準と敵対的な仕事ありを同じサーバーで流し、間隔を表にする。"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=150)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--async-mode", default="eventlet")
    parser.add_argument("--only", default="", help="comma-separated hostile kinds to send (default: all)")
    parser.add_argument("--attack", help=argparse.SUPPRESS)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.only:
        wanted = set(args.only.split(","))
        HOSTILE_CALLS[:] = [c for c in HOSTILE_CALLS if c[0] in wanted]
    if args.attack:
        _attack_main(args.attack)
        return
    timeout = 60 + args.chunks / args.rate * 3
    info = machine()
    with paced_upstream(args.chunks, args.rate) as base_url:
        server = router_server(base_url, async_mode=args.async_mode)
        try:
            streamer = TimedClient(server.url).connect()
            thread_id = streamer.start()["thread_id"]
            streamer.wait_end(streamer.send_message(thread_id, "warm")["run_id"])
            baseline = _stream_once(streamer, thread_id, timeout)
            cpu0 = cpu_seconds(server.proc.pid)
            attacker = _start_attacker(server.url, args.only)
            began = time.monotonic()
            try:
                hostile = _stream_once(streamer, thread_id, timeout)
            finally:
                elapsed = time.monotonic() - began
                outcome = _stop_attacker(attacker)
            counts, errors = outcome["counts"], outcome["errors"]
            cpu = cpu_seconds(server.proc.pid) - cpu0
            still = _stream_once(streamer, thread_id, timeout)  # その後もスレッドは普通に流れる
            streamer.disconnect()
        finally:
            server.close()
    rows = [_row("基準 (敵対的な仕事なし)", baseline), _row("敵対的な仕事あり", hostile), _row("その後", still)]
    body = table(["ラン", "間隔の数", "p50 (ms)", "p99 (ms)", "最大 (ms)"], rows)
    body += (
        f"\n\n上流の間隔 {1000 / args.rate:.0f} ms、{args.chunks} チャンク、async_mode={args.async_mode}。"
        f" 流している {elapsed:.1f} 秒の間に送った敵対的な仕事: "
        + ", ".join(f"{k} {v} 回" for k, v in counts.items())
        + f" (サーバーの CPU {cpu:.1f} 秒)。敵対的な実行の失敗: {len(errors)} 件。"
    )
    if errors:
        body += "\n\n" + "\n".join(f"- {e}" for e in errors[:10])
    data = {
        "baseline_gaps_ms": [g * 1000 for g in baseline],
        "hostile_gaps_ms": [g * 1000 for g in hostile],
        "after_gaps_ms": [g * 1000 for g in still],
        "hostile_counts": counts,
        "errors": errors,
    }
    report("ハブの公平さ (hub_bench)", command_line(), info, body, data, args.json)


if __name__ == "__main__":
    main()
