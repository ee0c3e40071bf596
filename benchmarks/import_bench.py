"""import の時間のベンチマーク: ``import llm_router`` とアプリのモジュールを、毎回新しいプロセスで。

``uv run python benchmarks/import_bench.py [--quick] [--json PATH]``

各モジュールについて、新しい Python プロセスの中で ``time.perf_counter`` で ``import`` の前後を測る
(インタープリタの起動は含まない)。同じことを ``--repeats`` 回 (既定 7) 繰り返して中央値を取る。
参考として、プロセス全体の壁時計 (起動 + import) と、何も import しないプロセスの壁時計も出す。
``-X importtime`` で ``import llm_router`` の中の重いものも列挙する (目標: 300 ms 未満、重い import を
モジュールの先頭に置かない)。
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from _common import ROOT, command_line, machine, median, report, table

# アプリの部品 (import の重さの参考)。``app`` は eventlet のモンキーパッチと Hydra の登録まで行う
MODULES = (
    "llm_router",
    "llm_router.core.schemas.common",
    "llm_router.config.settings",
    "llm_router.core.clients.openai_client",
    "llm_router.core.router",
    "llm_router.agent",
    "llm_router.realtime",
    "llm_router.server",
    "tools.registry",
    "llm_router.rag.search",
    "app",
)
# 依存ライブラリ (参考)
LIBRARIES = ("requests", "numpy", "hydra", "flask", "flask_socketio", "eventlet")

_PROBE = "import time, warnings; warnings.simplefilter('ignore'); t = time.perf_counter(); import {m}; print(time.perf_counter() - t)"


def import_seconds(module: str) -> tuple[float, float]:
    """新しいプロセスで ``module`` を import し、(import の秒, プロセス全体の壁時計の秒) を返す。"""
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(m=module)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - began
    return float(out.stdout.strip().splitlines()[-1]), wall


def empty_process_seconds() -> float:
    """何も import しないプロセスの壁時計の秒。"""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT, check=True)
    return time.perf_counter() - began


def heaviest(module: str, top: int = 8) -> list[tuple[str, float]]:
    """``-X importtime`` で、``module`` の import の中で自分の時間 (self) が長いものを返す (ミリ秒)。"""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True
    )
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        rows.append((name, int(self_us) / 1000))
    return sorted(rows, key=lambda r: r[1], reverse=True)[:top]


def main() -> None:
    """引数を読み、計測して Markdown の表を出す。"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="繰り返し 3 回")
    parser.add_argument("--repeats", type=int, help="プロセスを起こす回数 (既定 7、--quick は 3)")
    parser.add_argument("--json", help="結果を JSON でも保存するパス")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    info = machine()
    empty = median(empty_process_seconds() for _ in range(repeats))
    results: dict[str, Any] = {"empty_process_s": empty, "modules": {}}
    rows = []
    for module in MODULES + LIBRARIES:
        samples = [import_seconds(module) for _ in range(repeats)]
        inside, wall = median(s[0] for s in samples), median(s[1] for s in samples)
        results["modules"][module] = {"import_s": inside, "wall_s": wall}
        kind = "依存" if module in LIBRARIES else "llm_router"
        rows.append((module, kind, inside * 1000, wall * 1000))
    body = table(["モジュール", "種類", "import ms (中央値)", "プロセス全体 ms"], rows)
    body += f"\n\n何も import しないプロセス: {empty * 1000:.1f} ms。目標: `import llm_router` < 300 ms。"
    heavy = heaviest("llm_router.server")
    results["heaviest_in_llm_router_server"] = heavy
    body += "\n\n`import llm_router.server` の中で自分の時間が長いもの (`-X importtime`、1 回): " + ", ".join(
        f"{name} {ms:.1f} ms" for name, ms in heavy
    )
    command = command_line()
    report("import の時間", command, info, body, results, args.json)


if __name__ == "__main__":
    main()
