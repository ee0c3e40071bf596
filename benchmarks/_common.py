"""ベンチマークの共通部品: プロセスの CPU 時間と RSS、百分位数、計測環境、結果の表。

各ベンチマークは ``uv run python benchmarks/<名前>.py [--quick]`` で単独に動く。リポジトリのルートを
``sys.path`` に足すので、``llm_router`` と ``tests`` (ループバックの偽サーバーとハーネス) を import できる。

CPU 時間は psutil を使わず ``/proc/<pid>/stat`` の utime + stime (proc(5)) を読む。RSS は
``/proc/<pid>/status`` の ``VmRSS``。どちらも Linux 専用。
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """プロセス ``pid`` がここまでに使った CPU 秒 (ユーザー + システム)。

    ``/proc/<pid>/stat`` の 2 番目の欄 (comm) は空白や括弧を含み得るので、最後の ``)`` の後ろから数える
    (proc(5): utime は 14 番目、stime は 15 番目の欄、単位はクロックティック)。
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] は 3 番目の欄 (state)。utime = 14 番目 → fields[11]、stime = 15 番目 → fields[12]
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """プロセス ``pid`` の常駐メモリ (``VmRSS``、バイト)。"""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: Sequence[float], q: float) -> float:
    """``values`` の ``q`` 百分位数 (0..100、最近傍の順位 ``ceil(q/100*n)``。空なら NaN)。"""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """秒の値の列を、ミリ秒の p50 / p90 / p99 / 最大 / 件数にまとめる。"""
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else float("nan"),
    }


def median(values: Iterable[float]) -> float:
    """中央値。"""
    return statistics.median(list(values))


def machine() -> dict[str, Any]:
    """計測環境: 日時、CPU 数、CPU の名前、Python、OS、負荷平均、git のコミット。"""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "os": platform.platform(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "commit": commit,
    }


def machine_line(info: dict[str, Any]) -> str:
    """計測環境を 1 行の文字列にする (結果の表の上に書く)。"""
    return (
        f"{info['date']} / nproc={info['nproc']} ({info['cpu']}) / Python {info['python']} / "
        f"loadavg {info['loadavg']} / commit {info['commit']}"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Markdown の表。数値は読みやすい桁に丸める。"""

    def cell(value: Any) -> str:
        """1 つの欄の文字列。"""
        if isinstance(value, float):
            if value != value:  # NaN
                return "-"
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """再現のコマンド (``uv run python benchmarks/<名前>.py`` と、``--json`` 以外の引数)。"""
    args = list(sys.argv[1:])
    if "--json" in args:
        i = args.index("--json")
        del args[i : i + 2]
    script = Path(sys.argv[0]).resolve().relative_to(ROOT)
    return " ".join(["uv run python", str(script), *args])


def report(
    title: str, command: str, info: dict[str, Any], body: str, data: dict[str, Any], json_path: str | None
) -> None:
    """結果を Markdown で標準出力に書き、指定があれば JSON でも保存する (終了時の負荷平均も添える)。"""
    info = {**info, "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    print(f"\n### {title}\n")
    print(f"`{command}`  \n{machine_line(info)} → 終了時 {info['loadavg_end']}\n")
    print(body)
    if json_path:
        Path(json_path).write_text(
            json.dumps({"title": title, "machine": info, **data}, ensure_ascii=False, indent=2), encoding="utf-8"
        )


def wait_until(condition: Any, timeout: float, message: str, interval: float = 0.005) -> Any:
    """``condition()`` が真になるまで期限つきでポーリングする (固定の sleep で競合を隠さない)。"""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(message)
        time.sleep(interval)
