"""待機中の接続 1 つあたりのメモリ: サーバープロセスの RSS を、接続 0 と N で比べる (素のスタックと同じ実行で)。

``uv run python benchmarks/memory_bench.py [--quick] [--connections N] [--json PATH]``

サーバー (llm_router と素の Flask-SocketIO、どちらも eventlet) ごとに:
1. 起動して暖機 (1 接続で ``start`` して切る) の後の RSS (``/proc/<pid>/status`` の VmRSS)。
2. N 個の websocket 接続を ``/agent`` に入れた後の RSS (接続だけ)。
3. その N 個がそれぞれ ``start`` でスレッドを 1 つ開いた後の RSS (ブラウザのタブ 1 つ分に近い)。
接続は :mod:`idle_clients` (スレッドを作らない軽いクライアント、1 プロセス) で持つ。
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import command_line, machine, report, rss_bytes, table, wait_until
from _servers import BareServer, TimedClient, router_server
from idle_clients import IdleClients


def _settled_rss(pid: int, seconds: float = 1.0) -> int:
    """RSS を ``seconds`` 秒の間 0.1 秒ごとに読み、最大値を返す (確保の途中で読まないため)。"""
    deadline = time.monotonic() + seconds
    peak = rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        peak = max(peak, rss_bytes(pid))
    return peak


def measure(url: str, pid: int, connections: int) -> dict[str, Any]:
    """1 つのサーバーで、接続 0 / N / N + start の RSS を測る。"""
    warm = TimedClient(url).connect()
    warm.start()
    warm.disconnect()
    base = _settled_rss(pid)
    idle = IdleClients(url)
    try:
        began = time.monotonic()
        idle.open(connections)
        connect_s = time.monotonic() - began
        connected = _settled_rss(pid)
        acks = idle.call_all("start", {})
        if not all(a.get("ok") for a in acks):
            raise RuntimeError(f"start failed: {next(a for a in acks if not a.get('ok'))}")
        started = _settled_rss(pid)
    finally:
        idle.close()
    wait_until(lambda: rss_bytes(pid) > 0, 1, "server gone")
    return {
        "rss_base": base,
        "rss_connected": connected,
        "rss_started": started,
        "per_connection": (connected - base) / connections,
        "per_connection_with_thread": (started - base) / connections,
        "connect_s": connect_s,
    }


def main() -> None:
    """引数を読み、計測して Markdown の表を出す。"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 接続だけ")
    parser.add_argument("--connections", type=int, help="接続数 (既定 1000、--quick は 200)")
    parser.add_argument("--json", help="結果を JSON でも保存するパス")
    args = parser.parse_args()
    n = args.connections or (200 if args.quick else 1000)
    info = machine()
    with BareServer() as bare:
        bare_result = measure(bare.url, bare.proc.pid, n)
    server = router_server(None, [f"server.max_connections={max(1024, n + 64)}"])
    try:
        ours = measure(server.url, server.proc.pid, n)
    finally:
        server.close()
    mib = 1024 * 1024
    rows = []
    for label, r in (("素の Flask-SocketIO", bare_result), ("llm_router", ours)):
        rows.append(
            (
                label,
                r["rss_base"] / mib,
                r["rss_connected"] / mib,
                r["rss_started"] / mib,
                r["per_connection"] / 1024,
                r["per_connection_with_thread"] / 1024,
            )
        )
    rows.append(
        (
            "比 (llm_router / 素)",
            ours["rss_base"] / bare_result["rss_base"],
            "",
            "",
            ours["per_connection"] / bare_result["per_connection"],
            ours["per_connection_with_thread"] / bare_result["per_connection_with_thread"],
        )
    )
    body = table(
        [
            f"サーバー (接続 {n})",
            "RSS 起動後 MiB",
            "RSS 接続後 MiB",
            "RSS start 後 MiB",
            "1 接続 KiB",
            "1 接続 + スレッド KiB",
        ],
        rows,
    )
    command = command_line()
    report(
        "待機中の接続のメモリ", command, info, body, {"connections": n, "bare": bare_result, "router": ours}, args.json
    )


if __name__ == "__main__":
    main()
