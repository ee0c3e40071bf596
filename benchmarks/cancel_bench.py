"""キャンセルのベンチマーク: ``cancel`` を送ってから ``run_cancelled`` が届くまでと、上流の接続が閉じるまで。

``uv run python benchmarks/cancel_bench.py [--quick] [--runs N] [--json PATH]``

本物のサーバープロセス (eventlet) の上流を偽の OpenAI にし、各ランの応答を 3 フレームの後で止める
(``stall_after``: 偽サーバーはクライアントが接続を閉じるまで何も送らずに待つ)。最初の ``text_delta`` を
受け取ったら ``cancel`` を送り、その直前の時刻から

- ``run_cancelled`` を受け取るまで (クライアントの受信スレッドで記録)、
- 偽サーバーが接続の終わり (``recv`` が空を返す) を見るまで (``FakeServer.disconnected_at``)

を測る。偽サーバーとクライアントは同じプロセスにあり、時計は同じ ``time.monotonic``。
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import command_line, machine, report, summary_ms, table
from _servers import TimedClient, router_server

from llm_router.core.schemas.events import RUN_END_EVENTS
from tests.fakes.openai_fake import OpenAIFake

STALLED_TEXT = "キャンセルされるまで止まったままの応答です。" * 20


def cancel_runs(runs: int) -> dict[str, Any]:
    """``runs`` 回、止まったストリームをキャンセルし、2 つの遅れを集める。"""
    to_event: list[float] = []
    to_upstream: list[float] = []
    missing_close = 0
    reasons: dict[str, int] = {}
    with OpenAIFake() as fake:
        server = router_server(fake.base_url)
        try:
            client = TimedClient(server.url).connect()
            thread_id = ""
            for i in range(runs + 3):
                if i % 10 == 0:
                    # 中断したテキストが履歴に溜まりすぎないよう、10 ランごとに新しいスレッド
                    thread_id = client.start()["thread_id"]
                fake.reset()
                fake.add_text_turn(STALLED_TEXT, chunk_size=3, stall_after=3)
                client.clear()
                run_id = client.send_message(thread_id, f"cancel me {i}")["run_id"]
                client.wait_for("text_delta", lambda e, r=run_id: e.get("run_id") == r, timeout=30)
                sent = time.monotonic()
                ack = client.call("cancel", {"thread_id": thread_id, "run_id": run_id})
                if not ack.get("cancelled"):
                    raise RuntimeError(f"cancel was not accepted: {ack}")
                client.wait_end(run_id, timeout=30)
                closed = fake.server.client_disconnected.wait(5)
                if i < 3:
                    continue  # 暖機
                end = next(d for n, d in client.events if n in RUN_END_EVENTS and d.get("run_id") == run_id)
                reasons[end["type"]] = reasons.get(end["type"], 0) + 1
                to_event.append(client.ends[run_id] / 1e9 - sent)
                if closed and fake.server.disconnected_at is not None:
                    to_upstream.append(fake.server.disconnected_at - sent)
                else:
                    missing_close += 1
            client.disconnect()
        finally:
            server.close()
    return {
        "run_cancelled_ms": summary_ms(to_event),
        "upstream_closed_ms": summary_ms(to_upstream),
        "upstream_not_closed": missing_close,
        "ends": reasons,
    }


def main() -> None:
    """引数を読み、計測して Markdown の表を出す。"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 回だけ")
    parser.add_argument("--runs", type=int, help="キャンセルするランの数 (既定 100、--quick は 20)")
    parser.add_argument("--json", help="結果を JSON でも保存するパス")
    args = parser.parse_args()
    runs = args.runs or (20 if args.quick else 100)
    info = machine()
    result = cancel_runs(runs)
    rows = []
    for label, key, target in (
        ("cancel → run_cancelled", "run_cancelled_ms", 50),
        ("cancel → 上流の接続が閉じる", "upstream_closed_ms", 100),
    ):
        s = result[key]
        rows.append((label, s["n"], s["p50"], s["p90"], s["p99"], s["max"], f"p99 < {target} ms"))
    body = table(["区間", "回数", "p50 ms", "p90 ms", "p99 ms", "最大 ms", "目標"], rows)
    body += f"\n\nランの終わり: {result['ends']} / 上流が閉じなかった回数: {result['upstream_not_closed']}"
    command = command_line()
    report("キャンセル", command, info, body, result, args.json)


if __name__ == "__main__":
    main()
